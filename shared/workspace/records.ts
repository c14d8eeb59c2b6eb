import { createHash } from 'node:crypto';
import { StepFailedError } from '../contract/errors.js';

/**
 * The fingerprint's records as data (see ./fingerprint.ts for what a record is). Names are bytes, so a
 * record is held as a latin1 string: one char per byte, compared by `<` exactly as `LC_ALL=C sort -z`
 * compares (unsigned bytes, a prefix first), and written back with Buffer.from(s, 'latin1').
 */

/** The digest of records in this order: sha256 of each record followed by its NUL. */
export function digestOf(sorted: readonly string[]): string {
  const h = createHash('sha256');
  for (const r of sorted) h.update(`${r}\0`, 'latin1');
  return h.digest('hex');
}

/** Sorted bytewise, as the script sorts. */
export function sortRecords(records: string[]): string[] {
  return records.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

export interface RecordsOutput {
  digest: string;
  records: string[];
  /** --paths only: ctime (ns since the epoch) of each listed path that existed, read after hashing. */
  ctimes?: Map<string, bigint>;
}

const TRAILER = /digest ([0-9a-f]{64}) entries (\d+) records (\d+)(?: ctimes (\d+))?\n$/;

/**
 * The --records / --paths output, checked: the sections add up to the output, the records hash to the
 * digest and there are as many as the script counted. Throws StepFailedError otherwise.
 */
export function parseRecordsOutput(out: Buffer): RecordsOutput {
  const tailText = out.subarray(Math.max(0, out.length - 200)).toString('latin1');
  const m = TRAILER.exec(tailText);
  const bad = (why: string): never => {
    throw new StepFailedError('fingerprint', `unexpected fingerprint records output: ${why}`);
  };
  if (!m) return bad('no trailer');
  const recordBytes = Number(m[3]);
  const ctimeBytes = m[4] === undefined ? 0 : Number(m[4]);
  if (recordBytes + ctimeBytes + m[0].length !== out.length) return bad('section sizes');
  const records = splitNul(out.subarray(0, recordBytes).toString('latin1'));
  if (records === undefined || records.length !== Number(m[2])) return bad('record count');
  const digest = m[1] as string;
  if (digestOf(records) !== digest) return bad('digest of the records');
  if (m[4] === undefined) return { digest, records };
  const ctimes = new Map<string, bigint>();
  for (const entry of splitNul(out.subarray(recordBytes, recordBytes + ctimeBytes).toString('latin1')) ??
    bad('ctimes')) {
    const tab = entry.indexOf('\t');
    const ns = tab > 0 ? parseCtime(entry.slice(0, tab)) : undefined;
    if (ns === undefined) return bad('ctime');
    ctimes.set(entry.slice(tab + 1), ns);
  }
  return { digest, records, ctimes };
}

/** NUL-terminated items (undefined when the last one is not terminated). */
function splitNul(s: string): string[] | undefined {
  if (s.length === 0) return [];
  if (!s.endsWith('\0')) return undefined;
  return s.slice(0, -1).split('\0');
}

/** `find %C@` (seconds, a dot, fraction) in nanoseconds. */
function parseCtime(text: string): bigint | undefined {
  const m = /^(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) return undefined;
  return BigInt(m[1] as string) * 1_000_000_000n + BigInt(`${m[2] ?? ''}000000000`.slice(0, 9));
}

/**
 * The relpath of a record, or undefined when the bytes allow more than one reading (names and symlink
 * targets may hold TABs: `a<TAB>l<TAB>777<TAB>b` could be a name) or none. A caller that cannot tell
 * a record's path must not derive anything from it.
 */
export function recordPath(record: string): string | undefined {
  let found: string | undefined;
  for (let i = record.indexOf('\t'); i > 0; i = record.indexOf('\t', i + 1)) {
    if (!validRest(record.slice(i + 1))) continue;
    if (found !== undefined) return undefined;
    found = record.slice(0, i);
  }
  return found;
}

const REST = /^([a-zA-Z?])\t([0-7]+)\t([\s\S]*)$/;

function validRest(rest: string): boolean {
  const m = REST.exec(rest);
  if (!m) return false;
  const [, type, , tail] = m;
  if (type === 'f') return /^[0-9a-f]{64}$/.test(tail as string);
  if (type === 'l') return true;
  return tail === '';
}

/** One entry of the --stat output. */
export interface StatEntry {
  path: string;
  type: string;
  perm: string;
  size: number;
  inode: string;
  /** Nanoseconds since the epoch. */
  ctime: bigint;
  /** The symlink target ('' for anything else), as find's %l. */
  target: string;
}

const STAT_TRAILER = /stat (\d+) mark (\d+(?:\.\d+)?)\n$/;
const STAT_HEAD = /^([a-zA-Z?])\t([0-7]+)\t(\d+)\t(\d+)\t(\d+(?:\.\d+)?)\t/;

/** The --stat output, checked (StepFailedError when it does not add up). */
export function parseStatOutput(out: Buffer): { mark: bigint; entries: StatEntry[] } {
  const bad = (why: string): never => {
    throw new StepFailedError('fingerprint', `unexpected fingerprint stat output: ${why}`);
  };
  const m = STAT_TRAILER.exec(out.subarray(Math.max(0, out.length - 100)).toString('latin1'));
  if (!m || Number(m[1]) + m[0].length !== out.length) return bad('no trailer');
  const fields = splitNul(out.subarray(0, Number(m[1])).toString('latin1')) ?? bad('not NUL-terminated');
  if (fields.length % 2 !== 0) return bad('odd field count');
  const entries: StatEntry[] = [];
  for (let i = 0; i < fields.length; i += 2) {
    const head = STAT_HEAD.exec(fields[i] as string) ?? bad('entry');
    const path = (fields[i] as string).slice(head[0].length);
    if (path === '') return bad('empty name');
    entries.push({
      path,
      type: head[1] as string,
      perm: head[2] as string,
      size: Number(head[3]),
      inode: head[4] as string,
      ctime: parseCtime(head[5] as string) ?? bad('ctime'),
      target: fields[i + 1] as string,
    });
  }
  return { mark: parseCtime(m[2] as string) ?? bad('mark'), entries };
}
