import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import { entryType, joinPath, yieldToLoop, type EntryType } from './walk.js';

/**
 * A walk of a tree the workspace controls, for code that runs as root on the host and must never
 * be steered outside it (fingerprint, linked snapshots).
 *
 * Every directory is opened (O_DIRECTORY | O_NOFOLLOW) and checked to be the directory that was
 * lstat'ed; its entries are reached as `/proc/self/fd/<dirfd>/<name>` (`at`). Path resolution then
 * jumps straight to the open directory, so no symlink anywhere in the path is followed, even when
 * the workspace swaps a directory for a symlink in the middle of the walk (a full path such as
 * `home/a/b` would follow `a` if it became a symlink to /etc). As a bonus `at` stays short however
 * deep the tree is. Open descriptors = depth of the tree.
 *
 * Regular files are opened with openRegularAt: never a fifo, socket or device, even when the entry
 * is replaced between the lstat and the open.
 */

export interface AtEntry {
  /** Path relative to the walk's root, '/'-separated raw bytes. */
  rel: Buffer;
  /** Last component of rel. */
  name: Buffer;
  /** `/proc/self/fd/<parent fd>/<name>`: valid only until this entry's visit has finished. */
  at: Buffer;
  /** lstat of the entry when its directory was listed. */
  st: BigIntStats;
  type: EntryType;
}

export interface WalkAtOptions {
  /**
   * Called before a directory's contents and must return false to skip them (and `leave`).
   * `at` may be used until the returned promise settles.
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: void, not undefined, so that visitors without a return statement type-check
  visit: (entry: AtEntry) => Promise<boolean | void> | boolean | void;
  /** Called for each directory that was entered, after its contents (its `at` is still valid). */
  leave?: (entry: AtEntry) => Promise<void> | void;
  /**
   * An entry vanished between the listing and its lstat, or a directory could no longer be opened
   * as the directory that was listed (removed, replaced, turned into a symlink). Throw to abort
   * the walk; return to carry on (a directory is then left unvisited inside, `leave` still runs).
   */
  onChanged: (rel: Buffer) => void;
}

/** Linux O_PATH (absent from fs.constants): a descriptor that names an inode without opening it. */
const O_PATH = 0o10000000;
const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

export function fdPath(fd: number): Buffer {
  return Buffer.from(`/proc/self/fd/${fd}`);
}

const sameInode = (a: BigIntStats, b: BigIntStats): boolean => a.ino === b.ino && a.dev === b.dev;

function isGone(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP';
}

/**
 * Open the directory at `at` if it is still the directory `expected` (same inode), without
 * following a symlink; undefined when it is not (gone, replaced, now a symlink or a file).
 */
export function openDirAt(at: Buffer | string, expected?: BigIntStats): { fd: number; st: BigIntStats } | undefined {
  let fd: number;
  try {
    fd = openSync(at, DIR_FLAGS);
  } catch (error) {
    if (isGone(error)) return undefined;
    throw error;
  }
  const st = fstatSync(fd, { bigint: true });
  if (expected !== undefined && !sameInode(st, expected)) {
    closeSync(fd);
    return undefined;
  }
  return { fd, st };
}

/**
 * Open the regular file at `at` for reading if it is still the regular file `expected` (same
 * inode). The entry is first pinned with O_PATH | O_NOFOLLOW, which opens nothing (no fifo, socket
 * or device side effect, no symlink followed); only when fstat proves it is that regular file is it
 * reopened for reading through the pinned descriptor — the very same inode. Returns undefined when
 * the entry is no longer that file. The caller closes `fd`.
 */
export function openRegularAt(at: Buffer, expected: BigIntStats): { fd: number; st: BigIntStats } | undefined {
  let pin: number;
  try {
    pin = openSync(at, O_PATH | constants.O_NOFOLLOW);
  } catch (error) {
    if (isGone(error)) return undefined;
    throw error;
  }
  try {
    const st = fstatSync(pin, { bigint: true });
    if (!st.isFile() || !sameInode(st, expected)) return undefined;
    const fd = openSync(fdPath(pin), constants.O_RDONLY | constants.O_NOCTTY);
    return { fd, st: fstatSync(fd, { bigint: true }) };
  } finally {
    closeSync(pin);
  }
}

