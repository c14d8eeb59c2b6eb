import fs from 'node:fs/promises';
import type {
  CommandSignal,
  TerminalSize,
  CommandSpec,
  CommandStatus,
  OutputChunk,
  OutputStream,
  WorkspaceCommands,
} from '../../contract/backend.js';
import { STDIN_PENDING_MAX_BYTES } from '../../contract/backend.js';
import { DEFAULT_WORKSPACE_PIDS } from '../../contract/limits.js';
import type { WorkspacePlan } from '../../contract/plan.js';
import { BackendUnavailableError, BadRequestError, ConflictError, WspError } from '../../contract/errors.js';
import { readExit, type StoredSpec } from '../runner/command-record.js';
import { findCommandDir, forgetCommandDir, runningCommandDirs, writeCommandDir } from '../runner/command-files.js';
import { readPgid, readStatus, supervisorLives, writeKillReason } from './command-files.js';
import { SupervisorClient } from './supervisor/client.js';
import type { LocalLayout } from './layout.js';
import { requireMeta } from './meta.js';
import { enterCgroup, type WorkspaceCgroups } from './cgroup.js';
import type { OverlayHomes } from './overlay/index.js';
import { type PidNamespaceOptions, PidNamespaces } from './pid-namespace.js';
import {
  anyProcessOwnedBy,
  commandGroupInside,
  killAllOfUid,
  killGroup,
  signalGroupInside,
  stillOurs,
  tasksOfUid,
  terminalForeground,
} from './procs.js';
import { buildLaunch, checkCommandSpec, forkerCommand, type SandboxHost } from './sandbox.js';
import { checkReadArgs, readStream, waitWhileRunning } from '../runner/command-record.js';
import { sleep } from '../../lib/sleep.js';

/** How often a waiter looks at the exit file when it did not spawn the command itself. */
const POLL_MS = 50;
/** How long killCommand/killAll wait for the supervisor to write the killed record. */
const KILL_SETTLE_MS = 5_000;

/** What the runner needs to know about a workspace (from its meta.json). */
export interface WorkspaceIdentity {
  workspaceId: string;
  hostUid: number;
}

/**
 * The exec contract of the local backend. Each command is a directory of files, started and
 * supervised by the data dir's command supervisor (supervisor/daemon.ts, detached: it survives the
 * provider); status is always read back from the files.
 */
export class CommandRunner {
  /** Starts and supervises every command (daemon.ts); tells this process of exits as they happen. */
  private readonly supervisor: SupervisorClient;
  /** Each workspace's pid namespace (root + bwrap); undefined: none (see sandbox.ts). */
  readonly pidns: PidNamespaces | undefined;

  constructor(
    private readonly layout: LocalLayout,
    private readonly sandbox: SandboxHost,
    /** The workspaces' cgroups (root with cgroup support); undefined: per-process rlimits instead. */
    private readonly cgroups?: WorkspaceCgroups,
    /** Copy-on-write homes (overlay/index.ts); undefined: homes are plain directories. */
    private readonly overlay?: OverlayHomes,
    options: PidNamespaceOptions = {},
  ) {
    this.supervisor = new SupervisorClient(layout.runDir);
    const supervisor = this.supervisor;
    this.pidns = PidNamespaces.wanted(sandbox)
      ? new PidNamespaces(layout, sandbox, (request) => supervisor.spawnSandboxed(request), cgroups, options)
      : undefined;
  }

  /** Let go of the supervisor connection (the supervisor and its commands live on). */
  close(): void {
    this.supervisor.close();
  }

  /** Create (or find again) the workspace's cgroup and set its limits from plan.resources. */
  async prepareLimits(workspaceId: string, plan: WorkspacePlan): Promise<void> {
    if (this.cgroups === undefined) return;
    try {
      await this.cgroups.ensure(workspaceId, {
        pids: plan.resources.pids ?? DEFAULT_WORKSPACE_PIDS,
        memoryMb: plan.resources.memoryMb,
      });
    } catch (error) {
      throw new BackendUnavailableError('cannot set up the workspace cgroup', error);
    }
  }

  /** Kill what is left in the workspace's cgroup and remove it (destroy); idempotent. */
  async removeLimits(workspaceId: string): Promise<void> {
    await this.cgroups?.remove(workspaceId);
  }

  /**
   * The plan whose resources the launch chain's prlimit prefix applies. With a cgroup, none: the
   * cgroup holds pids and memory for the whole workspace. Without one, the rlimits are the fallback:
   * RLIMIT_AS per process, and RLIMIT_NPROC — which counts every task of the real uid. As root that
   * uid is the workspace's own; otherwise it is the provider's, so the limit is the user's task count
   * now plus pids (an approximation: said in the backend's warnings).
   */
  private async launchPlan(plan: WorkspacePlan): Promise<WorkspacePlan> {
    if (this.cgroups !== undefined) return { ...plan, resources: {} };
    const pids = plan.resources.pids ?? DEFAULT_WORKSPACE_PIDS;
    if (this.sandbox.asRoot) return { ...plan, resources: { ...plan.resources, pids } };
    return { ...plan, resources: { ...plan.resources, pids: (await tasksOfUid(process.getuid!())) + pids } };
  }

