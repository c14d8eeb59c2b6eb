import type { CommandView, StreamView, WorkspaceView } from '../contract/views.js';
import type { OutputChunk } from '../contract/backend.js';
import type { CommandRecord, StreamInfo, WorkspaceRecord } from '../contract/workspace.js';

/** What an API caller sees of a workspace record (no owner, lease or backend handle). */
export function workspaceView(r: WorkspaceRecord): WorkspaceView {
  return {
    id: r.id,
    status: r.status,
    plan: r.plan as unknown as WorkspaceView['plan'],
    repos: r.repos,
    ...(r.cache ? { cache: r.cache } : {}),
    ...(r.baselineFingerprint ? { baselineFingerprint: r.baselineFingerprint } : {}),
    labels: r.labels,
    ...(r.failure ? { failure: r.failure } : {}),
    warnings: r.warnings,
    steps: r.steps,
    ...(r.setupCommandId ? { setupCommandId: r.setupCommandId } : {}),
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    ...(r.expiresAt !== undefined ? { expiresAt: r.expiresAt } : {}),
    ...(r.fromSnapshot !== undefined ? { fromSnapshot: r.fromSnapshot } : {}),
    ...(r.forkedFrom !== undefined ? { forkedFrom: r.forkedFrom } : {}),
    // Never the secret: it signs deliveries and is never answered.
    ...(r.webhook !== undefined ? { webhook: { url: r.webhook.url, events: r.webhook.events } } : {}),
  };
}

export function commandView(r: CommandRecord, stdout: StreamView, stderr: StreamView): CommandView {
  return {
    id: r.id,
    workspaceId: r.workspaceId,
    state: r.state,
    exitCode: r.exitCode,
    signal: r.signal,
    ...(r.reason !== undefined ? { reason: r.reason } : {}),
    argv: r.argv,
    cwd: r.cwd,
    stdout,
    stderr,
    startedAt: r.startedAt,
    ...(r.endedAt !== undefined ? { endedAt: r.endedAt } : {}),
    ...(r.durationMs !== undefined ? { durationMs: r.durationMs } : {}),
  };
}

/**
 * Output bytes → a stream view. UTF-8 text stays text; a chunk cut inside a multi-byte character gives
 * back the partial tail (nextOffset before it) so the next read starts on a boundary; anything else
 * that is not valid UTF-8 is sent as base64.
 */
export function streamView(chunk: OutputChunk, offset: number, info: StreamInfo): StreamView {
  let data = chunk.data;
  let nextOffset = chunk.nextOffset;
  const cut = incompleteUtf8Tail(data);
  if (cut > 0 && cut < data.length) {
    data = data.subarray(0, data.length - cut);
    nextOffset -= cut;
  }
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(data);
    return { data: text, encoding: 'utf8', offset, nextOffset, bytes: info.bytes, truncated: info.truncated };
  } catch {
    return {
      data: chunk.data.toString('base64'),
      encoding: 'base64',
      offset,
      nextOffset: chunk.nextOffset,
      bytes: info.bytes,
      truncated: info.truncated,
    };
  }
}

/** Bytes at the end of `buf` that start a UTF-8 sequence not completed within `buf` (0–3). */
function incompleteUtf8Tail(buf: Buffer): number {
  for (let back = 1; back <= Math.min(3, buf.length); back++) {
    const byte = buf[buf.length - back]!;
    if ((byte & 0xc0) === 0x80) continue; // continuation byte: keep looking for the lead byte
    const need = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}
