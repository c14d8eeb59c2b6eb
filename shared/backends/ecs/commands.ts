import type {
  CommandSignal,
  TerminalSize,
  CommandSpec,
  CommandStatus,
  OutputChunk,
  OutputStream,
  WorkspaceCommands,
} from '../../contract/backend.js';
import type { WorkspacePlan } from '../../contract/plan.js';
import { BackendUnavailableError, BadRequestError, ConflictError, NotFoundError } from '../../contract/errors.js';
import { checkReadArgs, waitWhileRunning } from '../runner/command-record.js';
import {
  checkCommandSpec,
  checkTerminalSize,
  commandEnv,
  envScript,
  withTerminalStdin,
} from '../runner/command-files.js';
import { checkStdinWrite, newStdinWriteId, RunnerClient } from '../runner/client.js';
import type { RunnerRpc } from '../runner/rpc.js';
import { type ExecChannels, TaskGoneError } from './exec-channel.js';
import { commandDir, GUEST } from './guest.js';
import { sleep } from '../../lib/sleep.js';

/** How often a waiter asks the runner again (one request on the open session each time). */
const POLL_MIN_MS = 100;
const POLL_MAX_MS = 1_000;
const KILL_SETTLE_MS = 5_000;

/**
 * The exec contract of the Fargate backend: the same runner as Docker, but no host view of its
 * command dirs — every start, status, read and kill is one request over the task's ECS Exec session
 * (`runner.sh rpc`). A task that is gone turns every command into `lost` (its exit code died with it).
 */
/**
 * Stdin up to this size travels in the start request itself (through the PTY, ~0.4 MB/s after base64);
 * larger stdin goes through S3 like any other bytes (a presigned GET by the runner's curl).
 */
const STDIN_INLINE_MAX_BYTES = 64 * 1024;

/** Moves a big stdin in through the blob store: returns the URL for `fetch-url`, and how to clean up. */
export type StdinCarrier = (commandId: string, stdin: Buffer) => Promise<{ url: string; done: () => Promise<void> }>;

/**
 * Moves a command's output file out through the blob store: `put(url)` makes the task PUT it to that
 * presigned URL; the carrier answers the object's bytes (and removes it).
 */
export type OutputCarrier = (commandId: string, put: (url: string) => Promise<void>) => Promise<Buffer>;

/** The runner's protocol over an open exec session (rpc.call answers with the runner's status). */
export function rpcRunner(rpc: RunnerRpc): RunnerClient {
  return new RunnerClient({
    call: async (what, argv, options) => {
      await rpcOk(rpc, what, argv, options?.timeoutMs);
    },
    request: async (_what, argv) => {
      const { status, payload } = await rpc.call(argv);
      return { status, message: status === 0 ? '' : payload.toString('utf8').trim() };
    },
  });
}

/** A runner request that must succeed; its stderr-free failure is reported by what it was for. */
export async function rpcOk(
  rpc: RunnerRpc,
  what: string,
  argv: readonly string[],
  timeoutMs?: number,
): Promise<Buffer> {
  const { status, payload } = await rpc.call(argv, timeoutMs !== undefined ? { timeoutMs } : {});
  if (status !== 0)
    throw new BackendUnavailableError(
      `${what} failed in the workspace task (runner status ${status}): ${payload.toString('utf8').slice(0, 300)}`,
    );
  return payload;
}

export interface EcsWorkspaceIdentity {
  taskArn: string;
  workspaceId: string;
  plan: WorkspacePlan;
  /** The workspace user as its ref records it (killAll runs as it). */
  user: { uid: number; gid: number } | undefined;
}

export class EcsCommands implements WorkspaceCommands {
  private readonly taskArn: string;

  constructor(
    private readonly channels: ExecChannels,
    private readonly ws: EcsWorkspaceIdentity,
    private readonly killAllReason: string,
    private readonly stdinCarrier?: StdinCarrier,
    private readonly outputCarrier?: OutputCarrier,
    /** Removes what the carriers left in the blob store for a command (forget). */
    private readonly dropBlobs?: (commandId: string) => Promise<void>,
  ) {
    this.taskArn = ws.taskArn;
  }

  /** Idempotent on commandId: the runner's `prepare` says `exists` for a dir made already. */
  async start(spec: CommandSpec): Promise<void> {
    try {
      await this.startOnTask(withTerminalStdin(spec));
    } catch (error) {
      // Nothing starts on a task that is gone: the workspace's compute no longer exists.
      if (error instanceof TaskGoneError) throw new NotFoundError('workspace', this.ws.workspaceId);
      throw error;
    }
  }

