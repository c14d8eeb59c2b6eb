import { describe, expect, it } from 'vitest';
import { sleep } from '../../shared/lib/sleep.js';

describe('sleep', () => {
  it('waits at least the time asked', async () => {
    const t0 = performance.now();
    await sleep(30);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(25);
  });

  it('an abort ends the wait early and resolves (pollers check the signal themselves)', async () => {
    const ac = new AbortController();
    const t0 = performance.now();
    setTimeout(() => ac.abort(), 10);
    await expect(sleep(10_000, ac.signal)).resolves.toBeUndefined();
    expect(performance.now() - t0).toBeLessThan(5_000);
  });

  it('an already aborted signal does not wait at all', async () => {
    const ac = new AbortController();
    ac.abort();
    const t0 = performance.now();
    await sleep(10_000, ac.signal);
    expect(performance.now() - t0).toBeLessThan(1_000);
  });
});
