import type { BigIntStats } from 'node:fs';
import { closeSync } from 'node:fs';
import { join } from 'node:path';
import { StepFailedError } from '../../../contract/errors.js';
import { tarAs, type AsUser } from './as-user.js';
import type { ManifestEntry } from './manifest.js';
import { keyRel, maxCtimeNs, readManifest, relKey, waitPastCtime, writeManifest } from './manifest.js';
import { NoFollowStat, openDirAt, walkTreeAt } from './walk-at.js';
import { entryType, parentRel } from './walk.js';

/**
 * Return a live home to its snapshot, rewriting only what changed since the manifest was taken.
 *
 * 1. The provider (root) walks the live tree with tree/walk-at.ts — lstat only, fd-relative, no
 *    symlink ever followed, nothing opened — and compares each path with the manifest: a path whose
 *    (type, ino, ctimeNs) equals it is untouched and never read; a changed path is removed and
 *    written again from `<snapDir>/home`; a path not in the manifest is removed (not descended);
 *    a manifest path missing from the live tree is written (whole subtree).
 * 2. Everything that writes into the home runs AS `user` (the workspace's host uid; see
 *    tree/as-user.ts): one `rm -rf` for the removals (after `chmod u+rwx` of the directories the
 *    changes are in, so the user's own locked directories do not block it), then one `tar -x` fed
 *    by a `tar -c` the provider runs on the root-only, immutable snapshot. Directories on the way
 *    to a change get the snapshot's mode and times back from that archive. A workspace process
 *    racing with this (swapping a directory for a symlink) can only misdirect writes made with its
 *    own uid.
 * 3. Written paths are lstat'ed again, no-follow, into the manifest, so the next reset is again
 *    only-what-changed.
 *
 * Devices and sockets in an (older) snapshot are not written: a workspace uid cannot create them.
 * Throws ConflictError when the snapshot has no manifest, StepFailedError('restore') when a tool
 * fails (e.g. a snapshot path longer than PATH_MAX), never with a host path in the message.
 */
export async function restoreChanged(
  home: string,
  snapDir: string,
  user?: AsUser,
): Promise<{ restored: number; removed: number }> {
  const manifest = await readManifest(snapDir);
  const snapHome = join(snapDir, 'home');

  const rootDir = openDirAt(home);
  if (rootDir === undefined) throw new StepFailedError('restore', 'the workspace home is not a directory');
  closeSync(rootDir.fd);
  // The manifest describes the home the snapshot was taken from (or last restored into). Restored
  // into another directory (another root inode), none of its entries can be trusted: rewrite all.
  const rootEntry = manifest.get('');
  const foreign = rootEntry === undefined || rootEntry.ino !== rootDir.st.ino;
  const same = (m: ManifestEntry, st: BigIntStats): boolean =>
    !foreign && m.type === entryType(st) && m.ino === st.ino && m.ctimeNs === st.ctimeNs;

  const remove = new Map<string, Buffer>();
  const writeWhole = new Set<string>();
  const changedDirs = new Map<string, BigIntStats>();
  const seen = new Set<string>();
  const descended = new Set<string>(['']);
  let removed = 0;

  await walkTreeAt(home, {
    visit: (e) => {
      const key = relKey(e.rel);
      seen.add(key);
      const m = manifest.get(key);
      if (m === undefined) {
        remove.set(key, e.rel);
        removed++;
        return false;
      }
      if (m.type === 'd' && e.type === 'd') {
        descended.add(key);
        if (!same(m, e.st)) changedDirs.set(key, e.st);
        return true;
      }
      if (!same(m, e.st)) {
        remove.set(key, e.rel);
        writeWhole.add(key);
      }
      return false;
    },
    onChanged: (rel) => {
      // Vanished or replaced while we looked (only a live process does that): remove whatever is
      // there now and write the snapshot's entry whole.
      const key = relKey(rel);
      remove.set(key, rel);
      descended.delete(key);
      changedDirs.delete(key);
      if (manifest.has(key)) writeWhole.add(key);
    },
  });
  for (const key of manifest.keys()) {
    if (key !== '' && !seen.has(key) && descended.has(relKey(parentRel(keyRel(key))))) writeWhole.add(key);
  }

  // Every directory on the way to a change: opened up for the writer, its metadata restored after.
  const metaDirs = new Set<string>();
  const addAncestors = (key: string): void => {
    for (let k = key; k !== ''; ) {
      k = relKey(parentRel(keyRel(k)));
      if (metaDirs.has(k)) return;
      metaDirs.add(k);
    }
  };
  for (const key of [...remove.keys(), ...writeWhole, ...changedDirs.keys()]) addAncestors(key);
  for (const key of changedDirs.keys()) metaDirs.add(key);
  if (rootEntry === undefined || !same(rootEntry, rootDir.st)) metaDirs.add('');

  const written = await expandFromSnapshot(snapHome, writeWhole);
  let restored = written.length;
  if (changedDirs.size > 0 || metaDirs.has('')) {
    const snapStat = new SnapshotStat(snapHome);
    try {
      const dirs = [...changedDirs];
      if (metaDirs.has('') && !changedDirs.has('')) dirs.push(['', rootDir.st]);
      for (const [key, live] of dirs) {
        const m = manifest.get(key);
        const snap = snapStat.lstat(keyRel(key));
        // Counted only when the directory itself differed, not when its ctime moved because entries changed.
        if (
          snap !== undefined &&
          (m === undefined || m.ino !== live.ino || (live.mode & 0o7777n) !== (snap.mode & 0o7777n))
        )
          restored++;
      }
    } finally {
      snapStat.close();
    }
  }

  const dirMembers = [...metaDirs].filter((k) => !writeWhole.has(k)).map(keyRel);
  const members = sortParentsFirst([...dirMembers, ...written]);
  await tarAs('restore', user, snapHome, home, members.map(dotForRoot), {
    prelude: { remove: sortParentsFirst([...remove.values()]), openDirs: sortParentsFirst(dirMembers).map(dotForRoot) },
  });

  const touched = sortParentsFirst([...dirMembers, ...written]);
  if (touched.length > 0) {
    const top = openDirAt(home);
    if (top === undefined) throw new StepFailedError('restore', 'the workspace home is not a directory');
    const stat = new NoFollowStat(top.fd);
    try {
      for (const rel of touched) {
        const st = stat.lstat(rel);
        const key = relKey(rel);
        // Gone again (a live process) or never written: ino 0 never matches, so the next reset writes it.
        manifest.set(
          key,
          st === undefined
            ? { type: manifest.get(key)?.type ?? 'f', ino: 0n, ctimeNs: 0n }
            : { type: entryType(st), ino: st.ino, ctimeNs: st.ctimeNs },
        );
      }
    } finally {
      stat.close();
      closeSync(top.fd);
    }
    await writeManifest(snapDir, manifest);
    await waitPastCtime(snapDir, maxCtimeNs(manifest));
  }
  return { restored, removed };
}

