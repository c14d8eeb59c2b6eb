import type {
  CreateSnapshotParams,
  ArchiveReadOptions,
  CreateWorkspaceParams,
  ForkParams,
  FileDeleteParams,
  FileListParams,
  FilePathParams,
  FileReadOptions,
  FileWriteParams,
  FetchParams,
  OperationWaitParams,
  ReadCommandParams,
  ResetParams,
  RunCommandParams,
  StdinParams,
  TerminalSizeParams,
  CreateSessionParams,
  RunInSessionParams,
  SessionWaitParams,
} from '../contract/inputs.js';
import type {
  ArchiveWritten,
  ChangesView,
  CommandEvent,
  CommandView,
  FileContent,
  FileList,
  FileStat,
  ForkView,
  OperationEvent,
  OperationView,
  SnapshotView,
  UsageView,
  WorkspaceEvent,
  WorkspaceView,
  SessionRunView,
  SessionView,
  WebhookEventView,
} from '../contract/views.js';
import { BackendUnavailableError, BadRequestError, ConflictError, StepFailedError } from '../contract/errors.js';
import type { SnapshotRecord, WorkspaceRecord } from '../contract/workspace.js';
import type { WorkspaceWebhook } from '../contract/webhooks.js';
import { normalizeRepoPath } from '../config/schema.js';
import { resolveWorkspacePlan } from '../plan/resolve.js';
import { errorFields } from '../log.js';
import { Commands } from './commands.js';
import { hostDirs, type ServiceDeps } from './deps.js';
import { Archives } from './archive.js';
import { Files } from './files.js';
import { publicError } from './public-error.js';
import { InProcessWork, type Job, type LongWork } from './long-work.js';
import { Operations, type OperationOutcome, type OperationPhases } from './operations.js';
import { Sessions } from './sessions.js';
import { Snapshots } from './snapshots.js';
import { newWorkspaceId } from './ids.js';
import { Provisioner, type PhaseOutcome } from './provisioner.js';
import { hasForeignRef, WorkspaceRecords } from './records.js';
import { RepoSync } from './repo-sync.js';
import type { WorkspaceService } from './types.js';
import { workspaceView } from './views.js';
import { StreamLimits } from './stream-limits.js';
import { WorkspaceGate } from './workspace-gate.js';
import { WorkspaceOps } from './workspace-ops.js';
import { workspaceUsage } from './usage.js';
import { bestEffort } from '../lib/best-effort.js';
import { WebhookDeliverer } from './webhooks/deliverer.js';
import { WebhookEvents } from './webhooks/events.js';
import { refusedTarget } from './webhooks/targets.js';
import { sleep } from '../lib/sleep.js';

const SETTLED = new Set<WorkspaceRecord['status']>(['ready', 'failed', 'deleted']);
const POLL_MS = 150;

/** The one service behind every entry point. Thin: each method delegates to a part. */
export class DefaultWorkspaceService implements WorkspaceService {
  readonly records: WorkspaceRecords;
  readonly provisioner: Provisioner;
  private readonly commands: Commands;
  private readonly files: Files;
  private readonly archives: Archives;
  private readonly sessions: Sessions;
  private readonly ops: WorkspaceOps;
  /** Command starts against reset/delete of the same workspace, in this process. */
  private readonly gate = new WorkspaceGate();
  private readonly streams: StreamLimits;
  /** Where provisioning, fetch and reset run. */
  private readonly work: LongWork;
  /** fetch and reset, as operations a request waits for a bounded time. */
  readonly operations: Operations;
  /** Fork points and user snapshots (taken by 'snapshot' operations). */
  readonly snapshots: Snapshots;
  /** Lifecycle webhook events (recorded on status changes, command ends, by the janitor) and their delivery. */
  readonly webhooks: WebhookEvents;
  readonly deliverer: WebhookDeliverer;

