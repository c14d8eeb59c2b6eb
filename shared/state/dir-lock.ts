import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { ConflictError } from '../contract/errors.js';

export interface DirLock {
  /** Remove the lock file if we still hold it. Idempotent. */
  release(): void;
}

/** Lock files held by this process, so a file naming our pid but not in here is known stale. */
const heldHere = new Set<string>();

/**
 * A pid lock file created with O_EXCL. A lock left by a dead process (crash, kill -9) is taken
 * over (also one naming our own pid that this process did not take: a restarted container is
 * often pid 1 again); one held by a live process — or by this one — throws ConflictError naming `what`.
 */
export function acquireDirLock(file: string, what: string): DirLock {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      heldHere.add(file);
      let held = true;
      return {
        release() {
          if (!held) return;
          held = false;
          heldHere.delete(file);
          try {
            if (readFileSync(file, 'utf8') === String(process.pid)) unlinkSync(file);
          } catch {
            // already gone
          }
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number.parseInt(readFileSafe(file), 10);
      const ours = holder === process.pid;
      if ((ours && heldHere.has(file)) || (!ours && Number.isInteger(holder) && holder > 0 && isAlive(holder))) {
        throw new ConflictError(`${what} is in use by process ${holder}`, { cause: err });
      }
      // Stale: its owner is gone. Remove and try once more (another taker may win; then we throw).
      try {
        unlinkSync(file);
      } catch {
        // someone else removed it first
      }
    }
  }
  throw new ConflictError(`${what} is in use (lock file ${file})`);
}

function readFileSafe(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
