import fs from 'node:fs/promises';
import path from 'node:path';
import type { WorkspacePlan } from '../../contract/plan.js';
import { BackendUnavailableError } from '../../contract/errors.js';
import { enterCgroup, type WorkspaceCgroups } from './cgroup.js';
import type { LocalLayout } from './layout.js';
import { type ForkerProcess, ForkerStarter } from './forker-start.js';
import { holderStartTime } from './procs.js';
import { sleep } from '../../lib/sleep.js';
import { type SandboxHost, workspaceIdentityArgs } from './sandbox.js';
import type { SpawnRequest } from './supervisor/protocol.js';

/**
 * Starts a long-lived process of a workspace's sandbox from the command supervisor
 * (SupervisorClient.spawnSandboxed) — never from the provider, whose descriptors could leak into it.
 */
export type SandboxSpawner = (request: Omit<SpawnRequest, 'id' | 'op'>) => Promise<number>;

/**
 * One pid namespace per workspace (local backend, provider as root with bwrap), alive as long as
 * the workspace: background processes survive between commands, and `ps`/`/proc` inside show only
 * the workspace's own processes — nothing of the host, the provider or other workspaces.
 *
 * The namespace is held by a "holder": `setpriv` to the workspace's host uid, then
 * `bwrap --unshare-user --uid <plan uid> --gid <plan gid> --unshare-pid` (plus its own mount, ipc,
 * uts, net and cgroup namespaces) running `sleep infinity`. bwrap's child is the namespace's pid 1
 * (bwrap's reaper: it reaps every orphan of the workspace, so none lingers as a zombie against the
 * pids limit); the sleep is pid 2. Every command's bwrap then joins the holder's user and pid
 * namespaces (`--userns 7 --pidns 8`, descriptors opened as root by the command supervisor, see
 * supervisor/namespaces.ts) and still makes its own mount, ipc, uts and (per policy) net namespaces.
 * The holder's namespaces are all its own: /proc/1/net, /proc/1/root of the holder, readable by the
 * workspace (same uid), show an empty network namespace and the read-only system dirs only.
 *
 * Lifetime:
 * - Started lazily by the first command (and again after it died), by the command supervisor
 *   (supervisor/sandboxed.ts: the one process with no descriptor to leak into it), detached and in a
 *   session of its own, so it outlives a provider restart; `<workspace dir>/pidns` (root-only dir) records
 *   "<pid of the namespace's init> <its start time>", and a record whose pid now has another start
 *   time (a recycled pid) is never trusted (holderStartTime also refuses a dying init).
 * - It joins the workspace's cgroup before it execs, like every command: whatever the workspace
 *   could make it do (it is the workspace's uid) stays under the workspace's limits, and a kill-all
 *   of the cgroup ends it too.
 * - killAll (reset, delete, setup's end) SIGKILLs the namespace's init first: the kernel then kills
 *   every process in the namespace at once (no fork race). The next command starts a new holder.
 * - The workspace can kill its holder's sleep (pid 2; pid 1 ignores signals from inside, and the
 *   host-side bwrap processes are not in its namespace). bwrap's reaper then exits as soon as the
 *   namespace has no other process left, and the kernel ends the namespace: that ends only the
 *   workspace's own processes. The next command finds the init gone (or exiting) and starts a new
 *   holder; a command racing that very end fails with a clear message (exit 125, supervisor/namespaces.ts) or
 *   bwrap's fork error, and the one after works.
 * - A workspace dir removed while the holder ran (crash during destroy) is handled by the cgroup's
 *   orphan removal at start-up (cgroup.ts removeOrphans: the holder is a member).
 *
 * The holder's second process, the in-sandbox forker (forker-start.ts, when the host allows it): a
 * long-lived "command" that joined the holder's namespaces like any other, with the workspace's
 * mounts and a network namespace of its own, which starts the workspace's commands on network
 * 'none' as one fork + exec each (supervisor/forked.ts). The record's second line is its host pid
 * and start time. A workspace that kills it only loses the fast path: commands take the chain.
 *
 * Without root, or without bwrap, there is no holder: see sandbox.ts and the backend's warnings.
 */

export interface HolderRecord {
  /** Host pid of the namespace's init (bwrap's child). */
  pid: number;
  /** Its start time (field 22 of /proc/<pid>/stat). */
  start: string;
  /** The workspace's in-sandbox forker, started beside the holder (forker-start.ts). */
  forker?: ForkerProcess;
}