  constructor(private readonly deps: ServiceDeps) {
    const now = deps.now ?? (() => new Date());
    this.streams = new StreamLimits(deps.config.listen.maxEventStreams, deps.config.listen.maxEventStreamsPerWorkspace);
    this.deliverer = new WebhookDeliverer(deps, deps.webhookDelivery ?? 'background');
    this.webhooks = new WebhookEvents(deps, this.deliverer);
    this.records = new WorkspaceRecords(deps.state, now, deps.backend, deps.metrics, this.webhooks);
    const repoSync = new RepoSync(deps);
    this.provisioner = new Provisioner(deps, this.records, repoSync);
    this.commands = new Commands(deps, this.records, this.gate, this.webhooks);
    this.files = new Files(deps, this.records, this.gate);
    this.archives = new Archives(deps, this.files);
    this.sessions = new Sessions(deps, this.records, this.gate, this.files);
    this.ops = new WorkspaceOps(deps, this.records, repoSync, this.provisioner, this.gate);
    this.work = deps.work ?? new InProcessWork(deps.log);
    // A 'snapshot' operation's phase is the snapshots part's; the others are WorkspaceOps'.
    const phases: OperationPhases = {
      runPhase: async (op, save) =>
        op.kind === 'snapshot'
          ? { result: await this.snapshots.takePhase(op.workspaceId, String(op.input['snapshotId'])) }
          : this.ops.runPhase(op, save),
      // A snapshot runs beside commands (they keep running) but never beside a reset, fetch or delete.
      exclusive: (kind, id, fn) =>
        kind === 'snapshot' ? this.gate.exclusive(id, 'snapshotting', false, fn) : this.ops.exclusive(kind, id, fn),
      failReset: (id, operationId, error) => this.ops.failReset(id, operationId, error),
    };
    this.operations = new Operations(deps, this.records, this.work, phases);
    this.snapshots = new Snapshots(deps, this.records, this.operations, (snap, options) =>
      this.createFromSnapshot(snap, options),
    );
  }

  async createWorkspace(input: CreateWorkspaceParams): Promise<{ workspace: WorkspaceView; created: boolean }> {
    if (this.deps.backendUnavailable !== undefined) throw new BackendUnavailableError(this.deps.backendUnavailable);
    const names = new Set(this.deps.config.repositories.map((r) => normalizeRepoPath(r.path)));
    for (const name of Object.keys(input.refs ?? {})) {
      if (!names.has(name))
        throw new BadRequestError(`unknown repository '${name}' in refs`, [
          { path: `body.refs.${name}`, message: `known: ${[...names].join(', ') || 'none'}` },
        ]);
    }
    if (input.webhook !== undefined) {
      const refused = refusedTarget(input.webhook.url, this.deps.config.webhookDelivery);
      if (refused !== undefined)
        throw new BadRequestError(`webhook url ${refused} (this provider's webhookDelivery policy)`, [
          { path: 'body.webhook.url', message: refused },
        ]);
    }
    if (input.fromSnapshot !== undefined) return this.createFromSnapshotInput(input);
    const id = newWorkspaceId();
    if (input.idempotencyKey !== undefined) {
      const holder = await this.deps.state.claimIdempotencyKey(input.idempotencyKey, id);
      if (holder !== id) return { workspace: workspaceView(await this.records.get(holder)), created: false };
    }
    const plan = resolveWorkspacePlan(
      this.deps.config,
      { ...(input.refs ? { refs: input.refs } : {}), ...(input.env ? { env: input.env } : {}) },
      this.deps.baseDir,
    );
    const now = (this.deps.now ?? (() => new Date()))();
    const ttlSeconds = input.ttlSeconds ?? this.deps.config.workspace.ttlSeconds;
    const record: WorkspaceRecord = {
      id,
      status: 'provisioning',
      version: 1,
      plan,
      repos: [],
      labels: input.labels ?? {},
      ...(input.idempotencyKey !== undefined ? { idempotencyKey: input.idempotencyKey } : {}),
      owner: this.deps.instanceId,
      lease: { owner: this.deps.instanceId, expiresAt: now.getTime() + ttlSeconds * 1000 },
      warnings: [],
      steps: [{ at: now.toISOString(), step: 'accepted', message: 'provisioning queued' }],
      createdAt: now.toISOString(),
      updatedAt: now.toISOString(),
      expiresAt: Math.floor(now.getTime() / 1000) + ttlSeconds,
      ...(input.webhook !== undefined ? { webhook: input.webhook } : {}),
    };
    await this.deps.state.createWorkspace(record);
    this.deps.metrics?.count('workspacesCreated');
    await this.dispatch({ kind: 'provision', workspaceId: id });
    return { workspace: workspaceView(record), created: true };
  }

