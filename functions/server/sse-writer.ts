import type { ServerResponse } from 'node:http';
import type { SseEvent } from '../../shared/api/route-types.js';
import { formatSseEvent, SSE_HEADERS, SSE_HEARTBEAT } from '../../shared/api/sse.js';

/**
 * Writes an SSE stream to `res` until the stream ends or `signal` aborts (the client went away or
 * the server is closing). Sends a heartbeat comment every `heartbeatMs`. The next event is raced
 * against the abort, so a source that is slow to notice the abort cannot pin the response open.
 */
export async function writeSseStream(
  res: ServerResponse,
  response: { status: number; headers: Record<string, string>; stream: AsyncIterable<SseEvent> },
  signal: AbortSignal,
  heartbeatMs: number,
): Promise<void> {
  res.writeHead(response.status, { ...response.headers, ...SSE_HEADERS });
  // A first comment flushes the headers, so the client sees the 200 before the first event.
  res.write(': stream open\n\n');
  const heartbeat = setInterval(() => {
    if (!res.destroyed && !res.writableEnded) res.write(SSE_HEARTBEAT);
  }, heartbeatMs);
  const aborted = new Promise<'aborted'>((resolve) => {
    if (signal.aborted) resolve('aborted');
    else signal.addEventListener('abort', () => resolve('aborted'), { once: true });
  });
  const iterator = response.stream[Symbol.asyncIterator]();
  try {
    for (;;) {
      const pending = iterator.next();
      // If the abort wins the race, a later rejection of `pending` must not go unhandled.
      pending.catch(() => {});
      const next = await Promise.race([pending, aborted]);
      if (next === 'aborted') {
        // Not awaited: a generator busy in an await only returns once that settles.
        void iterator.return?.()?.catch(() => {});
        break;
      }
      if (next.done) break;
      if (!res.write(formatSseEvent(next.value))) {
        const drained = await Promise.race([
          new Promise<'drained'>((resolve) => res.once('drain', () => resolve('drained'))),
          aborted,
        ]);
        if (drained === 'aborted') {
          void iterator.return?.()?.catch(() => {});
          break;
        }
      }
    }
  } finally {
    clearInterval(heartbeat);
    if (!res.writableEnded && !res.destroyed) res.end();
  }
}
