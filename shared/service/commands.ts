import type { ReadCommandParams, RunCommandParams, TerminalSizeParams } from '../contract/inputs.js';
import type { CommandView } from '../contract/views.js';
import { type CommandStatus, STDIN_PENDING_MAX_BYTES } from '../contract/backend.js';
import { BadRequestError, ConflictError, NotFoundError, WspError } from '../contract/errors.js';
import type { CommandRecord, WorkspaceRecord } from '../contract/workspace.js';
import { resolveGuestCwd } from '../plan/resolve.js';
import type { ServiceDeps } from './deps.js';
import { refuseIfOverDisk } from './disk-limit.js';
import { newCommandId } from './ids.js';
import type { WorkspaceRecords } from './records.js';
import { commandView, streamView } from './views.js';
import type { WorkspaceGate } from './workspace-gate.js';
import { bestEffort } from '../lib/best-effort.js';
import { errorFields } from '../log.js';
import type { WebhookEvents } from './webhooks/events.js';

/**
 * Agent commands: results are data (a non-zero exit is a normal answer), every command is a record
 * in the state store before it starts, and its final state is written back the first time anyone
 * observes it ended — so a result outlives the provider process that started it.
 */
export class Commands {
  /** End states being written back after the answer (observe); drain waits for them. */
  private readonly writes = new Set<Promise<void>>();

  /** Set at shutdown: watchers of command ends stop. */
  private closed = false;

  constructor(
    private readonly deps: ServiceDeps,
    private readonly records: WorkspaceRecords,
    private readonly gate: WorkspaceGate,
    /** Told of each end written (`command.finished`). */
    private readonly events?: WebhookEvents,
  ) {}

  async run(workspaceId: string, input: RunCommandParams): Promise<CommandView> {
    const { ws, record, stillReady } = await this.gate.start(workspaceId, () => this.start(workspaceId, input));
    const waitMs = input.waitMs ?? this.deps.config.commands.defaultWaitMs;
    // The re-read that catches an operation begun elsewhere runs beside the wait, off the answer's
    // path; when it finds one, its 409 is the answer (the command is killed already).
    const [view] = await Promise.all([
      this.read(ws, record, { stdoutOffset: 0, stderrOffset: 0, limit: 1024 * 1024, waitMs }),
      stillReady,
    ]);
    if (view.state === 'running') this.watchEnd(ws, record);
    return view;
  }

  /**
   * `command.finished` without anyone polling: in a long-lived process (the local server), a command
   * still running when its request answers is waited for in the background while a hook wants its end.
   * A Lambda has no background; there the janitor looks at running commands once a minute.
   */
  private watchEnd(ws: WorkspaceRecord, record: CommandRecord): void {
    if ((this.deps.webhookDelivery ?? 'background') !== 'background' || !this.events?.wantsCommandEnds(ws)) return;
    void (async () => {
      while (!this.closed) {
        const view = await this.read(ws, record, { stdoutOffset: 0, stderrOffset: 0, limit: 0, waitMs: 10_000 });
        if (view.state !== 'running') return;
      }
    })().catch((error: unknown) =>
      this.deps.log.warn('watching a command for its end failed', { commandId: record.id, ...errorFields(error) }),
    );
  }

  /** Shutdown: stop watching command ends. */
  close(): void {
    this.closed = true;
  }

  /** Wait for the end states being written in the background (see observe). */
  async flush(): Promise<void> {
    while (this.writes.size > 0) await Promise.all([...this.writes]);
  }

  /**
   * Record, then start; refused (409) unless the workspace is ready before. `stillReady` settles
   * once it is known to be ready after the start too (it rejects with the 409 when not).
   */
  private async start(
    workspaceId: string,
    input: RunCommandParams,
  ): Promise<{ ws: WorkspaceRecord; record: CommandRecord; stillReady: Promise<void> }> {
    const ws = await this.ready(workspaceId);
    const cwd = resolveGuestCwd(ws.plan, input.cwd);
    if (cwd === undefined)
      throw new BadRequestError(`cwd '${input.cwd}' is outside the workspace`, [
        { path: 'body.cwd', message: 'must stay inside the workspace home' },
      ]);
    const argv = input.argv ?? ['bash', '-c', input.command!];
    const stdin =
      input.stdin === undefined
        ? undefined
        : Buffer.from(input.stdin, input.stdinEncoding === 'base64' ? 'base64' : 'utf8');
    const timeoutMs = input.timeoutMs ?? this.deps.config.commands.defaultTimeoutMs;
    const id = newCommandId();
    const record: CommandRecord = {
      workspaceId,
      id,
      version: 1,
      state: 'running',
      argv,
      cwd,
      internal: false,
      timeoutMs,
      exitCode: null,
      signal: null,
      stdout: { bytes: 0, truncated: false },
      stderr: { bytes: 0, truncated: false },
      startedAt: this.now().toISOString(),
    };
    await this.deps.state.createCommand(record);
    try {
      await this.deps.backend.open(ws.backend!, ws.plan).commands.start({
        commandId: id,
        argv,
        cwd,
        env: { ...ws.plan.env, ...(input.env ?? {}) },
        ...(stdin ? { stdin } : {}),
        ...(input.openStdin || input.tty ? { openStdin: true } : {}),
        ...(input.tty ? { tty: input.tty } : {}),
        timeoutMs,
        maxOutputBytes: this.deps.config.commands.maxOutputBytes,
      });
    } catch (error) {
      await bestEffort(
        this.deps.state.updateCommand(workspaceId, id, 1, {
          state: 'lost',
          reason: 'failed to start',
          endedAt: this.now().toISOString(),
        }),
        this.deps.log,
        'marking a command that failed to start lost',
      );
      throw error;
    }
    this.deps.metrics?.count('commandsStarted');
    const stillReady = this.stillReady(ws, record);
    stillReady.catch(() => undefined); // observed by run(); never an unhandled rejection meanwhile
    return { ws, record, stillReady };
  }