  /** `POST /workspaces {"fromSnapshot"}`: a ready snapshot of this backend, no refs (its commits are the snapshot's). */
  private async createFromSnapshotInput(
    input: CreateWorkspaceParams,
  ): Promise<{ workspace: WorkspaceView; created: boolean }> {
    if (input.refs !== undefined)
      throw new BadRequestError('refs cannot be given with fromSnapshot (the snapshot fixes every commit)', [
        { path: 'body.refs', message: 'not with fromSnapshot' },
      ]);
    const snap = await this.snapshots.require(input.fromSnapshot!);
    if (snap.status !== 'ready')
      throw new ConflictError(`snapshot '${snap.id}' is ${snap.status}; a workspace needs it ready`, {
        details: { status: snap.status },
      });
    if (snap.backendKind !== this.deps.backend.kind)
      throw new ConflictError(`snapshot '${snap.id}' was taken on backend '${snap.backendKind}'`);
    const id = newWorkspaceId();
    if (input.idempotencyKey !== undefined) {
      const holder = await this.deps.state.claimIdempotencyKey(input.idempotencyKey, id);
      if (holder !== id) return { workspace: workspaceView(await this.records.get(holder)), created: false };
    }
    const record = await this.createFromSnapshot(snap, {
      id,
      labels: input.labels ?? {},
      ...(input.ttlSeconds !== undefined ? { ttlSeconds: input.ttlSeconds } : {}),
      ...(input.env !== undefined ? { env: input.env } : {}),
      ...(input.idempotencyKey !== undefined ? { idempotencyKey: input.idempotencyKey } : {}),
      ...(input.webhook !== undefined ? { webhook: input.webhook } : {}),
    });
    return { workspace: workspaceView(record), created: true };
  }

  /**
   * A workspace record made from a snapshot (a fork, or `fromSnapshot`), its provisioning handed off:
   * the snapshot's plan (paths, user, repositories as they were), the request's env over it.
   */
  private async createFromSnapshot(
    snap: SnapshotRecord,
    options: {
      id: string;
      labels: Record<string, string>;
      ttlSeconds?: number;
      forkedFrom?: string;
      env?: Record<string, string>;
      idempotencyKey?: string;
      webhook?: WorkspaceWebhook;
    },
  ): Promise<WorkspaceRecord> {
    const now = (this.deps.now ?? (() => new Date()))();
    const ttlSeconds = options.ttlSeconds ?? this.deps.config.workspace.ttlSeconds;
    const plan = options.env ? { ...snap.plan, env: { ...snap.plan.env, ...options.env } } : snap.plan;
    const record: WorkspaceRecord = {
      id: options.id,
      status: 'provisioning',
      version: 1,
      plan,
      repos: [],
      labels: options.labels,
      ...(options.idempotencyKey !== undefined ? { idempotencyKey: options.idempotencyKey } : {}),
      owner: this.deps.instanceId,
      lease: { owner: this.deps.instanceId, expiresAt: now.getTime() + ttlSeconds * 1000 },
      warnings: [],
      steps: [
        {
          at: now.toISOString(),
          step: 'accepted',
          message: options.forkedFrom
            ? `fork of ${options.forkedFrom} (snapshot ${snap.id}) queued`
            : `creation from snapshot ${snap.id} queued`,
        },
      ],
      createdAt: now.toISOString(),
      updatedAt: now.toISOString(),
      expiresAt: Math.floor(now.getTime() / 1000) + ttlSeconds,
      fromSnapshot: snap.id,
      ...(options.forkedFrom !== undefined ? { forkedFrom: options.forkedFrom } : {}),
      ...(options.webhook !== undefined ? { webhook: options.webhook } : {}),
    };
    await this.deps.state.createWorkspace(record);
    this.deps.metrics?.count('workspacesCreated');
    await this.dispatch({ kind: 'provision', workspaceId: record.id });
    return record;
  }

  async getWorkspace(id: string): Promise<WorkspaceView> {
    return workspaceView(await this.records.get(id));
  }

  async listWorkspaces(): Promise<WorkspaceView[]> {
    return (await this.deps.state.listWorkspaces()).filter((r) => r.status !== 'deleted').map(workspaceView);
  }

  /** Idempotent teardown: a deleted workspace answers with its record; a failed one is cleaned too. */
  async deleteWorkspace(id: string): Promise<WorkspaceView> {
    return this.gate.exclusive(id, 'deleting', true, () => this.delete(id));
  }

