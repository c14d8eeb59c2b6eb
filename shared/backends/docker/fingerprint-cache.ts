import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { WorkspacePlan } from '../../contract/plan.js';

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

export function indexKey(imageId: string, plan: WorkspacePlan): string {
  return createHash('sha256').update(`${imageId}\0${plan.home}\0${plan.user.uid}:${plan.user.gid}`).digest('hex');
}

export function indexFile(dir: string, key: string): string {
  return path.join(dir, `${key}.index`);
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
  const file = indexFile(dir, key);
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await fs.writeFile(tmp, data, { mode: 0o600 });
    await fs.rename(tmp, file);
  } finally {
    await fs.rm(tmp, { force: true });
  }
}
