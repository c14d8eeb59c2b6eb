import { randomBytes } from 'node:crypto';
import { closeSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { SnapshotPurpose } from '../../contract/backend.js';
import type { SnapshotRef } from '../../contract/workspace.js';
import { BadRequestError, NotFoundError } from '../../contract/errors.js';
import { checkName } from '../../lib/names.js';
import type { LocalLayout } from './layout.js';
import type { OriginRecord } from './origin.js';
import { hostFingerprint, scanTree, takeSnapshot, treeSizeBytes } from './tree/index.js';
import { removeAs } from './tree/as-user.js';
import { takeLinkedSnapshot, type SnapshotOptions, type Skipped } from './tree/snapshot-linked.js';
import { fdPath, openDirAt } from './tree/walk-at.js';
import { readMountTable, snapshotInUse } from './overlay/index.js';
import { writeFileAtomic } from '../../lib/write-atomic.js';

/**
 * Snapshots of a workspace home: `snapshots/<name>/` = tree.ts's home copy + manifest, plus
 * info.json. Root-only (0700), so no workspace uid can read a snapshot. A snapshot's regular
 * files may be hard links shared with the snapshot its workspace was seeded from
 * (tree/snapshot-linked.ts); snapshots are never written to after they are taken (restores only
 * update manifest.json), so that sharing is invisible.
 */

export interface SnapshotInfo {
  purpose: SnapshotPurpose;
  workspaceId: string;
  createdAt: string;
  /** Random, set by createSnapshot: tells a snapshot from a later one taken under the same name. */
  id?: string;
  /**
   * Set when every file of the snapshot's home is owned by this one uid on disk (a full copy of a
   * home, or one linked from a snapshot that had it): what an overlay home needs to map it to its
   * workspace's uid (overlay/index.ts). Snapshots from before it: homes are copied from them.
   */
  owner?: number;
  /**
   * An alias (no home of its own): the baseline of an overlay home nothing was written to IS the
   * snapshot under it — this names that snapshot (and its id). The target is kept (retired, never
   * removed) while an alias names it; see resolveSnapshot, createAlias.
   */
  alias?: { name: string; id: string };
}

/** How a snapshot was taken: files hard-linked from the origin snapshot, files copied. */
export interface SnapshotTaken {
  ref: SnapshotRef;
  /** The id written to its info.json. */
  id: string;
  linkedFiles?: number;
  copiedFiles?: number;
  /** Left out: devices/sockets, files of another owner (hard links from outside the home). */
  skipped?: Skipped;
  /** The one uid owning its files on disk, when there is one (info.json `owner`). */
  owner?: number;
}

function snapshotRef(layout: LocalLayout, name: string): SnapshotRef {
  return { kind: 'local', name, dir: layout.snapshotDir(name) };
}

/** The snapshot dir of a ref (derived from its name; the ref's `dir` is not trusted). */
function snapshotDirOf(layout: LocalLayout, snapshot: SnapshotRef): string {
  if (snapshot?.kind !== 'local')
    throw new BadRequestError(`not a local snapshot (kind '${String(snapshot?.kind)}')`, { field: 'snapshot' });
  return layout.snapshotDir(checkName('snapshot name', snapshot.name));
}

/** A complete snapshot has its manifest (an alias: its target's); NotFoundError otherwise. Answers its dir. */
async function requireSnapshot(layout: LocalLayout, snapshot: SnapshotRef): Promise<string> {
  return (await resolveSnapshot(layout, snapshot)).dir;
}

/**
 * The snapshot a ref stands for: itself, or an alias's target — found under its name, or retired
 * (renamed to `.retired-<name>-…`) with the same id. `name` is the target's dir name.
 */
export async function resolveSnapshot(
  layout: LocalLayout,
  snapshot: SnapshotRef,
): Promise<{ dir: string; name: string }> {
  const dir = snapshotDirOf(layout, snapshot);
  const alias = (await readInfo(dir))?.alias;
  if (alias === undefined) {
    if (!(await exists(path.join(dir, 'manifest.json')))) throw new NotFoundError('snapshot', String(snapshot.name));
    return { dir, name: String(snapshot.name) };
  }
  const names = await fs.readdir(layout.snapshotsDir).catch(() => [] as string[]);
  for (const name of [alias.name, ...names.filter((n) => n.startsWith(`.retired-${alias.name}-`))]) {
    const target = path.join(layout.snapshotsDir, name);
    const info = await readInfo(target);
    if (info?.id === alias.id && info.alias === undefined && (await exists(path.join(target, 'manifest.json'))))
      return { dir: target, name };
  }
  throw new NotFoundError('snapshot', String(snapshot.name));
}

/**
 * Snapshot `name` as an alias of snapshot `target` (a baseline of an overlay home with nothing
 * written: its content IS the target's). O(1); replaces a snapshot of that name like createSnapshot.
 */
export async function createAlias(
  layout: LocalLayout,
  name: string,
  info: Omit<SnapshotInfo, 'id' | 'owner' | 'alias'>,
  target: { name: string; id: string; owner: number },
): Promise<SnapshotTaken> {
  const taken: SnapshotTaken = { ref: snapshotRef(layout, name), id: randomBytes(12).toString('hex') };
  const full: SnapshotInfo = {
    ...info,
    id: taken.id,
    owner: target.owner,
    alias: { name: target.name, id: target.id },
  };
  await publishSnapshot(layout, name, async (tmp) => {
    await fs.writeFile(path.join(tmp, 'info.json'), JSON.stringify(full), { mode: 0o600 });
  });
  return taken;
}

/**
 * Build a snapshot dir under a temp name (`build` fills it) and rename it into place, replacing a
 * snapshot of that name: a crash never leaves a half snapshot under a real name.
 */
async function publishSnapshot(
  layout: LocalLayout,
  name: string,
  build: (tmp: string) => Promise<void>,
): Promise<void> {
  const final = layout.snapshotDir(name);
  const tmpName = `.tmp-${name}-${randomBytes(4).toString('hex')}`;
  const tmp = path.join(layout.snapshotsDir, tmpName);
  try {
    await fs.mkdir(tmp, { mode: 0o700 });
    await build(tmp);
    await removeSnapshotDir(layout, name);
    await fs.rename(tmp, final);
  } catch (error) {
    await removeAs('snapshot', undefined, layout.snapshotsDir, [Buffer.from(tmpName)]).catch(() => undefined);
    throw error;
  }
}

async function readInfo(dir: string): Promise<SnapshotInfo | undefined> {
  try {
    return JSON.parse(await fs.readFile(path.join(dir, 'info.json'), 'utf8')) as SnapshotInfo;
  } catch {
    return undefined;
  }
}

async function exists(p: string): Promise<boolean> {
  return fs.stat(p).then(
    () => true,
    () => false,
  );
}

/** Ids of the snapshots some alias names (they are kept while named). */
async function aliasedIds(layout: LocalLayout): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const name of await fs.readdir(layout.snapshotsDir).catch(() => [] as string[])) {
    if (name.startsWith('.')) continue;
    const alias = (await readInfo(path.join(layout.snapshotsDir, name)))?.alias;
    if (alias) ids.add(alias.id);
  }
  return ids;
}

