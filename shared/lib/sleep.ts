/**
 * Waits `ms` milliseconds. With a signal, an abort ends the wait early and resolves (never rejects):
 * callers poll in a loop and check the signal themselves, so an abort must not surface as an error.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
