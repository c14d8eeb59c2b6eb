import { z } from 'zod';
import { BadRequestError, UnauthorizedError, WspError } from '../contract/errors.js';
import type { Logger } from '../log.js';
import type { WorkspaceService } from '../service/types.js';
import { bearerMatches } from './auth.js';
import { errorBody, toErrorResponse } from './errors.js';
import type { EntryLimits, Route, SseEvent } from './route-types.js';
import { issuesToProblems, type FieldProblem } from './validation.js';

/**
 * Request → route → validated input → one handler call → response data. Transport-neutral: the
 * local server and the Lambda handlers build a DispatchRequest from their own request objects.
 * Every failure becomes our error shape with an honest status; the service is called only when
 * the route, auth and every input field are valid.
 */

/** Default cap on request bodies: 1 MiB. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

export interface DispatchRequest {
  method: string;
  /** URL path, still percent-encoded, without the query string. */
  path: string;
  query: Record<string, string>;
  /** Header names in any case. */
  headers: Record<string, string | string[] | undefined>;
  rawBody: Buffer | undefined;
  /** Aborted when the client goes away (SSE handlers pass it to the service). */
  signal?: AbortSignal;
}

export interface DispatchOptions {
  /** When set, every non-public route needs `Authorization: Bearer <token>`. */
  authToken?: string;
  /** Bodies larger than this are refused with 413 (the server also enforces it while reading). */
  maxBodyBytes?: number;
  /** The same for routes with a raw body (file uploads); default maxBodyBytes. */
  maxRawBodyBytes?: number;
  /** What the entry point's answers can carry (Lambda: 6 MB); default: no limit. */
  limits?: EntryLimits;
  log?: Pick<Logger, 'error' | 'warn'>;
}

export type DispatchResponse =
  | { status: number; headers: Record<string, string>; body: unknown }
  | { status: number; headers: Record<string, string>; stream: AsyncIterable<SseEvent> }
  | { status: number; headers: Record<string, string>; bytes: Buffer };

/** Query schema for routes that declare none: no query parameters at all. */
const NO_QUERY = z.object({}).strict();

export async function dispatch(
  routes: readonly Route[],
  service: WorkspaceService,
  request: DispatchRequest,
  options: DispatchOptions = {},
): Promise<DispatchResponse> {
  const signal = request.signal ?? new AbortController().signal;
  try {
    const found = matchRoute(routes, request.method, request.path);
    if (found.kind === 'not_found') {
      return { status: 404, headers: {}, body: errorBody('not_found', `no route for ${request.path}`) };
    }
    if (found.kind === 'wrong_method') {
      return {
        status: 405,
        headers: { allow: found.allow.join(', ') },
        body: errorBody('method_not_allowed', `${request.method} is not allowed here; use ${found.allow.join(' or ')}`),
      };
    }
    const { route, rawParams } = found;
    checkAuth(route, request.headers, options.authToken);
    const rawBody = route.rawBody ? readRawBody(request, bodyLimit(route, options)) : undefined;
    const body = route.rawBody ? undefined : readBody(route, request, bodyLimit(route, options));
    const input = validate(route, rawParams, request.query, body);
    const result = await route.handler(service, {
      ...input,
      rawBody,
      headers: lowerCaseHeaders(request.headers),
      signal,
      limits: options.limits ?? {},
    });
    const headers = result.headers ?? {};
    if ('stream' in result)
      return { status: result.status, headers, stream: guardStream(result.stream, signal, options.log) };
    if ('bytes' in result) return { status: result.status, headers, bytes: result.bytes };
    return { status: result.status, headers, body: result.body };
  } catch (error) {
    const { status, headers, body } = toErrorResponse(error, options.log);
    return { status, headers, body };
  }
}

/** Every non-public route needs `Authorization: Bearer <authToken>` (when a token is set). */
function checkAuth(route: Route, headers: DispatchRequest['headers'], authToken: string | undefined): void {
  if (authToken === undefined || route.public) return;
  if (!bearerMatches(header(headers, 'authorization'), authToken)) throw new UnauthorizedError();
}

/**
 * The 401 dispatch would answer for `method path` with these headers — same rule, same constant-time
 * check — decided before any body is read, or undefined (a public or unknown route, or the right
 * token: dispatch decides then). A server asks it before buffering a body larger than a JSON one, so a
 * client without the token cannot make it hold a file upload's worth of bytes.
 */
export function unauthorizedAnswer(
  routes: readonly Route[],
  request: Pick<DispatchRequest, 'method' | 'path' | 'headers'>,
  authToken: string | undefined,
): Extract<DispatchResponse, { body: unknown }> | undefined {
  try {
    const found = matchRoute(routes, request.method, request.path);
    if (found.kind === 'found') checkAuth(found.route, request.headers, authToken);
    return undefined;
  } catch (error) {
    // A malformed path is dispatch's 400 to give; only the auth refusal is answered here.
    if (!(error instanceof UnauthorizedError)) return undefined;
    const { status, headers, body } = toErrorResponse(error);
    return { status, headers, body };
  }
}

type Match =
  | { kind: 'found'; route: Route; rawParams: Record<string, string> }
  | { kind: 'wrong_method'; allow: string[] }
  | { kind: 'not_found' };

