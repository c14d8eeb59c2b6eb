/**
 * A minimal text/event-stream parser (the WHATWG framing: `event:`, `data:` (joined with \n),
 * comments starting with ':', blank line ends an event; \n, \r\n or \r line ends). Cancels the
 * body when the consumer stops early, which closes the connection.
 */
export interface SseMessage {
  event: string;
  data: string;
}

export async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let event = '';
  let data: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      for (;;) {
        const end = lineEnd(buffer, done);
        if (end === undefined) break;
        const line = buffer.slice(0, end.index);
        buffer = buffer.slice(end.index + end.length);
        if (line === '') {
          if (data.length > 0) yield { event: event || 'message', data: data.join('\n') };
          event = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
      if (done) return;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/** Where the first complete line ends. A trailing lone '\r' waits for the next chunk (it may be '\r\n'). */
function lineEnd(buffer: string, final: boolean): { index: number; length: number } | undefined {
  const match = /\r\n|\n|\r/.exec(buffer);
  if (!match) return undefined;
  if (match[0] === '\r' && match.index === buffer.length - 1 && !final) return undefined;
  return { index: match.index, length: match[0].length };
}
