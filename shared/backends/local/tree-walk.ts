import { lstat, readdir } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';

/**
 * A byte-exact directory walker shared by the tree helpers.
 *
 * Paths are Buffers, not strings: a workspace user may create names that are not valid UTF-8, and
 * decoding them would make the walk lose or confuse entries (a reset that silently skips a file is
 * a broken reset). `rel` is the path relative to the walk's root, '/'-separated, empty for the root.
 */

export type EntryType = 'f' | 'd' | 'l' | 'p' | 's' | 'c' | 'b';

export interface WalkEntry {
  rel: Buffer;
  abs: Buffer;
  st: BigIntStats;
  type: EntryType;
}

const SLASH = Buffer.from('/');

/** The type letter `find -printf %y` prints for the same entry. */
export function entryType(st: BigIntStats): EntryType {
  if (st.isFile()) return 'f';
  if (st.isDirectory()) return 'd';
  if (st.isSymbolicLink()) return 'l';
  if (st.isFIFO()) return 'p';
  if (st.isSocket()) return 's';
  if (st.isCharacterDevice()) return 'c';
  return 'b';
}

export function joinPath(base: Buffer, name: Buffer): Buffer {
  if (base.length === 0) return name;
  return Buffer.concat([base, SLASH, name]);
}

export function toBuffer(p: string | Buffer): Buffer {
  return typeof p === 'string' ? Buffer.from(p) : p;
}

/** Parent of a relative path ('' for top-level names). */
export function parentRel(rel: Buffer): Buffer {
  const i = rel.lastIndexOf(0x2f);
  return i < 0 ? Buffer.alloc(0) : rel.subarray(0, i);
}

export async function lstatBig(p: Buffer): Promise<BigIntStats> {
  return lstat(p, { bigint: true });
}

/** Names in a directory, as raw bytes. */
export async function readNames(dir: Buffer): Promise<Buffer[]> {
  return readdir(dir, { encoding: 'buffer' });
}

/**
 * Visit every entry under `root` (not the root itself), parents before children. `visit` may
 * return false for a directory to skip its contents. Entries of one directory are stat'ed in
 * parallel; subdirectories are walked one after another (bounded concurrency without a pool).
 */
export async function walkTree(
  root: string | Buffer,
  visit: (entry: WalkEntry) => Promise<boolean | void> | boolean | void,
): Promise<void> {
  const rootBuf = toBuffer(root);
  const walkDir = async (relDir: Buffer): Promise<void> => {
    const absDir = relDir.length === 0 ? rootBuf : joinPath(rootBuf, relDir);
    const names = await readNames(absDir);
    const entries = await Promise.all(
      names.map(async (name): Promise<WalkEntry> => {
        const rel = joinPath(relDir, name);
        const abs = joinPath(rootBuf, rel);
        const st = await lstatBig(abs);
        return { rel, abs, st, type: entryType(st) };
      }),
    );
    for (const entry of entries) {
      const descend = await visit(entry);
      if (entry.type === 'd' && descend !== false) await walkDir(entry.rel);
    }
  };
  await walkDir(Buffer.alloc(0));
}

/** Run `fn` over `items` with at most `limit` in flight. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
