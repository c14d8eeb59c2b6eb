import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  DEFAULT_MAX_BODY_BYTES,
  dispatch,
  requestBodyLimit,
  unauthorizedAnswer,
  type DispatchResponse,
} from '../../shared/api/dispatch.js';
import { errorBody } from '../../shared/api/errors.js';
import type { Route } from '../../shared/api/route-types.js';
import { routes as defaultRoutes } from '../../shared/api/routes.js';
import { createLogger, errorFields, type Logger } from '../../shared/log.js';
import type { WorkspaceService } from '../../shared/service/types.js';
import { serveAttach } from './attach.js';
import { serveMetrics, type ScrapeMetrics } from './metrics-endpoint.js';
import { readRequestBody } from './read-body.js';
import { writeSseStream } from './sse-writer.js';

/**
 * The local HTTP server: node `http` in front of the shared route table (the same one the Lambda
 * handlers use). Reads bodies with a size cap (a body over the JSON cap only once the token is
 * checked), leaves auth/validation/error mapping to dispatch(), writes JSON or SSE, and logs one
 * access line per request (method, path, status, ms — never headers, query strings or bodies).
 */

export interface HttpServerOptions {
  service: WorkspaceService;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: any free port (read it from `url`). */
  port?: number;
  /** Bearer token every route but /healthz requires; unset → no auth (tests, auth.disabled). */
  authToken?: string;
  /** Default: JSON lines on stderr. */
  log?: Logger;
  /** Default 1 MiB. */
  maxBodyBytes?: number;
  /** Raw bodies (file uploads, config files.maxBytes); default maxBodyBytes. */
  maxRawBodyBytes?: number;
  /** SSE heartbeat comment interval; default 15 000 ms. */
  heartbeatMs?: number;
  routes?: readonly Route[];
  /** The process's metrics, served at `GET /metrics` behind the token (metrics-endpoint.ts); unset: no /metrics. */
  metrics?: ScrapeMetrics;
}

export interface StartedHttpServer {
  /** `http://host:port`, no trailing slash. */
  url: string;
  port: number;
  /** Ends open SSE streams, closes every connection and stops listening. Idempotent. */
  close(): Promise<void>;
}

export async function startHttpServer(options: HttpServerOptions): Promise<StartedHttpServer> {
  const host = options.host ?? '127.0.0.1';
  const log = options.log ?? createLogger({ component: 'http' });
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const limits = { maxBodyBytes, maxRawBodyBytes: options.maxRawBodyBytes ?? maxBodyBytes };
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const routes = options.routes ?? defaultRoutes;
  /** One controller per in-flight request, so close() can end SSE streams. */
  const inFlight = new Set<AbortController>();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const startedAt = performance.now();
    const controller = new AbortController();
    inFlight.add(controller);
    const [rawPath = '/', rawQuery = ''] = splitUrl(req.url ?? '/');
    res.on('close', () => {
      inFlight.delete(controller);
      controller.abort();
      const ms = Math.round(performance.now() - startedAt);
      log.info('request', {
        method: req.method,
        path: rawPath,
        status: res.statusCode,
        ms,
        ...(res.writableFinished ? {} : { aborted: true }),
      });
    });

    if (options.metrics && (await serveMetrics(req, res, rawPath, options.metrics, options.authToken))) return;

    // The route decides the cap (a file upload may be larger than a JSON body) before a byte is read.
    const cap = requestBodyLimit(routes, req.method ?? 'GET', rawPath, limits);
    // A body over the JSON cap (a file upload, up to files.maxBytes) is read only for a client with the
    // token: anyone else gets dispatch's 401 now, its body unread and the connection closed.
    if (cap > limits.maxBodyBytes) {
      const refused = unauthorizedAnswer(
        routes,
        { method: req.method ?? 'GET', path: rawPath, headers: req.headers },
        options.authToken,
      );
      if (refused !== undefined) {
        sendJson(res, { ...refused, headers: { ...refused.headers, connection: 'close' } });
        return;
      }
    }
    const read = await readRequestBody(req, cap);
    if (read.kind === 'too_large') {
      // The unread rest of the body is discarded; close the connection rather than reuse it.
      sendJson(res, {
        status: 413,
        headers: { connection: 'close' },
        body: errorBody('payload_too_large', `request body exceeds ${cap} bytes`),
      });
      return;
    }
    const response = await dispatch(
      routes,
      options.service,
      {
        method: req.method ?? 'GET',
        path: rawPath,
        query: Object.fromEntries(new URLSearchParams(rawQuery)),
        headers: req.headers,
        rawBody: read.body,
        signal: controller.signal,
      },
      { authToken: options.authToken, ...limits, log },
    );
    if ('stream' in response) await writeSseStream(res, response, controller.signal, heartbeatMs);
    else if ('bytes' in response) sendBytes(res, response);
    else sendJson(res, response);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      // Only transport failures get here (dispatch maps every handler error itself).
      log.error('request handling failed', errorFields(error));
      if (!res.headersSent) sendJson(res, { status: 500, headers: {}, body: errorBody('internal', 'internal error') });
      else res.destroy();
    });
  });

  const closeAttached = serveAttach(server, { service: options.service, authToken: options.authToken, log });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= new Promise<void>((resolve, reject) => {
      for (const controller of inFlight) controller.abort();
      closeAttached();
      server.close((error) => (error ? reject(error) : resolve()));
      server.closeAllConnections();
    }));

  return { url, port, close };
}

/** `/a/b?x=1` → ['/a/b', 'x=1'], without URL normalisation (`//x` stays a path, not a host). */
function splitUrl(url: string): [string, string] {
  const q = url.indexOf('?');
  return q === -1 ? [url, ''] : [url.slice(0, q), url.slice(q + 1)];
}

function sendBytes(res: ServerResponse, response: Extract<DispatchResponse, { bytes: Buffer }>): void {
  res.writeHead(response.status, {
    'content-type': 'application/octet-stream',
    ...response.headers,
    'cache-control': 'no-store',
    'content-length': String(response.bytes.length),
  });
  res.end(response.bytes);
}

function sendJson(res: ServerResponse, response: Extract<DispatchResponse, { body: unknown }>): void {
  if (response.status === 204) {
    // No Content: no body, so no content type either.
    res.writeHead(204, { ...response.headers, 'cache-control': 'no-store' });
    res.end();
    return;
  }
  const payload = Buffer.from(JSON.stringify(response.body ?? null));
  res.writeHead(response.status, {
    ...response.headers,
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': String(payload.length),
  });
  res.end(payload);
}
