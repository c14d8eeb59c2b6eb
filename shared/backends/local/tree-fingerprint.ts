import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readlink } from 'node:fs/promises';
import type { WalkEntry } from './tree-walk.js';
import { mapLimit, walkTree } from './tree-walk.js';

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
  const records = await mapLimit(entries, 8, fingerprintRecord);
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
  if (e.type === 'f') last = Buffer.from(await sha256File(e.abs));
  else if (e.type === 'l') last = await readlink(e.abs, { encoding: 'buffer' });
  return Buffer.concat([e.rel, TAB, Buffer.from(e.type), TAB, perm, TAB, last]);
}

async function sha256File(path: Buffer): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
