import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { SnapshotRef } from '../../contract/workspace.js';
import { BadRequestError, NotFoundError } from '../../contract/errors.js';
import { checkName, type LocalLayout } from './layout.js';
import { scanTree, takeSnapshot, treeSizeBytes } from './tree.js';

/**
 * Snapshots of a workspace home: `snapshots/<name>/` = tree.ts's home copy + manifest, plus
 * info.json. Root-only (0700), so no workspace uid can read a snapshot.
 */

export interface SnapshotInfo {
  purpose: 'cache' | 'baseline';
  workspaceId: string;
  createdAt: string;
}

export function snapshotRef(layout: LocalLayout, name: string): SnapshotRef {
  return { kind: 'local', name, dir: layout.snapshotDir(name) };
}

/** The snapshot dir of a ref (derived from its name; the ref's `dir` is not trusted). */
export function snapshotDirOf(layout: LocalLayout, snapshot: SnapshotRef): string {
  if (snapshot?.kind !== 'local') throw new BadRequestError(`not a local snapshot (kind '${String(snapshot?.kind)}')`, { field: 'snapshot' });
  return layout.snapshotDir(checkName('snapshot name', snapshot.name));
}

/** A complete snapshot has its manifest; NotFoundError otherwise. */
export async function requireSnapshot(layout: LocalLayout, snapshot: SnapshotRef): Promise<string> {
  const dir = snapshotDirOf(layout, snapshot);
  const ok = await fs.stat(path.join(dir, 'manifest.json')).then(() => true, () => false);
  if (!ok) throw new NotFoundError('snapshot', String(snapshot.name));
  return dir;
}

/**
 * Take `home` as snapshot `name`. Built under a temp name and renamed into place, so a crash never
 * leaves a half snapshot under a real name; an existing snapshot of that name is replaced (a
 * baseline is re-taken after a reset to new refs).
 */
export async function createSnapshot(layout: LocalLayout, home: string, name: string, info: SnapshotInfo): Promise<SnapshotRef> {
  const final = layout.snapshotDir(name);
  const tmp = path.join(layout.snapshotsDir, `.tmp-${name}-${randomBytes(4).toString('hex')}`);
  try {
    await fs.mkdir(tmp, { mode: 0o700 });
    await takeSnapshot(home, tmp);
    await fs.writeFile(path.join(tmp, 'info.json'), JSON.stringify(info), { mode: 0o600 });
    await fs.rm(final, { recursive: true, force: true });
    await fs.rename(tmp, final);
  } catch (error) {
    await fs.rm(tmp, { recursive: true, force: true });
    throw error;
  }
  return snapshotRef(layout, name);
}

export async function deleteSnapshot(layout: LocalLayout, snapshot: SnapshotRef): Promise<void> {
  await fs.rm(snapshotDirOf(layout, snapshot), { recursive: true, force: true });
}

export async function snapshotSize(layout: LocalLayout, snapshot: SnapshotRef): Promise<number> {
  return treeSizeBytes(await requireSnapshot(layout, snapshot));
}

/** Needle hits in the snapshot's content and names (its home, manifest and info). */
export async function scanSnapshot(layout: LocalLayout, snapshot: SnapshotRef, needles: readonly string[]): Promise<string[]> {
  return scanTree(await requireSnapshot(layout, snapshot), needles);
}

/** Complete snapshots (temp dirs of snapshots being taken are skipped). */
export async function listSnapshots(layout: LocalLayout): Promise<SnapshotRef[]> {
  const names = await fs.readdir(layout.snapshotsDir).catch(() => [] as string[]);
  return names.filter((n) => !n.startsWith('.')).sort().map((n) => snapshotRef(layout, n));
}
