import { randomBytes } from 'node:crypto';
import type { CommandStatus, WorkspaceCommands } from '../contract/backend.js';
import { BadRequestError, ConflictError, NotFoundError } from '../contract/errors.js';
import type { CreateSessionParams, RunInSessionParams } from '../contract/inputs.js';
import type { SessionRecord, SessionRun } from '../contract/session.js';
import type { SessionRunView, SessionView } from '../contract/views.js';
import type { CommandRecord, WorkspaceRecord } from '../contract/workspace.js';
import { bestEffort } from '../lib/best-effort.js';
import { sleep } from '../lib/sleep.js';
import { resolveGuestCwd } from '../plan/resolve.js';
import type { ServiceDeps } from './deps.js';
import { refuseIfOverDisk } from './disk-limit.js';
import type { Files } from './files.js';
import { newSessionId, newSystemCommandId } from './ids.js';
import type { WorkspaceRecords } from './records.js';
import {
  findSentinel,
  runStarted,
  interruptedLine,
  parseRunOutput,
  READ_RUN_SCRIPT,
  type RunOutput,
  runLine,
  runOutputPath,
  sessionDir,
  setupInput,
  shellArgv,
} from './session-shell.js';
import { streamView } from './views.js';
import type { WorkspaceGate } from './workspace-gate.js';

/** What the shell's own stdout may hold: sentinel lines only (~40 bytes a run), so ~400,000 runs. */
const SHELL_OUTPUT_BYTES = 16 * 1024 * 1024;
/** Between a timeout's SIGINT and SIGTERM, and between SIGTERM and killing the shell. */
const GRACE_MS = 2_000;
/** How long an interrupt request waits for the run to end before answering. */
const INTERRUPT_WAIT_MS = 5_000;
/** How long a signal waits for the run's line to have been read by the shell (it is, within ms, unless the workspace is starved). */
const START_WAIT_MS = 3_000;
/** Polling the shell's stdout for a run's end: from 25 ms up to this. */
const MAX_POLL_MS = 500;

/**
 * Persistent shell sessions (issue 13). A session is ONE long-lived internal command of its workspace —
 * an interactive shell without a terminal, stdin kept open — and a record in the state store (every
 * change a conditional write, so any process, e.g. a Lambda, may serve the next request). A run is one
 * line written to the shell's stdin (session-shell.ts); its output goes to files in the workspace, and
 * its end is a sentinel on the shell's stdout, found by reading from the offset where the previous run
 * ended. Nothing depends on a timer of the process that started a run: every observation (a run, a GET,
 * a list, an interrupt) settles an ended run, notices a shell that died (`lost`) and enforces a run's
 * timeout (SIGINT, then SIGTERM after a grace, then the shell is killed); the local server also keeps a
 * timer per run so a timeout fires with nobody looking.
 */
export class Sessions {
  constructor(
    private readonly deps: ServiceDeps,
    private readonly records: WorkspaceRecords,
    private readonly gate: WorkspaceGate,
    private readonly files: Files,
  ) {}

  /** Session creations under way, per workspace (see oneAtATime). */
  private readonly creating = new Map<string, Promise<unknown>>();

