import fs from 'node:fs/promises';

/**
 * What the processes of one host uid use, from the host's /proc (the local backend as root without
 * cgroups: each workspace has a host uid of its own). Approximate where a cgroup would be exact:
 * CPU time is that of the live processes and of the children they reaped (a process gone unreaped
 * by the workspace takes its time with it), and memory sums resident sets (shared pages count once
 * per process).
 */
export interface ProcUsage {
  cpuSeconds: number;
  rssBytes: number;
  /** Tasks: processes and their threads. */
  tasks: number;
}

/** USER_HZ: the unit of /proc/<pid>/stat times, 100 on every Linux architecture we run on. */
const CLOCK_TICKS_PER_SECOND = 100;

export async function usageOfUid(uid: number): Promise<ProcUsage> {
  const total: ProcUsage = { cpuSeconds: 0, rssBytes: 0, tasks: 0 };
  const entries = await fs.readdir('/proc').catch(() => [] as string[]);
  await Promise.all(
    entries
      .filter((e) => /^\d+$/.test(e))
      .map(async (pid) => {
        try {
          const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
          if (/^Uid:\s+(\d+)/m.exec(status)?.[1] !== String(uid)) return;
          const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
          // Fields after the ')' closing the name (which may hold spaces): state is field 3 → [0].
          const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
          if (f[0] === 'Z' || f[0] === 'X') return;
          const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(f[i] ?? 0), 0); // utime stime cutime cstime
          total.cpuSeconds += ticks / CLOCK_TICKS_PER_SECOND;
          total.rssBytes += Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
          total.tasks += Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? 1);
        } catch {
          // gone while we looked
        }
      }),
  );
  return total;
}