/** The id in a snapshot dir's info.json; undefined when absent (snapshots from before ids, or gone). */
export async function readSnapshotId(snapDir: string): Promise<string | undefined> {
  try {
    const info = JSON.parse(await fs.readFile(path.join(snapDir, 'info.json'), 'utf8')) as SnapshotInfo;
    return typeof info.id === 'string' ? info.id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The fingerprint digest of a snapshot's home (what a home mounted over it, with nothing written,
 * fingerprints to): walked once per snapshot, as root, from the root-only snapshot dir that no
 * workspace can reach, and kept beside it (`fingerprint.json`, keyed by the snapshot's id: a snapshot
 * re-taken under the same name is walked again). `owner`: the uid owning the snapshot's files on
 * disk (the workspace's own, seen through the idmapped lower).
 */
export function snapshotDigest(snapDir: string, snapshotId: string, owner: number): Promise<string> {
  // One walk per snapshot at a time in this process: a warm start may ask while the walk begun right
  // after the cache snapshot was taken still runs (LocalSnapshots.take).
  const key = `${snapDir}\0${snapshotId}`;
  let walking = digestsInFlight.get(key);
  if (walking === undefined) {
    walking = keptOrWalkedDigest(snapDir, snapshotId, owner).finally(() => digestsInFlight.delete(key));
    digestsInFlight.set(key, walking);
  }
  return walking;
}

const digestsInFlight = new Map<string, Promise<string>>();

async function keptOrWalkedDigest(snapDir: string, snapshotId: string, owner: number): Promise<string> {
  const file = path.join(snapDir, 'fingerprint.json');
  try {
    const kept = JSON.parse(await fs.readFile(file, 'utf8')) as { snapshotId?: unknown; digest?: unknown };
    if (kept.snapshotId === snapshotId && typeof kept.digest === 'string' && /^[0-9a-f]{64}$/.test(kept.digest))
      return kept.digest;
  } catch {
    // not kept yet (or unreadable): walked below
  }
  const digest = await hostFingerprint(path.join(snapDir, 'home'), { ownerUid: owner });
  // The temp file lives beside the snapshot dirs (a dot name: never listed as a snapshot): the snapshot
  // dir never holds a transient file that a size or secret scan could see vanish.
  await writeFileAtomic(file, JSON.stringify({ snapshotId, digest }), { mode: 0o600, tmpDir: path.dirname(snapDir) });
  return digest;
}

/**
 * Take `home` as snapshot `name`. Built under a temp name and renamed into place, so a crash never
 * leaves a half snapshot under a real name; an existing snapshot of that name is replaced (a
 * baseline is re-taken after a reset to new refs). With `origin` (the workspace was seeded from a
 * snapshot), files unchanged since are hard-linked from that snapshot when it is still there
 * under the recorded id; otherwise the home is copied whole. Either way the home is only read,
 * fd-relative and no-follow (tree/snapshot-linked.ts), with `options.ownerUid` keeping files of
 * other owners out.
 */
export async function createSnapshot(
  layout: LocalLayout,
  home: string,
  name: string,
  info: Omit<SnapshotInfo, 'id'>,
  origin: OriginRecord | undefined,
  options: SnapshotOptions,
): Promise<SnapshotTaken> {
  let taken: SnapshotTaken = { ref: snapshotRef(layout, name), id: randomBytes(12).toString('hex') };
  await publishSnapshot(layout, name, async (tmp) => {
    const counts = origin ? await takeLinkedFromOrigin(layout, home, tmp, origin, options) : undefined;
    let owner: number | undefined;
    if (counts) {
      taken = { ...taken, linkedFiles: counts.linked, copiedFiles: counts.copied, skipped: counts.skipped };
      owner = counts.owner;
    } else {
      const full = await takeSnapshot(home, tmp, options);
      taken = { ...taken, copiedFiles: full.copied, skipped: full.skipped };
      // Files of other owners are left out (ownerUid), the rest keep the live owner: that one uid.
      if (options.ownerUid !== undefined && (await fs.stat(path.join(tmp, 'home'))).uid === options.ownerUid)
        owner = options.ownerUid;
    }
    const full: SnapshotInfo = { ...info, id: taken.id, ...(owner !== undefined ? { owner } : {}) };
    if (owner !== undefined) taken = { ...taken, owner };
    await fs.writeFile(path.join(tmp, 'info.json'), JSON.stringify(full), { mode: 0o600 });
  });
  return taken;
}

/**
 * A snapshot dir is root-owned and no workspace can reach it, but it may be deeper than PATH_MAX:
 * GNU rm (fd-relative) removes it at any depth, where fs.rm fails.
 */
async function removeSnapshotDir(layout: LocalLayout, name: string): Promise<void> {
  const dir = layout.snapshotDir(name);
  // The lower layer of a mounted overlay home is never removed under it, nor a snapshot an alias
  // names: retired (renamed to a dot name list() skips), removed by sweepRetired once no mount uses
  // it and no alias names it (overlay/index.ts).
  const id = (await readInfo(dir))?.id;
  if (snapshotInUse(dir) || (id !== undefined && (await aliasedIds(layout)).has(id))) {
    await fs
      .rename(dir, path.join(layout.snapshotsDir, `.retired-${name}-${randomBytes(4).toString('hex')}`))
      .catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
      });
    return;
  }
  await removeAs('delete snapshot', undefined, layout.snapshotsDir, [Buffer.from(checkName('snapshot name', name))]);
}

