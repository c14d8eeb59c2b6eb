import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readlinkSync,
  readSync,
  renameSync,
  symlinkSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ConflictError, StepFailedError } from '../../../contract/errors.js';
import { TOOL_ENV } from '../exec.js';
import type { Manifest } from './manifest.js';
import { maxCtimeNs, relKey, waitPastCtime, writeManifest } from './manifest.js';
import { fdPath, openDirAt, openRegularAt, walkTreeAt, type AtEntry } from './walk-at.js';
import { joinPath, lstatBig, yieldToLoop } from './walk.js';

/**
 * Snapshots that hard-link what has not changed since the home was seeded from another snapshot.
 *
 * A home created from snapshot O (a tar of O written by the workspace uid) records, right after the copy, the
 * (inode, ctime) of each of its regular files (recordOriginFiles). ctime cannot be set by a user
 * and every change of content, mode, owner or name moves it (or the inode), so a live file whose
 * (inode, ctime) still equals that record holds exactly what O's file holds: the new snapshot
 * hard-links O's file instead of writing the data again (measured here: a data copy costs ~0.37 ms
 * per file, a link ~20× less). Snapshots are immutable and root-only, so sharing inodes between
 * them is safe, and deleting O later leaves the data with the links. Everything else is copied.
 * (A snapshot's own manifest is such a record too — stat'ed before its copy, ctime barrier passed —
 * so a workspace created empty uses its first snapshot as O.)
 *
 * The result is `<snapDir>/home` + `<snapDir>/manifest.json` describing the LIVE home (inode and
 * ctime at snapshot time); takeSnapshot (tree.ts) is this same copy without an origin. Restores
 * copy out of a snapshot (as the workspace uid), they never link into a live home.
 *
 * Reading the live tree is done as tree/walk-at.ts does it (root reading a tree the workspace
 * controls): no symlink followed in any path component, no fifo or device ever opened.
 */

/** Latin1 relative path (tree/manifest.ts keys) → inode and ctime of a regular file. */
export type OriginFiles = Map<string, { ino: bigint; ctimeNs: bigint }>;

export interface LinkOrigin {
  /**
   * The origin snapshot's copy of the home. Pass a path that pins it (`/proc/self/fd/<fd>/home`
   * of an open snapshot directory) so a snapshot replaced under the same name is never linked from.
   */
  snapHome: string;
  files: OriginFiles;
  /** The live home is an overlay over snapHome: a file is untouched iff it is snapHome's own inode. */
  lower?: boolean;
}

export interface SnapshotOptions {
  /**
   * The workspace's host uid: a regular file owned by anyone else is left out of the snapshot (and
   * its manifest, so a restore removes it). In a live home every file the provider put there and
   * every file the workspace made belongs to that uid; another owner means a hard link to a file
   * from outside the home, whose content root must not copy into a snapshot the workspace later
   * gets back. Undefined: keep every owner's files (provider-owned trees, tests).
   */
  ownerUid?: number;
  /**
   * Owner of every entry written into the snapshot (root only); undefined: the live owner. A
   * snapshot that links from an origin takes the origin's owner, so a snapshot has ONE owner on
   * disk — what lets an overlay home map it to its workspace's uid (overlay/index.ts).
   */
  chownTo?: number;
}

/**
 * What a snapshot does not copy: devices and sockets (recorded in the manifest — an untouched one
 * is left alone by a reset — but not copied: a workspace uid could not create them again), and
 * regular files of another owner (neither copied nor recorded: a reset removes them).
 */
export interface Skipped {
  special: number;
  foreign: number;
}

/**
 * (inode, ctime) of every regular file under `home`. Call it right after the copy + chown, before
 * any workspace process exists, then make the clock pass the newest ctime (waitPastCtime) so a
 * write in the same clock tick cannot keep a recorded ctime.
 */
export async function recordOriginFiles(home: string): Promise<OriginFiles> {
  const files: OriginFiles = new Map();
  await walkTreeAt(home, {
    visit: (e) => {
      if (e.type === 'f') files.set(relKey(e.rel), { ino: e.st.ino, ctimeNs: e.st.ctimeNs });
    },
    onChanged: () => undefined, // left out: never linked
  });
  return files;
}

export function maxOriginCtimeNs(files: OriginFiles): bigint {
  let max = 0n;
  for (const f of files.values()) if (f.ctimeNs > max) max = f.ctimeNs;
  return max;
}

const isRoot = (): boolean => process.getuid?.() === 0;
const toSec = (ns: bigint): number => Number(ns / 1000n) / 1e6;
const DIR_MODE_WHILE_FILLING = 0o700;
const COPY_CHUNK_BYTES = 1 << 20;
const YIELD_EVERY_BYTES = 8 << 20;

