/**
 * What the client throws. `WspApiError` carries the API's own error (`status`, `code`, `message`,
 * `details`); a server that cannot be reached is `status` 0 with code `unreachable`, and an answer
 * that is not our JSON error shape keeps its status with code `bad_response`.
 */
export class WspApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details?: unknown;
  constructor(status: number, code: string, message: string, options?: { details?: unknown; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WspApiError';
    this.status = status;
    this.code = code;
    this.details = options?.details;
  }
}

/** waitForWorkspace / runCommand gave up after their `timeoutMs`. */
export class WspTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WspTimeoutError';
  }
}

/** A response body → WspApiError, using our `{ error: { code, message, details? } }` shape when present. */
export function apiErrorFrom(status: number, body: unknown): WspApiError {
  const error = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)?.error;
  if (error && typeof error.code === 'string' && typeof error.message === 'string') {
    return new WspApiError(
      status,
      error.code,
      error.message,
      error.details === undefined ? undefined : { details: error.details },
    );
  }
  return new WspApiError(status, 'bad_response', `unexpected HTTP ${status} answer`);
}