  /**
   * Run `fn` after every creation for this workspace already under way in this process: the limit is a
   * count read, then a write, and two creations between them would both pass it. (Across processes —
   * Lambda — two may still race: the limit can then be passed by one.)
   */
  private oneAtATime<T>(workspaceId: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.creating.get(workspaceId) ?? Promise.resolve()).then(fn);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.creating.set(workspaceId, settled);
    void settled.then(() => {
      if (this.creating.get(workspaceId) === settled) this.creating.delete(workspaceId);
    });
    return run;
  }

  async create(workspaceId: string, input: CreateSessionParams): Promise<SessionView> {
    const record = await this.gate.start(workspaceId, () =>
      this.oneAtATime(workspaceId, async () => {
        const ws = await this.ready(workspaceId);
        const cwd = resolveGuestCwd(ws.plan, input.cwd);
        if (cwd === undefined)
          throw new BadRequestError(`cwd '${input.cwd}' is outside the workspace`, [
            { path: 'body.cwd', message: 'must stay inside the workspace home' },
          ]);
        const max = this.deps.config.sessions.maxPerWorkspace;
        const live = (await this.deps.state.listSessions(workspaceId)).filter(
          (s) => s.state === 'idle' || s.state === 'busy',
        );
        if (live.length >= max)
          throw new ConflictError(
            `workspace '${workspaceId}' has ${live.length} sessions; sessions.maxPerWorkspace is ${max}`,
            {
              details: { maxPerWorkspace: max },
            },
          );
        const id = newSessionId();
        const shell = input.shell ?? 'bash';
        const argv = shellArgv(shell);
        const now = this.now().toISOString();
        const session: SessionRecord = {
          workspaceId,
          id,
          version: 1,
          state: 'idle',
          shell,
          cwd,
          commandId: newSystemCommandId(),
          nonce: randomBytes(12).toString('hex'),
          seq: 0,
          stdoutOffset: 0,
          owner: this.deps.instanceId,
          createdAt: now,
          updatedAt: now,
        };
        const command: CommandRecord = {
          workspaceId,
          id: session.commandId,
          version: 1,
          state: 'running',
          argv,
          cwd,
          internal: true,
          timeoutMs: 0,
          exitCode: null,
          signal: null,
          stdout: { bytes: 0, truncated: false },
          stderr: { bytes: 0, truncated: false },
          startedAt: now,
        };
        await this.deps.state.createCommand(command);
        await this.deps.state.createSession(session);
        try {
          await this.shellOf(ws).start({
            commandId: session.commandId,
            argv,
            cwd,
            env: { ...ws.plan.env, ...(input.env ?? {}) },
            stdin: Buffer.from(setupInput(id)),
            openStdin: true,
            timeoutMs: 0,
            maxOutputBytes: SHELL_OUTPUT_BYTES,
          });
        } catch (error) {
          await bestEffort(
            this.deps.state.updateSession(workspaceId, id, 1, { state: 'lost', reason: 'the shell failed to start' }),
            this.deps.log,
            'marking a session whose shell failed to start lost',
          );
          throw error;
        }
        return session;
      }),
    );
    return this.view(record, undefined);
  }

  async get(workspaceId: string, sessionId: string, waitMs: number): Promise<SessionView> {
    const ws = await this.records.get(workspaceId);
    let s = await this.observe(ws, await this.record(workspaceId, sessionId));
    if (s.state === 'busy' && waitMs > 0) s = await this.waitEnd(ws, s, waitMs);
    return this.view(s, ws);
  }

  async list(workspaceId: string): Promise<SessionView[]> {
    const ws = await this.records.get(workspaceId);
    const all = await this.deps.state.listSessions(workspaceId);
    return Promise.all(all.map(async (s) => this.view(await this.observe(ws, s), ws)));
  }

  /** Runs one command line in the session's shell; waits up to waitMs (a view still `running` → 202). */
  async run(workspaceId: string, sessionId: string, input: RunInSessionParams): Promise<SessionRunView> {
    const ws = await this.ready(workspaceId);
    let s = await this.observe(ws, await this.record(workspaceId, sessionId));
    this.refuseUnlessIdle(s);
    const seq = s.seq + 1;
    const run: SessionRun = {
      id: `run-${seq}`,
      seq,
      state: 'running',
      exitCode: null,
      timeoutMs: input.timeoutMs ?? this.deps.config.commands.defaultTimeoutMs,
      stdoutOffset: s.stdoutOffset,
      startedAt: this.now().toISOString(),
    };
    try {
      s = await this.deps.state.updateSession(workspaceId, sessionId, s.version, { state: 'busy', seq, run });
    } catch (error) {
      if (!(error instanceof ConflictError)) throw error;
      this.refuseUnlessIdle(await this.record(workspaceId, sessionId));
      throw new ConflictError(`session '${sessionId}' is busy: one run at a time`, { details: { state: 'busy' } });
    }
    try {
      await this.shellOf(ws).writeStdin(s.commandId, Buffer.from(runLine(s.id, s.nonce, seq, input.command)), false);
    } catch (error) {
      if (!(error instanceof ConflictError || error instanceof NotFoundError)) throw error;
      s = await this.lose(s, 'the shell ended');
      throw new ConflictError(`session '${sessionId}' is lost: its shell ended`, { details: { state: s.state } });
    }
    if (run.timeoutMs > 0) this.watchTimeout(ws, s);
    s = await this.waitEnd(ws, s, input.waitMs ?? this.deps.config.commands.defaultWaitMs);
    const view = await this.view(s, ws);
    return view.lastRun!;
  }

  /** SIGINT to what the shell runs (the shell lives on); the run ends `interrupted` (130). */
  async interrupt(workspaceId: string, sessionId: string): Promise<SessionView> {
    const ws = await this.records.get(workspaceId);
    let s = await this.observe(ws, await this.record(workspaceId, sessionId));
    if (s.state === 'busy' && s.run?.interruptedAt === undefined) {
      const at = this.now().toISOString();
      s = await this.signalled(s, { interruptedAt: at, signalledAt: at }, 'SIGINT', 130);
      s = await this.waitEnd(ws, s, INTERRUPT_WAIT_MS);
    }
    return this.view(s, ws);
  }

  /** Kills the shell and what it runs; the record goes (the answer says `closed`). */
  async delete(workspaceId: string, sessionId: string): Promise<SessionView> {
    const ws = await this.records.get(workspaceId);
    let s = await this.record(workspaceId, sessionId);
    if (ws.backend)
      await bestEffort(this.shellOf(ws).kill(s.commandId, 'session deleted'), this.deps.log, 'killing a session shell');
    for (;;) {
      try {
        await this.deps.state.deleteSession(workspaceId, sessionId, s.version);
        break;
      } catch (error) {
        if (error instanceof NotFoundError) throw new NotFoundError('session', sessionId);
        if (!(error instanceof ConflictError)) throw error;
        s = await this.record(workspaceId, sessionId);
      }
    }
    if (ws.status === 'ready')
      await bestEffort(
        this.files.remove(workspaceId, { path: sessionDir(sessionId), recursive: true }),
        this.deps.log,
        'removing a session dir',
      );
    const closed: SessionRecord = {
      ...s,
      state: 'closed',
      ...(s.run?.state === 'running' ? { run: { ...s.run, state: 'killed', reason: 'session deleted' } } : {}),
    };
    return this.view(closed, undefined);
  }

  // ---- observation -------------------------------------------------------------------------

  /**
   * The session as it is now: a run whose sentinel arrived is settled (idle), a shell that ended makes it
   * lost, an overdue run is signalled. Safe from any process at any time: every write is conditional, and
   * a lost condition means someone else wrote first (the record is read again).
   */
  private async observe(ws: WorkspaceRecord, s: SessionRecord): Promise<SessionRecord> {
    if (s.state === 'lost' || s.state === 'closed') return s;
    if (!ws.backend || ws.status === 'deleting' || ws.status === 'deleted' || ws.status === 'failed')
      return this.lose(s, `the workspace is ${ws.status}`);
    const commands = this.shellOf(ws);
    if (s.state === 'busy' && s.run) {
      const ended = await this.settle(commands, s);
      if (ended) return ended;
    }
    let status: CommandStatus;
    try {
      status = await commands.status(s.commandId);
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
      return this.lose(s, 'the workspace compute is gone');
    }
    if (status.state !== 'running') {
      // Its last sentinel may have come just before it ended.
      if (s.state === 'busy' && s.run) {
        const ended = await this.settle(commands, s);
        if (ended) return this.observe(ws, ended);
      }
      return this.lose(
        s,
        `the shell ended (${status.reason ?? status.state}${status.exitCode !== null ? `, exit ${status.exitCode}` : ''})`,
      );
    }
    if (status.stdout.truncated && s.state === 'busy')
      return this.lose(s, 'the session ran out of room for its framing: start a new one');
    if (s.state === 'busy' && s.run) return this.enforceTimeout(commands, s);
    return s;
  }

  /** The run's end if its sentinel is on the shell's stdout: the record settled idle (or as someone else wrote it). */
  private async settle(commands: WorkspaceCommands, s: SessionRecord): Promise<SessionRecord | undefined> {
    const run = s.run!;
    const chunk = await commands.read(s.commandId, 'stdout', run.stdoutOffset, 64 * 1024).catch(() => undefined);
    if (!chunk) return undefined;
    const sentinel = findSentinel(chunk.data, s.nonce, run.seq);
    if (sentinel === undefined) return undefined;
    const code = sentinel.code;
    const endedAt = this.now().toISOString();
    const state =
      run.interruptedAt !== undefined ? 'interrupted' : run.timeoutStage !== undefined ? 'killed' : 'exited';
    const reason = state === 'interrupted' ? 'interrupted' : state === 'killed' ? 'timeout' : undefined;
    const ended: SessionRun = {
      ...run,
      state,
      exitCode: code,
      ...(reason ? { reason } : {}),
      endedAt,
      durationMs: Math.max(0, Date.parse(endedAt) - Date.parse(run.startedAt)),
    };
    return this.write(s, { state: 'idle', run: ended, stdoutOffset: run.stdoutOffset + sentinel.end });
  }

  private async enforceTimeout(commands: WorkspaceCommands, s: SessionRecord): Promise<SessionRecord> {
    const run = s.run!;
    if (run.timeoutMs <= 0) return s;
    const now = this.now().getTime();
    const since = run.signalledAt === undefined ? Number.POSITIVE_INFINITY : now - Date.parse(run.signalledAt);
    const at = new Date(now).toISOString();
    if (run.timeoutStage === undefined && now - Date.parse(run.startedAt) >= run.timeoutMs)
      return this.signalled(s, { timeoutStage: 1, signalledAt: at }, 'SIGINT', 130);
    if (run.timeoutStage === 1 && since >= GRACE_MS)
      return this.signalled(s, { timeoutStage: 2, signalledAt: at }, 'SIGTERM', 143);
    if (run.timeoutStage === 2 && since >= GRACE_MS) {
      await bestEffort(
        commands.kill(s.commandId, 'session run ignored SIGINT and SIGTERM'),
        this.deps.log,
        'killing a session shell',
      );
      return this.lose(
        s,
        `timeout after ${run.timeoutMs} ms: the run ignored SIGINT and SIGTERM, so the shell was killed`,
      );
    }
    return s;
  }

  /**
   * Record the signal first (so of two observers only one sends it), then send it to what the shell
   * runs and write the sentinel the abandoned line no longer prints.
   */
  private async signalled(
    s: SessionRecord,
    patch: Partial<SessionRun>,
    signal: 'SIGINT' | 'SIGTERM',
    code: number,
  ): Promise<SessionRecord> {
    let next: SessionRecord;
    try {
      next = await this.deps.state.updateSession(s.workspaceId, s.id, s.version, { run: { ...s.run!, ...patch } });
    } catch (error) {
      if (!(error instanceof ConflictError)) throw error;
      return this.record(s.workspaceId, s.id);
    }
    const ws = await this.records.get(s.workspaceId);
    const commands = this.shellOf(ws);
    // Not before the shell has read the run's line: a signal then would be lost (session-shell.ts runLine).
    await this.untilStarted(commands, next, START_WAIT_MS);
    await bestEffort(commands.signal(s.commandId, signal), this.deps.log, `sending ${signal} to a session`);
    await bestEffort(
      commands.writeStdin(s.commandId, Buffer.from(interruptedLine(s.nonce, s.run!.seq, code)), false),
      this.deps.log,
      'ending an interrupted session run',
    );
    return next;
  }

  /** Wait (at most `waitMs`) until the run has said it started; a shell that never says so is signalled anyway. */
  private async untilStarted(commands: WorkspaceCommands, s: SessionRecord, waitMs: number): Promise<void> {
    const run = s.run!;
    const deadline = Date.now() + waitMs;
    for (let pause = 10; ; pause = Math.min(MAX_POLL_MS, pause * 2)) {
      const chunk = await commands.read(s.commandId, 'stdout', run.stdoutOffset, 64 * 1024).catch(() => undefined);
      if (chunk === undefined || runStarted(chunk.data, s.nonce, run.seq) || Date.now() >= deadline) return;
      await sleep(Math.min(pause, Math.max(0, deadline - Date.now())));
    }
  }

  private async waitEnd(ws: WorkspaceRecord, s: SessionRecord, waitMs: number): Promise<SessionRecord> {
    const deadline = Date.now() + waitMs;
    let pause = 25;
    let current = s;
    while (current.state === 'busy' && Date.now() < deadline) {
      await sleep(Math.min(pause, Math.max(0, deadline - Date.now())));
      pause = Math.min(MAX_POLL_MS, pause * 2);
      current = await this.observe(ws, current);
    }
    return current;
  }

  /** The local server's timer: observes an overdue run until it ends (no-op on a Lambda that froze). */
  private watchTimeout(ws: WorkspaceRecord, s: SessionRecord): void {
    const runId = s.run!.id;
    const loop = async () => {
      await sleep(s.run!.timeoutMs);
      let current = s;
      for (let i = 0; i < 10 && current.state === 'busy' && current.run?.id === runId; i++) {
        current = await this.observe(ws, await this.record(s.workspaceId, s.id));
        if (current.state === 'busy') await sleep(GRACE_MS);
      }
    };
    loop().catch((error: unknown) => this.deps.log.warn('session timeout watch failed', { error: String(error) }));
  }

  private async lose(s: SessionRecord, reason: string): Promise<SessionRecord> {
    const run = s.run?.state === 'running' ? { run: { ...s.run, state: 'lost' as const, reason } } : {};
    return this.write(s, { state: 'lost', reason, ...run });
  }

  /** A conditional write; lost → the record as the winner wrote it. */
  private async write(s: SessionRecord, patch: Partial<SessionRecord>): Promise<SessionRecord> {
    try {
      return await this.deps.state.updateSession(s.workspaceId, s.id, s.version, {
        ...patch,
        updatedAt: this.now().toISOString(),
      });
    } catch (error) {
      if (error instanceof ConflictError) return this.record(s.workspaceId, s.id);
      if (error instanceof NotFoundError) return { ...s, state: 'closed' };
      throw error;
    }
  }

  // ---- views -------------------------------------------------------------------------------

  private async view(s: SessionRecord, ws: WorkspaceRecord | undefined): Promise<SessionView> {
    const run = s.run;
    let lastRun: SessionRunView | undefined;
    if (run) {
      const output =
        ws && ws.status === 'ready' && s.state !== 'lost' && s.state !== 'closed'
          ? await this.output(s, run.seq)
          : undefined;
      const stream = (which: 'stdout' | 'stderr') => {
        const o = output?.[which] ?? { data: Buffer.alloc(0), bytes: 0, truncated: false };
        return streamView({ data: o.data, nextOffset: o.data.length }, 0, { bytes: o.bytes, truncated: o.truncated });
      };
      lastRun = {
        runId: run.id,
        state: run.state,
        exitCode: run.exitCode,
        ...(run.reason !== undefined ? { reason: run.reason } : {}),
        stdout: stream('stdout'),
        stderr: stream('stderr'),
        startedAt: run.startedAt,
        ...(run.endedAt !== undefined ? { endedAt: run.endedAt } : {}),
        ...(run.durationMs !== undefined ? { durationMs: run.durationMs } : {}),
      };
    }
    return {
      id: s.id,
      workspaceId: s.workspaceId,
      state: s.state,
      cwd: s.cwd,
      shell: s.shell,
      ...(s.reason !== undefined ? { reason: s.reason } : {}),
      createdAt: s.createdAt,
      ...(lastRun ? { lastRun } : {}),
    };
  }

  /** Both output files of a run, bounded (commands.maxOutputBytes each), through the Files machinery. */
  private async output(s: SessionRecord, seq: number): Promise<RunOutput | undefined> {
    const max = this.deps.config.commands.maxOutputBytes;
    const argv = [
      'sh',
      '-c',
      READ_RUN_SCRIPT,
      'sh',
      String(max),
      runOutputPath(s.id, seq, 'out'),
      runOutputPath(s.id, seq, 'err'),
    ];
    const answer = await bestEffort(
      this.files.run(s.workspaceId, sessionDir(s.id), (_plan, _abs, exec) =>
        exec(argv, { maxOutputBytes: 2 * max + 64 }),
      ),
      this.deps.log,
      'reading a session run output',
    );
    return answer ? parseRunOutput(answer.stdout, max) : undefined;
  }

  // ---- helpers -----------------------------------------------------------------------------

  private refuseUnlessIdle(s: SessionRecord): void {
    if (s.state === 'idle') return;
    const why = s.state === 'busy' ? 'busy: one run at a time' : `${s.state}${s.reason ? ` (${s.reason})` : ''}`;
    throw new ConflictError(`session '${s.id}' is ${why}`, { details: { state: s.state } });
  }

  private shellOf(ws: WorkspaceRecord): WorkspaceCommands {
    return this.deps.backend.open(ws.backend!, ws.plan).commands;
  }

  private async record(workspaceId: string, sessionId: string): Promise<SessionRecord> {
    const r = await this.deps.state.getSession(workspaceId, sessionId);
    if (!r) throw new NotFoundError('session', sessionId);
    return r;
  }

  private async ready(workspaceId: string): Promise<WorkspaceRecord> {
    const ws = await this.records.get(workspaceId);
    if (ws.status !== 'ready' || !ws.backend)
      throw new ConflictError(`workspace '${workspaceId}' is ${ws.status}; sessions need it ready`, {
        details: { status: ws.status },
      });
    refuseIfOverDisk(ws);
    return ws;
  }

  private now(): Date {
    return (this.deps.now ?? (() => new Date()))();
  }
}
