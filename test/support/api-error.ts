import { expect } from 'vitest';
import { WspApiError } from '../../shared/client/errors.js';

/** `promise` rejects with the API's error of `status`, its message matching `message`. */
export async function expectStatus(promise: Promise<unknown>, status: number, message: RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(WspApiError);
  expect((error as WspApiError).status).toBe(status);
  expect((error as WspApiError).message).toMatch(message);
}