  /**
   * Another process may have begun a reset or delete between our ready check and the start (this
   * process's gate cannot see it): then the command must not live on beside it. It is killed and
   * recorded as such, and the caller gets the 409 it would have had a moment later.
   */
  private async stillReady(ws: WorkspaceRecord, record: CommandRecord): Promise<void> {
    const now = await this.records.get(ws.id);
    if (now.status === 'ready' && now.backend !== undefined) return;
    await bestEffort(
      this.deps.backend.open(ws.backend!, ws.plan).commands.kill(record.id, `workspace became ${now.status}`),
      this.deps.log,
      'killing a command started while the workspace left ready',
    );
    const killed = await bestEffort(
      this.deps.state.updateCommand(ws.id, record.id, record.version, {
        state: 'killed',
        reason: `workspace became ${now.status} while it started`,
        endedAt: this.now().toISOString(),
      }),
      this.deps.log,
      'recording that command as killed',
    );
    if (killed) this.deps.metrics?.count('commandsFinished', 'killed');
    throw new ConflictError(`workspace '${ws.id}' is ${now.status}; commands need it ready`, {
      details: { status: now.status },
    });
  }

  async get(workspaceId: string, commandId: string, query: ReadCommandParams): Promise<CommandView> {
    const ws = await this.records.get(workspaceId);
    const record = await this.record(workspaceId, commandId);
    return this.read(ws, record, query);
  }

  async list(workspaceId: string): Promise<CommandView[]> {
    const ws = await this.records.get(workspaceId);
    const all = (await this.deps.state.listCommands(workspaceId)).filter((c) => !c.internal);
    return Promise.all(all.map((c) => this.read(ws, c, { stdoutOffset: 0, stderrOffset: 0, limit: 0, waitMs: 0 })));
  }

  async cancel(workspaceId: string, commandId: string): Promise<CommandView> {
    const ws = await this.records.get(workspaceId);
    const record = await this.record(workspaceId, commandId);
    if (record.state === 'running' && ws.backend)
      await this.deps.backend.open(ws.backend, ws.plan).commands.kill(commandId, 'cancelled');
    return this.read(ws, record, { stdoutOffset: 0, stderrOffset: 0, limit: 0, waitMs: 2_000 });
  }

  /**
   * Append to the open stdin of a running command (started with openStdin); `eof` closes it after.
   * 409 once it ended, before the backend is asked (its record says so); the backend refuses the rest.
   */
  async writeStdin(workspaceId: string, commandId: string, data: Buffer, eof: boolean): Promise<void> {
    if (data.length > STDIN_PENDING_MAX_BYTES)
      throw new WspError('payload_too_large', `stdin writes are at most ${STDIN_PENDING_MAX_BYTES} bytes each`, {
        details: { maxBytes: STDIN_PENDING_MAX_BYTES },
      });
    const ws = await this.records.get(workspaceId);
    const record = await this.record(workspaceId, commandId);
    const ended = (state: string) =>
      new ConflictError(`command '${commandId}' is ${state}: it takes no more input`, { details: { state } });
    if (record.state !== 'running' || ws.backend === undefined) throw ended(record.state);
    try {
      await this.deps.backend.open(ws.backend, ws.plan).commands.writeStdin(commandId, data, eof);
    } catch (error) {
      if (!(error instanceof ConflictError)) throw error;
      // It may have ended between the record read and the write: answered as any ended command is
      // (the same words on every backend and from every process), its end written back.
      const now = this.observe(ws, record, await this.status(ws, commandId, 0));
      if (now.state !== 'running') throw ended(now.state);
      throw error;
    }
  }

