import { randomBytes } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { chmod, copyFile, lchown, link, lutimes, mkdir, readlink, rename, rm, symlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { runTool } from './tree-exec.js';
import { entryType, joinPath, lstatBig, parentRel, readNames } from './tree-walk.js';

/**
 * Copy entries from a snapshot's home back into a live home, one path or one subtree at a time,
 * with `cp -a` semantics (content, mode, symlinks as symlinks, owner, mtime). Works on Buffer
 * paths so any name survives. Used by restoreChanged only; whole trees go through `cp -a`.
 */

export interface Owner {
  uid: number;
  gid: number;
}

export interface CopyContext {
  /** Live home and the snapshot's copy of it (`<snapDir>/home`), as bytes. */
  home: Buffer;
  snapHome: Buffer;
  /** The live home as given (provider-chosen, so valid UTF-8) for temp paths handed to tools. */
  homePath: string;
  /** Provider-owned scratch dir on the snapshot's file system (`<snapDir>`), ASCII path. */
  snapDir: string;
  /** Owner for everything written; undefined → keep the snapshot's (only possible as root). */
  owner: Owner | undefined;
  isRoot: boolean;
  /** Called for every relative path written (for the manifest update). */
  onWritten: (rel: Buffer) => void;
}

function tempName(): Buffer {
  return Buffer.from(`.wsp-restore-${randomBytes(6).toString('hex')}`);
}

/** A sibling temp path of `abs` (same directory → same file system → rename works). */
export function tempSibling(abs: Buffer): Buffer {
  return joinPath(parentRel(abs), tempName());
}

const toSec = (ns: bigint): number => Number(ns / 1000n) / 1e6;

/** Owner, then mode (chown clears setuid bits), then times — the cp -a order. */
export async function applyMeta(ctx: CopyContext, abs: Buffer, src: BigIntStats): Promise<void> {
  const isLink = src.isSymbolicLink();
  if (ctx.owner) await lchown(abs, ctx.owner.uid, ctx.owner.gid);
  else if (ctx.isRoot) await lchown(abs, Number(src.uid), Number(src.gid));
  if (!isLink) await chmod(abs, Number(src.mode & 0o7777n));
  const atime = toSec(src.atimeNs);
  const mtime = toSec(src.mtimeNs);
  if (isLink) await lutimes(abs, atime, mtime);
  else await utimes(abs, atime, mtime);
}

/**
 * FIFOs, sockets and devices: Node cannot create them and tool argv cannot carry arbitrary name
 * bytes, so hard-link the snapshot entry to an ASCII name inside snapDir, `cp -a` that to an ASCII
 * temp in the live home, and rename the result into place.
 */
async function copySpecial(ctx: CopyContext, src: Buffer, dest: Buffer): Promise<void> {
  const tag = randomBytes(6).toString('hex');
  const srcAlias = join(ctx.snapDir, `.special-${tag}`);
  const destTmp = join(ctx.homePath, `.wsp-restore-${tag}`);
  await link(src, srcAlias);
  try {
    await runTool('restore special file', ['cp', '-a', '--', srcAlias, destTmp]);
    if (ctx.owner) await lchown(destTmp, ctx.owner.uid, ctx.owner.gid);
    await rename(destTmp, dest);
    ctx.onWritten(Buffer.alloc(0)); // the staging moved the home root's ctime
  } finally {
    await rm(srcAlias, { force: true });
    await rm(destTmp, { force: true });
  }
}

/**
 * Copy snapshot entry `rel` to `dest` (which must not exist; defaults to the live path), whole
 * subtree for a directory. Returns the number of entries written.
 */
export async function copyFromSnapshot(ctx: CopyContext, rel: Buffer, dest?: Buffer): Promise<number> {
  const src = joinPath(ctx.snapHome, rel);
  const target = dest ?? joinPath(ctx.home, rel);
  const st = lstatBig(src);
  let count = 1;
  switch (entryType(st)) {
    case 'f':
      await copyFile(src, target);
      break;
    case 'l':
      await symlink(await readlink(src, { encoding: 'buffer' }), target);
      break;
    case 'd':
      await mkdir(target);
      for (const name of readNames(src)) {
        count += await copyFromSnapshot(ctx, joinPath(rel, name), joinPath(target, name));
      }
      break;
    default:
      await copySpecial(ctx, src, target);
      ctx.onWritten(rel);
      return count; // cp -a kept mode and times; owner applied above
  }
  await applyMeta(ctx, target, st);
  ctx.onWritten(rel);
  return count;
}

/**
 * Replace live non-directory `rel` with the snapshot's entry: written beside it, then renamed over
 * it, so a hard link the user made to it elsewhere keeps the user's content and the new file gets
 * its own inode. Returns entries written.
 */
export async function replaceFromSnapshot(ctx: CopyContext, rel: Buffer): Promise<number> {
  const live = joinPath(ctx.home, rel);
  const tmp = tempSibling(live);
  try {
    const count = await copyFromSnapshot(ctx, rel, tmp);
    await rename(tmp, live);
    return count;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}
