import { errorFields, type Logger } from '../log.js';

/**
 * Awaits a step whose failure must not fail the caller (cleanup after an error, a mark-as-failed write,
 * removing a temporary file) and, if it fails, logs `what` at warn level with the error instead of
 * swallowing it silently. Resolves to the value, or undefined when the step failed.
 */
export async function bestEffort<T>(step: Promise<T>, log: Logger, what: string): Promise<T | undefined> {
  try {
    return await step;
  } catch (error) {
    log.warn(`best effort: ${what} failed`, errorFields(error));
    return undefined;
  }
}
