import fs from 'node:fs';
import path from 'node:path';

/**
 * `<parent>/<name>`, created if missing and made 0700 either way: mkdir's mode applies only to a
 * directory it creates (and is masked by the umask), so an existing or umask-widened one is chmodded.
 */
export function privateDir(parent: string, name: string): string {
  const dir = path.join(parent, name);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
  return dir;
}
