import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { DispatchRequest } from '../../shared/api/dispatch.js';
import type { ErrorBody } from '../../shared/api/errors.js';

/**
 * API Gateway HTTP API (payload format 2.0) ⇄ the transport-neutral request/response of
 * shared/api/dispatch.ts. The mapping mirrors functions/server/http-server.ts so both answer the same.
 */

/** The event as a DispatchRequest. The raw path and query are used, never API Gateway's decoded maps. */
export function toDispatchRequest(event: APIGatewayProxyEventV2, signal?: AbortSignal): DispatchRequest {
  const rawBody =
    event.body === undefined || event.body === null
      ? undefined
      : Buffer.from(event.body, event.isBase64Encoded ? 'base64' : 'utf8');
  return {
    method: event.requestContext.http.method,
    path: stripStage(event.rawPath, event.requestContext.stage),
    query: Object.fromEntries(new URLSearchParams(event.rawQueryString ?? '')),
    headers: event.headers ?? {},
    rawBody,
    ...(signal ? { signal } : {}),
  };
}

/** A named stage (not `$default`) prefixes rawPath with `/<stage>`; the routes know nothing of it. */
function stripStage(rawPath: string, stage: string | undefined): string {
  if (!stage || stage === '$default') return rawPath;
  const prefix = `/${stage}`;
  if (rawPath === prefix) return '/';
  return rawPath.startsWith(`${prefix}/`) ? rawPath.slice(prefix.length) : rawPath;
}

/** A JSON response with the same headers the local server sends. */
export function jsonResult(
  status: number,
  headers: Record<string, string>,
  body: unknown,
): APIGatewayProxyStructuredResultV2 {
  if (status === 204) return { statusCode: 204, headers: { ...headers, 'cache-control': 'no-store' }, body: '' };
  return {
    statusCode: status,
    headers: { ...headers, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
    body: JSON.stringify(body ?? null),
    isBase64Encoded: false,
  };
}

/** Raw bytes (a file), base64 in the result as API Gateway wants binary answers. */
export function bytesResult(
  status: number,
  headers: Record<string, string>,
  bytes: Buffer,
): APIGatewayProxyStructuredResultV2 {
  return {
    statusCode: status,
    headers: { 'content-type': 'application/octet-stream', ...headers, 'cache-control': 'no-store' },
    body: bytes.toString('base64'),
    isBase64Encoded: true,
  };
}

export function errorResult(
  status: number,
  body: ErrorBody,
  headers: Record<string, string> = {},
): APIGatewayProxyStructuredResultV2 {
  return jsonResult(status, headers, body);
}
