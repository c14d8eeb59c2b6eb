import { lstat } from 'node:fs/promises';
import { ConflictError } from '../../../contract/errors.js';
import { tarAs, type AsUser } from './as-user.js';
import { takeLinkedSnapshot, type SnapshotOptions, type Skipped } from './snapshot-linked.js';
import { walkTreeAt } from './walk-at.js';

/**
 * Host-side tree helpers for the local backend: whole-tree copies into a home, snapshots that know
 * what a later reset must rewrite, size, secret scan and fingerprint.
 *
 * Snapshot layout: `<snapDir>/home` is a copy of the home; `<snapDir>/manifest.json` records
 * (type, inode, ctime) of every path of the LIVE home at snapshot time (tree/manifest.ts), which is
 * what lets restoreChanged skip untouched paths without reading them.
 *
 * Who does what, as root: the provider only READS a home (fd-relative, no symlink followed, nothing
 * but regular files opened: tree/walk-at.ts) and only writes into root-owned places (snapshots).
 * Every WRITE into a home or /tmp runs as the workspace's uid (tree/as-user.ts).
 */

export { restoreChanged } from './restore.js';
export { scanTree } from './scan.js';
export { hostFingerprint, hostFingerprintDetailed } from './fingerprint.js';
export type { AsUser } from './as-user.js';

/**
 * Copy all of `src` (root-owned, immutable: a snapshot's home) into the existing, empty directory
 * `dest`, written as `user`: modes, symlinks as symlinks, mtimes and hard links kept, every owner
 * `user`'s. Throws StepFailedError('copy tree') when a tool fails.
 */
export async function copyTreeAs(src: string, dest: string, user: AsUser): Promise<void> {
  await tarAs('copy tree', user, src, dest);
}

/**
 * Snapshot `home` into `snapDir` (created if missing; `snapDir/home` must not exist →
 * ConflictError): a fd-relative copy (tree/snapshot-linked.ts without an origin), each live entry
 * lstat'ed before it is copied. The manifest is written last, so a snapshot without one is
 * incomplete (restoreChanged refuses it).
 */
export async function takeSnapshot(
  home: string,
  snapDir: string,
  options: SnapshotOptions = {},
): Promise<{ copied: number; skipped: Skipped }> {
  if (await exists(`${snapDir}/home`)) throw new ConflictError('snapshot destination already exists');
  const taken = await takeLinkedSnapshot(home, snapDir, undefined, options);
  return { copied: taken.copied, skipped: taken.skipped };
}

/** Apparent size in bytes of everything under `dir`: file and symlink sizes, hard links once. */
export async function treeSizeBytes(dir: string): Promise<number> {
  let total = 0n;
  const seen = new Set<bigint>();
  await walkTreeAt(dir, {
    visit: (e) => {
      if (e.type === 'd') return;
      if (e.st.nlink > 1n) {
        if (seen.has(e.st.ino)) return;
        seen.add(e.st.ino);
      }
      total += e.st.size;
    },
    onChanged: () => undefined,
  });
  return Number(total);
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
