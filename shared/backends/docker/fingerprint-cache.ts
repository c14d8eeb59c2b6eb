import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { WorkspacePlan } from '../../contract/plan.js';
import { writeFileAtomic } from '../../lib/write-atomic.js';

/**
 * What the fingerprints remember of an image's home: for each regular file hashed in a container of
 * that image, its inode, size and ctime then, and its sha256. One file per (image id, home, user) under
 * the cache dir — image ids are content addresses; another home fingerprints differently and another
 * user may not be able to read it. Written atomically (temp + rename), readable by the service user
 * only, gzip above GZIP_ABOVE bytes. A file that does not parse is ignored (and replaced on the next
 * write): it is only ever an optimisation.
 */

export interface KnownFile {
  inode: string;
  size: number;
  ctime: bigint;
  hash: string;
}

/** relpath (latin1, see shared/workspace/records.ts) → what it was when hashed. */
export type FileIndex = Map<string, KnownFile>;

const GZIP_ABOVE = 64 * 1024;
const HEADER = 'wsp-fingerprint-index 1\n';
const META = /^(\d+) (\d+) (\d+) ([0-9a-f]{64})$/;

/**
 * `<image hex>.<sha256 of image, home and user>`: the image's own id first, so prune can tell whose
 * a file is without reading it.
 */
export function indexKey(imageId: string, plan: WorkspacePlan): string {
  const hash = createHash('sha256').update(`${imageId}\0${plan.home}\0${plan.user.uid}:${plan.user.gid}`).digest('hex');
  return `${imageHex(imageId)}.${hash}`;
}

/** The hex of an image id (`sha256:<hex>`); anything else hashed, so it never names a path. */
function imageHex(imageId: string): string {
  const hex = imageId.replace(/^sha256:/, '');
  return /^[0-9a-f]{64}$/.test(hex) ? hex : createHash('sha256').update(imageId).digest('hex');
}

export function indexFile(dir: string, key: string): string {
  return path.join(dir, `${key}.index`);
}

/**
 * Remove what is kept for images that no longer exist (`imageIds`: every image on the daemon), and
 * files of an older naming. Returns how many files went. Files being written (`.tmp`) are left alone.
 */
export async function pruneFingerprints(dir: string, imageIds: readonly string[]): Promise<number> {
  const alive = new Set(imageIds.map(imageHex));
  let removed = 0;
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    if (name.endsWith('.tmp')) continue;
    const m = /^([0-9a-f]{64})\.[0-9a-f]{64}(\.[0-9a-f]{64})?\.(index|digest)$/.exec(name);
    if (m && alive.has(m[1] as string)) continue;
    await fs.rm(path.join(dir, name), { force: true });
    removed++;
  }
  return removed;
}

/**
 * The home digest of a pristine container of an image (pristine.ts): one line, `<64 hex>`, in
 * `<digestKey>.digest`. Keyed by more than the index (the runner's init makes plan.root as that
 * user), so only a container made for the same home, root and user reuses it.
 */
export function digestKey(imageId: string, plan: WorkspacePlan): string {
  const hash = createHash('sha256')
    .update(`${indexKey(imageId, plan)}\0${plan.root}\0${plan.user.name}`)
    .digest('hex');
  return `${indexKey(imageId, plan)}.${hash}`;
}

export async function readDigest(dir: string, key: string): Promise<string | undefined> {
  const text = await fs.readFile(path.join(dir, `${key}.digest`), 'utf8').catch(() => undefined);
  const digest = text?.trim();
  return digest && /^[0-9a-f]{64}$/.test(digest) ? digest : undefined;
}

export async function writeDigest(dir: string, key: string, digest: string): Promise<void> {
  await writeAtomic(dir, `${key}.digest`, Buffer.from(`${digest}\n`));
}

export async function readIndex(dir: string, key: string): Promise<FileIndex> {
  const index: FileIndex = new Map();
  let raw = await fs.readFile(indexFile(dir, key)).catch(() => undefined);
  if (!raw) return index;
  try {
    if (raw[0] === 0x1f && raw[1] === 0x8b) raw = gunzipSync(raw);
  } catch {
    return index;
  }
  const text = raw.toString('latin1');
  if (!text.startsWith(HEADER) || !text.endsWith('\0')) return index;
  const fields = text.slice(HEADER.length, -1).split('\0');
  if (fields.length % 2 !== 0) return index;
  for (let i = 0; i < fields.length; i += 2) {
    const m = META.exec(fields[i + 1] as string);
    if (!m) return new Map();
    index.set(fields[i] as string, {
      inode: m[1] as string,
      size: Number(m[2]),
      ctime: BigInt(m[3] as string),
      hash: m[4] as string,
    });
  }
  return index;
}

export async function writeIndex(dir: string, key: string, index: FileIndex): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const body: string[] = [HEADER];
  for (const [p, f] of index) body.push(`${p}\0${f.inode} ${f.size} ${f.ctime} ${f.hash}\0`);
  let data = Buffer.from(body.join(''), 'latin1');
  if (data.length > GZIP_ABOVE) data = gzipSync(data, { level: 1 });
  await writeAtomic(dir, `${key}.index`, data);
}

async function writeAtomic(dir: string, name: string, data: Buffer): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(path.join(dir, name), data, { mode: 0o600 });
}
