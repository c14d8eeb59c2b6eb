import { randomBytes } from 'node:crypto';
import middy from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { dispatch, type DispatchRequest } from '../../shared/api/dispatch.js';
import { errorBody } from '../../shared/api/errors.js';
import { routes } from '../../shared/api/routes.js';
import { authorizationMatches } from './api-keys.js';
import { bytesResult, errorResult, jsonResult, toDispatchRequest } from './http-event.js';
import { inInvocation } from './invocation.js';
import { LAMBDA_LIMITS, LAMBDA_MAX_BODY_BYTES, LAMBDA_PAYLOAD_BYTES } from './limits.js';
import { containerOr503, httpErrorShape } from './middleware.js';
import { lambdaLogger, observed } from './powertools.js';
import { settleWrites } from './settle-writes.js';
import { powertoolsLog } from './powertools-log.js';

/**
 * Every HTTP route of the API (HTTP API, payload 2.0) through the one route table and dispatch()
 * that the local server uses: same validation, same error mapping, same statuses. Request bodies
 * are parsed by dispatch (malformed JSON → our 400), never by a middy body parser (which answers 415).
 *
 * Payloads are ≤ 6 MB each way (limits.ts): bodies over 2.5 MiB get 413, and an answer with command
 * output carries as much of it as fits (nextOffset says where to read on).
 *
 * Streaming (SSE) routes cannot stream through API Gateway + a buffered Lambda: they answer 501 with
 * the GET to poll instead (after dispatch has checked auth and that the workspace/command exists).
 */

const log = powertoolsLog(lambdaLogger);

/**
 * When bearer-key hashes are configured, a request whose key does not match any of them is
 * dispatched with this random, never-revealed token as the expected one: dispatch then refuses it
 * with its own 401 exactly where the local server would (after route matching, never on /healthz).
 */
const UNMATCHABLE_TOKEN = randomBytes(32).toString('base64url');

export const handler = middy<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2>()
  // Logs carry API Gateway's request id as correlation_id: the id the caller's access log has too.
  .use(observed<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2>((event) => event.requestContext?.requestId))
  .use(httpErrorShape(log))
  .handler((event, context, options) => inInvocation(context, () => serve(event, options?.signal)));

async function serve(
  event: APIGatewayProxyEventV2,
  signal: AbortSignal | undefined,
): Promise<APIGatewayProxyStructuredResultV2> {
  const request = toDispatchRequest(event, signal);
  const container = await containerOr503(log);
  const hashes = container.settings.apiKeyHashes;
  const keyOk = hashes.length === 0 || authorizationMatches(header(request, 'authorization'), hashes);
  const response = await dispatch(routes, container.service, request, {
    maxBodyBytes: Math.min(container.deps.config.listen.maxBodyBytes, LAMBDA_MAX_BODY_BYTES),
    maxRawBodyBytes: Math.min(container.deps.config.files.maxBytes, LAMBDA_MAX_BODY_BYTES),
    limits: LAMBDA_LIMITS,
    log,
    ...(keyOk ? {} : { authToken: UNMATCHABLE_TOKEN }),
  });
  // A command end this request saw is written (and its command.finished sent) before the container freezes.
  await settleWrites(container.service, log);
  log.info('request', {
    method: request.method,
    path: request.path,
    status: 'stream' in response ? 501 : response.status,
  });
  if ('stream' in response) return streamingUnavailable(request.path);
  if ('bytes' in response)
    return withinPayloadLimit(bytesResult(response.status, response.headers, response.bytes), request);
  return withinPayloadLimit(jsonResult(response.status, response.headers, response.body), request);
}

/**
 * The last guard of Lambda's 6 MB: an answer the route could not fit (a list of many commands with long
 * argv, a changes view with large diffs) becomes a clear 503 naming its size, instead of Lambda's own
 * failure (API Gateway's opaque 502). Command output is fitted before this (answer-fit.ts).
 */
function withinPayloadLimit(
  result: APIGatewayProxyStructuredResultV2,
  request: DispatchRequest,
): APIGatewayProxyStructuredResultV2 {
  const bytes = Buffer.byteLength(JSON.stringify(result));
  if (bytes <= LAMBDA_PAYLOAD_BYTES) return result;
  log.warn('answer over the Lambda payload limit', { method: request.method, path: request.path, bytes });
  return errorResult(
    503,
    errorBody(
      'backend_unavailable',
      `the answer (${bytes} bytes) exceeds the Lambda API's 6 MB payload limit; commands can be read one by one (GET …/commands/{cid}), anything else needs the local server`,
    ),
  );
}

/**
 * `/workspaces/x/events` → 501 naming `GET /workspaces/x` (and `?waitMs=` for commands and operations) to
 * poll instead; a workspace's route also answers its webhook-event list as JSON, which the Lambda API serves.
 */
function streamingUnavailable(path: string): APIGatewayProxyStructuredResultV2 {
  const target = path.replace(/\/events$/, '');
  const longPoll = target.includes('/commands/') || target.includes('/operations/');
  const poll = longPoll ? `GET ${target}?waitMs=20000` : `GET ${target}`;
  const hooks = longPoll ? '' : `; with Accept: application/json, GET ${path} lists the workspace's webhook events`;
  return errorResult(
    501,
    errorBody('not_implemented', `streaming is not available on the Lambda API; poll ${poll}${hooks}`),
  );
}

function header(request: DispatchRequest, name: string): string | undefined {
  for (const [key, value] of Object.entries(request.headers)) {
    if (key.toLowerCase() === name) return Array.isArray(value) ? value[0] : value;
  }
  return undefined;
}
