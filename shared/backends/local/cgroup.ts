import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { BackendUnavailableError } from '../../contract/errors.js';
import { LocalLayout } from './layout.js';
import type { SandboxHost } from './sandbox.js';
import { isSafeName } from '../../lib/names.js';
import { sleep } from '../../lib/sleep.js';

/**
 * One cgroup per workspace (local backend, provider running as root): the limits hold for the whole
 * workspace (every process of it together), and a kill-all cannot be outrun by a fork loop.
 *
 * Where: `<hierarchy>/wsp/<hash of the data dir>/<workspace id>`, so two providers on one host never
 * share a parent, and a restarted provider (same data dir) finds its workspaces' cgroups again by
 * name alone. Directories and control files are made by root and stay root's (0755 / 0644): the
 * workspace's uid can neither write its limits nor move a process out (both need write access to a
 * cgroup.procs or a limit file). Inside bwrap, /sys is not even mounted.
 *
 * cgroup v2 (a unified hierarchy whose root offers pids + memory) is preferred; otherwise cgroup v1
 * with the pids, memory and freezer hierarchies (and cpu when mounted). Without either, detectCgroups says why and the
 * local backend falls back to per-process rlimits.
 */

export interface CgroupLimits {
  /** pids.max: tasks (processes and threads) of the workspace together. */
  pids?: number;
  /** Memory of the whole workspace, swap included (so swap cannot dodge it). */
  memoryMb?: number;
}

/**
 * cpu is optional: with it the whole workspace competes for CPU as ONE entity (default weight)
 * against the provider and every other workspace, however many processes or sessions it runs.
 * Without it each session of the workspace is an autogroup of its own: 400 `setsid` busy loops
 * starved the provider for seconds. cpuacct (v1, optional) only counts the workspace's CPU time, for
 * its usage; where it shares a mount with cpu (`cpu,cpuacct`), the cpu dir has its files.
 */
type Hierarchy = 'pids' | 'memory' | 'freezer' | 'cpu' | 'cpuacct';

/** Where a workspace's usage is read from (cgroup-usage.ts); a dir is absent when its hierarchy is. */
export type UsageDirs =
  | { version: 2; unified: string }
  | { version: 1; pids?: string; memory?: string; cpuacct?: string };

interface Layout {
  version: 1 | 2;
  /** v2: one dir; v1: the `wsp/<hash>` dir in each hierarchy. */
  bases: Partial<Record<Hierarchy | 'unified', string>>;
}

/**
 * Launch-chain prefix (runs as root): enter every cgroup.procs given (its own pid: this sh), then exec
 * the rest. A failed write means the chain would run outside the workspace's limits: it does not
 * run (125). Empty without cgroups.
 */
export function enterCgroup(procsFiles: readonly string[]): string[] {
  if (procsFiles.length === 0) return [];
  const script = `while [ "$1" != -- ]; do
  echo $$ > "$1" || { echo "wsp: cannot enter the workspace cgroup" >&2; exit 125; }
  shift
done
shift
exec "$@"`;
  return ['/bin/sh', '-c', script, 'wsp-enter-cgroup', ...procsFiles, '--'];
}

export class WorkspaceCgroups {
  private constructor(private readonly layout: Layout) {}

  /**
   * Over given base dirs, without detection: for tests of the control-file writes on a plain dir
   * (this machine has no cgroup v2 controllers to test v2 on), and for hosts that know their layout.
   */
  static at(version: 1 | 2, bases: Layout['bases']): WorkspaceCgroups {
    return new WorkspaceCgroups({ version, bases });
  }

  get version(): 1 | 2 {
    return this.layout.version;
  }

  /** The workspace's cgroup dirs, one per hierarchy (v2: one). */
  dirs(workspaceId: string): string[] {
    if (!isSafeName(workspaceId))
      throw new BackendUnavailableError(`not a workspace id for a cgroup: ${JSON.stringify(workspaceId)}`);
    return Object.values(this.layout.bases).map((base) => path.join(base!, workspaceId));
  }

