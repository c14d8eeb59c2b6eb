import type { Readable } from 'node:stream';
import tar from 'tar-stream';

/**
 * The secret scan of a `docker save` stream: every layer tarball is opened and every file's name
 * and content searched for every needle; the other members (image config with Env, labels and
 * history; manifest) are searched too. Hits are "<layer>:<path>: needle #<i>" — never the needle.
 * Content is streamed: a needle split across two chunks is still found (a tail is carried over).
 */

type Entry = Readable & { header: { name: string; type?: string | null; linkname?: string | null } };

/** Search one stream for the needles; returns the indexes found. */
async function searchStream(stream: AsyncIterable<Buffer>, needles: readonly Buffer[]): Promise<Set<number>> {
  const found = new Set<number>();
  const keep = Math.max(0, ...needles.map((n) => n.length)) - 1;
  let carry = Buffer.alloc(0);
  for await (const chunk of stream) {
    // The chunk itself, plus only the seam with the previous chunk (no copy of whole chunks).
    const seam = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, keep)]) : undefined;
    needles.forEach((n, i) => {
      if (n.length > 0 && !found.has(i) && (chunk.includes(n) || seam?.includes(n))) found.add(i);
    });
    if (keep > 0) {
      const joined = chunk.length >= keep ? chunk : Buffer.concat([carry, chunk]);
      carry = Buffer.from(joined.subarray(Math.max(0, joined.length - keep)));
    }
  }
  return found;
}

function report(hits: string[], where: string, found: Iterable<number>): void {
  for (const i of found) hits.push(`${where}: needle #${i}`);
}

function nameHits(name: string, needles: readonly string[]): number[] {
  return needles.flatMap((n, i) => (n.length > 0 && name.includes(n) ? [i] : []));
}

/** A path for the report with every needle in it masked (a hit never repeats the secret). */
function redact(name: string, needles: readonly string[]): string {
  return needles.reduce((s, n) => (n.length > 0 ? s.split(n).join('***') : s), name);
}

/** Every file of one layer tar: names (and link targets) and contents. */
async function scanLayerEntries(
  layer: Readable,
  needles: readonly Buffer[],
  texts: readonly string[],
  label: string,
): Promise<string[]> {
  const hits: string[] = [];
  const inner = tar.extract();
  layer.pipe(inner);
  for await (const file of inner as AsyncIterable<Entry>) {
    const where = `${label}:/${redact(file.header.name.replace(/^\.?\//, ''), texts)}`;
    report(hits, `${where} (name)`, nameHits(`${file.header.name}\n${file.header.linkname ?? ''}`, texts));
    report(hits, where, await searchStream(file, needles));
  }
  return hits;
}

/** The secret scan of a single layer tar (uncompressed), e.g. the one a Fargate cache image appends. Hits are "<label>:/<path>: needle #<i>". */
export async function scanLayerTar(
  stream: NodeJS.ReadableStream,
  needleStrings: readonly string[],
  label: string,
): Promise<string[]> {
  if (needleStrings.every((n) => n.length === 0)) {
    stream.resume();
    return [];
  }
  return scanLayerEntries(
    stream as Readable,
    needleStrings.map((n) => Buffer.from(n)),
    needleStrings,
    label,
  );
}

export async function scanImageTar(stream: NodeJS.ReadableStream, needleStrings: readonly string[]): Promise<string[]> {
  // Indexes are the caller's; an empty needle never matches.
  const needles = needleStrings.map((n) => Buffer.from(n));
  const texts = [...needleStrings];
  const hits: string[] = [];
  if (needles.every((n) => n.length === 0)) {
    stream.resume();
    return hits;
  }
  const outer = tar.extract();
  (stream as Readable).pipe(outer);
  for await (const member of outer as AsyncIterable<Entry>) {
    const memberName = member.header.name;
    if (memberName.endsWith('.tar')) {
      // A layer: "<id>/layer.tar" (docker save v1.2 format).
      hits.push(...(await scanLayerEntries(member, needles, texts, memberName.split('/')[0]!.slice(0, 12))));
    } else {
      const where = `image:${redact(memberName, texts)}`;
      report(hits, `${where} (name)`, nameHits(memberName, texts));
      report(hits, where, await searchStream(member, needles));
    }
  }
  return hits;
}