/** Remove retired snapshots (see removeSnapshotDir) that no overlay home uses any more. */
export async function sweepRetired(layout: LocalLayout): Promise<void> {
  const names = await fs.readdir(layout.snapshotsDir).catch(() => [] as string[]);
  const retired = names.filter((n) => n.startsWith('.retired-'));
  if (retired.length === 0) return;
  const table = readMountTable();
  const named = await aliasedIds(layout);
  const free: string[] = [];
  for (const n of retired) {
    const dir = path.join(layout.snapshotsDir, n);
    if (snapshotInUse(dir, table)) continue;
    const id = (await readInfo(dir))?.id;
    if (id !== undefined && named.has(id)) continue;
    free.push(n);
  }
  if (free.length > 0)
    await removeAs(
      'delete snapshot',
      undefined,
      layout.snapshotsDir,
      free.map((n) => Buffer.from(n)),
    );
}

/**
 * The origin snapshot's directory is opened first and its id checked through that descriptor;
 * files are then linked from `/proc/self/fd/<fd>/home`, so a snapshot deleted or replaced under
 * the same name meanwhile is never linked from (links to a deleted one fail and are copied).
 * Undefined (nothing left in `tmp`) when a full copy must be taken instead.
 */
async function takeLinkedFromOrigin(
  layout: LocalLayout,
  home: string,
  tmp: string,
  origin: OriginRecord,
  options: SnapshotOptions,
): Promise<{ linked: number; copied: number; skipped: Skipped; owner?: number } | undefined> {
  let dir: string;
  try {
    dir = layout.snapshotDir(origin.snapshot);
  } catch {
    return undefined;
  }
  const pinned = openDirAt(dir);
  if (pinned === undefined) return undefined; // evicted
  try {
    const at = fdPath(pinned.fd).toString();
    let id: unknown;
    let originOwner: unknown;
    try {
      const originInfo = JSON.parse(readFileSync(path.join(at, 'info.json'), 'utf8')) as SnapshotInfo;
      id = originInfo.id;
      originOwner = originInfo.owner;
    } catch {
      return undefined;
    }
    if (id !== origin.snapshotId) return undefined; // another snapshot under that name now
    const snapHome = path.join(at, 'home');
    // One owner per snapshot: what is copied takes the origin's owner (an overlay home maps it).
    const chownTo = (await fs.stat(snapHome)).uid;
    const counts = await takeLinkedSnapshot(
      home,
      tmp,
      { snapHome, files: origin.files, ...(origin.lower ? { lower: true } : {}) },
      { ...options, chownTo },
    );
    // Linked files keep the origin's owners, copies take chownTo: one owner iff the origin had one.
    return originOwner === chownTo ? { ...counts, owner: chownTo } : counts;
  } finally {
    closeSync(pinned.fd);
  }
}

export async function deleteSnapshot(layout: LocalLayout, snapshot: SnapshotRef): Promise<void> {
  snapshotDirOf(layout, snapshot); // validates the ref
  await removeSnapshotDir(layout, String(snapshot.name));
  await sweepRetired(layout); // an alias's target no longer named by any alias goes too
}

export async function snapshotSize(layout: LocalLayout, snapshot: SnapshotRef): Promise<number> {
  return treeSizeBytes(await requireSnapshot(layout, snapshot));
}

/** Needle hits in the snapshot's content and names (its home, manifest and info). */
export async function scanSnapshot(
  layout: LocalLayout,
  snapshot: SnapshotRef,
  needles: readonly string[],
): Promise<string[]> {
  return scanTree(await requireSnapshot(layout, snapshot), needles);
}

/** Complete snapshots (temp dirs of snapshots being taken are skipped). */
export async function listSnapshots(layout: LocalLayout): Promise<SnapshotRef[]> {
  const names = await fs.readdir(layout.snapshotsDir).catch(() => [] as string[]);
  return names
    .filter((n) => !n.startsWith('.'))
    .sort()
    .map((n) => snapshotRef(layout, n));
}