  /** The workspace's dirs whose control files say what it uses (cgroup-usage.ts). */
  usageDirs(workspaceId: string): UsageDirs {
    this.dirs(workspaceId); // checks the id
    if (this.layout.version === 2) return { version: 2, unified: this.dir(workspaceId, 'unified') };
    const { bases } = this.layout;
    const at = (base: string | undefined) => (base === undefined ? undefined : path.join(base, workspaceId));
    const cpuacct = at(bases.cpuacct ?? bases.cpu);
    const pids = at(bases.pids);
    const memory = at(bases.memory);
    return {
      version: 1,
      ...(pids ? { pids } : {}),
      ...(memory ? { memory } : {}),
      ...(cpuacct ? { cpuacct } : {}),
    };
  }

  /** cgroup.procs files a process writes its pid into to enter the workspace (all of them, in order). */
  procsFiles(workspaceId: string): string[] {
    return this.dirs(workspaceId).map((d) => path.join(d, 'cgroup.procs'));
  }

  /** Create the workspace's cgroup if missing, and set its limits (unset = unlimited). Idempotent. */
  async ensure(workspaceId: string, limits: CgroupLimits): Promise<void> {
    for (const dir of this.dirs(workspaceId)) {
      // Twice: remove() of this provider's last workspace may take the parent away in between.
      await fs
        .mkdir(dir, { recursive: true, mode: 0o755 })
        .catch(() => fs.mkdir(dir, { recursive: true, mode: 0o755 }));
    }
    const pids = limits.pids === undefined ? 'max' : String(limits.pids);
    // cpu: nothing to set — the default weight of one cgroup is the point (see Hierarchy).
    const bytes = limits.memoryMb === undefined ? undefined : limits.memoryMb * 1024 * 1024;
    if (this.layout.version === 2) {
      const dir = this.dir(workspaceId, 'unified');
      await writeIfChanged(path.join(dir, 'pids.max'), pids);
      await writeIfChanged(path.join(dir, 'memory.max'), bytes === undefined ? 'max' : String(bytes));
      // No swap at all: with swap the workspace could hold more than memory.max.
      await writeIfChanged(path.join(dir, 'memory.swap.max'), '0', { optional: true });
      return;
    }
    await writeIfChanged(path.join(this.dir(workspaceId, 'pids'), 'pids.max'), pids);
    const mem = this.dir(workspaceId, 'memory');
    const limit = path.join(mem, 'memory.limit_in_bytes');
    const memsw = path.join(mem, 'memory.memsw.limit_in_bytes'); // only with swap accounting
    const want = bytes === undefined ? undefined : String(bytes);
    const expected = want ?? UNLIMITED_V1;
    const swap = await readTrim(memsw);
    if ((await readTrim(limit)) === expected && (swap === undefined || swap === expected)) return;
    // memsw must stay >= limit at every step: lift it, set the limit, then bring memsw down to it.
    await writeIfChanged(memsw, '-1', { optional: true });
    await fs.writeFile(limit, want ?? '-1');
    if (want !== undefined) await writeIfChanged(memsw, want, { optional: true });
  }

  /** Live (non-zombie) pids in the workspace's cgroup, over every hierarchy. */
  async members(workspaceId: string): Promise<number[]> {
    const all = new Set<number>();
    for (const file of this.procsFiles(workspaceId)) {
      const text = await fs.readFile(file, 'utf8').catch(() => '');
      for (const line of text.split('\n')) if (/^\d+$/.test(line)) all.add(Number(line));
    }
    const live = await Promise.all([...all].map(async (pid) => ((await isZombieOrGone(pid)) ? undefined : pid)));
    return live.filter((p): p is number => p !== undefined);
  }

