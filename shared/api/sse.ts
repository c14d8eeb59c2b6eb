import type { SseEvent } from './route-types.js';

/**
 * Server-Sent Events wire format (text/event-stream). JSON.stringify never emits a raw newline, so
 * `data:` is always one line; an event name with a newline would break framing and is refused.
 */
export function formatSseEvent(event: SseEvent): string {
  if (/[\r\n]/.test(event.event)) throw new Error('SSE event name must be one line');
  return `event: ${event.event}\ndata: ${JSON.stringify(event.data)}\n\n`;
}

/** A comment line: ignored by clients, keeps proxies and idle timers from closing the stream. */
export const SSE_HEARTBEAT = ': heartbeat\n\n';

export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  connection: 'keep-alive',
  // Tells nginx-style proxies not to buffer the stream.
  'x-accel-buffering': 'no',
};
