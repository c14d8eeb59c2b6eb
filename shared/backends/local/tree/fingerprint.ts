import { createHash, type Hash } from 'node:crypto';
import { closeSync, readlinkSync, readSync } from 'node:fs';
import { StepFailedError } from '../../../contract/errors.js';
import type { AtEntry } from './walk-at.js';
import { openRegularAt, walkTreeAt } from './walk-at.js';
import { yieldToLoop } from './walk.js';

/**
 * The tree fingerprint, computed on the host. The same algorithm runs inside a workspace as a
 * shell script (shared/workspace/fingerprint.ts); tests prove both give the same digest.
 *
 * One record per entry below `dir` (the root itself excluded), as raw bytes:
 *   file:      relpath TAB 'f' TAB perm TAB sha256hex(content)
 *   symlink:   relpath TAB 'l' TAB perm TAB target
 *   other:     relpath TAB type TAB perm TAB            (d, p, s, c, b — `find -printf %y` letters)
 * perm = `mode & 07777` in octal without leading zeros (`find -printf %m`). Records are sorted
 * bytewise (`LC_ALL=C sort -z`), each terminated by NUL, and hashed with sha256. Mtimes, owners,
 * link counts and inode numbers are left out on purpose: a restore or a warm start may change them.
 *
 * It runs as root over a tree the workspace controls, so it walks with tree/walk-at.ts: no
 * symlink is ever followed (in any path component), and nothing but a regular file is ever
 * opened — a fifo, socket or device is only lstat'ed, even if it replaces a file mid-walk.
 * Throws StepFailedError ('fingerprint') when the tree changes under the walk (the in-workspace
 * script fails in that case too).
 */

const TAB = Buffer.from('\t');
const NUL = Buffer.from([0]);

export interface FingerprintOptions {
  /**
   * The workspace's host uid: a regular file owned by anyone else (a hard link to a file from
   * outside the home) is not read — its record carries FOREIGN instead of a content digest, so
   * the digest handed back to the caller reveals nothing of data the workspace could not read.
   */
  ownerUid?: number;
}

/** In place of the content digest of a file of another owner (never a sha256 hex string). */
const FOREIGN = Buffer.from('foreign-owner');

export async function hostFingerprint(dir: string, options: FingerprintOptions = {}): Promise<string> {
  return (await hostFingerprintDetailed(dir, options)).digest;
}

export async function hostFingerprintDetailed(
  dir: string,
  options: FingerprintOptions = {},
): Promise<{ digest: string; entries: number }> {
  const records: Buffer[] = [];
  let bytesSinceYield = 0n;
  await walkTreeAt(dir, {
    visit: async (e) => {
      records.push(await fingerprintRecord(e, options.ownerUid));
      if (e.type === 'f') {
        bytesSinceYield += e.st.size + 4096n;
        if (bytesSinceYield > YIELD_EVERY_BYTES) {
          bytesSinceYield = 0n;
          await yieldToLoop();
        }
      }
    },
    onChanged: () => {
      throw changed();
    },
  });
  records.sort(Buffer.compare);
  const hash = createHash('sha256');
  for (const r of records) {
    hash.update(r);
    hash.update(NUL);
  }
  return { digest: hash.digest('hex'), entries: records.length };
}

function changed(cause?: unknown): StepFailedError {
  const error = new StepFailedError('fingerprint', 'the tree changed while it was being read');
  if (cause !== undefined) error.cause = cause;
  return error;
}

async function fingerprintRecord(e: AtEntry, ownerUid: number | undefined): Promise<Buffer> {
  const perm = Buffer.from((Number(e.st.mode) & 0o7777).toString(8));
  let last: Buffer = Buffer.alloc(0);
  if (e.type === 'f') last = await sha256At(e, ownerUid);
  else if (e.type === 'l') {
    try {
      last = readlinkSync(e.at, { encoding: 'buffer' });
    } catch (error) {
      throw changed(error); // no longer a symlink (EINVAL) or gone
    }
  }
  return Buffer.concat([e.rel, TAB, Buffer.from(e.type), TAB, perm, TAB, last]);
}

/**
 * Read in chunks from the descriptor openRegularAt gives (synchronous reads: a stream or promise
 * per file costs more than the hashing itself here); a yield to the event loop every few MiB of
 * one big file, and between files via the caller.
 */
const CHUNK_BYTES = 1 << 20;
const YIELD_EVERY_BYTES = 8n << 20n;
const chunk = Buffer.allocUnsafe(CHUNK_BYTES);

async function sha256At(e: AtEntry, ownerUid: number | undefined): Promise<Buffer> {
  const file = openRegularAt(e.at, e.st);
  if (file === undefined) throw changed();
  const hash: Hash = createHash('sha256');
  try {
    // Checked on the opened inode: nothing of another owner's file is read.
    if (ownerUid !== undefined && Number(file.st.uid) !== ownerUid) return FOREIGN;
    let sinceYield = 0;
    for (;;) {
      const n = readSync(file.fd, chunk, 0, CHUNK_BYTES, null);
      if (n === 0) break;
      hash.update(chunk.subarray(0, n));
      sinceYield += n;
      if (sinceYield >= Number(YIELD_EVERY_BYTES)) {
        sinceYield = 0;
        await yieldToLoop();
      }
    }
  } finally {
    closeSync(file.fd);
  }
  return Buffer.from(hash.digest('hex'));
}
