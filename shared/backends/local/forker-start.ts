import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WorkspacePlan } from '../../contract/plan.js';
import { enterCgroup, type WorkspaceCgroups } from './cgroup.js';
import { runToolChecked } from './exec.js';
import type { LocalLayout } from './layout.js';
import type { SandboxSpawner } from './pid-namespace.js';
import { liveStartTime } from './procs.js';
import { type SandboxHost, workspaceIdentityArgs, workspaceMountArgs } from './sandbox.js';

/**
 * The in-sandbox forker of a workspace (local backend, root + bwrap + cgroups + python3): started
 * right after the workspace's namespace holder (pid-namespace.ts) exactly as a command would be —
 * in the workspace's cgroup, as its host uid, joined to the holder's user and pid namespaces, with
 * the workspace's mounts (home, /tmp, transfer, /proc, /dev) and a network namespace of its own
 * (only lo) — but long-lived: it runs `supervisor/forker.py`, which starts the workspace's commands
 * on network 'none' as one fork + exec each, on request of the command supervisor
 * (supervisor/forked.ts). Commands it starts share its mount, ipc, uts and network namespaces: a
 * server one command starts on lo is reachable by the next, as in a container.
 *
 * Why a second process and not the holder itself: bwrap's `--dev` (devpts for ptys) makes a sandbox
 * that creates its own user namespace nest a second one, and the pid namespace then belongs to the
 * outer one, which no command could join. Joined like a command, the forker has `--dev` as commands do.
 *
 * Its channel dir (`<workspace dir>/chan`, made anew per holder, root-owned 0711, bound read-only at
 * FORKER_MOUNT) holds the script and the `req` FIFO; the workspace cannot write in it. The forker
 * runs as the workspace's uid, so the workspace can stop or kill it: that costs it only the fast path
 * (the supervisor falls back to a sandbox per command, see forked.ts).
 */

/** Where the channel dir appears in the forker's sandbox (forker.py finds its channel beside itself). */
const FORKER_MOUNT = '/run/wsp-forker';
const PYTHON = '/usr/bin/python3';
/** python3 -I -S: no environment, no site packages — the standard library only. It reports readiness on fd 4. */
const PAYLOAD = `exec ${PYTHON} -I -S ${FORKER_MOUNT}/forker.py </dev/null >/dev/null 2>/dev/null 3>&- 5>&- 7>&- 8>&-`;
const SCRIPT = fileURLToPath(new URL('./supervisor/forker.py', import.meta.url));

export interface ForkerProcess {
  /** Host pid of the forker (python) and its start time. */
  pid: number;
  start: string;
}

type Ws = { workspaceId: string; hostUid: number };

export class ForkerStarter {
  /** Why forkers are no longer started here (the first one failed to start: the host cannot run them). */
  private off: string | undefined;
  /** One started: the host can run them, and a later failure is that workspace's own (it may be at its pids limit). */
  private proven = false;

  private constructor(
    private readonly layout: LocalLayout,
    private readonly sandbox: SandboxHost,
    private readonly cgroups: WorkspaceCgroups,
    private readonly spawnSandboxed: SandboxSpawner,
  ) {}

  /**
   * A starter when this host can run forkers: root with bwrap (holders exist), a cgroup per workspace
   * (a forked command gets no per-process rlimits), and python3 at PYTHON (visible in every sandbox).
   */
  static ifAvailable(
    layout: LocalLayout,
    sandbox: SandboxHost,
    cgroups: WorkspaceCgroups | undefined,
    spawnSandboxed: SandboxSpawner,
  ): ForkerStarter | undefined {
    if (sandbox.kind !== 'bwrap' || !sandbox.asRoot || cgroups === undefined || !fsSync.existsSync(PYTHON))
      return undefined;
    return new ForkerStarter(layout, sandbox, cgroups, spawnSandboxed);
  }