/**
 * Snapshot `home` into `snapDir` (created if missing; `snapDir/home` must not exist →
 * ConflictError), linking files unchanged since `origin` (none without one). Each live entry is
 * lstat'ed before it is copied and that stat goes into the manifest (a change racing with the copy
 * shows up as changed at the next restore); an entry that vanishes or is replaced mid-walk is left
 * out of both the copy and the manifest (a restore removes it). FIFOs are recreated (never
 * opened); devices and sockets are recorded but not copied; files of another owner
 * (options.ownerUid) are left out.
 * Any depth works: every path used is relative to an open directory.
 * Returns how many files were linked and copied, and what was skipped.
 */
export async function takeLinkedSnapshot(
  home: string,
  snapDir: string,
  origin: LinkOrigin | undefined,
  options: SnapshotOptions = {},
): Promise<{ linked: number; copied: number; skipped: Skipped }> {
  await mkdir(snapDir, { recursive: true });
  const destHome = join(snapDir, 'home');
  try {
    mkdirSync(destHome, DIR_MODE_WHILE_FILLING);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST')
      throw new ConflictError(`snapshot destination ${destHome} already exists`, { cause: error });
    throw error;
  }
  const dest = openDirAt(destHome);
  if (dest === undefined) throw new ConflictError(`snapshot destination ${destHome} is not a directory`);
  const builder = new LinkedCopy(
    Buffer.from(destHome),
    origin ? Buffer.from(origin.snapHome) : undefined,
    origin?.files ?? new Map(),
    origin?.lower === true,
    dest.fd,
    options.ownerUid,
    options.chownTo,
  );
  try {
    const rootSt = await walkTreeAt(home, {
      visit: (e) => builder.visit(e),
      leave: (e) => builder.leave(e),
      onChanged: () => undefined, // left out of copy and manifest alike
    });
    builder.finishDir(dest.fd, rootSt);
    builder.manifest.set('', { type: 'd', ino: rootSt.ino, ctimeNs: rootSt.ctimeNs });
  } finally {
    builder.closeAll();
  }
  await writeManifest(snapDir, builder.manifest);
  await waitPastCtime(snapDir, maxCtimeNs(builder.manifest));
  return { linked: builder.linked, copied: builder.copied, skipped: builder.skipped };
}

/** The state of one linked snapshot build: a stack of open destination directories. */
class LinkedCopy {
  readonly manifest: Manifest = new Map();
  linked = 0;
  copied = 0;
  readonly skipped: Skipped = { special: 0, foreign: 0 };
  private readonly dirs: number[];
  /** Live inode → destination path, for files with several links inside the home (kept as links). */
  private readonly copiedInodes = new Map<bigint, Buffer>();
  private readonly buf = Buffer.allocUnsafe(COPY_CHUNK_BYTES);

  constructor(
    private readonly destHome: Buffer,
    private readonly snapHome: Buffer | undefined,
    private readonly files: OriginFiles,
    private readonly lower: boolean,
    rootFd: number,
    private readonly ownerUid: number | undefined,
    private readonly chownTo: number | undefined,
  ) {
    this.dirs = [rootFd];
  }

  private uid(st: BigIntStats): number {
    return this.chownTo ?? Number(st.uid);
  }
  private gid(st: BigIntStats): number {
    return this.chownTo ?? Number(st.gid);
  }

  private destFd(): number {
    return this.dirs[this.dirs.length - 1]!;
  }

  private destAt(name: Buffer): Buffer {
    return joinPath(fdPath(this.destFd()), name);
  }

  async visit(e: AtEntry): Promise<boolean> {
    const to = this.destAt(e.name);
    switch (e.type) {
      case 'd': {
        mkdirSync(to, DIR_MODE_WHILE_FILLING);
        const opened = openDirAt(to);
        if (opened === undefined) throw new ConflictError('a snapshot directory vanished while it was being built');
        this.dirs.push(opened.fd);
        break;
      }
      case 'f': {
        if (this.link(e, to)) {
          this.linked++;
          break;
        }
        const copied = await this.copy(e, to);
        if (copied === 'foreign') this.skipped.foreign++;
        if (copied !== 'copied') return false; // replaced or gone since the listing, or foreign: left out
        this.copied++;
        break;
      }
      case 'l': {
        let target: Buffer;
        try {
          target = readlinkSync(e.at, { encoding: 'buffer' });
        } catch {
          return false;
        }
        symlinkSync(target, to);
        if (isRoot()) lchownSync(to, this.uid(e.st), this.gid(e.st));
        lutimesSync(to, toSec(e.st.atimeNs), toSec(e.st.mtimeNs));
        break;
      }
      case 'p':
        this.fifo(e);
        break;
      default:
        // A device or socket: not copied (a workspace uid could not create it again), but recorded,
        // so a reset leaves the live one alone as long as it is untouched.
        this.skipped.special++;
        break;
    }
    this.manifest.set(relKey(e.rel), { type: e.type, ino: e.st.ino, ctimeNs: e.st.ctimeNs });
    return true;
  }

  /** A directory's contents are done: owner, mode, times as the live one had them (owner first: chown clears setuid bits). */
  leave(e: AtEntry): void {
    const fd = this.dirs.pop()!;
    try {
      this.finishDir(fd, e.st);
    } finally {
      closeSync(fd);
    }
  }

