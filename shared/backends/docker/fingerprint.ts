import { StepFailedError } from '../../contract/errors.js';
import type { WorkspacePlan } from '../../contract/plan.js';
import { type FingerprintMode, fingerprintArgv, parseFingerprint } from '../../workspace/fingerprint.js';
import {
  digestOf,
  parseRecordsOutput,
  parseStatOutput,
  type RecordsOutput,
  sortRecords,
  type StatEntry,
} from '../../workspace/records.js';
import { execBytes, execIn, type DockerClient } from './client.js';
import {
  digestKey,
  type FileIndex,
  indexKey,
  readDigest,
  readIndex,
  writeDigest,
  writeIndex,
} from './fingerprint-cache.js';

/**
 * The home's fingerprint for a docker workspace without reading the files that did not change since
 * the container's image: the same digest as the in-workspace script (shared/workspace/fingerprint.ts),
 * in the time of a metadata walk plus hashing what changed.
 *
 * How: the script's --stat walk lists every entry with its type, mode, size, inode and ctime (no file
 * read) — enough for every record but a regular file's hash. A file's hash is taken from the index of
 * the container's image (fingerprint-cache.ts) when its inode, size and ctime are the ones it had when
 * it was hashed; every other file is hashed in the container (--paths, as the workspace user).
 *
 * Why it is sound: a file's ctime changes with any change of its content or mode and cannot be set by
 * the workspace (only the kernel's clock sets it); a copy-up or a new file is a new inode with a new
 * ctime. An index entry is only made for a file whose ctime, read after hashing, is the one the walk
 * saw and is older than the walk's `mark` (the ctime of a file made just before the walk, same clock):
 * a change after the mark would give it a ctime at least the mark's, so a file written in the same
 * clock tick as it was hashed (git's "racily clean" case) is hashed again next time. Files of the
 * image's layers keep their inodes and ctimes in every container made from it, so a reset or a warm
 * setup reads only what changed since the image (after one fingerprint of a container of that image).
 * Only those are remembered, i.e. files whose ctime is older than the container (minus a margin for
 * the kernel's coarse clock): a file written in a container is a copy-up or a new file made after it
 * was created, and overlayfs gives a copied-up file the inode number of the image's file, so two
 * containers of one image could otherwise show the same inode, size and ctime for different bytes.
 *
 * It does not use `docker diff`: the daemon's diff can be the naive one (it compares mtimes, which the
 * workspace can set back — seen on the test daemon although `docker info` says "Native Overlay Diff:
 * true"), and the test daemon was seen answering "D" for every top-level directory of running
 * containers. Anything that does not add up (a file the walk listed that is gone, or of another type
 * or mode, when hashed) runs the full script instead; a racing workspace gets what the full script,
 * which also reads files one after the other, could have seen.
 */
export class DockerFingerprints {
  /** What the fingerprints did, for tests and logs: full walks, files hashed, files taken from the index. */
  readonly stats = { full: 0, derived: 0, hashed: 0, reused: 0, pristine: 0 };
  /** The files the last fingerprint read (latin1 relpaths). */
  lastHashed: string[] = [];

  constructor(
    private readonly docker: DockerClient,
    private readonly cacheDir: string,
  ) {}

  /**
   * `pristineImage`: the image id the container is still identical to, if the backend knows it
   * (pristine.ts) — then the digest measured once in such a container is the answer, no walk; and the
   * one measured now is kept for the next, if the container was pristine before and after it.
   */
  async home(
    container: string,
    plan: WorkspacePlan,
    pristineImage: () => string | undefined = () => undefined,
  ): Promise<string> {
    const before = pristineImage();
    const info = await this.docker.getContainer(container).inspect();
    // A mount at, under or above the home: its files are not the image's layers (their inodes and
    // ctimes are another file system's); the full script, as the service would run it inside.
    if (mountTouches(info, plan.home)) return this.full(container, plan);
    const pristine = before !== undefined && before === info.Image ? digestKey(info.Image, plan) : undefined;
    if (pristine !== undefined) {
      const known = await readDigest(this.cacheDir, pristine);
      if (known !== undefined) {
        this.stats.pristine++;
        return known;
      }
    }
    const digest = await this.derived(container, plan, info);
    if (pristine !== undefined && pristineImage() === before) await writeDigest(this.cacheDir, pristine, digest);
    return digest;
  }