const DOT = Buffer.from('.');
const dotForRoot = (rel: Buffer): Buffer => (rel.length === 0 ? DOT : rel);

/** Bytewise order puts every directory before what is inside it (a prefix sorts first). */
function sortParentsFirst(rels: Buffer[]): Buffer[] {
  return rels.sort(Buffer.compare);
}

/** lstat inside the snapshot (root-only and immutable, but possibly deeper than PATH_MAX). */
class SnapshotStat {
  private readonly root: number;
  private readonly stat: NoFollowStat;
  constructor(snapHome: string) {
    const top = openDirAt(snapHome);
    if (top === undefined) throw new StepFailedError('restore', 'the snapshot has no home');
    this.root = top.fd;
    this.stat = new NoFollowStat(top.fd);
  }
  lstat(rel: Buffer): BigIntStats | undefined {
    return this.stat.lstat(rel);
  }
  /** A no-follow path to `rel` (non-empty), usable until the next call. */
  at(rel: Buffer): Buffer | undefined {
    return this.stat.at(rel);
  }
  close(): void {
    this.stat.close();
    closeSync(this.root);
  }
}

/**
 * The snapshot entries to write for each subtree root in `keys`: the entry and, for a directory,
 * everything below it. Devices and sockets are left out (a workspace uid cannot create them).
 */
async function expandFromSnapshot(snapHome: string, keys: Set<string>): Promise<Buffer[]> {
  if (keys.size === 0) return [];
  const out: Buffer[] = [];
  const snapStat = new SnapshotStat(snapHome);
  const writable = (st: BigIntStats): boolean => !(st.isCharacterDevice() || st.isBlockDevice() || st.isSocket());
  try {
    for (const key of keys) {
      const rel = keyRel(key);
      const st = snapStat.lstat(rel);
      if (st === undefined || !writable(st)) continue;
      out.push(rel);
      if (!st.isDirectory()) continue;
      const at = rel.length === 0 ? Buffer.from(snapHome) : snapStat.at(rel);
      if (at === undefined) continue;
      await walkTreeAt(at, {
        visit: (e) => {
          if (writable(e.st)) out.push(Buffer.concat([rel, Buffer.from('/'), e.rel]));
        },
        onChanged: () => {
          throw new StepFailedError('restore', 'the snapshot changed while it was read');
        },
      });
    }
  } finally {
    snapStat.close();
  }
  return out;
}