  private async startOnTask(spec: CommandSpec): Promise<void> {
    const { taskArn } = this;
    const { plan } = this.ws;
    checkCommandSpec(spec);
    const dir = commandDir(spec.commandId);
    const stored = {
      commandId: spec.commandId,
      timeoutMs: spec.timeoutMs,
      maxOutputBytes: spec.maxOutputBytes,
      startedAt: new Date().toISOString(),
      ...(spec.openStdin ? { openStdin: true } : {}),
      // The runner's `resize` tells a command with a terminal by it.
      ...(spec.tty ? { tty: { rows: spec.tty.rows, cols: spec.tty.cols } } : {}),
    };
    const stdin = spec.stdin ?? Buffer.alloc(0);
    const carried =
      stdin.length > STDIN_INLINE_MAX_BYTES && this.stdinCarrier
        ? await this.stdinCarrier(spec.commandId, stdin)
        : undefined;
    try {
      await this.channels.with(taskArn, 'starting the command', async (rpc) => {
        await rpc.prepare(
          dir,
          JSON.stringify(stored),
          envScript(commandEnv(plan, spec)),
          carried ? Buffer.alloc(0) : stdin,
        );
        // Also on a retry (dir exists): a first attempt may have died before this step. A command that did
        // start has opened and removed its stdin already, so a second copy is never read (and the runner
        // renames it in whole, so a supervisor opening it meanwhile sees one complete file or the other).
        const runner = rpcRunner(rpc);
        if (carried)
          await runner.call("moving the command's stdin into the workspace task", [
            'fetch-url',
            carried.url,
            `${dir}/stdin`,
            '0600',
            '0:0',
          ]);
        // Always `start`, also when the dir existed: a session that dropped between prepare and start
        // must not leave a command that never runs. `start` claims the dir, so a second one only waits.
        await runner.start(dir, plan, spec);
      });
    } finally {
      await carried?.done();
    }
  }

  async status(commandId: string): Promise<CommandStatus> {
    try {
      return await this.channels.with(this.taskArn, 'reading the command status', (rpc) =>
        this.statusVia(rpc, commandId),
      );
    } catch (error) {
      if (error instanceof TaskGoneError) return lostStatus(commandId, error.why);
      throw error;
    }
  }

  async wait(commandId: string, waitMs: number): Promise<CommandStatus> {
    // Each read is one request on the open session: back off from 100 ms to 1 s.
    return waitWhileRunning(
      () => this.status(commandId),
      waitMs,
      (left, round) => sleep(Math.min(left, POLL_MAX_MS, POLL_MIN_MS * 1.5 ** round)),
    );
  }

  async read(commandId: string, stream: OutputStream, offset: number, limit: number): Promise<OutputChunk> {
    checkReadArgs(stream, offset, limit);
    try {
      return await this.channels.with(this.taskArn, 'reading command output', async (rpc) => {
        const data = await rpc.read(commandDir(commandId), stream, offset, limit);
        if (data === undefined) throw new NotFoundError('command', commandId);
        return { data, nextOffset: offset + data.length };
      });
    } catch (error) {
      // The output died with the task: nothing more to read.
      if (error instanceof TaskGoneError) return { data: Buffer.alloc(0), nextOffset: offset };
      throw error;
    }
  }

  /** Small output is read over the session; larger output leaves the task through S3 (outputCarrier). */
  async readAll(commandId: string, stream: OutputStream, bytes: number): Promise<Buffer> {
    checkReadArgs(stream, 0, bytes);
    if (bytes <= STDIN_INLINE_MAX_BYTES || !this.outputCarrier)
      return (await this.read(commandId, stream, 0, Math.max(bytes, 1))).data;
    const file = `${commandDir(commandId)}/${stream}`;
    try {
      const data = await this.outputCarrier(commandId, (url) =>
        this.channels.with(this.taskArn, 'moving command output out of the task', async (rpc) => {
          if ((await rpc.status(commandDir(commandId))) === undefined) throw new NotFoundError('command', commandId);
          await rpcRunner(rpc).call("moving the command's output out of the workspace task", ['put-url', file, url]);
        }),
      );
      // The kept output is at most `bytes` long (the runner stops writing at maxOutputBytes).
      return data.subarray(0, bytes);
    } catch (error) {
      if (error instanceof TaskGoneError) return Buffer.alloc(0);
      throw error;
    }
  }

  async signal(commandId: string, signal: CommandSignal): Promise<void> {
    const status = await this.status(commandId);
    if (status.state !== 'running') return;
    await this.channels.with(this.taskArn, 'signalling the command', (rpc) =>
      rpcRunner(rpc).signal(commandDir(commandId), signal),
    );
  }

  async kill(commandId: string, reason: string): Promise<void> {
    const status = await this.status(commandId);
    if (status.state !== 'running') return;
    await this.channels.with(this.taskArn, 'killing the command', async (rpc) => {
      await rpcRunner(rpc).kill(commandDir(commandId), reason);
      await this.settle(rpc, [commandId]);
    });
  }