  private async delete(id: string): Promise<WorkspaceView> {
    const current = await this.records.get(id);
    if (current.status === 'deleted') return workspaceView(current);
    if (current.status === 'provisioning' || current.status === 'resetting') {
      throw new ConflictError(`workspace '${id}' is ${current.status}; delete it when that ends`);
    }
    const deleting =
      current.status === 'deleting' ? current : await this.records.transition(id, ['ready', 'failed'], 'deleting');
    try {
      await this.teardown(deleting);
    } catch (error) {
      // Stays 'deleting': a later DELETE (or the reconciler) tries again; the caller learns why.
      throw publicError('delete', error, hostDirs(this.deps));
    }
    return workspaceView(
      await this.records.transition(id, ['deleting'], 'deleted', {
        lease: { owner: this.deps.instanceId, expiresAt: 0 },
      }),
    );
  }

  /** Remove the compute and the baseline. Also used by the reconciler. */
  async teardown(record: WorkspaceRecord): Promise<void> {
    // Records from a list (reconciler) did not pass records.get: a foreign ref is not destroyed.
    if (hasForeignRef(this.deps.backend, record))
      throw new ConflictError(
        `workspace '${record.id}': its stored backend ref does not belong to it; refusing to use it`,
      );
    if (record.backend) await this.deps.backend.destroy(record.backend);
    if (record.baseline)
      await this.deps.backend.snapshots
        .delete(record.baseline)
        .catch((e) => this.deps.log.warn('baseline delete failed', { workspaceId: record.id, ...errorFields(e) }));
  }

  runCommand(workspaceId: string, input: RunCommandParams): Promise<CommandView> {
    return this.commands.run(workspaceId, input);
  }
  getCommand(workspaceId: string, commandId: string, query: ReadCommandParams): Promise<CommandView> {
    return this.commands.get(workspaceId, commandId, query);
  }
  listCommands(workspaceId: string): Promise<CommandView[]> {
    return this.commands.list(workspaceId);
  }
  cancelCommand(workspaceId: string, commandId: string): Promise<CommandView> {
    return this.commands.cancel(workspaceId, commandId);
  }
  writeStdin(workspaceId: string, commandId: string, data: Buffer, input: StdinParams): Promise<void> {
    return this.commands.writeStdin(workspaceId, commandId, data, input.eof);
  }
  resizeCommand(workspaceId: string, commandId: string, size: TerminalSizeParams): Promise<void> {
    return this.commands.resize(workspaceId, commandId, size);
  }
  fetch(workspaceId: string, input: FetchParams, wait: OperationWaitParams = {}): Promise<OperationView> {
    return this.operations.start(workspaceId, { kind: 'fetch', input }, wait.waitMs);
  }
  reset(workspaceId: string, input: ResetParams, wait: OperationWaitParams = {}): Promise<OperationView> {
    return this.operations.start(workspaceId, { kind: 'reset', input }, wait.waitMs);
  }
  getOperation(workspaceId: string, operationId: string, wait: OperationWaitParams = {}): Promise<OperationView> {
    return this.operations.get(workspaceId, operationId, wait.waitMs);
  }
  listOperations(workspaceId: string): Promise<OperationView[]> {
    return this.operations.list(workspaceId);
  }
  changes(workspaceId: string): Promise<ChangesView> {
    return this.ops.changes(workspaceId);
  }
  async listWebhookEvents(workspaceId: string): Promise<WebhookEventView[]> {
    await this.records.get(workspaceId);
    return this.webhooks.list(workspaceId);
  }

  usage(workspaceId: string): Promise<UsageView> {
    return workspaceUsage(this.deps, this.records, workspaceId);
  }
  // ---- shell sessions (sessions.ts) ----
  createSession(workspaceId: string, input: CreateSessionParams): Promise<SessionView> {
    return this.sessions.create(workspaceId, input);
  }
  runInSession(workspaceId: string, sessionId: string, input: RunInSessionParams): Promise<SessionRunView> {
    return this.sessions.run(workspaceId, sessionId, input);
  }
  getSession(workspaceId: string, sessionId: string, wait: SessionWaitParams): Promise<SessionView> {
    return this.sessions.get(workspaceId, sessionId, wait.waitMs);
  }
  listSessions(workspaceId: string): Promise<SessionView[]> {
    return this.sessions.list(workspaceId);
  }
  interruptSession(workspaceId: string, sessionId: string): Promise<SessionView> {
    return this.sessions.interrupt(workspaceId, sessionId);
  }
  deleteSession(workspaceId: string, sessionId: string): Promise<SessionView> {
    return this.sessions.delete(workspaceId, sessionId);
  }
  // ---- fork and snapshots (snapshots.ts) ----
  fork(workspaceId: string, input: ForkParams, wait: OperationWaitParams = {}): Promise<ForkView> {
    return this.snapshots.fork(workspaceId, input, wait);
  }
  createSnapshot(
    workspaceId: string,
    input: CreateSnapshotParams,
    wait: OperationWaitParams = {},
  ): Promise<SnapshotView> {
    return this.snapshots.create(workspaceId, input, wait);
  }
  getSnapshot(id: string): Promise<SnapshotView> {
    return this.snapshots.get(id);
  }
  listSnapshots(): Promise<SnapshotView[]> {
    return this.snapshots.list();
  }
  deleteSnapshot(id: string): Promise<void> {
    return this.snapshots.delete(id);
  }

