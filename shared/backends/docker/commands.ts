import { watch, type FSWatcher } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
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
import { BackendUnavailableError, BadRequestError, ConflictError } from '../../contract/errors.js';
import { readStream, waitWhileRunning, type StoredSpec } from '../runner/command-record.js';
import {
  checkCommandSpec,
  checkTerminalSize,
  commandEnv,
  findCommandDir,
  forgetCommandDir,
  isRunning,
  readStatus,
  runningCommandDirs,
  withTerminalStdin,
  writeCommandDir,
} from '../runner/command-files.js';
import { checkStdinWrite, newStdinWriteId, type RunnerClient } from '../runner/client.js';
import type { ContainerNetworks } from './container.js';
import { containerName, GUEST_CMD_ROOT, guestCommandDir, type DockerLayout } from './layout.js';
import { requireMeta } from './workspace-meta.js';
import { sleep } from '../../lib/sleep.js';

/** How often a waiter looks at the exit file when no watch event came (a host file read: cheap). */
const POLL_MS = 50;
/** How long kill/killAll wait for the supervisors to write their killed records. */
const KILL_SETTLE_MS = 5_000;

/**
 * The exec contract of the Docker backend: runner.sh inside the container does the work; its command
 * dirs are a bind mount of host dirs, so start/kill cost one request on the runner channel (or one
 * `docker exec` when the channel is down) and every read (status, output, wait) is a host file read
 * — no round trip, and results survive container replacement and provider restarts.
 */
export class DockerCommands implements WorkspaceCommands {
  constructor(
    private readonly runner: RunnerClient,
    private readonly networks: ContainerNetworks,
    private readonly layout: DockerLayout,
    private readonly workspaceId: string,
    private readonly plan: WorkspacePlan,
    private readonly killAllReason: string,
  ) {}

  /** Idempotent on commandId: an existing command dir means it was started already. */
  async start(given: CommandSpec): Promise<void> {
    const spec = withTerminalStdin(given);
    const { workspaceId, plan } = this;
    await requireMeta(this.layout, workspaceId);
    // Setup may have a network of its own (spec.network); every other command runs on plan.network.
    await this.networks.ensure(containerName(workspaceId), spec.network ?? plan.network);
    checkCommandSpec(spec);
    const dir = this.layout.commandDir(workspaceId, spec.commandId);
    let fresh: boolean;
    try {
      fresh = await writeCommandDir(dir, spec, commandEnv(plan, spec));
    } catch (error) {
      throw new BackendUnavailableError('cannot create the command directory', error);
    }
    if (!fresh) return;
    // On failure the dir stays without a supervisor: its status reads 'lost', which is the truth.
    await this.runner.start(guestCommandDir(spec.commandId), plan, spec);
  }

  async status(commandId: string): Promise<CommandStatus> {
    const { dir, spec } = await this.find(commandId);
    return readStatus(dir, spec);
  }

  async wait(commandId: string, waitMs: number): Promise<CommandStatus> {
    if (!Number.isFinite(waitMs) || waitMs < 0) throw new BadRequestError('waitMs must be >= 0', { field: 'waitMs' });
    const { dir, spec } = await this.find(commandId);
    // The exit record lands by rename in the (bind-mounted) dir: a watch wakes us at once; the poll
    // is the fallback for whatever a watch misses.
    let wake: () => void = () => undefined;
    let watcher: FSWatcher | undefined;
    try {
      watcher = watch(dir, () => wake());
      watcher.on('error', () => undefined);
    } catch {
      watcher = undefined;
    }
    try {
      return await waitWhileRunning(
        () => readStatus(dir, spec),
        waitMs,
        (left) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, Math.min(POLL_MS, left));
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          }),
      );
    } finally {
      watcher?.close();
    }
  }

  async read(commandId: string, stream: OutputStream, offset: number, limit: number): Promise<OutputChunk> {
    if (!Number.isInteger(offset) || offset < 0)
      throw new BadRequestError('offset must be an integer >= 0', { field: 'offset' });
    const { dir, spec } = await this.find(commandId);
    return readStream(dir, spec, stream, offset, limit);
  }

  /** Kill the command's process group and record `reason`; no-op once it has ended. */
  async kill(commandId: string, reason: string): Promise<void> {
    const { dir } = await this.find(commandId);
    if (!(await isRunning(dir))) return;
    await this.runner.kill(guestCommandDir(commandId), reason);
    await this.settle([dir]);
  }

  async signal(commandId: string, signal: CommandSignal): Promise<void> {
    const { dir } = await this.find(commandId);
    if (!(await isRunning(dir))) return;
    await this.runner.signal(guestCommandDir(commandId), signal);
  }

  /**
   * Remove the command's host dir (the bind-mounted one: its stdin, output and records); refused while it
   * runs (see WorkspaceCommands.forget). Nothing else is kept per command: the runner holds no state.
   */
  forget(commandId: string): Promise<void> {
    return forgetCommandDir(this.layout, this.workspaceId, commandId, isRunning);
  }

  /**
   * Queue bytes for the open stdin of a command (runner `stdin`, see runner.sh "open stdin"). The bytes
   * never travel in a request: they go into the command's host dir (root-only, bind-mounted; the
   * workspace user cannot see it) as `stdin.in.<write id>`, which the runner moves into its queue.
   */
  async writeStdin(commandId: string, data: Buffer, eof: boolean): Promise<void> {
    checkStdinWrite(data);
    const { dir } = await this.find(commandId);
    const writeId = newStdinWriteId();
    const file = path.join(dir, `stdin.in.${writeId}`);
    try {
      if (data.length > 0) await fs.writeFile(file, data, { mode: 0o600, flag: 'wx' });
      await this.runner.writeStdin(guestCommandDir(commandId), commandId, writeId, eof);
    } finally {
      // The runner moved it into its queue or dropped it; this covers a request that never ran.
      await fs.rm(file, { force: true });
    }
  }

  /** New terminal size (runner `resize`: stty as root in the container); no-op once the command has ended. */
  async resize(commandId: string, size: TerminalSize): Promise<void> {
    checkTerminalSize(size, 'size');
    const { dir, spec } = await this.find(commandId);
    if (spec.tty === undefined) throw new ConflictError(`command '${commandId}' was not started with a terminal (tty)`);
    if (!(await isRunning(dir))) return;
    await this.runner.resize(guestCommandDir(commandId), commandId, size);
  }

  /** Kill every running command (recorded as killed) and every process of the workspace user. */
  async killAll(): Promise<void> {
    const meta = await requireMeta(this.layout, this.workspaceId);
    const running = await this.runningDirs();
    await this.runner.killAll(GUEST_CMD_ROOT, this.killAllReason, meta.user);
    await this.settle(running);
  }

  private find(commandId: string): Promise<{ dir: string; spec: StoredSpec }> {
    return findCommandDir(this.layout, this.workspaceId, commandId);
  }

  private runningDirs(): Promise<string[]> {
    return runningCommandDirs(this.layout, this.workspaceId, isRunning);
  }

  /** Wait (bounded) until the supervisors of `dirs` have written their records. */
  private async settle(dirs: string[]): Promise<void> {
    const deadline = Date.now() + KILL_SETTLE_MS;
    for (const dir of dirs) {
      while ((await isRunning(dir)) && Date.now() < deadline) await sleep(10);
    }
  }
}