  finishDir(fd: number, st: BigIntStats): void {
    if (isRoot()) fchownSync(fd, this.uid(st), this.gid(st));
    fchmodSync(fd, Number(st.mode & 0o7777n));
    futimesSync(fd, toSec(st.atimeNs), toSec(st.mtimeNs));
  }

  closeAll(): void {
    for (const fd of this.dirs.splice(0)) closeSync(fd);
  }

  /**
   * Link the origin's file when the live file is untouched since the home was seeded from it and
   * the origin's copy has the live file's mode, size and mtime (a chown during create clears
   * setuid bits, for one: such a file is copied). False → copy it instead.
   */
  private link(e: AtEntry, to: Buffer): boolean {
    if (this.snapHome === undefined) return false;
    const recorded = this.files.get(relKey(e.rel));
    if (!this.lower && (recorded === undefined || recorded.ino !== e.st.ino || recorded.ctimeNs !== e.st.ctimeNs))
      return false;
    const src = joinPath(this.snapHome, e.rel);
    let s: BigIntStats;
    try {
      s = lstatBig(src);
    } catch {
      return false; // origin evicted meanwhile, path too long…: copy
    }
    // An overlay home: the live file is the lower's own (never copied up) — same fs, xino off.
    if (this.lower && (s.ino !== e.st.ino || s.ctimeNs !== e.st.ctimeNs)) return false;
    // mtimes within 2 µs: the copies this module writes set times through futimes, in seconds as a
    // double (~240 ns of rounding at today's epoch).
    const mtimeDiff = s.mtimeNs - e.st.mtimeNs;
    if (
      !s.isFile() ||
      (s.mode & 0o7777n) !== (e.st.mode & 0o7777n) ||
      s.size !== e.st.size ||
      mtimeDiff > 2000n ||
      mtimeDiff < -2000n
    )
      return false;
    try {
      linkSync(src, to);
    } catch {
      return false; // EMLINK, EXDEV, gone meanwhile: copy
    }
    if (lstatBig(to).ino !== s.ino) {
      unlinkSync(to);
      return false;
    }
    return true;
  }

  /**
   * A FIFO is recreated, never opened (an open would block): `mkfifo` makes it under a temp ASCII
   * name in the destination directory, reached through an inherited descriptor (fd 3), and it is
   * renamed to its raw name here.
   */
  private fifo(e: AtEntry): void {
    const tmp = Buffer.from(`.wsp-fifo-${randomBytes(6).toString('hex')}`);
    const mode = (Number(e.st.mode) & 0o7777).toString(8);
    const r = spawnSync('mkfifo', ['-m', mode, `/proc/self/fd/3/${tmp.toString()}`], {
      stdio: ['ignore', 'ignore', 'pipe', this.destFd()],
      env: TOOL_ENV,
    });
    if (r.status !== 0) throw new StepFailedError('snapshot', `mkfifo exited ${r.status ?? r.signal}`);
    const to = this.destAt(e.name);
    renameSync(this.destAt(tmp), to);
    if (isRoot()) lchownSync(to, this.uid(e.st), this.gid(e.st));
    lutimesSync(to, toSec(e.st.atimeNs), toSec(e.st.mtimeNs));
  }

  /** Copy a live regular file (opened safely); 'gone' when it is no longer the file that was listed. */
  private async copy(e: AtEntry, to: Buffer): Promise<'copied' | 'gone' | 'foreign'> {
    const src = openRegularAt(e.at, e.st);
    if (src === undefined) return 'gone';
    try {
      // Checked on the opened inode itself: a hard link to a file from outside the home (another owner) is never read.
      if (this.ownerUid !== undefined && Number(src.st.uid) !== this.ownerUid) return 'foreign';
      const earlier = src.st.nlink > 1n ? this.copiedInodes.get(src.st.ino) : undefined;
      if (earlier !== undefined) {
        try {
          linkSync(earlier, to); // another name of a file copied already, inside this snapshot
          return 'copied';
        } catch {
          // copy it on its own
        }
      }
      const out = openSync(to, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      try {
        let sinceYield = 0;
        for (;;) {
          const n = readSync(src.fd, this.buf, 0, COPY_CHUNK_BYTES, null);
          if (n === 0) break;
          for (let off = 0; off < n; ) off += writeSync(out, this.buf, off, n - off);
          sinceYield += n;
          if (sinceYield >= YIELD_EVERY_BYTES) {
            sinceYield = 0;
            await yieldToLoop();
          }
        }
        if (isRoot()) fchownSync(out, this.uid(src.st), this.gid(src.st));
        fchmodSync(out, Number(src.st.mode & 0o7777n)); // after chown, which clears setuid bits
        futimesSync(out, toSec(src.st.atimeNs), toSec(src.st.mtimeNs));
      } finally {
        closeSync(out);
      }
      if (src.st.nlink > 1n) this.copiedInodes.set(src.st.ino, joinPath(this.destHome, e.rel)); // a full path: fds get reused
      return 'copied';
    } finally {
      closeSync(src.fd);
    }
  }
}
