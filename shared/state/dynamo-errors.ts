import { BackendUnavailableError } from '../contract/errors.js';

/** True for a lost ConditionExpression (SDK exception class or a plain error of that name). */
export function isConditionFailed(err: unknown): boolean {
  return err instanceof Error && err.name === 'ConditionalCheckFailedException';
}

/**
 * Any other SDK or network failure: the store is unavailable (→ 503). The message names the
 * operation and the SDK's error name, never item contents.
 */
export function storeUnavailable(operation: string, err: unknown): BackendUnavailableError {
  const name = err instanceof Error ? err.name : 'unknown error';
  return new BackendUnavailableError(`state store unavailable: ${operation} failed (${name})`, err);
}
