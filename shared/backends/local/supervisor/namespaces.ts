import fs, { constants } from 'node:fs';

/** PF_EXITING in the flags field (9) of /proc/<pid>/stat: the task is on its way out. */
const PF_EXITING = 0x4;

/**
 * Open the user and pid namespaces of the workspace's holder (pid-namespace.ts) for a command's
 * `bwrap --userns 7 --pidns 8`. The holder's start time is checked AFTER the opens: the process that
 * holds the pid then is the recorded holder, so the descriptors are its namespaces and never those
 * of a later process reusing the pid. A holder that died, or is dying (its namespace can take no new
 * member), throws: the command fails clearly and the next one starts a new holder. The command
 * inherits both descriptors: they name the namespaces it is in anyway (as its own /proc/self/ns/*
 * do), and setns needs capabilities it has not.
 */
export function openHolderNamespaces(holder: { pid: number; start: string }): { user: number; pid: number } {
  const opened: number[] = [];
  try {
    opened.push(fs.openSync(`/proc/${holder.pid}/ns/user`, constants.O_RDONLY));
    opened.push(fs.openSync(`/proc/${holder.pid}/ns/pid`, constants.O_RDONLY));
    const stat = fs.readFileSync(`/proc/${holder.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const dying = fields[0] === 'Z' || fields[0] === 'X' || (Number(fields[6]) & PF_EXITING) !== 0;
    if (dying || fields[19] !== holder.start) throw new Error('not the holder');
    return { user: opened[0]!, pid: opened[1]! };
  } catch {
    for (const fd of opened) fs.closeSync(fd);
    throw new HolderGoneError();
  }
}

export class HolderGoneError extends Error {
  constructor() {
    super(
      "the workspace's pid namespace ended before this command could join it (its holder was killed); run the command again",
    );
  }
}