  /** Idempotent on commandId: an existing command dir means it was started already. */
  async start(ws: WorkspaceIdentity, plan: WorkspacePlan, asked: CommandSpec): Promise<void> {
    checkCommandSpec(asked);
    // A terminal's keyboard is its stdin.
    const spec: CommandSpec = asked.tty !== undefined ? { ...asked, openStdin: true } : asked;
    const dir = this.layout.commandDir(ws.workspaceId, spec.commandId);
    // Every start (re)creates the cgroup and applies the plan's limits: a workspace made before a
    // provider restart or upgrade, or whose cgroup vanished, is confined all the same. Then the
    // workspace's pid namespace (started inside that cgroup when there is none alive).
    await this.prepareLimits(ws.workspaceId, plan);
    // An overlay home found unmounted (a host reboot) is mounted again before anything runs in it.
    await this.overlay?.ensureMounted(ws);
    // A terminal is made by the workspace's forker (forker.py): wait for it, as the first command of a
    // workspace would otherwise take the chain.
    const pidns =
      spec.tty !== undefined ? await this.terminalHolder(ws, plan, spec) : await this.pidns?.ensure(ws, plan);
    const launch = buildLaunch(
      this.sandbox,
      ws.hostUid,
      await this.launchPlan(plan),
      {
        home: this.layout.home(ws.workspaceId),
        tmp: this.layout.tmp(ws.workspaceId),
        transfer: this.layout.transfer(ws.workspaceId),
        passwd: this.layout.passwd(ws.workspaceId),
        group: this.layout.group(ws.workspaceId),
      },
      spec,
      pidns,
    );
    // The environment travels in fd3 (the launch), not in an env file.
    const fresh = await writeCommandDir(dir, spec, undefined, { fd3: launch.fd3 });
    if (!fresh) return;
    // The workspace's forker, when its holder has one and the command can share the holder's sandbox;
    // the chain is the fallback either way (the supervisor decides, see supervisor/forked.ts).
    const inSandbox = pidns?.forker !== undefined ? forkerCommand(this.sandbox, plan, spec) : undefined;
    const procs = this.cgroups?.procsFiles(ws.workspaceId)[0];
    await this.supervisor.start({
      dir,
      timeoutMs: spec.timeoutMs,
      maxOutputBytes: spec.maxOutputBytes,
      // Into the workspace's cgroup first, while still root: nothing the command starts is ever outside.
      chain: [...enterCgroup(this.cgroups?.procsFiles(ws.workspaceId) ?? []), ...launch.chain],
      ...(launch.joinNamespacesOf ? { joinNamespacesOf: launch.joinNamespacesOf } : {}),
      ...(spec.openStdin ? { openStdin: true } : {}),
      ...(inSandbox !== undefined && pidns?.forker !== undefined
        ? {
            forker: {
              chan: this.layout.chanDir(ws.workspaceId),
              hostUid: ws.hostUid,
              forker: pidns.forker,
              ...inSandbox,
              ...(spec.tty !== undefined ? { tty: spec.tty } : {}),
              ...(procs !== undefined ? { procs } : {}),
            },
          }
        : {}),
    });
  }

  async status(workspaceId: string, commandId: string): Promise<CommandStatus> {
    const { dir, spec } = await this.find(workspaceId, commandId);
    return readStatus(dir, spec);
  }

  async wait(workspaceId: string, commandId: string, waitMs: number): Promise<CommandStatus> {
    if (!Number.isFinite(waitMs) || waitMs < 0) throw new BadRequestError('waitMs must be >= 0', { field: 'waitMs' });
    const { dir, spec } = await this.find(workspaceId, commandId);
    // A command this process started wakes the waiter when the supervisor reports its exit; others are polled.
    return waitWhileRunning(
      () => readStatus(dir, spec),
      waitMs,
      async (left) => {
        const exit = this.supervisor.exited(dir);
        await Promise.race([sleep(Math.min(POLL_MS, left)), ...(exit !== undefined ? [exit] : [])]);
      },
    );
  }

  /** Bytes [offset, min(offset + limit, kept)) of a stream; kept = min(file size, maxOutputBytes). */
  async read(
    workspaceId: string,
    commandId: string,
    stream: OutputStream,
    offset: number,
    limit: number,
  ): Promise<OutputChunk> {
    checkReadArgs(stream, offset, limit); // before the lookup: a bad read is 400 even for an unknown command
    const { dir, spec } = await this.find(workspaceId, commandId);
    return readStream(dir, spec, stream, offset, limit);
  }