  /** New size for a running command's terminal (started with `tty`); 409 once it ended or without one. */
  async resize(workspaceId: string, commandId: string, size: TerminalSizeParams): Promise<void> {
    const ws = await this.records.get(workspaceId);
    const record = await this.record(workspaceId, commandId);
    if (record.state !== 'running' || ws.backend === undefined)
      throw new ConflictError(`command '${commandId}' is ${record.state}: its terminal is gone`, {
        details: { state: record.state },
      });
    await this.deps.backend.open(ws.backend, ws.plan).commands.resize(commandId, size);
  }

  /** Status (long-polled up to waitMs) + output windows; an end state observed is written back (observe). */
  async read(ws: WorkspaceRecord, record: CommandRecord, query: ReadCommandParams): Promise<CommandView> {
    let current = record;
    if (current.state === 'running') {
      const status = ws.backend ? await this.status(ws, record.id, query.waitMs) : undefined;
      current = this.observe(ws, current, status);
    }
    const out = async (stream: 'stdout' | 'stderr', offset: number) => {
      const info = current[stream];
      const chunk =
        ws.backend && query.limit > 0
          ? await this.deps.backend
              .open(ws.backend, ws.plan)
              .commands.read(current.id, stream, offset, query.limit)
              .catch(() => ({ data: Buffer.alloc(0), nextOffset: offset }))
          : { data: Buffer.alloc(0), nextOffset: offset };
      return streamView(chunk, offset, info);
    };
    const [stdout, stderr] = await Promise.all([out('stdout', query.stdoutOffset), out('stderr', query.stderrOffset)]);
    return commandView(current, stdout, stderr);
  }

  private async status(ws: WorkspaceRecord, commandId: string, waitMs: number): Promise<CommandStatus | undefined> {
    const { commands } = this.deps.backend.open(ws.backend!, ws.plan);
    try {
      return waitMs > 0 ? await commands.wait(commandId, waitMs) : await commands.status(commandId);
    } catch (error) {
      if (error instanceof NotFoundError) return undefined; // compute is gone → the command is lost
      throw error;
    }
  }

  /**
   * The record as `status` shows it. An end state is written back in the background: the answer
   * does not wait for the write, and needs it for nothing — until it lands, whoever reads the record
   * finds 'running' and asks the backend, whose files say the same end (the record is a cache of them).
   */
  private observe(ws: WorkspaceRecord, record: CommandRecord, status: CommandStatus | undefined): CommandRecord {
    const patch: Partial<CommandRecord> = status
      ? {
          state: status.state,
          exitCode: status.exitCode,
          signal: status.signal,
          stdout: status.stdout,
          stderr: status.stderr,
          ...(status.reason ? { reason: status.reason } : {}),
        }
      : { state: 'lost', reason: 'workspace compute is gone' };
    if (patch.state === 'running') return { ...record, ...patch };
    const endedAt = status?.endedAt ?? this.now().toISOString();
    patch.endedAt = endedAt;
    patch.durationMs = Math.max(0, Date.parse(endedAt) - Date.parse(record.startedAt));
    const write: Promise<void> = bestEffort(this.persist(ws, record, patch), this.deps.log, 'recording a command end')
      .then(() => undefined)
      .finally(() => this.writes.delete(write));
    this.writes.add(write);
    return { ...record, ...patch };
  }

  /**
   * Write an observed end state; another observer may have written it first (then nothing to do).
   * The writer whose write lands counts the command finished (once per end) and tells the webhooks.
   */
  private async persist(ws: WorkspaceRecord, record: CommandRecord, patch: Partial<CommandRecord>): Promise<void> {
    let ended: CommandRecord;
    try {
      ended = await this.deps.state.updateCommand(record.workspaceId, record.id, record.version, patch);
      // GET …/commands/{cid} may read an internal command (setup's): only agent commands are counted.
      if (!record.internal && patch.state) this.deps.metrics?.count('commandsFinished', patch.state);
    } catch (error) {
      if (!(error instanceof ConflictError)) throw error;
      return;
    }
    await this.events?.commandFinished(ws, ended);
  }

  private async record(workspaceId: string, commandId: string): Promise<CommandRecord> {
    const r = await this.deps.state.getCommand(workspaceId, commandId);
    if (!r) throw new NotFoundError('command', commandId);
    return r;
  }

  private async ready(workspaceId: string): Promise<WorkspaceRecord> {
    const ws = await this.records.get(workspaceId);
    if (ws.status !== 'ready' || !ws.backend)
      throw new ConflictError(`workspace '${workspaceId}' is ${ws.status}; commands need it ready`, {
        details: { status: ws.status },
      });
    refuseIfOverDisk(ws);
    return ws;
  }

  private now(): Date {
    return (this.deps.now ?? (() => new Date()))();
  }
}
