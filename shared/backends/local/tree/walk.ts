import { lstatSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import { setImmediate as yieldToLoop } from 'node:timers/promises';

/**
 * Byte-exact path and entry helpers shared by the tree walkers (walk-at.ts walks fd-relative).
 *
 * Paths are Buffers, not strings: a workspace user may create names that are not valid UTF-8, and
 * decoding them would make a walk lose or confuse entries (a reset that silently skips a file is
 * a broken reset). A `rel` path is relative to the walk's root, '/'-separated, empty for the root.
 *
 * Directory listings and lstat are synchronous, one directory at a time, with a yield to the event
 * loop between directories (yieldToLoop): measured here 5–8× faster than the promise API (each call
 * otherwise pays a thread-pool round trip), while the server still gets a turn after every directory.
 */

export type EntryType = 'f' | 'd' | 'l' | 'p' | 's' | 'c' | 'b';

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

/** Parent of a relative path ('' for top-level names). */
export function parentRel(rel: Buffer): Buffer {
  const i = rel.lastIndexOf(0x2f);
  return i < 0 ? Buffer.alloc(0) : rel.subarray(0, i);
}

export function lstatBig(p: Buffer): BigIntStats {
  return lstatSync(p, { bigint: true });
}

export { yieldToLoop };