  /** Kill the command's process group and record `reason`; no-op once it has ended. */
  async kill(workspaceId: string, commandId: string, reason: string): Promise<void> {
    const { dir } = await this.find(workspaceId, commandId);
    if (!(await this.isRunning(dir))) return;
    await writeKillReason(dir, reason || 'killed');
    // If the pgid is not recorded yet, the supervisor sees the kill file right after recording it.
    const pgid = await readPgid(dir);
    if (pgid !== undefined) killGroup(pgid);
    await this.settle([dir]);
  }

  /** The workspace's holder with its forker, which a terminal needs; refused clearly where there is none. */
  private async terminalHolder(ws: WorkspaceIdentity, plan: WorkspacePlan, spec: CommandSpec) {
    const size = spec.tty!;
    if (![size.rows, size.cols].every((n) => Number.isInteger(n) && n >= 1 && n <= 1000))
      throw new BadRequestError('tty rows and cols must be integers in 1..1000', { field: 'tty' });
    if (forkerCommand(this.sandbox, plan, spec) === undefined)
      throw new BadRequestError('a terminal command runs on network none on the local backend', { field: 'tty' });
    const holder = this.pidns === undefined ? undefined : await this.pidns.withForker(ws, plan);
    if (holder?.forker === undefined)
      throw new BackendUnavailableError(
        "terminals need the workspace's in-sandbox forker, which this host cannot run (it needs root, bwrap, cgroups and /usr/bin/python3)",
      );
    return holder;
  }

  /** New size for a command's terminal (forker.py's ioctl: its foreground gets SIGWINCH); no-op once it ended. */
  async resize(workspaceId: string, commandId: string, size: TerminalSize): Promise<void> {
    if (![size.rows, size.cols].every((n) => Number.isInteger(n) && n >= 1 && n <= 1000))
      throw new BadRequestError('rows and cols must be integers in 1..1000', { field: 'size' });
    const { dir, spec } = await this.find(workspaceId, commandId);
    if (spec.tty === undefined)
      throw new ConflictError(`command '${commandId}' has no terminal (it was started without tty)`);
    if (!(await this.isRunning(dir))) return;
    await this.supervisor.resize(dir, size);
  }

  /**
   * Signal the command's group — its processes in the workspace: a command of a sandbox of its own
   * shares its group with the host-side bwrap that started it, which must not get it (SIGINT would end
   * it, and the daemon would record the command as ended while it runs on).
   */
  async signal(workspaceId: string, commandId: string, signal: CommandSignal): Promise<void> {
    const { dir, spec } = await this.find(workspaceId, commandId);
    if (!(await this.isRunning(dir))) return;
    const group = await readPgid(dir);
    if (group === undefined || !stillOurs(group)) return;
    const { pgid } = group;
    // Under a terminal: to its foreground job, as the key would (a job-control shell runs each job in a
    // process group of its own, and ignores SIGINT itself).
    const target =
      spec.tty !== undefined ? (terminalForeground(pgid) ?? pgid) : ((await commandGroupInside(pgid, pgid)) ?? pgid); // a command leads its session: sid = pgid
    await signalGroupInside(target, signal);
  }

  /** Feed the open stdin of a running command (the supervisor holds it: see supervisor/stdin-feed.ts). */
  async writeStdin(workspaceId: string, commandId: string, data: Buffer, eof: boolean): Promise<void> {
    if (data.length > STDIN_PENDING_MAX_BYTES)
      throw new WspError('payload_too_large', `stdin writes are at most ${STDIN_PENDING_MAX_BYTES} bytes each`, {
        details: { maxBytes: STDIN_PENDING_MAX_BYTES },
      });
    const { dir, spec } = await this.find(workspaceId, commandId);
    if (spec.openStdin !== true)
      throw new ConflictError(`command '${commandId}' was not started with openStdin: its stdin is closed`);
    if (!(await this.isRunning(dir))) throw new ConflictError(`command '${commandId}' has ended`);
    await this.supervisor.writeStdin(dir, data, eof);
  }

  /**
   * Remove an ended command's dir (stdin, output, records); refused while it runs (see
   * WorkspaceCommands.forget). The supervisor keeps nothing of an ended command (its forker FIFOs are
   * unlinked when the command ends), so the dir is all there is.
   */
  forget(workspaceId: string, commandId: string): Promise<void> {
    return forgetCommandDir(this.layout, workspaceId, commandId, (dir) => this.isRunning(dir));
  }

