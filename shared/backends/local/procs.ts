import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import { BackendUnavailableError } from '../../contract/errors.js';
import { runTool } from './exec.js';
import { sleep } from '../../lib/sleep.js';

/**
 * Host process helpers over /proc. Pids are host pids (the provider runs in the host pid namespace;
 * a workspace's own pid namespace, see pid-namespace.ts, numbers its processes differently inside).
 */

/** Fields of /proc/<pid>/stat after the ')' that closes the command name (which may hold spaces). */
async function statFields(pid: number): Promise<string[] | undefined> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    return stat
      .slice(stat.lastIndexOf(')') + 2)
      .trim()
      .split(' ');
  } catch {
    return undefined;
  }
}

/**
 * Start time (clock ticks since boot, field 22) of a live process, or undefined when the pid is gone
 * or a zombie. Comparing it with a recorded value tells a process from a later one reusing its pid.
 */
export async function liveStartTime(pid: number): Promise<string | undefined> {
  const fields = await statFields(pid);
  if (fields === undefined) return undefined;
  const state = fields[0];
  if (state === 'Z' || state === 'X') return undefined;
  return fields[19];
}

/** PF_EXITING in the flags field (9) of /proc/<pid>/stat: the task is on its way out. */
const PF_EXITING = 0x4;

/**
 * liveStartTime, but also undefined for a process that is exiting: a pid namespace's init that is
 * dying (killing the namespace's processes) can no longer take new members, so it counts as gone.
 */
export async function holderStartTime(pid: number): Promise<string | undefined> {
  const fields = await statFields(pid);
  if (fields === undefined || fields[0] === 'Z' || fields[0] === 'X') return undefined;
  if ((Number(fields[6]) & PF_EXITING) !== 0) return undefined;
  return fields[19];
}

/**
 * Whether any process's /proc entry belongs to `uid` (its effective uid, while it is dumpable): one
 * synchronous stat per process, ~2 ms for 400 processes where reading each status takes 20 ms. A
 * quick look, not a kill-all's sweep (processesOfUid reads the real uid of every process).
 */
export function anyProcessOwnedBy(uid: number): boolean {
  let entries: string[];
  try {
    entries = fsSync.readdirSync('/proc');
  } catch {
    return true; // cannot tell: assume there is
  }
  for (const e of entries) {
    const c = e.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    try {
      if (fsSync.statSync(`/proc/${e}`).uid === uid) return true;
    } catch {
      // gone while we looked
    }
  }
  return false;
}

/** Pids of live (non-zombie) processes whose real uid is `uid`. */
/** Real uids of the live (not zombie) processes of the host: one look at /proc. */
export async function uidsWithProcesses(): Promise<Set<number>> {
  const uids = new Set<number>();
  let entries: string[];
  try {
    entries = await fs.readdir('/proc');
  } catch {
    return uids;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const status = await fs.readFile(`/proc/${e}/status`, 'utf8');
      const state = /^State:\s+(\S)/m.exec(status)?.[1];
      const realUid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
      if (realUid !== undefined && state !== 'Z' && state !== 'X') uids.add(Number(realUid));
    } catch {
      // gone while we looked
    }
  }
  return uids;
}

export async function processesOfUid(uid: number): Promise<number[]> {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = await fs.readdir('/proc');
  } catch {
    return out;
  }
  await Promise.all(
    entries
      .filter((e) => /^\d+$/.test(e))
      .map(async (e) => {
        try {
          const status = await fs.readFile(`/proc/${e}/status`, 'utf8');
          const state = /^State:\s+(\S)/m.exec(status)?.[1];
          const realUid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
          if (realUid === String(uid) && state !== 'Z' && state !== 'X') out.push(Number(e));
        } catch {
          // gone while we looked
        }
      }),
  );
  return out;
}