  readFile(workspaceId: string, input: FilePathParams, options?: FileReadOptions): Promise<FileContent> {
    return this.files.read(workspaceId, input, options);
  }
  writeFile(workspaceId: string, input: FileWriteParams, body: Buffer): Promise<FileStat> {
    return this.files.write(workspaceId, input, body);
  }
  statFile(workspaceId: string, input: FilePathParams): Promise<FileStat> {
    return this.files.stat(workspaceId, input);
  }
  listFiles(workspaceId: string, input: FileListParams): Promise<FileList> {
    return this.files.list(workspaceId, input);
  }
  deleteFile(workspaceId: string, input: FileDeleteParams): Promise<void> {
    return this.files.remove(workspaceId, input);
  }
  readArchive(workspaceId: string, input: FilePathParams, options?: ArchiveReadOptions): Promise<Buffer> {
    return this.archives.read(workspaceId, input, options);
  }
  writeArchive(workspaceId: string, input: FilePathParams, body: Buffer): Promise<ArchiveWritten> {
    return this.archives.write(workspaceId, input, body);
  }

  /** A stream slot is taken now (429 beyond the caps, before any event), given back when it ends. */
  watchWorkspace(workspaceId: string, signal: AbortSignal): AsyncIterable<WorkspaceEvent> {
    const release = this.streams.acquire(workspaceId, signal);
    return releasing(this.workspaceEvents(workspaceId, signal), release);
  }

  watchCommand(workspaceId: string, commandId: string, signal: AbortSignal): AsyncIterable<CommandEvent> {
    const release = this.streams.acquire(workspaceId, signal);
    return releasing(this.commandEvents(workspaceId, commandId, signal), release);
  }

  watchOperation(workspaceId: string, operationId: string, signal: AbortSignal): AsyncIterable<OperationEvent> {
    const release = this.streams.acquire(workspaceId, signal);
    return releasing(this.operationEvents(workspaceId, operationId, signal), release);
  }

  /** Polls the operation (any process may run it) and the workspace's steps recorded since it began. */
  private async *operationEvents(
    workspaceId: string,
    operationId: string,
    signal: AbortSignal,
  ): AsyncIterable<OperationEvent> {
    let seen: number | undefined;
    while (!signal.aborted) {
      const op = await this.operations.get(workspaceId, operationId, 0);
      const steps = (await this.records.get(workspaceId)).steps;
      // The steps of this operation: those recorded at or after its start (the first read fixes where).
      seen ??= steps.findIndex((s) => s.at >= op.createdAt);
      if (seen < 0) seen = steps.length;
      for (const s of steps.slice(seen)) yield { type: 'step', ...s };
      seen = Math.max(seen, steps.length);
      if (op.status !== 'running') {
        yield { type: 'end', operation: op };
        return;
      }
      await sleep(POLL_MS, signal);
    }
  }

  /** Polls the record (any process may be doing the work) and the setup command's output. */
  private async *workspaceEvents(workspaceId: string, signal: AbortSignal): AsyncIterable<WorkspaceEvent> {
    let status: string | undefined;
    let steps = 0;
    const offsets = { stdout: 0, stderr: 0 };
    while (!signal.aborted) {
      const r = await this.records.get(workspaceId);
      for (const s of r.steps.slice(steps)) yield { type: 'step', ...s };
      steps = r.steps.length;
      if (r.setupCommandId && r.backend) {
        for (const stream of ['stdout', 'stderr'] as const) {
          const chunk = await this.deps.backend
            .open(r.backend, r.plan)
            .commands.read(r.setupCommandId, stream, offsets[stream], 256 * 1024)
            .catch(() => undefined);
          if (chunk && chunk.data.length > 0) {
            offsets[stream] = chunk.nextOffset;
            yield { type: 'output', commandId: r.setupCommandId, stream, data: chunk.data.toString('utf8') };
          }
        }
      }
      if (r.status !== status) {
        status = r.status;
        yield { type: 'status', status: r.status, workspace: workspaceView(r) };
      }
      if (SETTLED.has(r.status)) return;
      await sleep(POLL_MS, signal);
    }
  }