  /**
   * SIGKILL every process in the workspace's cgroup so that none can fork its way out: v2 writes
   * cgroup.kill (the kernel kills the whole cgroup, new forks included); v1 freezes the cgroup, kills
   * every pid it lists while none can run, thaws, and repeats until it is empty. Returns the rounds.
   */
  async killAll(workspaceId: string, maxRounds = 50): Promise<number> {
    for (let round = 1; round <= maxRounds; round++) {
      if ((await this.members(workspaceId)).length === 0) {
        await this.waitReaped(workspaceId);
        return round - 1;
      }
      if (this.layout.version === 2) await this.killRoundV2(workspaceId);
      else await this.killRoundV1(workspaceId);
      // Killed tasks leave the cgroup once they have exited: give the kernel a moment.
      for (let i = 0; i < 20 && (await this.members(workspaceId)).length > 0; i++) await sleep(Math.min(2 * round, 20));
    }
    const left = await this.members(workspaceId);
    if (left.length === 0) return maxRounds;
    throw new BackendUnavailableError(
      `${left.length} process(es) of workspace ${workspaceId} survived ${maxRounds} kill rounds`,
    );
  }

  /**
   * A killed task still counts against pids.max until its parent reaps it. The parents of a killed
   * workspace's orphans are the host's init, which may reap late (seconds, measured here): a command
   * started meanwhile could not fork. Wait (bounded) until the count is back to zero; a stuck
   * zombie only costs its slot, so time running out is not an error.
   */
  private async waitReaped(workspaceId: string, maxMs = 5_000): Promise<void> {
    const file = path.join(this.dir(workspaceId, this.layout.version === 2 ? 'unified' : 'pids'), 'pids.current');
    const deadline = Date.now() + maxMs;
    while (Date.now() < deadline) {
      const current = Number(await readTrim(file));
      if (!Number.isFinite(current) || current === 0) return;
      await sleep(20);
    }
  }

  /** Workspace ids that have a cgroup of this provider (in any hierarchy). */
  async workspaceIds(): Promise<string[]> {
    const ids = new Set<string>();
    for (const base of Object.values(this.layout.bases)) {
      const entries = await fs.readdir(base!, { withFileTypes: true }).catch(() => []);
      for (const e of entries) if (e.isDirectory() && isSafeName(e.name)) ids.add(e.name);
    }
    return [...ids].sort();
  }

  /** killAll, then remove the workspace's cgroup dirs; idempotent (missing dirs are fine). */
  async remove(workspaceId: string): Promise<void> {
    const exists = await Promise.all(
      this.dirs(workspaceId).map((d) =>
        fs.stat(d).then(
          () => true,
          () => false,
        ),
      ),
    );
    if (!exists.some(Boolean)) return;
    await this.killAll(workspaceId);
    for (const dir of this.dirs(workspaceId)) {
      // rmdir of a cgroup fails with EBUSY while a task (even a zombie not yet released) is in it.
      for (let attempt = 0; ; attempt++) {
        try {
          await fs.rmdir(dir);
          break;
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (code !== 'EBUSY' || attempt >= 100)
            throw new BackendUnavailableError(`cannot remove the workspace cgroup ${dir}`, error);
          await sleep(20);
        }
      }
      // The provider's own parent goes with its last workspace (EBUSY while others remain).
      await fs.rmdir(path.dirname(dir)).catch(() => undefined);
    }
  }

  private dir(workspaceId: string, hierarchy: Hierarchy | 'unified'): string {
    return path.join(this.layout.bases[hierarchy]!, workspaceId);
  }

