import type { BigIntStats } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { CopyContext, Owner } from './tree-copy.js';
import { applyMeta, copyFromSnapshot, replaceFromSnapshot } from './tree-copy.js';
import type { Manifest, ManifestEntry } from './tree-manifest.js';
import { keyRel, maxCtimeNs, readManifest, relKey, waitPastCtime, writeManifest } from './tree-manifest.js';
import { entryType, joinPath, lstatBig, parentRel, readNames, yieldToLoop } from './tree-walk.js';

/**
 * Return a live home to its snapshot, rewriting only what changed since the manifest was taken.
 *
 * Walks the live tree once (lstat only): a path whose (type, ino, ctimeNs) equals the manifest is
 * untouched and never read; a changed path is rewritten from `<snapDir>/home`; a path not in the
 * manifest is removed; a manifest path missing from the live tree is recreated (whole subtree).
 * Directories are always descended (a file's change does not touch its directory's ctime).
 * Afterwards everything written is re-stat'ed into the manifest, so the next reset is again
 * only-what-changed. Throws ConflictError when the snapshot has no manifest.
 */
export async function restoreChanged(
  home: string,
  snapDir: string,
  owner?: Owner,
): Promise<{ restored: number; removed: number }> {
  const manifest = await readManifest(snapDir);
  const children = childIndex(manifest);
  const written = new Set<string>();
  const ctx: CopyContext = {
    home: Buffer.from(home),
    snapHome: Buffer.from(join(snapDir, 'home')),
    homePath: home,
    snapDir,
    owner,
    isRoot: process.getuid?.() === 0,
    onWritten: (rel) => written.add(relKey(rel)),
  };
  let restored = 0;
  let removed = 0;

  // The manifest describes the home the snapshot was taken from (or last restored into). Restored
  // into another directory (another root inode), none of its entries can be trusted: rewrite all.
  const rootSt = lstatBig(ctx.home);
  const rootEntry = manifest.get('');
  const foreign = rootEntry === undefined || rootEntry.ino !== rootSt.ino;
  const same = (m: ManifestEntry, st: BigIntStats): boolean =>
    !foreign && m.type === entryType(st) && m.ino === st.ino && m.ctimeNs === st.ctimeNs;

  /** Restore the contents of live directory `rel`; true when any entry in it was written/removed. */
  const restoreDir = async (rel: Buffer): Promise<boolean> => {
    const key = relKey(rel);
    const abs = joinPath(ctx.home, rel);
    let entriesChanged = false;
    await yieldToLoop(); // a turn for the server between directories (the walk is synchronous)
    const liveNames = readNames(abs);
    const liveKeys = new Set<string>();
    for (const name of liveNames) {
      const childRel = joinPath(rel, name);
      const childKey = relKey(childRel);
      liveKeys.add(childKey);
      const childAbs = joinPath(ctx.home, childRel);
      const st = lstatBig(childAbs);
      const m = manifest.get(childKey);
      if (m === undefined) {
        await rm(childAbs, { recursive: true, force: true });
        removed++;
        entriesChanged = true;
      } else if (m.type === 'd' && entryType(st) === 'd') {
        const inner = await restoreDir(childRel);
        if (!same(m, st) || inner) {
          if (await restoreDirMeta(childRel, st, m)) restored++;
          written.add(childKey);
        }
      } else if (!same(m, st)) {
        if (m.type === 'd' || entryType(st) === 'd') {
          // A type change involving a directory: rename cannot swap them, so remove then copy.
          await rm(childAbs, { recursive: true, force: true });
          restored += await copyFromSnapshot(ctx, childRel);
        } else {
          restored += await replaceFromSnapshot(ctx, childRel);
        }
        entriesChanged = true;
      }
    }
    for (const childKey of children.get(key) ?? []) {
      if (liveKeys.has(childKey)) continue;
      restored += await copyFromSnapshot(ctx, keyRel(childKey));
      entriesChanged = true;
    }
    return entriesChanged;
  };

  /**
   * Directory metadata (mode, owner, times) back to the snapshot's, applied after its contents
   * (their rewrites move its mtime). Counts as restored (true) only when the directory itself
   * differed — a new inode, mode or owner — not when its ctime moved because entries changed.
   */
  const restoreDirMeta = async (rel: Buffer, live: BigIntStats, m: ManifestEntry | undefined): Promise<boolean> => {
    const snap = lstatBig(joinPath(ctx.snapHome, rel));
    await applyMeta(ctx, joinPath(ctx.home, rel), snap);
    const uid = ctx.owner ? BigInt(ctx.owner.uid) : ctx.isRoot ? snap.uid : live.uid;
    const gid = ctx.owner ? BigInt(ctx.owner.gid) : ctx.isRoot ? snap.gid : live.gid;
    return m === undefined || m.ino !== live.ino || (live.mode & 0o7777n) !== (snap.mode & 0o7777n) || live.uid !== uid || live.gid !== gid;
  };

  const rootInner = await restoreDir(Buffer.alloc(0));
  // written.has(''): a special file was staged in the root on its way to a subdirectory.
  if (rootEntry === undefined || !same(rootEntry, rootSt) || rootInner || written.has('')) {
    if (await restoreDirMeta(Buffer.alloc(0), rootSt, rootEntry)) restored++;
    written.add('');
  }

  if (written.size > 0) {
    for (const key of written) {
      const st = lstatBig(joinPath(ctx.home, keyRel(key)));
      manifest.set(key, { type: entryType(st), ino: st.ino, ctimeNs: st.ctimeNs });
    }
    await writeManifest(snapDir, manifest);
    await waitPastCtime(snapDir, maxCtimeNs(manifest));
  }
  return { restored, removed };
}

/** Manifest keys grouped by their parent's key (the root's children under ''). */
function childIndex(manifest: Manifest): Map<string, string[]> {
  const index = new Map<string, string[]>();
  for (const key of manifest.keys()) {
    if (key === '') continue;
    const parent = relKey(parentRel(keyRel(key)));
    const list = index.get(parent);
    if (list) list.push(key);
    else index.set(parent, [key]);
  }
  return index;
}
