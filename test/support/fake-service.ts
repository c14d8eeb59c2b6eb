import { randomBytes } from 'node:crypto';
import type {
  CreateSnapshotParams,
  CreateSessionParams,
  RunInSessionParams,
  SessionWaitParams,
  ArchiveReadOptions,
  CreateWorkspaceParams,
  ForkParams,
  FetchParams,
  FileDeleteParams,
  FileListParams,
  FilePathParams,
  FileReadOptions,
  FileWriteParams,
  OperationWaitParams,
  ReadCommandParams,
  ResetParams,
  RunCommandParams,
  StdinParams,
  TerminalSizeParams,
} from '../../shared/contract/inputs.js';
import type {
  ArchiveWritten,
  ChangesView,
  CommandEvent,
  CommandView,
  FetchResult,
  FileContent,
  FileList,
  FileStat,
  ForkView,
  OperationEvent,
  OperationView,
  ResetResult,
  SessionRunView,
  SessionView,
  SnapshotView,
  StreamView,
  UsageView,
  WorkspaceEvent,
  WorkspaceView,
  WebhookEventView,
} from '../../shared/contract/views.js';
import { BadRequestError, ConflictError, NotFoundError, WspError } from '../../shared/contract/errors.js';
import type { WorkspaceService } from '../../shared/service/types.js';
import { sleep } from '../../shared/lib/sleep.js';

/**
 * A FAKE WorkspaceService, in memory, for testing the HTTP layer, the client and the CLI only. It
 * runs no processes: a command is interpreted by a tiny script language (below), so tests can
 * produce exit codes, output over time, hangs and crashes. The real service is tested elsewhere.
 *
 * Fake programs (argv[0], or the first word of a `command` string):
 *   echo WORDS…        stdout "WORDS…\n", exit 0
 *   exit N [WORDS…]    stderr "WORDS…\n" if given, exit N
 *   cat                stdout = stdin
 *   ticks N MS         stdout "tick i\n" N times, one every MS ms, exit 0
 *   hang               runs until cancelled (then killed, SIGTERM)
 *   crash              runCommand throws a plain Error (a non-domain error, with a "secret" message)
 *   anything else      stderr "fake: unknown program", exit 127
 */

export interface RecordedCall {
  method: keyof WorkspaceService;
  args: unknown[];
}

export interface FakeOptions {
  /** Delay between provisioning steps, ms (default 5). Provisioning always ends 'ready' unless `failSetup`. */
  stepDelayMs?: number;
  /** Provisioning ends 'failed' at the setup step. */
  failSetup?: boolean;
  /** Leave new workspaces in 'provisioning' until `finishProvisioning(id)` is called. */
  manualProvisioning?: boolean;
}

export const CRASH_MESSAGE = 'fake internal failure: token=SECRET-CANARY at /srv/internal/path';

interface FakeCommand {
  view: Omit<CommandView, 'stdout' | 'stderr'>;
  out: { stdout: Buffer; stderr: Buffer };
  events: CommandEvent[];
  ended: Promise<void>;
  finish(exitCode: number | null, state: CommandView['state'], signal?: string): void;
  timers: NodeJS.Timeout[];
  listeners: Set<() => void>;
}

interface FakeWorkspace {
  view: WorkspaceView;
  events: WorkspaceEvent[];
  listeners: Set<() => void>;
  idempotencyKey?: string;
}

/** A fetch/reset that ended with `result` (what a stub of fetch/reset returns). */
export function doneOperation(
  workspaceId: string,
  kind: OperationView['kind'],
  result: FetchResult | ResetResult,
): OperationView {
  const at = new Date().toISOString();
  return {
    id: `op-${randomBytes(12).toString('hex')}`,
    workspaceId,
    kind,
    status: 'succeeded',
    input: {},
    result,
    createdAt: at,
    updatedAt: at,
    endedAt: at,
  };
}

export class FakeWorkspaceService implements WorkspaceService {
  /** fetch/reset take this long to end; a request that waits less gets the operation still running (202). */
  operationDelayMs = 0;
  private readonly operations = new Map<string, { view: OperationView; ended: Promise<void> }>();
  readonly calls: RecordedCall[] = [];
  /** Called on every recorded call, before the method runs (tests use it to act at a given moment). */
  onCall: ((call: RecordedCall) => void) | undefined;
  /** How many watch* streams ended because their AbortSignal fired. */
  watchAborts = 0;
  private readonly workspaces = new Map<string, FakeWorkspace>();
  private readonly commands = new Map<string, FakeCommand>();
  /** Fake files: `${workspaceId} ${absolute path}` → content (paths relative to /home/node/workspace). */
  private readonly files = new Map<string, { data: Buffer; mode: string }>();
  /** Fake archives: `${workspaceId} ${absolute dir}` → the last tar written there, given back as is. */
  private readonly archives = new Map<string, Buffer>();
  private readonly stubs = new Map<keyof WorkspaceService, (...args: unknown[]) => unknown>();
  private readonly abortWaiters: Array<() => void> = [];