/** Tasks (threads included, as RLIMIT_NPROC counts them) of live processes whose real uid is `uid`. */
export async function tasksOfUid(uid: number): Promise<number> {
  let total = 0;
  for (const pid of await processesOfUid(uid)) {
    try {
      total += Number(/^Threads:\s+(\d+)/m.exec(await fs.readFile(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 1);
    } catch {
      // gone while we looked
    }
  }
  return total;
}

/**
 * A process group as recorded when it began: its id, and its leader's start time. pid_max may be as
 * low as 32768, and a busy host wraps it in minutes: a group that ended long ago may have a NEW group
 * under its number, and a kill by number alone (as root) would end someone else's processes — another
 * workspace's, a container's init. The number cannot be reused while any process still holds it as
 * its pid, group or session (the kernel keeps it until the last reference goes), so: leader present
 * with another start time → a reuse, leave it alone; leader gone → what holds the number is ours.
 */
export interface RecordedGroup {
  pgid: number;
  /** The leader's start time (stat field 22) when recorded; absent in records older than this check. */
  leaderStart?: string;
}

/** Start time of a process, zombies included (a zombie still holds its pid); undefined once it is gone. */
export function startTimeSync(pid: number): string | undefined {
  return statFieldsSync(pid)?.[19];
}

/** Is `group` still the one recorded (see RecordedGroup)? */
export function stillOurs(group: RecordedGroup): boolean {
  if (!Number.isInteger(group.pgid) || group.pgid <= 1) return false;
  if (group.leaderStart === undefined) return true;
  const now = startTimeSync(group.pgid);
  return now === undefined || now === group.leaderStart;
}

/** SIGKILL a recorded process group and its session; a group that ended (or whose number was reused) is fine. */
export function killGroup(group: RecordedGroup): void {
  if (!stillOurs(group)) return;
  try {
    process.kill(-group.pgid, 'SIGKILL');
  } catch {
    // ESRCH: already gone
  }
  killSession(group);
}

/** Fields of /proc/<pid>/stat after the command name: 0 state, 2 pgrp, 3 session, 5 tpgid. */
function statFieldsSync(pid: number): string[] | undefined {
  try {
    const stat = fsSync.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/**
 * SIGKILL every process of a recorded session (a command leads a session of its own: its pgid is its
 * sid): a job-control shell puts each job in a process group of its own, which a group kill misses.
 * A few passes, for what forks meanwhile (the cgroup/uid kill-all is the one that cannot be outrun).
 */
export function killSession(session: RecordedGroup): void {
  const sid = session.pgid;
  for (let pass = 0; pass < 3; pass++) {
    // Checked on every pass: the leader may end, and its number be taken, between two.
    if (!stillOurs(session)) return;
    let found = 0;
    for (const name of fsSync.readdirSync('/proc')) {
      const pid = Number(name);
      if (!Number.isInteger(pid) || pid <= 1 || Number(statFieldsSync(pid)?.[3]) !== sid) continue;
      found++;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    if (found === 0) return;
  }
}

/** The foreground process group of the terminal whose session `sid` leads (undefined: none). */
export function terminalForeground(sid: number): number | undefined {
  const tpgid = Number(statFieldsSync(sid)?.[5]);
  return Number.isInteger(tpgid) && tpgid > 1 ? tpgid : undefined;
}

/**
 * The process group of the command's top process inside the sandbox — the first process of session
 * `sid` in another pid namespace whose parent is outside it (bwrap's child) — when it is not `pgid`
 * itself; undefined otherwise. A command run through the chain shares its session and group with the
 * host-side bwrap, and an interactive shell (`bash -i`, a session's shell) moves itself into a group
 * of its own: a signal to the recorded group would then reach only bwrap, never the shell or what it
 * runs. (A command started by the forker leads its own session inside: nothing to find.)
 */
export async function commandGroupInside(sid: number, pgid: number): Promise<number | undefined> {
  const ours = await fs.readlink('/proc/self/ns/pid').catch(() => undefined);
  if (ours === undefined) return undefined;
  for (const name of await fs.readdir('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 1) continue;
    const fields = await statFields(pid);
    if (fields === undefined || Number(fields[3]) !== sid) continue;
    const ns = await fs.readlink(`/proc/${pid}/ns/pid`).catch(() => undefined);
    if (ns === undefined || ns === ours) continue;
    const parentNs = await fs.readlink(`/proc/${fields[1]}/ns/pid`).catch(() => undefined);
    if (parentNs !== ours) continue; // not the top: its parent is inside too
    const group = Number(fields[2]);
    return Number.isInteger(group) && group > 1 && group !== pgid ? group : undefined;
  }
  return undefined;
}

/**
 * Signal process group `pgid` — its members in the workspace's pid namespace only: the group of a
 * chain also holds the host-side setpriv/bwrap processes, which must not get it. A group entirely
 * inside (a command the forker started) gets it in one kill(-pgid), atomically: a job-control-less
 * shell acts on SIGINT only if the child it waits for died of it too, so a child forked between a
 * scan and the kills must not be missed. A mixed group: each inside member, a few passes (a new
 * member forked meanwhile gets it on the next). Without pid namespaces (no root), the whole group.
 */
export async function signalGroupInside(pgid: number, signal: NodeJS.Signals): Promise<void> {
  if (!Number.isInteger(pgid) || pgid <= 1) return;
  const send = (target: number) => {
    try {
      process.kill(target, signal);
    } catch {
      // gone meanwhile
    }
  };
  const ours = await fs.readlink('/proc/self/ns/pid').catch(() => undefined);
  const signalled = new Set<number>();
  for (let pass = 0; pass < 3; pass++) {
    const inside: number[] = [];
    let outside = 0;
    for (const name of await fs.readdir('/proc')) {
      const pid = Number(name);
      if (!Number.isInteger(pid) || pid <= 1) continue;
      const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
      if (stat === undefined || Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]) !== pgid) continue;
      const ns = await fs.readlink(`/proc/${pid}/ns/pid`).catch(() => undefined);
      if (ns !== undefined && ns !== ours) inside.push(pid);
      else outside++;
    }
    if (pass === 0 && (outside === 0 || inside.length === 0)) {
      if (inside.length > 0 || outside > 0) send(-pgid);
      return;
    }
    for (const pid of inside.filter((p) => !signalled.has(p))) {
      signalled.add(pid);
      send(pid);
    }
    await sleep(5);
  }
}

/**
 * Kill every process whose uid is `uid` (provider must be root), repeating until none is left.
 * Each round runs `kill -KILL -1` AS that uid (a throwaway sh, so only that uid's permissions apply): the kernel then signals every process the uid owns in
 * one pass under the task-list lock, so a fork bomb cannot outrun a /proc scan. Returns the number of
 * rounds; throws if processes survive `maxRounds`.
 */
export async function killAllOfUid(uid: number, maxRounds = 50): Promise<number> {
  for (let round = 1; round <= maxRounds; round++) {
    if ((await processesOfUid(uid)).length === 0) return round - 1;
    // The shell's builtin kill: procps kill(1) mis-parses a pid of -1.
    await runTool(['sh', '-c', 'kill -KILL -1'], { uid, gid: uid });
    // Signal delivery is asynchronous; give the kernel a moment before looking again.
    if ((await processesOfUid(uid)).length > 0) await sleep(Math.min(10 * round, 100));
  }
  const left = await processesOfUid(uid);
  if (left.length === 0) return maxRounds;
  throw new BackendUnavailableError(`${left.length} process(es) of host uid ${uid} survived ${maxRounds} kill rounds`);
}
