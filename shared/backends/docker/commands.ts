import { watch, type FSWatcher } from 'node:fs';
import fs from 'node:fs/promises';
import type { CommandSpec, CommandStatus, OutputChunk, OutputStream } from '../../contract/backend.js';
import type { WorkspacePlan } from '../../contract/plan.js';
import { BackendUnavailableError, BadRequestError, NotFoundError } from '../../contract/errors.js';
import { readSpec, readStream, waitWhileRunning, type StoredSpec } from '../runner/command-record.js';
import { checkCommandSpec, commandEnv, isRunning, readStatus, writeCommandDir } from '../runner/command-files.js';
import type { RunnerChannels } from './channel.js';
import { containerName, GUEST_CMD_ROOT, guestCommandDir, type DockerLayout } from './layout.js';
import { sleep } from '../../lib/sleep.js';

/** How often a waiter looks at the exit file when no watch event came (a host file read: cheap). */
const POLL_MS = 50;
/** How long killCommand/killAll wait for the supervisors to write their killed records. */
const KILL_SETTLE_MS = 5_000;

/**
 * The exec contract of the Docker backend: runner.sh inside the container does the work; its command
 * dirs are a bind mount of host dirs, so start/kill cost one request on the runner channel (or one
 * `docker exec` when the channel is down) and every read (status, output, wait) is a host file read
 * — no round trip, and results survive container replacement and provider restarts.
 */
export class DockerCommands {
  constructor(
    private readonly channels: RunnerChannels,
    private readonly layout: DockerLayout,
  ) {}

  /** Idempotent on commandId: an existing command dir means it was started already. */
  async start(workspaceId: string, plan: WorkspacePlan, spec: CommandSpec): Promise<void> {
    checkCommandSpec(spec);
    const dir = this.layout.commandDir(workspaceId, spec.commandId);
    let fresh: boolean;
    try {
      fresh = await writeCommandDir(dir, spec, commandEnv(plan, spec));
    } catch (error) {
      throw new BackendUnavailableError('cannot create the command directory', error);
    }
    if (!fresh) return;
    const argv = [
      'start',
      guestCommandDir(spec.commandId),
      String(plan.user.uid),
      String(plan.user.gid),
      String(spec.timeoutMs),
      String(spec.maxOutputBytes),
      spec.cwd,
      '--',
      ...spec.argv,
    ];
    // On failure the dir stays without a supervisor: its status reads 'lost', which is the truth.
    await this.channels.run(containerName(workspaceId), 'starting the command', argv);
  }

  async status(workspaceId: string, commandId: string): Promise<CommandStatus> {
    const { dir, spec } = await this.find(workspaceId, commandId);
    return readStatus(dir, spec);
  }

  async wait(workspaceId: string, commandId: string, waitMs: number): Promise<CommandStatus> {
    if (!Number.isFinite(waitMs) || waitMs < 0) throw new BadRequestError('waitMs must be >= 0', { field: 'waitMs' });
    const { dir, spec } = await this.find(workspaceId, commandId);
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

  async read(
    workspaceId: string,
    commandId: string,
    stream: OutputStream,
    offset: number,
    limit: number,
  ): Promise<OutputChunk> {
    if (!Number.isInteger(offset) || offset < 0)
      throw new BadRequestError('offset must be an integer >= 0', { field: 'offset' });
    const { dir, spec } = await this.find(workspaceId, commandId);
    return readStream(dir, spec, stream, offset, limit);
  }

  /** Kill the command's process group and record `reason`; no-op once it has ended. */
  async kill(workspaceId: string, commandId: string, reason: string): Promise<void> {
    const { dir } = await this.find(workspaceId, commandId);
    if (!(await isRunning(dir))) return;
    await this.channels.run(containerName(workspaceId), 'killing the command', [
      'kill',
      guestCommandDir(commandId),
      reason || 'killed',
    ]);
    await this.settle([dir]);
  }

  /** Kill every running command (recorded as killed with `reason`) and every process of the user. */
  async killAll(workspaceId: string, user: { uid: number; gid: number }, reason: string): Promise<void> {
    const running = await this.runningDirs(workspaceId);
    await this.channels.run(containerName(workspaceId), 'killing all processes', [
      'killall',
      GUEST_CMD_ROOT,
      reason,
      String(user.uid),
      String(user.gid),
    ]);
    await this.settle(running);
  }

  private async find(workspaceId: string, commandId: string): Promise<{ dir: string; spec: StoredSpec }> {
    const dir = this.layout.commandDir(workspaceId, commandId);
    const spec = await readSpec(dir);
    if (spec === undefined) {
      const workspaceExists = await fs.stat(this.layout.workspaceDir(workspaceId)).then(
        () => true,
        () => false,
      );
      throw workspaceExists ? new NotFoundError('command', commandId) : new NotFoundError('workspace', workspaceId);
    }
    return { dir, spec };
  }

  async runningDirs(workspaceId: string): Promise<string[]> {
    const names = await fs.readdir(this.layout.cmdRoot(workspaceId)).catch(() => [] as string[]);
    const dirs = names.map((n) => this.layout.commandDir(workspaceId, n));
    const running = await Promise.all(dirs.map(async (d) => ((await isRunning(d)) ? d : undefined)));
    return running.filter((d): d is string => d !== undefined);
  }

  /** Wait (bounded) until the supervisors of `dirs` have written their records. */
  private async settle(dirs: string[]): Promise<void> {
    const deadline = Date.now() + KILL_SETTLE_MS;
    for (const dir of dirs) {
      while ((await isRunning(dir)) && Date.now() < deadline) await sleep(10);
    }
  }
}
