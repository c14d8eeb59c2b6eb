import { lstat, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ConflictError } from '../../contract/errors.js';
import { runTool } from './tree-exec.js';
import { buildManifest, maxCtimeNs, reconcileWithCopy, waitPastCtime, writeManifest } from './tree-manifest.js';
import { walkTree } from './tree-walk.js';

/**
 * Host-side tree helpers for the local backend: whole-tree copies, snapshots that know what a later
 * reset must rewrite, size, secret scan and fingerprint.
 *
 * Snapshot layout: `<snapDir>/home` is a `cp -a` copy of the home; `<snapDir>/manifest.json`
 * records (type, inode, ctime) of every path of the LIVE home at snapshot time (tree-manifest.ts),
 * which is what lets restoreChanged skip untouched paths without reading them.
 */

export { restoreChanged } from './tree-restore.js';
export { scanTree } from './tree-scan.js';
export { hostFingerprint, hostFingerprintDetailed } from './tree-fingerprint.js';
export type { Owner } from './tree-copy.js';

/**
 * `cp -a` of `src` to `dest` (modes, symlinks as symlinks, owners when root, mtimes, hard links
 * within the tree). `dest` must not exist (ConflictError); its parent must. Throws
 * StepFailedError when cp fails.
 */
export async function copyTree(src: string, dest: string): Promise<void> {
  if (await exists(dest)) throw new ConflictError(`copy destination ${dest} already exists`);
  await runTool('copy tree', ['cp', '-a', '--no-target-directory', '--', src, dest]);
}

/**
 * Snapshot `home` into `snapDir` (created if missing; `snapDir/home` must not exist). The live
 * tree is stat'ed BEFORE it is copied: a change racing with the copy then shows up as changed at
 * the next restore (rewritten — harmless) instead of being missed; paths that appeared or vanished
 * during the copy are reconciled with the copy (reconcileWithCopy). The manifest is written last,
 * so a snapshot without one is incomplete (restoreChanged refuses it).
 */
export async function takeSnapshot(home: string, snapDir: string): Promise<void> {
  await mkdir(snapDir, { recursive: true });
  const manifest = await buildManifest(home);
  await copyTree(home, join(snapDir, 'home'));
  await reconcileWithCopy(manifest, join(snapDir, 'home'));
  await writeManifest(snapDir, manifest);
  await waitPastCtime(snapDir, maxCtimeNs(manifest));
}

/** Apparent size in bytes of everything under `dir`: file and symlink sizes, hard links once. */
export async function treeSizeBytes(dir: string): Promise<number> {
  let total = 0n;
  const seen = new Set<bigint>();
  await walkTree(dir, (e) => {
    if (e.type === 'd') return;
    if (e.st.nlink > 1n) {
      if (seen.has(e.st.ino)) return;
      seen.add(e.st.ino);
    }
    total += e.st.size;
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
