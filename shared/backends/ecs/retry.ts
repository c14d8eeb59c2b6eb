/**
 * One retry policy for every AWS call of the Fargate backend (the SDK clients are built with
 * `maxAttempts: 1`, so this is the only one and it is testable at the SDK boundary): throttling and
 * transient server errors are retried with capped exponential backoff and FULL jitter (a random wait
 * in [0, min(cap, base·2^attempt)]), so many Lambdas throttled together do not retry in lockstep.
 * Throttling backs off from a larger base (as the AWS SDKs' standard retry mode does): ECS throttles
 * in bursts that quick retries would only prolong.
 */

export interface RetryPolicy {
  /** Total attempts including the first. Default 6. */
  attempts: number;
  /** First backoff ceiling in ms. Default 200. */
  baseMs: number;
  /** First backoff ceiling in ms after a throttling error. Default 500; `baseMs` when unset. */
  throttleBaseMs?: number;
  /** Largest backoff ceiling in ms. Default 5000. */
  capMs: number;
  /** [0, 1); injectable for tests. */
  random: () => number;
  sleep: (ms: number) => Promise<void>;
}

export const defaultRetryPolicy: RetryPolicy = {
  attempts: 6,
  baseMs: 200,
  throttleBaseMs: 500,
  capMs: 5_000,
  random: Math.random,
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

const THROTTLING_NAMES = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'RequestLimitExceeded',
]);

const RETRYABLE_NAMES = new Set([
  ...THROTTLING_NAMES,
  'ServerException',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'InternalFailure',
  'InternalServerError',
  'RequestTimeout',
  'RequestTimeoutException',
]);

/** Throttling, 5xx, and network resets are worth another try; everything else is the caller's to handle. */
export function isRetryable(error: unknown): boolean {
  const e = error as { name?: string; code?: string; $metadata?: { httpStatusCode?: number }; $retryable?: unknown };
  if (e?.name && RETRYABLE_NAMES.has(e.name)) return true;
  if (e?.$retryable) return true;
  const status = e?.$metadata?.httpStatusCode;
  if (status !== undefined && (status === 429 || status >= 500)) return true;
  return e?.code === 'ECONNRESET' || e?.code === 'ETIMEDOUT' || e?.code === 'EPIPE';
}

/** ECS (or any AWS API) said "slow down": HTTP 429 or a throttling error name. */
function isThrottling(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return (e?.name !== undefined && THROTTLING_NAMES.has(e.name)) || e?.$metadata?.httpStatusCode === 429;
}

/**
 * The wait before retry number `attempt` (1-based): full jitter over the capped exponential ceiling,
 * which starts at `throttleBaseMs` (if set) when the failure was throttling.
 */
export function backoffMs(
  attempt: number,
  policy: Pick<RetryPolicy, 'baseMs' | 'capMs' | 'random' | 'throttleBaseMs'>,
  throttled = false,
): number {
  const base = throttled ? (policy.throttleBaseMs ?? policy.baseMs) : policy.baseMs;
  const ceiling = Math.min(policy.capMs, base * 2 ** (attempt - 1));
  return Math.floor(policy.random() * ceiling);
}

/** Run `fn`, retrying what `retryable` accepts; the last error is rethrown as is. */
export async function withRetry<T>(
  fn: () => Promise<T>,
  policy: RetryPolicy = defaultRetryPolicy,
  retryable: (error: unknown) => boolean = isRetryable,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (attempt >= policy.attempts || !retryable(error)) throw error;
      await policy.sleep(backoffMs(attempt, policy, isThrottling(error)));
    }
  }
}