  private async killRoundV2(workspaceId: string): Promise<void> {
    const dir = this.dir(workspaceId, 'unified');
    try {
      await fs.writeFile(path.join(dir, 'cgroup.kill'), '1');
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    // Kernels before 5.14 have no cgroup.kill: freeze, kill, thaw.
    await fs.writeFile(path.join(dir, 'cgroup.freeze'), '1');
    await waitFor(async () => /frozen 1/.test((await readTrim(path.join(dir, 'cgroup.events'))) ?? ''));
    killEach(await this.members(workspaceId));
    await fs.writeFile(path.join(dir, 'cgroup.freeze'), '0');
  }

  private async killRoundV1(workspaceId: string): Promise<void> {
    const state = path.join(this.dir(workspaceId, 'freezer'), 'freezer.state');
    await fs.writeFile(state, 'FROZEN');
    // FREEZING until every task has stopped; a task stuck in the kernel can hold it there: bounded.
    await waitFor(async () => (await readTrim(state)) === 'FROZEN');
    try {
      killEach(await this.members(workspaceId));
    } finally {
      // The SIGKILLs are delivered once the tasks run again; none of them returns to user space.
      await fs.writeFile(state, 'THAWED');
    }
  }

  /**
   * The cgroup support of this host, or why there is none (the reason goes into the workspaces'
   * warnings). `dataDir` names the provider's subtree.
   */
  static async detect(dataDir: string): Promise<{ cgroups?: WorkspaceCgroups; reason?: string }> {
    if (process.getuid?.() !== 0) return { reason: 'the provider does not run as root' };
    const mounts = await cgroupMounts();
    const subtree = path.join('wsp', createHash('sha256').update(path.resolve(dataDir)).digest('hex').slice(0, 16));
    const reasons: string[] = [];
    const unified = mounts.find((m) => m.type === 'cgroup2');
    if (unified !== undefined) {
      const controllers = (await readTrim(path.join(unified.dir, 'cgroup.controllers'))) ?? '';
      if (/\bpids\b/.test(controllers) && /\bmemory\b/.test(controllers)) {
        try {
          // Delegate pids + memory down to the workspaces' level (cgroup v2 enables controllers per level).
          let dir = unified.dir;
          for (const part of ['', ...subtree.split('/')]) {
            dir = path.join(dir, part);
            await fs.mkdir(dir, { recursive: true, mode: 0o755 });
            await enableControllers(dir);
          }
          return { cgroups: new WorkspaceCgroups({ version: 2, bases: { unified: path.join(unified.dir, subtree) } }) };
        } catch (error) {
          reasons.push(`cgroup v2 at ${unified.dir}: cannot delegate pids and memory (${(error as Error).message})`);
        }
      } else {
        reasons.push(`cgroup v2 at ${unified.dir} offers no pids and memory controllers`);
      }
    }
    const bases: Layout['bases'] = {};
    const optional = new Set<Hierarchy>(['cpu', 'cpuacct']);
    for (const h of ['pids', 'memory', 'freezer', 'cpu', 'cpuacct'] as const) {
      const m = mounts.find((x) => x.type === 'cgroup' && x.options.includes(h));
      if (m === undefined) {
        if (!optional.has(h)) reasons.push(`no cgroup v1 ${h} hierarchy`);
        continue;
      }
      // `cpu,cpuacct` in one mount: its cpu dir is the workspace's cpuacct too (entered once).
      if (h === 'cpuacct' && bases.cpu !== undefined && bases.cpu === path.join(m.dir, subtree)) continue;
      const base = path.join(m.dir, subtree);
      try {
        await fs.mkdir(base, { recursive: true, mode: 0o755 });
        await fs.access(path.join(base, 'cgroup.procs'), fs.constants.W_OK);
        bases[h] = base;
      } catch (error) {
        reasons.push(`cgroup v1 ${h} hierarchy at ${m.dir} is not writable (${(error as Error).message})`);
      }
    }
    if (bases.pids && bases.memory && bases.freezer) return { cgroups: new WorkspaceCgroups({ version: 1, bases }) };
    return { reason: reasons.join('; ') || 'no cgroup hierarchy found' };
  }
}

/** v1's "no limit" as memory.limit_in_bytes reads it back (PAGE_COUNTER_MAX pages, page-aligned). */
const UNLIMITED_V1 = '9223372036854771712';

async function cgroupMounts(): Promise<Array<{ dir: string; type: string; options: string[] }>> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const out: Array<{ dir: string; type: string; options: string[] }> = [];
  for (const line of text.split('\n')) {
    // "<id> <parent> <maj:min> <root> <mount point> <opts> [optional...] - <type> <source> <super opts>"
    const [left, right] = line.split(' - ');
    if (left === undefined || right === undefined) continue;
    const [type, , superOpts] = right.split(' ');
    const fields = left.split(' ');
    // Only mounts of a hierarchy's root: a bind of a sub-cgroup would put our subtree somewhere else.
    if ((type !== 'cgroup' && type !== 'cgroup2') || fields[3] !== '/') continue;
    out.push({ dir: unescapeMount(fields[4]!), type, options: (superOpts ?? '').split(',') });
  }
  return out;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

async function enableControllers(dir: string): Promise<void> {
  const file = path.join(dir, 'cgroup.subtree_control');
  const current = (await readTrim(file)) ?? '';
  const offered = (await readTrim(path.join(dir, 'cgroup.controllers'))) ?? '';
  const wanted = ['pids', 'memory', ...(/\bcpu\b/.test(offered) ? ['cpu'] : [])];
  const missing = wanted.filter((c) => !new RegExp(`\\b${c}\\b`).test(current));
  if (missing.length > 0) await fs.writeFile(file, missing.map((c) => `+${c}`).join(' '));
}

async function readTrim(file: string): Promise<string | undefined> {
  try {
    return (await fs.readFile(file, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

async function writeIfChanged(file: string, value: string, options: { optional?: boolean } = {}): Promise<void> {
  const current = await readTrim(file);
  if (current === undefined && options.optional) return;
  if (current === value) return;
  await fs.writeFile(file, value);
}

async function isZombieOrGone(pid: number): Promise<boolean> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

function killEach(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

/** Poll `done` (every 2 ms, up to 2 s); a freeze that does not complete still gets its kill round. */
async function waitFor(done: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (await done()) return;
    await sleep(2);
  }
}

/**
 * How the local backend limits workspaces on this host: their cgroups, or — without — the warnings
 * that say plainly what is then not enforced (every workspace record carries the backend's warnings).
 */
export async function detectLimits(
  dataDir: string,
  sandbox: SandboxHost,
  /** Where the workspace dirs are (default: under the data dir). */
  layout?: LocalLayout,
): Promise<{ cgroups?: WorkspaceCgroups; warnings: string[] }> {
  const { asRoot } = sandbox;
  const found = asRoot ? await WorkspaceCgroups.detect(dataDir) : { reason: 'the provider does not run as root' };
  if (found.cgroups !== undefined) {
    await removeOrphans(found.cgroups, layout ?? new LocalLayout(dataDir));
    return { cgroups: found.cgroups, warnings: [] };
  }
  const warnings = [
    `no per-workspace cgroup (${found.reason}): resources.memoryMb limits each process's address space, not the workspace's memory`,
  ];
  if (asRoot) {
    warnings.push("resources.pids is the RLIMIT_NPROC of the workspace's host uid; a kill-all is a by-uid sweep");
  } else {
    warnings.push(
      "resources.pids is approximate: RLIMIT_NPROC counts every task of the provider's own uid, so each command may start about pids more than that uid runs at its start",
    );
    // With bwrap (not root) each command has a pid namespace that ends with it; without, nothing holds them.
    if (sandbox.kind === 'none')
      warnings.push("a process that leaves its command's process group (setsid) survives a reset or delete");
  }
  return { warnings };
}

/**
 * A cgroup of this provider whose workspace dir is gone (a crash between destroy's removal of the
 * dir and of the cgroup): whatever still runs in it belongs to no workspace — killed, and the cgroup
 * removed. Best effort: the provider starts regardless.
 */
async function removeOrphans(cgroups: WorkspaceCgroups, layout: LocalLayout): Promise<void> {
  for (const id of await cgroups.workspaceIds().catch(() => [])) {
    try {
      if (
        !(await fs.stat(layout.workspaceDir(id)).then(
          () => true,
          () => false,
        ))
      )
        await cgroups.remove(id);
    } catch {
      // not a name of ours, or it would not go: the next start tries again
    }
  }
}
