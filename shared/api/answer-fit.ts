import type { StreamView } from '../contract/views.js';

/**
 * How big one answer may get on an entry point whose transport has a hard payload limit (the Lambda:
 * 6 MB, its JSON answer travelling as a string inside the function's result JSON). A command view over
 * it gets its output windows shortened — as if `limit` had been smaller: `nextOffset` says where the
 * next read starts, `bytes` and `truncated` stay as they are. Nothing else of an answer is cut: what
 * echoes a request (argv, cwd) is kept small by the entry point's request limit.
 */
export interface AnswerLimit {
  /** Most bytes of the answer as the transport sends it. */
  maxBytes: number;
  /** 1: the answer's JSON is sent as is; 2: it is itself a JSON string inside another JSON (Lambda). */
  jsonDepth: 1 | 2;
}

/** Escapes `s` as JSON string content, `depth` times. */
function escaped(s: string, depth: number): string {
  let t = s;
  for (let i = 0; i < depth; i++) t = JSON.stringify(t).slice(1, -1);
  return t;
}

const costMemo = [new Map<number, number>(), new Map<number, number>(), new Map<number, number>()];

/** Bytes one code point takes in a JSON string after `depth` rounds of escaping. */
function pointCost(cp: number, depth: number): number {
  // Above ASCII only lone surrogates are escaped (JSON.stringify); everything else is its UTF-8.
  if (cp >= 0x80 && (cp < 0xd800 || cp > 0xdfff)) return cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  const memo = costMemo[depth]!;
  let cost = memo.get(cp);
  if (cost === undefined) {
    cost = Buffer.byteLength(escaped(String.fromCharCode(cp), depth));
    memo.set(cp, cost);
  }
  return cost;
}

/** Bytes of `body` as sent: its JSON, `depth - 1` more times as a JSON string (quotes included). */
function wireBytes(body: unknown, depth: number): number {
  let t = JSON.stringify(body);
  for (let i = 1; i < depth; i++) t = JSON.stringify(t);
  return Buffer.byteLength(t);
}

/** What a stream's data adds to the answer (base64 is never escaped). */
function dataCost(view: StreamView, depth: number): number {
  if (view.encoding === 'base64') return view.data.length;
  let cost = 0;
  for (const ch of view.data) cost += pointCost(ch.codePointAt(0)!, depth);
  return cost;
}

/** The longest start of the stream's data that costs at most `room`, with `nextOffset` after it. */
function cut(view: StreamView, room: number, depth: number): StreamView {
  if (view.encoding === 'base64') {
    const chars = Math.min(view.data.length, Math.floor(Math.max(0, room) / 4) * 4);
    if (chars === view.data.length) return view;
    return { ...view, data: view.data.slice(0, chars), nextOffset: view.offset + (chars / 4) * 3 };
  }
  let used = 0;
  let end = 0;
  for (const ch of view.data) {
    const cost = pointCost(ch.codePointAt(0)!, depth);
    if (used + cost > room) break;
    used += cost;
    end += ch.length;
  }
  if (end === view.data.length) return view;
  const data = view.data.slice(0, end);
  return { ...view, data, nextOffset: view.offset + Buffer.byteLength(data) };
}

/** `view` as it fits `limit` (unchanged when it fits or there is no limit); the room is shared fairly. */
export function fitCommandView<V extends { stdout: StreamView; stderr: StreamView }>(
  view: V,
  limit: AnswerLimit | undefined,
): V {
  if (limit === undefined || (view.stdout.data === '' && view.stderr.data === '')) return view;
  const depth = limit.jsonDepth;
  const skeleton = { ...view, stdout: { ...view.stdout, data: '' }, stderr: { ...view.stderr, data: '' } };
  const room = Math.max(0, limit.maxBytes - wireBytes(skeleton, depth));
  const out = dataCost(view.stdout, depth);
  const err = dataCost(view.stderr, depth);
  if (out + err <= room) return view;
  const half = Math.floor(room / 2);
  const outRoom = err <= half ? room - err : Math.min(out, half);
  const errRoom = room - Math.min(out, outRoom);
  return { ...view, stdout: cut(view.stdout, outRoom, depth), stderr: cut(view.stderr, errRoom, depth) };
}
