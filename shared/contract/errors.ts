/**
 * Domain errors. Every error the service raises on purpose is one of these; the HTTP layer maps
 * `code` to a status in exactly one place (shared/api/errors.ts). Each keeps its `cause`.
 */
export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'payload_too_large'
  /** A `Range` outside the file (HTTP 416; `details.size` is the file's size). */
  | 'range_not_satisfiable'
  | 'unsupported_media_type'
  /** A per-workspace or provider-wide cap (open event streams) is reached; retry later. */
  | 'too_many_requests'
  | 'backend_unavailable'
  /** A step inside the workspace or against an upstream (clone, fetch, setup) failed; the message says which. */
  | 'step_failed'
  | 'internal';

export class WspError extends Error {
  readonly code: ErrorCode;
  readonly details?: unknown;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WspError';
    this.code = code;
    this.details = options?.details;
  }
}

/** Bad input: a request body, path parameter, query or config field. `details` lists the fields. */
export class BadRequestError extends WspError {
  constructor(message: string, details?: unknown, cause?: unknown) {
    super('bad_request', message, { details, cause });
    this.name = 'BadRequestError';
  }
}

export class NotFoundError extends WspError {
  constructor(what: string, id: string) {
    super('not_found', `${what} '${id}' not found`);
    this.name = 'NotFoundError';
  }
}

/** A stale or concurrent writer lost a conditional write, or the resource is in the wrong status. */
export class ConflictError extends WspError {
  constructor(message: string, options?: { cause?: unknown; details?: unknown }) {
    super('conflict', message, options);
    this.name = 'ConflictError';
  }
}

export class UnauthorizedError extends WspError {
  constructor(message = 'missing or invalid bearer token') {
    super('unauthorized', message);
    this.name = 'UnauthorizedError';
  }
}

export class TooManyRequestsError extends WspError {
  constructor(message: string) {
    super('too_many_requests', message);
    this.name = 'TooManyRequestsError';
  }
}

export class BackendUnavailableError extends WspError {
  constructor(message: string, cause?: unknown) {
    super('backend_unavailable', message, { cause });
    this.name = 'BackendUnavailableError';
  }
}

/** An internal step (clone, setup, fetch) failed; carries the step's result for the record. */
export class StepFailedError extends WspError {
  readonly step: string;
  readonly result?: unknown;
  constructor(step: string, message: string, result?: unknown) {
    super('step_failed', `${step} failed: ${message}`, { details: result });
    this.name = 'StepFailedError';
    this.step = step;
    this.result = result;
  }
}
