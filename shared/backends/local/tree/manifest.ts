import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConflictError } from '../../../contract/errors.js';
import type { EntryType } from './walk.js';
import { lstatBig } from './walk.js';
import { walkTreeAt } from './walk-at.js';

/**
 * The snapshot manifest: for every path of the LIVE home at snapshot time, its type, inode number
 * and ctime (ns). ctime cannot be set by a user (unlike mtime, `touch -r`), and every change of
 * content, mode, owner or name updates either the ctime or the inode, so (type, ino, ctimeNs) equal
 * to the manifest means "untouched since the snapshot" without reading the content.
 *
 * Keys are relative paths as 'latin1' strings: a lossless 1:1 mapping of the raw name bytes
 * (names need not be UTF-8). The root itself is the empty key.
 */

export interface ManifestEntry {
  type: EntryType;
  ino: bigint;
  ctimeNs: bigint;
}

export type Manifest = Map<string, ManifestEntry>;

const MANIFEST_FILE = 'manifest.json';
const MANIFEST_VERSION = 1;

interface ManifestJson {
  version: number;
  /** [relLatin1, type, ino, ctimeNs] — bigints as decimal strings. */
  entries: [string, EntryType, string, string][];
}

export function relKey(rel: Buffer): string {
  return rel.toString('latin1');
}

export function keyRel(key: string): Buffer {
  return Buffer.from(key, 'latin1');
}

/** Stat every path under `root` (and the root, key '') into a manifest (no symlink followed). */
export async function buildManifest(root: string): Promise<Manifest> {
  const manifest: Manifest = new Map();
  const rootSt = await walkTreeAt(root, {
    visit: (e) => {
      manifest.set(relKey(e.rel), { type: e.type, ino: e.st.ino, ctimeNs: e.st.ctimeNs });
    },
    onChanged: () => undefined,
  });
  return new Map([['', { type: 'd', ino: rootSt.ino, ctimeNs: rootSt.ctimeNs }], ...manifest]);
}

/** Write atomically (temp + rename) so a crash never leaves a half manifest. */
export async function writeManifest(snapDir: string, manifest: Manifest): Promise<void> {
  const json: ManifestJson = {
    version: MANIFEST_VERSION,
    entries: [...manifest].map(([k, e]) => [k, e.type, e.ino.toString(), e.ctimeNs.toString()]),
  };
  const tmp = join(snapDir, `${MANIFEST_FILE}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, JSON.stringify(json));
    await rename(tmp, join(snapDir, MANIFEST_FILE));
  } finally {
    await rm(tmp, { force: true });
  }
}

/** Throws ConflictError when the snapshot has no readable manifest of our version. */
export async function readManifest(snapDir: string): Promise<Manifest> {
  let json: ManifestJson;
  try {
    json = JSON.parse(await readFile(join(snapDir, MANIFEST_FILE), 'utf8')) as ManifestJson;
  } catch (cause) {
    throw new ConflictError('the snapshot has no readable manifest', { cause });
  }
  if (json.version !== MANIFEST_VERSION || !Array.isArray(json.entries)) {
    throw new ConflictError('the snapshot has an unknown manifest version');
  }
  const manifest: Manifest = new Map();
  for (const [k, type, ino, ctimeNs] of json.entries) {
    manifest.set(k, { type, ino: BigInt(ino), ctimeNs: BigInt(ctimeNs) });
  }
  return manifest;
}

export function maxCtimeNs(manifest: Manifest): bigint {
  let max = 0n;
  for (const e of manifest.values()) if (e.ctimeNs > max) max = e.ctimeNs;
  return max;
}

/**
 * Wait until the file system clock has moved past `ctimeNs`.
 *
 * Kernels before multigrain timestamps stamp ctime from a coarse clock (one tick = 1–10 ms): a
 * change made in the same tick as the manifest's newest ctime could carry the very same ctime and
 * look untouched. After this barrier, any later change gets a strictly greater ctime. Usually
 * returns at once; gives up after ~200 ms (a ctime in the future — clock stepped back — cannot be
 * waited out; such a file is still caught if its inode changes).
 */
export async function waitPastCtime(probeDir: string, ctimeNs: bigint): Promise<void> {
  const probe = join(probeDir, `.ctime-probe-${randomBytes(6).toString('hex')}`);
  try {
    for (let i = 0; i < 200; i++) {
      await writeFile(probe, String(i));
      if (lstatBig(Buffer.from(probe)).ctimeNs > ctimeNs) return;
      await sleep(1);
    }
  } finally {
    await rm(probe, { force: true });
  }
}
