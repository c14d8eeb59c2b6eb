import { readFileSync, readlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { StepFailedError } from '../../../contract/errors.js';
import { walkTreeAt } from './walk-at.js';
import { yieldToLoop } from './walk.js';

/**
 * The secret scan over a host tree: every needle is searched as bytes in file contents, in every
 * path name (files, dirs, symlinks, fifos…) and in symlink targets.
 *
 * Hits are `"<relpath>: needle #<i>"`, i = the needle's index in `needles` (0-based), one per
 * (path, needle), sorted. A hit NEVER carries a needle's value: occurrences of any needle inside
 * the relpath are replaced by `<needle #i>`. Empty needles are ignored (they would match
 * everything). Contents are read in 1 MiB chunks that overlap by (longest needle − 1) bytes, so
 * a needle split across chunks is still found. An unreadable file throws (a scan that skips what
 * it cannot read would report "clean" for the wrong reason).
 */

const CHUNK_BYTES = 1 << 20;
const YIELD_EVERY_BYTES = 8 << 20;

interface Needle {
  index: number;
  value: string;
  bytes: Buffer;
}

export async function scanTree(dir: string, needles: readonly string[]): Promise<string[]> {
  const list: Needle[] = needles
    .map((value, index) => ({ index, value, bytes: Buffer.from(value, 'utf8') }))
    .filter((n) => n.bytes.length > 0);
  if (list.length === 0) return [];

  const hits: string[] = [];
  let bytesSinceYield = 0;
  // fd-relative (any depth; a fifo in the tree is only lstat'ed, never opened).
  await walkTreeAt(dir, {
    visit: async (e) => {
      const found = new Set<number>();
      for (const n of list) if (e.rel.includes(n.bytes)) found.add(n.index);
      if (e.type === 'l') {
        const target = readlinkSync(e.at, { encoding: 'buffer' });
        for (const n of list) if (target.includes(n.bytes)) found.add(n.index);
      } else if (e.type === 'f') {
        for (const i of await scanFile(e.at, e.st.size, list)) found.add(i);
        bytesSinceYield += Number(e.st.size) + 4096;
        if (bytesSinceYield > YIELD_EVERY_BYTES) {
          bytesSinceYield = 0;
          await yieldToLoop();
        }
      }
      const shown = redact(e.rel, list);
      for (const i of [...found].sort((a, b) => a - b)) hits.push(`${shown}: needle #${i}`);
    },
    onChanged: () => {
      throw new StepFailedError('scan', 'the snapshot changed while it was scanned');
    },
  });
  return hits.sort();
}

/** Indexes of the needles found in a file's content (small files in one synchronous read). */
async function scanFile(path: Buffer, size: bigint, needles: readonly Needle[]): Promise<number[]> {
  if (size <= BigInt(CHUNK_BYTES)) {
    const content = readFileSync(path);
    if (content.length <= CHUNK_BYTES) return needles.filter((n) => content.includes(n.bytes)).map((n) => n.index);
  }
  const overlap = Math.max(...needles.map((n) => n.bytes.length)) - 1;
  const pending = new Set(needles);
  const found: number[] = [];
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(overlap + CHUNK_BYTES);
    let kept = 0; // bytes carried over from the previous chunk, at buf[0..kept)
    for (;;) {
      const { bytesRead } = await fh.read(buf, kept, CHUNK_BYTES, null);
      if (bytesRead === 0) break;
      const window = buf.subarray(0, kept + bytesRead);
      for (const n of pending) {
        if (window.includes(n.bytes)) {
          found.push(n.index);
          pending.delete(n);
        }
      }
      if (pending.size === 0) break;
      kept = Math.min(overlap, window.length);
      window.copy(buf, 0, window.length - kept);
    }
  } finally {
    await fh.close();
  }
  return found;
}

/** The relpath for display, with every needle occurrence replaced by its index. */
function redact(rel: Buffer, needles: readonly Needle[]): string {
  let shown = rel.toString('utf8');
  for (const n of needles) shown = shown.split(n.value).join(`<needle #${n.index}>`);
  // Belt and braces: a needle formed across two replacements must not survive either.
  return needles.some((n) => shown.includes(n.value)) ? '<redacted path>' : shown;
}