export interface PidNamespaceOptions {
  /** Start an in-sandbox forker with each holder (default true, where the host allows it). */
  forker?: boolean;
}

/** Runs in the holder sandbox (no /dev there): report readiness on fd 4 (every namespace is set up), then hold with no descriptor open. */
const PAYLOAD = 'printf r >&4; exec sleep infinity <&- >&- 2>&- 3>&- 4>&-';

export class PidNamespaces {
  /** A start in flight per workspace: concurrent commands share it (never two holders). */
  private readonly pending = new Map<string, Promise<HolderRecord>>();
  private readonly forkers: ForkerStarter | undefined;
  /** A forker being started per workspace: a kill waits for it (else its processes race the kill's sweep). */
  private readonly addingForker = new Map<string, Promise<void>>();

  constructor(
    private readonly layout: LocalLayout,
    private readonly sandbox: SandboxHost,
    private readonly spawnSandboxed: SandboxSpawner,
    private readonly cgroups?: WorkspaceCgroups,
    options: PidNamespaceOptions = {},
  ) {
    this.forkers =
      options.forker === false ? undefined : ForkerStarter.ifAvailable(layout, sandbox, cgroups, spawnSandboxed);
  }

  /** Only a root provider with bwrap gives workspaces a pid namespace of their own. */
  static wanted(sandbox: SandboxHost): boolean {
    return sandbox.kind === 'bwrap' && sandbox.asRoot;
  }

  /** The holder of the workspace's namespace, started now if there is none alive. */
  ensure(ws: { workspaceId: string; hostUid: number }, plan: WorkspacePlan): Promise<HolderRecord> {
    const inFlight = this.pending.get(ws.workspaceId);
    if (inFlight !== undefined) return inFlight;
    const started = this.findOrStart(ws, plan).finally(() => this.pending.delete(ws.workspaceId));
    this.pending.set(ws.workspaceId, started);
    return started;
  }

  /** The holder, once its forker has started (or failed to): what a terminal command needs. */
  async withForker(ws: { workspaceId: string; hostUid: number }, plan: WorkspacePlan): Promise<HolderRecord> {
    const holder = await this.ensure(ws, plan);
    if (holder.forker !== undefined) return holder;
    await this.addingForker.get(ws.workspaceId);
    return (await this.alive(ws.workspaceId)) ?? holder;
  }

  /**
   * SIGKILL the namespace's init: the kernel kills every process in the namespace with it. Returns
   * whether a live holder was found. Idempotent; the record goes (the next command starts anew).
   */
  async kill(workspaceId: string): Promise<boolean> {
    await this.addingForker.get(workspaceId);
    const record = await this.read(workspaceId);
    if (record === undefined) return false;
    let killed = false;
    if ((await holderStartTime(record.pid)) === record.start) {
      try {
        process.kill(record.pid, 'SIGKILL');
        killed = true;
      } catch {
        // ESRCH: it ended meanwhile
      }
    }
    // The forker dies with the namespace; its parent (the bwrap that started it, outside) reaps it —
    // unless a kill-all's sweep kills that bwrap first: the forker's zombie then goes to the host's
    // init, which may reap it seconds later, and until then it holds a slot of the workspace's pids
    // limit (cgroup.ts waitReaped waits for that). So: wait (briefly) for the reap first.
    if (killed && record.forker !== undefined) {
      for (let i = 0; i < 250 && (await pidExists(record.forker.pid, record.forker.start)); i++) await sleep(2);
    }
    await fs.rm(this.recordFile(workspaceId), { force: true });
    return killed;
  }

  /** Whether a holder is recorded (alive or not): one was started and not yet killed by kill(). */
  async recorded(workspaceId: string): Promise<boolean> {
    return (await this.read(workspaceId)) !== undefined;
  }

  /** The recorded holder if it is still that process and alive (not dying), else undefined. */
  async alive(workspaceId: string): Promise<HolderRecord | undefined> {
    const record = await this.read(workspaceId);
    if (record === undefined) return undefined;
    if ((await holderStartTime(record.pid)) !== record.start) return undefined;
    // An init with no child left is on its way out (bwrap's reaper exits then): a command joining it now
    // would find the namespace gone. Wait (briefly) for it to go, and start a new holder.
    if (await childless(record.pid)) {
      for (let i = 0; i < 200 && (await holderStartTime(record.pid)) === record.start; i++) await sleep(5);
      return undefined;
    }
    return record;
  }