/**
 * Walk everything below `root` (parents before children, a yield to the event loop per directory).
 * `root` itself is provider-chosen and opened with O_NOFOLLOW; returns its fstat.
 */
export async function walkTreeAt(root: string | Buffer, options: WalkAtOptions): Promise<BigIntStats> {
  const top = openDirAt(root);
  if (top === undefined) throw Object.assign(new Error('the tree root is not a directory'), { code: 'ENOTDIR' });

  const walkDir = async (fd: number, relDir: Buffer): Promise<void> => {
    const base = fdPath(fd);
    const entries: AtEntry[] = [];
    for (const name of readdirSync(base, { encoding: 'buffer' })) {
      const rel = joinPath(relDir, name);
      const at = joinPath(base, name);
      let st: BigIntStats;
      try {
        st = lstatSync(at, { bigint: true });
      } catch (error) {
        if (!isGone(error)) throw error;
        options.onChanged(rel);
        continue;
      }
      entries.push({ rel, name, at, st, type: entryType(st) });
    }
    await yieldToLoop();
    for (const entry of entries) {
      const descend = await options.visit(entry);
      if (entry.type !== 'd' || descend === false) continue;
      const child = openDirAt(entry.at, entry.st);
      if (child === undefined) options.onChanged(entry.rel);
      else {
        try {
          await walkDir(child.fd, entry.rel);
        } finally {
          closeSync(child.fd);
        }
      }
      await options.leave?.(entry);
    }
  };

  try {
    await walkDir(top.fd, Buffer.alloc(0));
    return top.st;
  } finally {
    closeSync(top.fd);
  }
}

/**
 * lstat of paths below an open root directory without following a symlink in any component: each
 * directory on the way is opened with O_NOFOLLOW | O_DIRECTORY from its parent's descriptor (so
 * the depth of the tree never matters either). Keeps the directories of the last path open: call
 * it with paths in sorted order and consecutive paths share them. close() when done.
 */
export class NoFollowStat {
  private readonly open: { name: Buffer; fd: number }[] = [];

  constructor(private readonly rootFd: number) {}

  /** undefined when the path is gone or a directory on the way is no longer a directory. */
  lstat(rel: Buffer): BigIntStats | undefined {
    if (rel.length === 0) return fstatSync(this.rootFd, { bigint: true });
    const at = this.at(rel);
    if (at === undefined) return undefined;
    try {
      return lstatSync(at, { bigint: true });
    } catch (error) {
      if (isGone(error)) return undefined;
      throw error;
    }
  }

  /**
   * `/proc/self/fd/<parent fd>/<last name>` for a non-empty `rel` (valid until the next call), or
   * undefined when a directory on the way is gone or no longer a directory.
   */
  at(rel: Buffer): Buffer | undefined {
    const parts = splitRel(rel);
    const last = parts.pop()!;
    let same = 0;
    while (same < this.open.length && same < parts.length && this.open[same]!.name.equals(parts[same]!)) same++;
    while (this.open.length > same) closeSync(this.open.pop()!.fd);
    for (let i = same; i < parts.length; i++) {
      const child = openDirAt(joinPath(fdPath(this.parentFd()), parts[i]!));
      if (child === undefined) return undefined;
      this.open.push({ name: parts[i]!, fd: child.fd });
    }
    return joinPath(fdPath(this.parentFd()), last);
  }

  close(): void {
    while (this.open.length > 0) closeSync(this.open.pop()!.fd);
  }

  private parentFd(): number {
    return this.open.length === 0 ? this.rootFd : this.open[this.open.length - 1]!.fd;
  }
}

function splitRel(rel: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= rel.length; i++) {
    if (i === rel.length || rel[i] === 0x2f) {
      parts.push(rel.subarray(start, i));
      start = i + 1;
    }
  }
  return parts;
}