  /** Start the workspace's forker in the holder's namespaces; undefined when it cannot (commands take the chain). */
  async start(ws: Ws, plan: WorkspacePlan, holder: { pid: number; start: string }): Promise<ForkerProcess | undefined> {
    if (this.off !== undefined || mountClash(plan) !== undefined) return undefined;
    try {
      const started = await this.spawn(ws, plan, holder);
      this.proven = true;
      return started;
    } catch (error) {
      // Not after a success: a workspace could otherwise turn the fast path off for every other one.
      if (!this.proven) this.off = (error as Error).message;
      return undefined;
    }
  }

  private async spawn(ws: Ws, plan: WorkspacePlan, holder: { pid: number; start: string }): Promise<ForkerProcess> {
    const chan = await this.prepareChannel(ws);
    const uid = String(ws.hostUid);
    const chain = [
      ...enterCgroup(this.cgroups.procsFiles(ws.workspaceId)),
      'setpriv',
      `--reuid=${uid}`,
      `--regid=${uid}`,
      '--clear-groups',
      '--inh-caps=-all',
      '--',
      this.sandbox.bwrapPath ?? 'bwrap',
      // The options through fd 5: until it execs the payload, bwrap's child is in the workspace's pid
      // namespace with bwrap's argv, which names host paths (the workspace's dirs) to its `ps`.
      '--args',
      '5',
      '--',
      'sh',
      '-c',
      PAYLOAD,
    ];
    const options = [
      '--userns',
      '7',
      '--pidns',
      '8',
      ...workspaceIdentityArgs(plan),
      '--unshare-net',
      ...workspaceMountArgs(this.sandbox, plan, {
        home: this.layout.home(ws.workspaceId),
        tmp: this.layout.tmp(ws.workspaceId),
        transfer: this.layout.transfer(ws.workspaceId),
        passwd: this.layout.passwd(ws.workspaceId),
        group: this.layout.group(ws.workspaceId),
      }),
      '--ro-bind',
      chan,
      FORKER_MOUNT,
      '--chdir',
      '/',
      '--cap-drop',
      'ALL',
      '--info-fd',
      '3',
    ];
    // The options from a root-only file (a regular file: bwrap reads it to its end, no writer to wait
    // for); the supervisor opens it as fd 5 and removes it.
    const argsFile = path.join(this.layout.workspaceDir(ws.workspaceId), 'forker.args');
    await fs.writeFile(argsFile, Buffer.from(options.map((a) => `${a}\0`).join(''), 'utf8'), { mode: 0o600 });
    const log = path.join(this.layout.workspaceDir(ws.workspaceId), 'forker.log');
    let pid: number;
    try {
      pid = await this.spawnSandboxed({ argv: chain, log, argsFile, joinNamespacesOf: holder });
    } catch (error) {
      throw new Error(`the in-sandbox forker did not start: ${(error as Error).message}`);
    } finally {
      await fs.rm(argsFile, { force: true });
    }
    const start = await liveStartTime(pid);
    if (start === undefined) throw new Error('the forker ended right after it started');
    return { pid, start };
  }

  /** The channel dir, made anew for a new holder: the forker script and its request FIFO. */
  private async prepareChannel(ws: Ws): Promise<string> {
    const chan = this.layout.chanDir(ws.workspaceId);
    await fs.rm(chan, { recursive: true, force: true });
    await fs.mkdir(chan, { mode: 0o711 });
    await fs.chmod(chan, 0o711);
    await fs.copyFile(SCRIPT, path.join(chan, 'forker.py'));
    await fs.chmod(path.join(chan, 'forker.py'), 0o644);
    await runToolChecked('forker channel', ['mkfifo', '-m', '600', '--', path.join(chan, 'req')]);
    await fs.chown(path.join(chan, 'req'), ws.hostUid, ws.hostUid);
    return chan;
  }
}

/** Why the channel cannot be mounted for this plan (it would cover, or sit in, a workspace path). */
function mountClash(plan: WorkspacePlan): string | undefined {
  const within = (inner: string, outer: string): boolean => {
    const rel = path.posix.relative(outer, inner);
    return rel === '' || (rel !== '..' && !rel.startsWith('../') && !path.posix.isAbsolute(rel));
  };
  for (const p of [plan.home, plan.transferDir, '/tmp'])
    if (within(p, FORKER_MOUNT) || within(FORKER_MOUNT, p)) return `the plan uses ${p}`;
  return undefined;
}