  /**
   * Drop an ended command: its dir in the task (runner `remove`, as root: the dir is root-only under
   * /var/lib/wsp, never the workspace user's, and rm -rf follows no symlink) and its objects in S3.
   * Refused while it runs (see WorkspaceCommands.forget); a task that is gone took the dir with it.
   * The runner keeps nothing else per command; the S3 objects expire by the bucket's rule otherwise.
   */
  async forget(commandId: string): Promise<void> {
    const dir = commandDir(commandId);
    try {
      await this.channels.with(this.taskArn, 'forgetting a command', async (rpc) => {
        if ((await rpc.status(dir))?.state === 'running')
          throw new ConflictError(`command '${commandId}' is still running: kill it before forgetting it`);
        await rpcRunner(rpc).call('removing a command dir', ['remove', dir]);
      });
    } catch (error) {
      if (!(error instanceof TaskGoneError)) throw error;
    }
    await this.dropBlobs?.(commandId);
  }

  /**
   * Queue bytes for the open stdin of a command (runner `stdin`, see runner.sh "open stdin"): up to
   * STDIN_INLINE_MAX_BYTES inline in the request (base64 over the PTY, into the runner's root-only
   * request file — never an argv), larger writes through S3 like a big start stdin (the task's curl
   * GETs them into the command dir, then one `stdin` request queues them): one request either way, so
   * a write is taken whole or refused whole. The runner applies a write id once, so the exec channel's
   * retry after a dropped session never doubles the bytes.
   */
  async writeStdin(commandId: string, data: Buffer, eof: boolean): Promise<void> {
    checkStdinWrite(data);
    const dir = commandDir(commandId);
    const writeId = newStdinWriteId();
    const carried =
      data.length > STDIN_INLINE_MAX_BYTES && this.stdinCarrier ? await this.stdinCarrier(commandId, data) : undefined;
    try {
      await this.channels.with(this.taskArn, "writing to the command's stdin", async (rpc) => {
        const runner = rpcRunner(rpc);
        if (carried === undefined) return runner.writeStdin(dir, commandId, writeId, eof, data);
        // fetch-url needs the dir: an unknown command is not_found here, not a failed transfer.
        if ((await rpc.status(dir)) === undefined) throw new NotFoundError('command', commandId);
        await runner.call('moving stdin into the workspace task', [
          'fetch-url',
          carried.url,
          `${dir}/stdin.in.${writeId}`,
          '0600',
          '0:0',
        ]);
        await runner.writeStdin(dir, commandId, writeId, eof);
      });
    } catch (error) {
      // The command died with its task: there is no stdin to write to.
      if (error instanceof TaskGoneError)
        throw new ConflictError(`command '${commandId}' has ended (workspace task stopped): its stdin is closed`);
      throw error;
    } finally {
      await carried?.done();
    }
  }

  /**
   * New terminal size: one `resize` request (stty as root in the task), which answers whether the command
   * exists and has a terminal; no-op once it has ended, or once its task is gone.
   */
  async resize(commandId: string, size: TerminalSize): Promise<void> {
    checkTerminalSize(size, 'size');
    try {
      await this.channels.with(this.taskArn, "resizing the command's terminal", (rpc) =>
        rpcRunner(rpc).resize(commandDir(commandId), commandId, size),
      );
    } catch (error) {
      if (!(error instanceof TaskGoneError)) throw error;
    }
  }

  /** Kill every running command (recorded as killed) and every process of the workspace user. */

  async killAll(): Promise<void> {
    const { user } = this.ws;
    if (user === undefined) throw new BadRequestError('ecs ref without the workspace user', { field: 'ref' });
    await this.channels.with(this.taskArn, 'killing all processes', async (rpc) => {
      const running = (await rpc.statusMany(GUEST.cmdRoot))
        .filter((s) => s.status.state === 'running')
        .map((s) => s.id);
      await rpcRunner(rpc).killAll(GUEST.cmdRoot, this.killAllReason, user);
      await this.settle(rpc, running);
    });
  }

  private async statusVia(rpc: RunnerRpc, commandId: string): Promise<CommandStatus> {
    const status = await rpc.status(commandDir(commandId));
    if (status === undefined) throw new NotFoundError('command', commandId);
    return status;
  }

  /** Wait (bounded) until the supervisors of `ids` have written their records. */
  private async settle(rpc: RunnerRpc, ids: string[]): Promise<void> {
    const deadline = Date.now() + KILL_SETTLE_MS;
    for (const id of ids) {
      while (Date.now() < deadline && (await rpc.status(commandDir(id)))?.state === 'running') await sleep(20);
    }
  }
}

/** What a command on a stopped task is: lost, with ECS's reason. Its start time is the record's (the service keeps it). */
function lostStatus(commandId: string, why: string): CommandStatus {
  return {
    commandId,
    state: 'lost',
    exitCode: null,
    signal: null,
    reason: `workspace task stopped: ${why}`.slice(0, 300),
    stdout: { bytes: 0, truncated: false },
    stderr: { bytes: 0, truncated: false },
    startedAt: new Date(0).toISOString(),
  };
}
