import { WspError, type ErrorCode } from '../contract/errors.js';
import { errorFields, type Logger } from '../log.js';
import { systemErrorAsDomain } from '../service/public-error.js';

/**
 * THE one place that maps a domain error code to an HTTP status, and any thrown value to the JSON
 * error body `{ "error": { code, message, details? } }`. Used by the local server, the Lambda
 * handlers (through dispatch) and the client (to give SSE stream errors a status).
 */

const STATUS_BY_CODE: Record<ErrorCode, number> = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  range_not_satisfiable: 416,
  unsupported_media_type: 415,
  too_many_requests: 429,
  backend_unavailable: 503,
  step_failed: 502,
  internal: 500,
};

export interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

export interface ErrorResponse {
  status: number;
  headers: Record<string, string>;
  body: ErrorBody;
}

/** HTTP status for an error code; unknown codes are 500. */
export function statusForCode(code: string): number {
  return (STATUS_BY_CODE as Record<string, number | undefined>)[code] ?? 500;
}

/**
 * Any thrown value → the response to send. Domain errors keep their code, message and details, with
 * the status of their code (StepFailedError: step_failed → 502); everything else (and the domain code
 * `internal`) becomes a bare 500 'internal error' — never its message, stack or details, which may
 * name paths or internals.
 * 5xx errors are logged server-side with the real error (message and name only, as shared/log.ts asks).
 */
export function toErrorResponse(error: unknown, log?: Pick<Logger, 'error' | 'warn'>): ErrorResponse {
  // A filesystem error that escaped a handler: its errno says what, its message would name host paths.
  const system = error instanceof WspError ? undefined : systemErrorAsDomain('request', error);
  if (system !== undefined) return toErrorResponse(system, log);
  if (error instanceof WspError && error.code !== 'internal') {
    const status = statusForCode(error.code);
    const body: ErrorBody = { error: { code: error.code, message: error.message } };
    if (error.details !== undefined) body.error.details = error.details;
    const headers: Record<string, string> = {};
    if (error.code === 'unauthorized') headers['www-authenticate'] = 'Bearer';
    if (status >= 500) log?.error('request failed', { ...errorFields(error), code: error.code, ...causeFields(error) });
    return { status, headers, body };
  }
  log?.error('unhandled error', { ...errorFields(error), ...causeFields(error) });
  return { status: 500, headers: {}, body: { error: { code: 'internal', message: 'internal error' } } };
}

/** The error body for a response we build ourselves (404 unknown route, 405 wrong method). */
export function errorBody(code: string, message: string, details?: unknown): ErrorBody {
  return details === undefined ? { error: { code, message } } : { error: { code, message, details } };
}

function causeFields(error: unknown): Record<string, unknown> {
  const cause = error instanceof Error ? error.cause : undefined;
  if (cause === undefined) return {};
  const fields = errorFields(cause);
  return { cause: fields['error'], causeName: fields['errorName'] };
}