function matchRoute(routes: readonly Route[], method: string, path: string): Match {
  const segments = splitPath(path);
  const allow: string[] = [];
  for (const route of routes) {
    const params = matchTemplate(route.path, segments);
    if (params === undefined) continue;
    if (route.method === method.toUpperCase()) return { kind: 'found', route, rawParams: params };
    allow.push(route.method);
  }
  return allow.length > 0 ? { kind: 'wrong_method', allow } : { kind: 'not_found' };
}

/** Percent-decoded path segments; a bad escape is bad input (400), not an unknown route. */
function splitPath(path: string): string[] {
  return path
    .split('/')
    .slice(1)
    .map((segment) => {
      try {
        return decodeURIComponent(segment);
      } catch {
        throw new BadRequestError('malformed percent-encoding in the URL path', [
          { path: 'path', message: 'bad escape' },
        ]);
      }
    });
}

function matchTemplate(template: string, segments: string[]): Record<string, string> | undefined {
  const parts = template.split('/').slice(1);
  if (parts.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (const [i, part] of parts.entries()) {
    const segment = segments[i] ?? '';
    const name = /^\{(\w+)\}$/.exec(part)?.[1];
    if (name !== undefined) {
      // An empty segment never matches a parameter (`/workspaces//commands` is no route).
      if (segment === '') return undefined;
      params[name] = segment;
    } else if (part !== segment) {
      return undefined;
    }
  }
  return params;
}

/**
 * The body limit of the route `method path` names (the raw one for upload routes), so a server can cap
 * what it reads before dispatching. Unknown routes get the JSON limit.
 */
export function requestBodyLimit(
  routes: readonly Route[],
  method: string,
  path: string,
  options: Pick<DispatchOptions, 'maxBodyBytes' | 'maxRawBodyBytes'>,
): number {
  let found: Match;
  try {
    found = matchRoute(routes, method, path);
  } catch {
    found = { kind: 'not_found' };
  }
  return found.kind === 'found' ? bodyLimit(found.route, options) : (options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES);
}

function bodyLimit(route: Route, options: Pick<DispatchOptions, 'maxBodyBytes' | 'maxRawBodyBytes'>): number {
  const json = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  return route.rawBody ? (options.maxRawBodyBytes ?? json) : json;
}

/** A raw body (any content type), empty when none was sent. */
function readRawBody(request: DispatchRequest, maxBodyBytes: number): Buffer {
  const raw = request.rawBody ?? Buffer.alloc(0);
  if (raw.length > maxBodyBytes) throw new WspError('payload_too_large', `request body exceeds ${maxBodyBytes} bytes`);
  return raw;
}

function lowerCaseHeaders(headers: DispatchRequest['headers']): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(headers)) out[key.toLowerCase()] = Array.isArray(value) ? value[0] : value;
  return out;
}

/** The JSON body, `{}` for an empty body on a route that takes one, `undefined` for routes without. */
function readBody(route: Route, request: DispatchRequest, maxBodyBytes: number): unknown {
  const raw = request.rawBody;
  if (raw !== undefined && raw.length > maxBodyBytes) {
    throw new WspError('payload_too_large', `request body exceeds ${maxBodyBytes} bytes`);
  }
  if (raw === undefined || raw.length === 0) return route.body ? {} : undefined;
  if (!route.body) throw new BadRequestError(`${route.method} ${route.path} takes no request body`);
  const contentType = header(request.headers, 'content-type') ?? '';
  if (!isJsonContentType(contentType)) {
    throw new WspError('unsupported_media_type', 'request body must be JSON (Content-Type: application/json)');
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    throw new BadRequestError('request body is not valid UTF-8');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // The parser's message quotes the input; say only what is wrong.
    throw new BadRequestError('request body is not valid JSON');
  }
}

function isJsonContentType(value: string): boolean {
  const mediaType = value.split(';')[0]?.trim().toLowerCase() ?? '';
  return mediaType === 'application/json' || /^application\/[\w.+-]+\+json$/.test(mediaType);
}

/** Validates params, query and body together so one 400 names every bad field. */
function validate(route: Route, rawParams: Record<string, string>, rawQuery: Record<string, string>, rawBody: unknown) {
  const problems: FieldProblem[] = [];
  const check = (root: string, schema: z.ZodType | undefined, value: unknown): unknown => {
    if (schema === undefined) return value;
    const result = schema.safeParse(value);
    if (result.success) return result.data;
    problems.push(...issuesToProblems(root, result.error.issues));
    return undefined;
  };
  const params = check('params', route.params, rawParams);
  const query = check('query', route.query ?? NO_QUERY, rawQuery);
  const body = check('body', route.body, rawBody);
  if (problems.length > 0) {
    const fields = problems.map((p) => p.path).join(', ');
    throw new BadRequestError(`invalid request: ${fields}`, problems);
  }
  return { params, query, body };
}

function header(headers: DispatchRequest['headers'], name: string): string | undefined {
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== name) continue;
    return Array.isArray(value) ? value[0] : value;
  }
  return undefined;
}

/**
 * A failure after the 200 is sent cannot change the status: it ends the stream with an `error`
 * event carrying our usual error body (internal errors stay 'internal error'). A client that went
 * away needs no error event.
 */
async function* guardStream(
  stream: AsyncIterable<SseEvent>,
  signal: AbortSignal,
  log: DispatchOptions['log'],
): AsyncIterable<SseEvent> {
  try {
    yield* stream;
  } catch (error) {
    if (signal.aborted) return;
    yield { event: 'error', data: toErrorResponse(error, log).body };
  }
}