  private recordFile(workspaceId: string): string {
    return path.join(this.layout.workspaceDir(workspaceId), 'pidns');
  }

  private async read(workspaceId: string): Promise<HolderRecord | undefined> {
    const text = await fs.readFile(this.recordFile(workspaceId), 'utf8').catch(() => undefined);
    const m = text === undefined ? null : /^(\d+) (\d+)\n(?:(\d+) (\d+)\n)?$/.exec(text);
    if (m === null) return undefined;
    return {
      pid: Number(m[1]),
      start: m[2]!,
      ...(m[3] !== undefined ? { forker: { pid: Number(m[3]), start: m[4]! } } : {}),
    };
  }

  private async findOrStart(ws: { workspaceId: string; hostUid: number }, plan: WorkspacePlan): Promise<HolderRecord> {
    const found = await this.alive(ws.workspaceId);
    if (found !== undefined) return found;
    const holder = await this.start(ws, plan);
    await this.write(ws.workspaceId, holder);
    // The forker starts beside the command that asked for the holder (which takes the chain): its
    // start (~70 ms: a sandbox, python) is on no command's path.
    if (this.forkers !== undefined) {
      const adding = this.addForker(this.forkers, ws, plan, holder).finally(() => {
        if (this.addingForker.get(ws.workspaceId) === adding) this.addingForker.delete(ws.workspaceId);
      });
      this.addingForker.set(ws.workspaceId, adding);
    }
    return holder;
  }

  /** Start the holder's forker and add it to the record, if the record still names that holder. */
  private async addForker(
    forkers: ForkerStarter,
    ws: { workspaceId: string; hostUid: number },
    plan: WorkspacePlan,
    holder: HolderRecord,
  ): Promise<void> {
    try {
      const forker = await forkers.start(ws, plan, holder);
      const now = await this.read(ws.workspaceId);
      // A holder killed meanwhile took its forker with it (same pid namespace).
      if (forker === undefined || now?.pid !== holder.pid || now.start !== holder.start) return;
      await this.write(ws.workspaceId, { ...holder, forker });
    } catch {
      // commands take the chain
    }
  }

  private async write(workspaceId: string, record: HolderRecord): Promise<void> {
    const file = this.recordFile(workspaceId);
    const second = record.forker === undefined ? '' : `${record.forker.pid} ${record.forker.start}\n`;
    await fs.writeFile(`${file}.tmp`, `${record.pid} ${record.start}\n${second}`, { mode: 0o600 });
    await fs.rename(`${file}.tmp`, file);
  }

  private async start(ws: { workspaceId: string; hostUid: number }, plan: WorkspacePlan): Promise<HolderRecord> {
    const uid = String(ws.hostUid);
    const chain = [
      // In the workspace's cgroup before it execs, like every command.
      ...enterCgroup(this.cgroups?.procsFiles(ws.workspaceId) ?? []),
      'setpriv',
      `--reuid=${uid}`,
      `--regid=${uid}`,
      '--clear-groups',
      '--inh-caps=-all',
      '--',
      this.sandbox.bwrapPath ?? 'bwrap',
      '--unshare-user',
      ...workspaceIdentityArgs(plan),
      '--unshare-pid',
      '--unshare-net',
      ...this.sandbox.rootfsArgs,
      '--chdir',
      '/',
      '--cap-drop',
      'ALL',
      '--info-fd',
      '3',
      '--',
      'sh',
      '-c',
      PAYLOAD,
    ];
    // bwrap's own complaints go to a root-only file (a pipe to the provider would break when the
    // provider exits, and the holder outlives it); the supervisor reads it back when the start fails.
    const log = path.join(this.layout.workspaceDir(ws.workspaceId), 'pidns.log');
    let pid: number;
    try {
      pid = await this.spawnSandboxed({ argv: chain, log });
    } catch (error) {
      throw new BackendUnavailableError(`cannot start the workspace's pid namespace: ${(error as Error).message}`);
    }
    const start = await holderStartTime(pid);
    if (start === undefined)
      throw new BackendUnavailableError("the workspace's pid namespace ended right after it started");
    return { pid, start };
  }
}

/** The process (zombie or not) still exists: its pid names the same start time. */
async function pidExists(pid: number, start: string): Promise<boolean> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  return stat !== undefined && stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] === start;
}

async function childless(pid: number): Promise<boolean> {
  const children = await fs.readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => undefined);
  return children !== undefined && children.trim() === '';
}