  constructor(private readonly options: FakeOptions = {}) {}

  /** Replace one method (until `unstub`); the call is still recorded. */
  stub<M extends keyof WorkspaceService>(method: M, impl: WorkspaceService[M]): void {
    this.stubs.set(method, impl as (...args: unknown[]) => unknown);
  }
  unstub(method: keyof WorkspaceService): void {
    this.stubs.delete(method);
  }
  /** Make the next call of `method` throw `error`. */
  failNext(method: keyof WorkspaceService, error: unknown): void {
    this.stubs.set(method, () => {
      this.stubs.delete(method);
      throw error;
    });
  }
  /** Resolves once a watch* stream has ended through its AbortSignal (`count` in total). */
  waitForWatchAbort(count = 1): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.watchAborts >= count) resolve();
        else this.abortWaiters.push(check);
      };
      check();
    });
  }
  private readonly snapshots = new Map<string, SnapshotView>();

  /** Adds a ready workspace directly (no calls recorded). */
  seedWorkspace(labels: Record<string, string> = {}): WorkspaceView {
    const ws = this.newWorkspace(labels);
    ws.view.status = 'ready';
    this.workspaces.set(ws.view.id, ws);
    return structuredClone(ws.view);
  }
  finishProvisioning(id: string, status: 'ready' | 'failed' = 'ready'): void {
    const ws = this.mustWorkspace(id);
    this.setStatus(ws, status);
  }

  // ---- WorkspaceService ----

  async createWorkspace(input: CreateWorkspaceParams): Promise<{ workspace: WorkspaceView; created: boolean }> {
    return this.call('createWorkspace', [input], async () => {
      if (input.idempotencyKey !== undefined) {
        for (const ws of this.workspaces.values()) {
          if (ws.idempotencyKey === input.idempotencyKey)
            return { workspace: structuredClone(ws.view), created: false };
        }
      }
      const ws = this.newWorkspace(input.labels ?? {});
      if (input.idempotencyKey !== undefined) ws.idempotencyKey = input.idempotencyKey;
      this.workspaces.set(ws.view.id, ws);
      this.emit(ws, { type: 'status', status: 'provisioning', workspace: structuredClone(ws.view) });
      if (!this.options.manualProvisioning) void this.provision(ws);
      return { workspace: structuredClone(ws.view), created: true };
    });
  }

  async getWorkspace(id: string): Promise<WorkspaceView> {
    return this.call('getWorkspace', [id], async () => structuredClone(this.mustWorkspace(id).view));
  }

  async listWorkspaces(): Promise<WorkspaceView[]> {
    return this.call('listWorkspaces', [], async () =>
      [...this.workspaces.values()].map((w) => structuredClone(w.view)),
    );
  }

  async deleteWorkspace(id: string): Promise<WorkspaceView> {
    return this.call('deleteWorkspace', [id], async () => {
      const ws = this.mustWorkspace(id);
      if (ws.view.status !== 'deleted') this.setStatus(ws, 'deleted');
      return structuredClone(ws.view);
    });
  }

  async runCommand(workspaceId: string, input: RunCommandParams): Promise<CommandView> {
    return this.call('runCommand', [workspaceId, input], async () => {
      const ws = this.mustWorkspace(workspaceId);
      if (ws.view.status !== 'ready')
        throw new ConflictError(`workspace '${workspaceId}' is ${ws.view.status}, not ready`);
      const argv = input.argv ?? ['bash', '-lc', input.command ?? ''];
      const words = input.argv ?? (input.command ?? '').trim().split(/\s+/);
      if (words[0] === 'crash') throw new Error(CRASH_MESSAGE);
      const stdin =
        input.stdin === undefined
          ? Buffer.alloc(0)
          : Buffer.from(input.stdin, input.stdinEncoding === 'base64' ? 'base64' : 'utf8');
      const cmd = this.startCommand(workspaceId, argv, input.cwd ?? ws.view.plan.workdir);
      this.interpret(cmd, words, stdin);
      await endedOrTimeout(cmd.ended, input.waitMs ?? 0);
      return this.viewOf(cmd, { stdoutOffset: 0, stderrOffset: 0, limit: 1024 * 1024, waitMs: 0 });
    });
  }

  async getCommand(workspaceId: string, commandId: string, query: ReadCommandParams): Promise<CommandView> {
    return this.call('getCommand', [workspaceId, commandId, query], async () => {
      const cmd = this.mustCommand(workspaceId, commandId);
      if (query.waitMs > 0) await endedOrTimeout(cmd.ended, query.waitMs);
      return this.viewOf(cmd, query);
    });
  }

  async listCommands(workspaceId: string): Promise<CommandView[]> {
    return this.call('listCommands', [workspaceId], async () => {
      this.mustWorkspace(workspaceId);
      const all = [...this.commands.values()].filter((c) => c.view.workspaceId === workspaceId);
      return all.map((c) => this.viewOf(c, { stdoutOffset: 0, stderrOffset: 0, limit: 0, waitMs: 0 }));
    });
  }

  async resizeCommand(workspaceId: string, commandId: string, size: TerminalSizeParams): Promise<void> {
    return this.call('resizeCommand', [workspaceId, commandId, size], async () => {
      const cmd = this.mustCommand(workspaceId, commandId);
      if (cmd.view.state !== 'running') throw new ConflictError(`command '${commandId}' is ${cmd.view.state}`);
    });
  }

  /** Only the checks: a running command takes the bytes (the calls record what came), an ended one refuses. */
  async writeStdin(workspaceId: string, commandId: string, data: Buffer, input: StdinParams): Promise<void> {
    return this.call('writeStdin', [workspaceId, commandId, data, input], async () => {
      const cmd = this.mustCommand(workspaceId, commandId);
      if (cmd.view.state !== 'running') throw new ConflictError(`command '${commandId}' is ${cmd.view.state}`);
    });
  }

  async cancelCommand(workspaceId: string, commandId: string): Promise<CommandView> {
    return this.call('cancelCommand', [workspaceId, commandId], async () => {
      const cmd = this.mustCommand(workspaceId, commandId);
      if (cmd.view.state === 'running') cmd.finish(null, 'killed', 'SIGTERM');
      return this.viewOf(cmd, { stdoutOffset: 0, stderrOffset: 0, limit: 1024 * 1024, waitMs: 0 });
    });
  }

  async fetch(workspaceId: string, input: FetchParams, wait?: OperationWaitParams): Promise<OperationView> {
    return this.operation(workspaceId, 'fetch', input, wait, async (): Promise<FetchResult> => {
      this.mustReady(workspaceId);
      const names = input.repos ?? ['.'];
      return {
        repos: names.map((name) => ({
          name,
          before: 'a'.repeat(40),
          after: 'b'.repeat(40),
          heads: { main: 'b'.repeat(40) },
          ...(input.checkout?.repo === name ? { checkedOut: input.checkout.ref } : {}),
        })),
      };
    });
  }

  async reset(workspaceId: string, input: ResetParams, wait?: OperationWaitParams): Promise<OperationView> {
    return this.operation(workspaceId, 'reset', input, wait, async (): Promise<ResetResult> => {
      this.mustReady(workspaceId);
      return {
        fingerprint: 'f'.repeat(64),
        baselineFingerprint: 'f'.repeat(64),
        matches: true,
        restored: 2,
        removed: 1,
        durationMs: 12,
      };
    });
  }

  async getOperation(workspaceId: string, operationId: string, wait: OperationWaitParams = {}): Promise<OperationView> {
    return this.call('getOperation', [workspaceId, operationId, wait], async () => {
      this.mustWorkspace(workspaceId);
      const op = this.operations.get(operationId);
      if (op === undefined || op.view.workspaceId !== workspaceId) throw new NotFoundError('operation', operationId);
      if (op.view.status === 'running' && (wait.waitMs ?? 0) > 0)
        await Promise.race([op.ended, sleep(wait.waitMs ?? 0)]);
      return { ...op.view };
    });
  }

  async listOperations(workspaceId: string): Promise<OperationView[]> {
    return this.call('listOperations', [workspaceId], async () => {
      this.mustWorkspace(workspaceId);
      return [...this.operations.values()]
        .filter((o) => o.view.workspaceId === workspaceId)
        .map((o) => ({ ...o.view }));
    });
  }

  async *watchOperation(workspaceId: string, operationId: string, signal: AbortSignal): AsyncIterable<OperationEvent> {
    this.record('watchOperation', [workspaceId, operationId]);
    this.mustWorkspace(workspaceId);
    const op = this.operations.get(operationId);
    if (op === undefined || op.view.workspaceId !== workspaceId) throw new NotFoundError('operation', operationId);
    await Promise.race([op.ended, new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))]);
    if (signal.aborted) return;
    yield { type: 'end', operation: { ...op.view } };
  }

  /** A fetch/reset: `impl`'s checks throw at once; its result lands after operationDelayMs. */
  private async operation(
    workspaceId: string,
    kind: 'fetch' | 'reset',
    input: FetchParams | ResetParams,
    wait: OperationWaitParams | undefined,
    impl: () => Promise<FetchResult | ResetResult>,
  ): Promise<OperationView> {
    return this.call(kind, [workspaceId, input, ...(wait === undefined ? [] : [wait])], async () => {
      const result = await impl();
      const view: OperationView = { ...doneOperation(workspaceId, kind, result), input: { ...input } };
      if (this.operationDelayMs === 0) return view;
      const { result: _result, endedAt: _endedAt, ...rest } = view;
      const entry: { view: OperationView; ended: Promise<void> } = {
        view: { ...rest, status: 'running' },
        ended: Promise.resolve(),
      };
      entry.ended = sleep(this.operationDelayMs).then(() => {
        entry.view = view;
      });
      this.operations.set(view.id, entry);
      if ((wait?.waitMs ?? Number.POSITIVE_INFINITY) >= this.operationDelayMs) await entry.ended;
      return { ...entry.view };
    });
  }

  // ---- fork and snapshots: a snapshot is ready at once; forks are new workspaces (provisioning) ----

  async fork(workspaceId: string, input: ForkParams, wait?: OperationWaitParams): Promise<ForkView> {
    return this.call('fork', [workspaceId, input, ...(wait === undefined ? [] : [wait])], async () => {
      this.mustReady(workspaceId);
      if (input.count > 16) throw new BadRequestError('count must be between 1 and 16 (config fork.maxCount)');
      const snapshot = this.newSnapshot(workspaceId, 'fork', {});
      const workspaces: WorkspaceView[] = [];
      for (let i = 0; i < input.count; i++) {
        const ws = this.newWorkspace(input.labels ?? {});
        ws.view.forkedFrom = workspaceId;
        ws.view.fromSnapshot = snapshot.id;
        this.workspaces.set(ws.view.id, ws);
        if (!this.options.manualProvisioning) void this.provision(ws);
        workspaces.push(structuredClone(ws.view));
      }
      return { snapshot, workspaces };
    });
  }

  async createSnapshot(
    workspaceId: string,
    input: CreateSnapshotParams,
    wait?: OperationWaitParams,
  ): Promise<SnapshotView> {
    return this.call('createSnapshot', [workspaceId, input, ...(wait === undefined ? [] : [wait])], async () => {
      this.mustReady(workspaceId);
      return this.newSnapshot(workspaceId, 'user', input);
    });
  }

  async getSnapshot(id: string): Promise<SnapshotView> {
    return this.call('getSnapshot', [id], async () => structuredClone(this.mustSnapshot(id)));
  }

  async listSnapshots(): Promise<SnapshotView[]> {
    return this.call('listSnapshots', [], async () => [...this.snapshots.values()].map((s) => structuredClone(s)));
  }

  async deleteSnapshot(id: string): Promise<void> {
    return this.call('deleteSnapshot', [id], async () => {
      this.mustSnapshot(id);
      this.snapshots.delete(id);
    });
  }

  private newSnapshot(workspaceId: string, kind: SnapshotView['kind'], input: CreateSnapshotParams): SnapshotView {
    const at = new Date().toISOString();
    const view: SnapshotView = {
      id: `snap-${randomBytes(12).toString('hex')}`,
      status: 'ready',
      kind,
      ...(input.name !== undefined ? { name: input.name } : {}),
      sourceWorkspaceId: workspaceId,
      operationId: `op-${randomBytes(12).toString('hex')}`,
      labels: input.labels ?? {},
      sizeBytes: 1234,
      createdAt: at,
      updatedAt: at,
    };
    this.snapshots.set(view.id, view);
    return structuredClone(view);
  }

  // ---- sessions: a run answers `ran: <command>` on stdout, exit 0 ----
  private readonly sessions = new Map<string, SessionView>();

  async createSession(workspaceId: string, input: CreateSessionParams): Promise<SessionView> {
    return this.call('createSession', [workspaceId, input], async () => {
      this.mustWorkspace(workspaceId);
      const view: SessionView = {
        id: `sess-${randomBytes(12).toString('hex')}`,
        workspaceId,
        state: 'idle',
        cwd: '/home/node/workspace',
        shell: input.shell ?? 'bash',
        createdAt: new Date().toISOString(),
      };
      this.sessions.set(view.id, view);
      return structuredClone(view);
    });
  }

  async runInSession(workspaceId: string, sessionId: string, input: RunInSessionParams): Promise<SessionRunView> {
    return this.call('runInSession', [workspaceId, sessionId, input], async () => {
      const session = this.mustSession(workspaceId, sessionId);
      const text = `ran: ${input.command}\n`;
      const stream = (data: string) => ({
        data,
        encoding: 'utf8' as const,
        offset: 0,
        nextOffset: Buffer.byteLength(data),
        bytes: Buffer.byteLength(data),
        truncated: false,
      });
      const at = new Date().toISOString();
      session.lastRun = {
        runId: `run-${Number(session.lastRun?.runId.slice(4) ?? 0) + 1}`,
        state: 'exited',
        exitCode: 0,
        stdout: stream(text),
        stderr: stream(''),
        startedAt: at,
        endedAt: at,
        durationMs: 0,
      };
      return structuredClone(session.lastRun);
    });
  }

  async getSession(workspaceId: string, sessionId: string, wait: SessionWaitParams): Promise<SessionView> {
    return this.call('getSession', [workspaceId, sessionId, wait], async () =>
      structuredClone(this.mustSession(workspaceId, sessionId)),
    );
  }

  async listSessions(workspaceId: string): Promise<SessionView[]> {
    return this.call('listSessions', [workspaceId], async () => {
      this.mustWorkspace(workspaceId);
      return [...this.sessions.values()].filter((s) => s.workspaceId === workspaceId).map((s) => structuredClone(s));
    });
  }

  async interruptSession(workspaceId: string, sessionId: string): Promise<SessionView> {
    return this.call('interruptSession', [workspaceId, sessionId], async () =>
      structuredClone(this.mustSession(workspaceId, sessionId)),
    );
  }

  async deleteSession(workspaceId: string, sessionId: string): Promise<SessionView> {
    return this.call('deleteSession', [workspaceId, sessionId], async () => {
      const session = this.mustSession(workspaceId, sessionId);
      this.sessions.delete(sessionId);
      return { ...structuredClone(session), state: 'closed' as const };
    });
  }

  private mustSession(workspaceId: string, sessionId: string): SessionView {
    this.mustWorkspace(workspaceId);
    const session = this.sessions.get(sessionId);
    if (session === undefined || session.workspaceId !== workspaceId) throw new NotFoundError('session', sessionId);
    return session;
  }

  private mustSnapshot(id: string): SnapshotView {
    const snap = this.snapshots.get(id);
    if (snap === undefined) throw new NotFoundError('snapshot', id);
    return snap;
  }

  async listWebhookEvents(workspaceId: string): Promise<WebhookEventView[]> {
    return this.call('listWebhookEvents', [workspaceId], async () => {
      this.mustWorkspace(workspaceId);
      return [];
    });
  }

  async usage(workspaceId: string): Promise<UsageView> {
    return this.call('usage', [workspaceId], async () => {
      this.mustReady(workspaceId);
      return {
        workspaceId,
        at: new Date().toISOString(),
        source: 'fake',
        cpu: { usageSeconds: 1.5 },
        memory: { currentBytes: 3 * 1024 * 1024, limitBytes: null },
        disk: { usedBytes: 5 * 1024 * 1024, limitBytes: 1024 * 1024 * 1024 },
        pids: { current: 4, limit: 1024 },
      };
    });
  }

  async changes(workspaceId: string): Promise<ChangesView> {
    return this.call('changes', [workspaceId], async () => {
      this.mustReady(workspaceId);
      return {
        repos: [
          {
            name: '.',
            path: '/home/node/workspace',
            baseCommit: 'a'.repeat(40),
            head: 'a'.repeat(40),
            status: [{ code: 'M', path: 'README.md' }],
            hidden: [],
            diff: 'diff --git a/README.md b/README.md\n-old\n+new\n',
            diffTruncated: false,
          },
        ],
      };
    });
  }

  // ---- files: a flat map, enough for the HTTP layer, the client and the CLI ----

  private filePath(workspaceId: string, p: string): string {
    this.mustReady(workspaceId);
    const abs = p.startsWith('/') ? p : `/home/node/workspace/${p}`;
    if (abs.split('/').includes('..') || !(abs.startsWith('/home/node') || abs.startsWith('/tmp')))
      throw new BadRequestError(`path '${p}' is outside the workspace`, [{ path: 'query.path', message: 'outside' }]);
    return `${workspaceId} ${abs}`;
  }

  private fakeStat(file: { data: Buffer; mode: string }): FileStat {
    return { type: 'file', size: file.data.length, mode: file.mode, mtime: new Date(0).toISOString() };
  }

  async readFile(workspaceId: string, input: FilePathParams, options: FileReadOptions = {}): Promise<FileContent> {
    return this.call('readFile', [workspaceId, input, options], async () => {
      const file = this.files.get(this.filePath(workspaceId, input.path));
      if (!file) throw new WspError('not_found', 'no such file');
      const size = file.data.length;
      const r = options.range;
      if (!r) return { data: file.data, size };
      const first = 'suffix' in r ? Math.max(0, size - r.suffix) : r.first;
      const last = 'suffix' in r ? size - 1 : Math.min(r.last ?? size - 1, size - 1);
      if (first >= size || ('suffix' in r && r.suffix === 0))
        throw new WspError('range_not_satisfiable', 'range outside', { details: { size } });
      return { data: file.data.subarray(first, last + 1), size, range: { first, last } };
    });
  }

  async writeFile(workspaceId: string, input: FileWriteParams, body: Buffer): Promise<FileStat> {
    return this.call('writeFile', [workspaceId, input, body], async () => {
      const key = this.filePath(workspaceId, input.path);
      const file = { data: Buffer.from(body), mode: input.mode ?? this.files.get(key)?.mode ?? '0644' };
      this.files.set(key, file);
      return this.fakeStat(file);
    });
  }

  async statFile(workspaceId: string, input: FilePathParams): Promise<FileStat> {
    return this.call('statFile', [workspaceId, input], async () => {
      const file = this.files.get(this.filePath(workspaceId, input.path));
      if (!file) throw new WspError('not_found', 'no such file or directory');
      return this.fakeStat(file);
    });
  }

  async listFiles(workspaceId: string, input: FileListParams): Promise<FileList> {
    return this.call('listFiles', [workspaceId, input], async () => {
      const dir = this.filePath(workspaceId, input.path)
        .slice(workspaceId.length + 1)
        .replace(/\/+$/, '');
      const entries = [...this.files.entries()]
        .filter(([k]) => k.startsWith(`${workspaceId} ${dir}/`))
        .map(([k, f]) => {
          const p = k.slice(workspaceId.length + 1);
          return { name: p.slice(p.lastIndexOf('/') + 1), path: p, ...this.fakeStat(f) };
        })
        .filter((e) => input.recursive || !e.path.slice(dir.length + 1).includes('/'))
        .sort((a, b) => (a.path < b.path ? -1 : 1));
      return { path: dir, entries, truncated: false, skippedNonUtf8: 0 };
    });
  }

  async deleteFile(workspaceId: string, input: FileDeleteParams): Promise<void> {
    return this.call('deleteFile', [workspaceId, input], async () => {
      if (!this.files.delete(this.filePath(workspaceId, input.path)))
        throw new WspError('not_found', 'no such file or directory');
    });
  }

  async readArchive(workspaceId: string, input: FilePathParams, options: ArchiveReadOptions = {}): Promise<Buffer> {
    return this.call('readArchive', [workspaceId, input, options], async () => {
      const tar = this.archives.get(this.filePath(workspaceId, input.path));
      if (!tar) throw new WspError('not_found', 'no such directory');
      if (options.maxBytes !== undefined && tar.length > options.maxBytes)
        throw new WspError('payload_too_large', 'the archive is too large');
      return tar;
    });
  }

  async writeArchive(workspaceId: string, input: FilePathParams, body: Buffer): Promise<ArchiveWritten> {
    return this.call('writeArchive', [workspaceId, input, body], async () => {
      const key = this.filePath(workspaceId, input.path);
      this.archives.set(key, Buffer.from(body));
      return { path: key.slice(workspaceId.length + 1), entries: tarEntries(body) };
    });
  }

  watchWorkspace(workspaceId: string, signal: AbortSignal): AsyncIterable<WorkspaceEvent> {
    this.record('watchWorkspace', [workspaceId]);
    const stub = this.stubs.get('watchWorkspace');
    if (stub) return stub(workspaceId, signal) as AsyncIterable<WorkspaceEvent>;
    const ws = this.mustWorkspace(workspaceId);
    const settled = (): boolean => ['ready', 'failed', 'deleted'].includes(ws.view.status);
    return this.follow(ws.events, ws.listeners, settled, signal);
  }

  watchCommand(workspaceId: string, commandId: string, signal: AbortSignal): AsyncIterable<CommandEvent> {
    this.record('watchCommand', [workspaceId, commandId]);
    const stub = this.stubs.get('watchCommand');
    if (stub) return stub(workspaceId, commandId, signal) as AsyncIterable<CommandEvent>;
    const cmd = this.mustCommand(workspaceId, commandId);
    return this.follow(cmd.events, cmd.listeners, () => cmd.view.state !== 'running', signal);
  }

  // ---- internals ----

  private async call<T>(method: keyof WorkspaceService, args: unknown[], impl: () => Promise<T>): Promise<T> {
    this.record(method, args);
    const stub = this.stubs.get(method);
    if (stub) return (await stub(...args)) as T;
    return impl();
  }

  private record(method: keyof WorkspaceService, args: unknown[]): void {
    const call = { method, args: structuredClone(args) };
    this.calls.push(call);
    this.onCall?.(call);
  }

  /** Replays `history` from the start, then follows it live until `done()` or the signal aborts. */
  private async *follow<E>(
    history: E[],
    listeners: Set<() => void>,
    done: () => boolean,
    signal: AbortSignal,
  ): AsyncGenerator<E> {
    let next = 0;
    for (;;) {
      while (next < history.length) yield history[next++]!;
      if (done()) return;
      if (signal.aborted) return this.noteAbort();
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          listeners.delete(wake);
          signal.removeEventListener('abort', wake);
          resolve();
        };
        listeners.add(wake);
        signal.addEventListener('abort', wake, { once: true });
      });
      if (signal.aborted) return this.noteAbort();
    }
  }

  private noteAbort(): void {
    this.watchAborts++;
    for (const waiter of this.abortWaiters.splice(0)) waiter();
  }

  private newWorkspace(labels: Record<string, string>): FakeWorkspace {
    const now = new Date().toISOString();
    const id = `ws-${randomBytes(6).toString('hex')}`;
    const view: WorkspaceView = {
      id,
      status: 'provisioning',
      plan: {
        home: '/home/node',
        root: '/home/node/workspace',
        workdir: '/home/node/workspace',
        user: { name: 'node', uid: 1000, gid: 1000 },
        repos: [{ name: '.', path: '.', target: '/home/node/workspace', source: { kind: 'git' } }],
      },
      repos: [{ name: '.', path: '.', commit: 'a'.repeat(40), ref: 'main' }],
      cache: { key: 'k'.repeat(16), hit: false, reason: 'no entry for key' },
      labels,
      warnings: [],
      steps: [],
      createdAt: now,
      updatedAt: now,
    };
    return { view, events: [], listeners: new Set() };
  }

  private async provision(ws: FakeWorkspace): Promise<void> {
    const delay = this.options.stepDelayMs ?? 5;
    const setupId = `sys-${randomBytes(6).toString('hex')}`;
    ws.view.setupCommandId = setupId;
    for (const [step, message] of [
      ['clone', 'cloned 1 repository'],
      ['setup', 'running setup script'],
    ] as const) {
      await sleep(delay);
      const at = new Date().toISOString();
      ws.view.steps.push({ at, step, message });
      this.emit(ws, { type: 'step', at, step, message });
    }
    await sleep(delay);
    this.emit(ws, { type: 'output', commandId: setupId, stream: 'stdout', data: 'installing dependencies\n' });
    if (this.options.failSetup) {
      this.emit(ws, { type: 'output', commandId: setupId, stream: 'stderr', data: 'npm ERR! boom\n' });
      ws.view.failure = { step: 'setup', message: 'setup exited with code 1' };
      this.setStatus(ws, 'failed');
      return;
    }
    await sleep(delay);
    this.setStatus(ws, 'ready');
  }

  private setStatus(ws: FakeWorkspace, status: WorkspaceView['status']): void {
    ws.view.status = status;
    ws.view.updatedAt = new Date().toISOString();
    this.emit(ws, { type: 'status', status, workspace: structuredClone(ws.view) });
  }

  private emit(ws: FakeWorkspace, event: WorkspaceEvent): void {
    ws.events.push(event);
    for (const wake of [...ws.listeners]) wake();
  }

  private startCommand(workspaceId: string, argv: string[], cwd: string): FakeCommand {
    const id = `cmd-${randomBytes(6).toString('hex')}`;
    let resolveEnded!: () => void;
    const started = Date.now();
    const cmd: FakeCommand = {
      view: {
        id,
        workspaceId,
        state: 'running',
        exitCode: null,
        signal: null,
        argv,
        cwd,
        startedAt: new Date(started).toISOString(),
      },
      out: { stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) },
      events: [],
      ended: new Promise<void>((resolve) => (resolveEnded = resolve)),
      timers: [],
      listeners: new Set(),
      finish: (exitCode, state, signal) => {
        if (cmd.view.state !== 'running') return;
        for (const t of cmd.timers) clearTimeout(t);
        Object.assign(cmd.view, {
          state,
          exitCode,
          signal: signal ?? null,
          endedAt: new Date().toISOString(),
          durationMs: Date.now() - started,
        });
        cmd.events.push({
          type: 'end',
          command: this.viewOf(cmd, { stdoutOffset: 0, stderrOffset: 0, limit: 1024 * 1024, waitMs: 0 }),
        });
        for (const wake of [...cmd.listeners]) wake();
        resolveEnded();
      },
    };
    this.commands.set(id, cmd);
    return cmd;
  }

  private write(cmd: FakeCommand, stream: 'stdout' | 'stderr', text: string | Buffer): void {
    const data = typeof text === 'string' ? Buffer.from(text) : text;
    const offset = cmd.out[stream].length;
    cmd.out[stream] = Buffer.concat([cmd.out[stream], data]);
    cmd.events.push({ type: 'output', stream, data: data.toString('utf8'), offset });
    for (const wake of [...cmd.listeners]) wake();
  }

  private interpret(cmd: FakeCommand, words: string[], stdin: Buffer): void {
    const [program = '', ...args] = words;
    switch (program) {
      case 'echo':
        this.write(cmd, 'stdout', `${args.join(' ')}\n`);
        cmd.finish(0, 'exited');
        return;
      case 'exit':
        if (args.length > 1) this.write(cmd, 'stderr', `${args.slice(1).join(' ')}\n`);
        cmd.finish(Number(args[0] ?? 0), 'exited');
        return;
      case 'cat':
        if (stdin.length > 0) this.write(cmd, 'stdout', stdin);
        cmd.finish(0, 'exited');
        return;
      case 'ticks': {
        const n = Number(args[0] ?? 3);
        const ms = Number(args[1] ?? 10);
        for (let i = 1; i <= n; i++) {
          cmd.timers.push(
            setTimeout(() => {
              this.write(cmd, 'stdout', `tick ${i}\n`);
              if (i === n) cmd.finish(0, 'exited');
            }, i * ms),
          );
        }
        if (n <= 0) cmd.finish(0, 'exited');
        return;
      }
      case 'hang':
        return;
      default:
        this.write(cmd, 'stderr', `fake: unknown program '${program}'\n`);
        cmd.finish(127, 'exited');
        return;
    }
  }

  private viewOf(cmd: FakeCommand, query: ReadCommandParams): CommandView {
    const stream = (buf: Buffer, offset: number): StreamView => {
      const slice = buf.subarray(Math.min(offset, buf.length), Math.min(offset + query.limit, buf.length));
      const start = Math.min(offset, buf.length);
      return {
        data: slice.toString('utf8'),
        encoding: 'utf8',
        offset: start,
        nextOffset: start + slice.length,
        bytes: buf.length,
        truncated: false,
      };
    };
    return {
      ...structuredClone(cmd.view),
      stdout: stream(cmd.out.stdout, query.stdoutOffset),
      stderr: stream(cmd.out.stderr, query.stderrOffset),
    };
  }

  private mustWorkspace(id: string): FakeWorkspace {
    const ws = this.workspaces.get(id);
    if (!ws) throw new NotFoundError('workspace', id);
    return ws;
  }

  private mustReady(id: string): FakeWorkspace {
    const ws = this.mustWorkspace(id);
    if (ws.view.status !== 'ready') throw new ConflictError(`workspace '${id}' is ${ws.view.status}, not ready`);
    return ws;
  }

  private mustCommand(workspaceId: string, commandId: string): FakeCommand {
    this.mustWorkspace(workspaceId);
    const cmd = this.commands.get(commandId);
    if (!cmd || cmd.view.workspaceId !== workspaceId) throw new NotFoundError('command', commandId);
    return cmd;
  }
}

/** Waits for `ended` or `ms`, whichever first, without leaving a timer behind. */
async function endedOrTimeout(ended: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([ended, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/** Entries of a tar: headers walked by their sizes, GNU long-name/pax headers not counted (a fake's count). */
function tarEntries(tar: Buffer): number {
  let count = 0;
  for (let at = 0; at + 512 <= tar.length && tar[at] !== 0; ) {
    const size = Number.parseInt(
      tar
        .subarray(at + 124, at + 136)
        .toString('latin1')
        .trim() || '0',
      8,
    );
    if (!'LKxg'.includes(String.fromCharCode(tar[at + 156]!))) count += 1;
    at += 512 * (1 + Math.ceil(size / 512));
  }
  return count;
}
