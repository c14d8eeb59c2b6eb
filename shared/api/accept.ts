/**
 * Content negotiation for the one route that answers two ways (GET /workspaces/{id}/events: SSE by
 * default, JSON when asked): true when `accept` gives `application/json` a higher quality than
 * `text/event-stream`. Wildcards count for both (`*\/*` alone keeps the default); no header → false.
 */
export function prefersJson(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  let json = 0;
  let sse = 0;
  for (const part of accept.split(',')) {
    const [range = '', ...params] = part.split(';').map((p) => p.trim().toLowerCase());
    const qParam = params.find((p) => p.startsWith('q='));
    const q = qParam === undefined ? 1 : Number(qParam.slice(2));
    if (!Number.isFinite(q)) continue;
    if (range === 'application/json' || range === 'application/*' || range === '*/*') json = Math.max(json, q);
    if (range === 'text/event-stream' || range === 'text/*' || range === '*/*') sse = Math.max(sse, q);
  }
  return json > sse;
}