  private async derived(
    container: string,
    plan: WorkspacePlan,
    info: { Image: string; Created: string },
  ): Promise<string> {
    const key = indexKey(info.Image, plan);
    const [index, walk] = await Promise.all([
      readIndex(this.cacheDir, key),
      this.run(container, plan, '--stat').then(
        (r) => parseStatOutput(r.stdout),
        () => undefined,
      ),
    ]);
    // The full script fails too if the home cannot be walked, with its own message.
    if (!walk) return this.full(container, plan);
    const records: string[] = [];
    const toHash: StatEntry[] = [];
    // Entries are facts about the image's files, valid for every container of it: kept even when this
    // container changed or deleted the file; only files of the image's layers are ever added.
    const next: FileIndex = new Map(index);
    for (const e of walk.entries) {
      if (e.type !== 'f') {
        records.push(`${e.path}\t${e.type}\t${e.perm}\t${e.target}`);
        continue;
      }
      const known = index.get(e.path);
      if (known && known.inode === e.inode && known.size === e.size && known.ctime === e.ctime) {
        records.push(`${e.path}\tf\t${e.perm}\t${known.hash}`);
      } else toHash.push(e);
    }
    // Only files of the image's layers are remembered (see below), and only once stable.
    const stableBefore = minBigint(walk.mark, createdNs(info.Created) - CLOCK_MARGIN_NS);
    const hashed = toHash.length > 0 ? await this.hash(container, plan, toHash, stableBefore, next) : [];
    if (hashed === undefined) return this.full(container, plan);
    records.push(...hashed);
    this.stats.derived++;
    this.stats.hashed += toHash.length;
    this.lastHashed = toHash.map((e) => e.path);
    this.stats.reused += walk.entries.filter((e) => e.type === 'f').length - toHash.length;
    if (added(index, next)) await writeIndex(this.cacheDir, key, next);
    return digestOf(sortRecords(records));
  }

  /**
   * The records of `files` hashed now, adding to `next` those with a ctime before `stableBefore` that
   * did not change while hashed; undefined when they are not what the walk listed (gone, another type
   * or mode: the workspace raced the walk).
   */
  private async hash(
    container: string,
    plan: WorkspacePlan,
    files: StatEntry[],
    stableBefore: bigint,
    next: FileIndex,
  ): Promise<string[] | undefined> {
    const list = Buffer.from(files.map((e) => `${e.path}\0`).join(''), 'latin1');
    let out: RecordsOutput;
    try {
      out = parseRecordsOutput((await this.run(container, plan, '--paths', list)).stdout);
    } catch {
      return undefined;
    }
    if (out.records.length !== files.length || !out.ctimes) return undefined;
    // Each record must be `relpath TAB f TAB perm TAB <64 hex>` for a file the walk listed with that
    // mode: cut the fixed-length hash off and look the rest up (no parsing of names that hold TABs).
    const byPrefix = new Map(files.map((e) => [`${e.path}\tf\t${e.perm}\t`, e]));
    const seen = new Set<StatEntry>();
    for (const r of out.records) {
      const hash = r.slice(-64);
      const e = byPrefix.get(r.slice(0, -64));
      if (!e || seen.has(e) || !/^[0-9a-f]{64}$/.test(hash)) return undefined;
      seen.add(e);
      const after = out.ctimes.get(e.path);
      if (after === e.ctime && after < stableBefore)
        next.set(e.path, { inode: e.inode, size: e.size, ctime: e.ctime, hash });
    }
    return out.records;
  }

  private async run(
    container: string,
    plan: WorkspacePlan,
    mode: FingerprintMode,
    stdin?: Buffer,
  ): Promise<{ stdout: Buffer }> {
    const result = await execBytes(
      this.docker,
      container,
      ['env', 'LC_ALL=C', ...fingerprintArgv(plan.home, mode)],
      `${plan.user.uid}:${plan.user.gid}`,
      stdin,
    );
    if (result.exitCode !== 0)
      throw new StepFailedError('fingerprint', `exit code ${result.exitCode}: ${result.stderr.trim().slice(-500)}`);
    return result;
  }

  /** The full walk, digest only: what the service would run inside the workspace. */
  private async full(container: string, plan: WorkspacePlan): Promise<string> {
    this.stats.full++;
    const result = await execIn(
      this.docker,
      container,
      ['env', 'LC_ALL=C', ...fingerprintArgv(plan.home)],
      `${plan.user.uid}:${plan.user.gid}`,
    );
    if (result.exitCode !== 0)
      throw new StepFailedError('fingerprint', `exit code ${result.exitCode}: ${result.stderr.trim().slice(-500)}`);
    return parseFingerprint(result.stdout).digest;
  }
}

/** The kernel stamps ctimes from a coarse clock (a tick behind the daemon's at most); a generous bound. */
const CLOCK_MARGIN_NS = 2_000_000_000n;

/** Docker's `Created` (RFC 3339 with up to 9 fractional digits, UTC) in ns; 0 when it does not parse. */
export function createdNs(created: string): bigint {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(created);
  const ms = m ? Date.parse(`${m[1]}Z`) : Number.NaN;
  if (!m || Number.isNaN(ms)) return 0n;
  return BigInt(ms) * 1_000_000n + BigInt(`${m[2] ?? ''}000000000`.slice(0, 9));
}

function added(before: FileIndex, after: FileIndex): boolean {
  for (const [p, f] of after) if (before.get(p) !== f) return true;
  return false;
}

function minBigint(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

/** A mount at, under or above the home (bind mounts, volumes, tmpfs). */
function mountTouches(
  info: { Mounts?: { Destination?: string }[]; HostConfig?: { Tmpfs?: object } },
  home: string,
): boolean {
  const dests = [...(info.Mounts ?? []).map((m) => m.Destination ?? ''), ...Object.keys(info.HostConfig?.Tmpfs ?? {})];
  return dests.some((d) => d === home || d.startsWith(`${home}/`) || home.startsWith(d.endsWith('/') ? d : `${d}/`));
}
