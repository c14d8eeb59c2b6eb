import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, readlinkSync } from 'node:fs';
import type { WalkEntry } from './tree-walk.js';
import { walkTree, yieldToLoop } from './tree-walk.js';

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
 */

const TAB = Buffer.from('\t');
const NUL = Buffer.from([0]);

export async function hostFingerprint(dir: string): Promise<string> {
  return (await hostFingerprintDetailed(dir)).digest;
}

export async function hostFingerprintDetailed(dir: string): Promise<{ digest: string; entries: number }> {
  const entries: WalkEntry[] = [];
  await walkTree(dir, (e) => {
    entries.push(e);
  });
  const records: Buffer[] = [];
  let bytesSinceYield = 0n;
  for (const e of entries) {
    records.push(await fingerprintRecord(e));
    if (e.type === 'f' && (bytesSinceYield += e.st.size + 4096n) > YIELD_EVERY_BYTES) {
      bytesSinceYield = 0n;
      await yieldToLoop();
    }
  }
  records.sort(Buffer.compare);
  const hash = createHash('sha256');
  for (const r of records) {
    hash.update(r);
    hash.update(NUL);
  }
  return { digest: hash.digest('hex'), entries: records.length };
}

async function fingerprintRecord(e: WalkEntry): Promise<Buffer> {
  const perm = Buffer.from((Number(e.st.mode) & 0o7777).toString(8));
  let last = Buffer.alloc(0);
  if (e.type === 'f') last = Buffer.from(await sha256File(e.abs, e.st.size));
  else if (e.type === 'l') last = readlinkSync(e.abs, { encoding: 'buffer' });
  return Buffer.concat([e.rel, TAB, Buffer.from(e.type), TAB, perm, TAB, last]);
}

/**
 * Small files in one synchronous read (a stream or promise per file costs more than the hashing
 * itself — ~10× here); big ones streamed. The caller yields to the event loop every few MiB.
 */
const WHOLE_READ_MAX_BYTES = 1n << 20n;
const YIELD_EVERY_BYTES = 8n << 20n;

async function sha256File(path: Buffer, size: bigint): Promise<string> {
  const hash = createHash('sha256');
  if (size <= WHOLE_READ_MAX_BYTES) return hash.update(readFileSync(path)).digest('hex');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