  /**
   * Kill every process of the workspace, so that none can fork its way out. With a pid namespace:
   * its init first (the kernel ends everything inside at once). With a cgroup: the cgroup's kill-all
   * (frozen or cgroup.kill: a fork loop cannot outrun it). Root: then all processes of its host uid
   * (also any that run as it outside the cgroup). Otherwise only the process group of every running
   * command (a process that left its group survives: said in the warnings).
   */
  async killAll(ws: WorkspaceIdentity, reason: string): Promise<void> {
    if (await this.nothingAlive(ws)) return;
    const running = await this.runningDirs(ws.workspaceId);
    await Promise.all(running.map((dir) => writeKillReason(dir, reason)));
    await this.pidns?.kill(ws.workspaceId);
    // Groups first: a chain that is still root (before setpriv) is not caught by the uid sweep.
    for (const dir of running) {
      const pgid = await readPgid(dir);
      if (pgid !== undefined) killGroup(pgid);
    }
    await this.cgroups?.killAll(ws.workspaceId);
    if (this.sandbox.asRoot) await killAllOfUid(ws.hostUid);
    await this.settle(running);
  }

  private find(workspaceId: string, commandId: string): Promise<{ dir: string; spec: StoredSpec }> {
    return findCommandDir(this.layout, workspaceId, commandId);
  }

  /**
   * Nothing of the workspace is alive, known cheaply: no command dir is there (each stays until its
   * command has ended and is forgotten) — the workspace's own code runs only through commands — no
   * namespace holder is recorded, and no process runs as its host uid (so also nothing a forgotten
   * command left behind) (a helper of the provider's that ran as it
   * and was orphaned by a crash, say). Only as root, where that uid is the workspace's own. A warm
   * start whose repositories needed no sync runs nothing in its new workspace, yet kills all twice: a
   * full kill-all costs a cgroup freeze/thaw and a read of every process's status.
   */
  private async nothingAlive(ws: WorkspaceIdentity): Promise<boolean> {
    if (!this.sandbox.asRoot) return false;
    const commands = await fs.readdir(this.layout.commandsDir(ws.workspaceId)).catch(() => undefined);
    if (commands === undefined || commands.length > 0) return false;
    if (await this.pidns?.recorded(ws.workspaceId)) return false;
    return !anyProcessOwnedBy(ws.hostUid);
  }

  private async isRunning(dir: string): Promise<boolean> {
    return (await readExit(dir)) === undefined && (await supervisorLives(dir));
  }

  private runningDirs(workspaceId: string): Promise<string[]> {
    return runningCommandDirs(this.layout, workspaceId, (dir) => this.isRunning(dir));
  }

  /** Wait (bounded) until the supervisor has written the records of `dirs` their records. */
  private async settle(dirs: string[]): Promise<void> {
    const deadline = Date.now() + KILL_SETTLE_MS;
    for (const dir of dirs) {
      while ((await this.isRunning(dir)) && Date.now() < deadline) await sleep(10);
    }
  }
}

/**
 * One workspace's commands, on the host-wide CommandRunner (which keeps what must outlive a handle:
 * the supervisor connection, which reports exits). Start and killAll read meta.json first, so a
 * destroyed workspace answers NotFoundError.
 */
export class LocalCommands implements WorkspaceCommands {
  constructor(
    private readonly runner: CommandRunner,
    private readonly layout: LocalLayout,
    private readonly workspaceId: string,
    private readonly plan: WorkspacePlan,
    private readonly killAllReason: string,
  ) {}

  async start(spec: CommandSpec): Promise<void> {
    await this.runner.start(await requireMeta(this.layout, this.workspaceId), this.plan, spec);
  }

  status(commandId: string): Promise<CommandStatus> {
    return this.runner.status(this.workspaceId, commandId);
  }

  wait(commandId: string, waitMs: number): Promise<CommandStatus> {
    return this.runner.wait(this.workspaceId, commandId, waitMs);
  }

  read(commandId: string, stream: OutputStream, offset: number, limit: number): Promise<OutputChunk> {
    return this.runner.read(this.workspaceId, commandId, stream, offset, limit);
  }

  kill(commandId: string, reason: string): Promise<void> {
    return this.runner.kill(this.workspaceId, commandId, reason);
  }

  forget(commandId: string): Promise<void> {
    return this.runner.forget(this.workspaceId, commandId);
  }

  signal(commandId: string, signal: CommandSignal): Promise<void> {
    return this.runner.signal(this.workspaceId, commandId, signal);
  }

  writeStdin(commandId: string, data: Buffer, eof: boolean): Promise<void> {
    return this.runner.writeStdin(this.workspaceId, commandId, data, eof);
  }

  resize(commandId: string, size: TerminalSize): Promise<void> {
    return this.runner.resize(this.workspaceId, commandId, size);
  }

  async killAll(): Promise<void> {
    await this.runner.killAll(await requireMeta(this.layout, this.workspaceId), this.killAllReason);
  }
}
