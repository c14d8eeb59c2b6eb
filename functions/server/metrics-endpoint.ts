import type { IncomingMessage, ServerResponse } from 'node:http';
import { bearerMatches } from '../../shared/api/auth.js';
import { errorBody, toErrorResponse } from '../../shared/api/errors.js';
import { UnauthorizedError } from '../../shared/contract/errors.js';

/**
 * `GET /metrics` on the local server: the Prometheus text of this process's registry (prometheus.ts),
 * behind the same bearer token as the API (the same constant-time check dispatch uses; 401 in our
 * error shape without it).
 *
 * Served beside the route table, not in it, on purpose: the counters are this process's, not the
 * service's — the route table is what the Lambda API serves too, and there the same counts go to
 * CloudWatch as EMF (a scrape of one Lambda container would show one container's share). It is not an
 * API a controller drives either (no client method, no OpenAPI entry): a Prometheus server scrapes it.
 */

const METRICS_PATH = '/metrics';

export type ScrapeMetrics = () => Promise<{ contentType: string; text: string }>;

/** Answers `/metrics` and returns true, or returns false for any other path (the route table's). */
export async function serveMetrics(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  scrape: ScrapeMetrics,
  authToken: string | undefined,
): Promise<boolean> {
  if (path !== METRICS_PATH) return false;
  if (authToken !== undefined && !bearerMatches(req.headers.authorization, authToken)) {
    const refused = toErrorResponse(new UnauthorizedError());
    sendJson(res, refused.status, refused.headers, refused.body);
    return true;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendJson(res, 405, { allow: 'GET' }, errorBody('method_not_allowed', `${req.method} is not allowed here; use GET`));
    return true;
  }
  const { contentType, text } = await scrape();
  const payload = Buffer.from(text);
  res.writeHead(200, {
    'content-type': contentType,
    'cache-control': 'no-store',
    'content-length': String(payload.length),
  });
  res.end(req.method === 'HEAD' ? undefined : payload);
  return true;
}

function sendJson(res: ServerResponse, status: number, headers: Record<string, string>, body: unknown): void {
  const payload = Buffer.from(JSON.stringify(body));
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': String(payload.length),
  });
  res.end(payload);
}
