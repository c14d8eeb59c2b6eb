import fs from 'node:fs';

/** O_CLOEXEC as shown in /proc/<pid>/fdinfo `flags:` (octal). */
const O_CLOEXEC = 0o2000000;

/**
 * Close every descriptor above stderr that this process inherited: call first thing at start-up,
 * when every descriptor Node opened itself is close-on-exec and every other one came from the parent.
 * The supervisor starts every process of every sandbox; whatever it inherited (the provider's
 * LevelDB files or pipes, opened without close-on-exec, passed on by a racing spawn) would pass
 * through bwrap into a workspace. Returns the descriptors it closed (for the log).
 */
export function closeInheritedDescriptors(): number[] {
  const closed: number[] = [];
  let names: string[];
  try {
    names = fs.readdirSync('/proc/self/fd');
  } catch {
    return closed;
  }
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd < 3) continue;
    let flags: string | undefined;
    try {
      flags = /^flags:\s+([0-7]+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
    } catch {
      continue; // the directory's own descriptor, closed by now
    }
    if (flags === undefined || (parseInt(flags, 8) & O_CLOEXEC) !== 0) continue;
    try {
      fs.closeSync(fd);
      closed.push(fd);
    } catch {
      // gone already
    }
  }
  return closed;
}