  private async *commandEvents(
    workspaceId: string,
    commandId: string,
    signal: AbortSignal,
  ): AsyncIterable<CommandEvent> {
    const offsets = { stdout: 0, stderr: 0 };
    while (!signal.aborted) {
      const view = await this.commands.get(workspaceId, commandId, {
        stdoutOffset: offsets.stdout,
        stderrOffset: offsets.stderr,
        limit: 256 * 1024,
        waitMs: 0,
      });
      for (const stream of ['stdout', 'stderr'] as const) {
        const s = view[stream];
        if (s.nextOffset > offsets[stream]) {
          yield {
            type: 'output',
            stream,
            data: s.encoding === 'utf8' ? s.data : Buffer.from(s.data, 'base64').toString('utf8'),
            offset: s.offset,
          };
          offsets[stream] = s.nextOffset;
        }
      }
      const drained =
        view.stdout.nextOffset >= Math.min(view.stdout.bytes, this.deps.config.commands.maxOutputBytes) &&
        view.stderr.nextOffset >= Math.min(view.stderr.bytes, this.deps.config.commands.maxOutputBytes);
      if (view.state !== 'running' && drained) {
        yield {
          type: 'end',
          command: { ...view, stdout: { ...view.stdout, data: '' }, stderr: { ...view.stderr, data: '' } },
        };
        return;
      }
      await sleep(view.state === 'running' ? POLL_MS : 0, signal);
    }
  }

  /**
   * Run a job here and now (in-process long work, or a worker Lambda that received it). A provisioning
   * phase answers what comes next (for the workflow that runs the phases).
   */
  async runJob(job: Job): Promise<PhaseOutcome | OperationOutcome | undefined> {
    switch (job.kind) {
      case 'provision':
        return this.provisioner.provision(job.workspaceId).then(() => undefined);
      case 'provision-phase':
        return this.provisioner.runPhase(job.workspaceId, job.phase);
      case 'provision-failed':
        await this.provisioner.failProvisioning(
          job.workspaceId,
          new StepFailedError('provision', `the provisioning workflow gave up (${job.error})`),
        );
        return { done: true };
      case 'operation':
        return this.operations.run(job.workspaceId, job.operationId).then(() => undefined);
      case 'operation-phase':
        return this.operations.runPhase(job.workspaceId, job.operationId, job.phase);
      case 'operation-failed':
        await this.operations.giveUp(job.workspaceId, job.operationId, job.error);
        return { done: true };
    }
  }

  /** Hand the job off; one that could not be would leave the workspace 'provisioning' for ever: fail it. */
  private async dispatch(job: Job): Promise<void> {
    try {
      await this.work.dispatch(job, () => this.runJob(job).then(() => undefined));
    } catch (error) {
      this.deps.log.error('job hand-off failed', {
        job: job.kind,
        workspaceId: job.workspaceId,
        ...errorFields(error),
      });
      await bestEffort(
        this.records.transition(job.workspaceId, ['provisioning'], 'failed', {
          failure: { step: 'dispatch', message: 'provisioning could not be handed to the worker' },
        }),
        this.deps.log,
        'marking a workspace whose job was not handed off failed',
      );
      throw error;
    }
  }

  /** Hand a workspace left provisioning (a provider restart) off again: it goes on at its recorded phase. */
  resumeProvisioning(id: string): Promise<void> {
    return this.dispatch({ kind: 'provision', workspaceId: id });
  }

  /**
   * Wait for the command end states being written off the answer's path, and the `command.finished`
   * each reports: a Lambda is frozen once it answers, so its handlers wait for these first.
   */
  settleWrites(): Promise<void> {
    return this.commands.flush();
  }

  /** Wait for background provisioning and end states being written (tests and graceful shutdown). */
  async drain(): Promise<void> {
    await this.work.drain();
    this.commands.close();
    await this.commands.flush();
    await this.deliverer.drain();
  }
}

async function* releasing<T>(events: AsyncIterable<T>, release: () => void): AsyncIterable<T> {
  try {
    yield* events;
  } finally {
    release();
  }
}
