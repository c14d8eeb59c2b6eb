import { describe, expect, it } from 'vitest';
import { ReadWriteLock } from '../../shared/git/rw-lock.js';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('ReadWriteLock', () => {
  it('lets readers share, keeps a writer exclusive, and queues later readers behind a waiting writer', async () => {
    const lock = new ReadWriteLock();
    const events: string[] = [];
    const r1 = deferred();
    const r2 = deferred();
    const w = deferred();
    const r3 = deferred();

    const p1 = lock.read(async () => {
      events.push('r1 start');
      await r1.promise;
      events.push('r1 end');
    });
    const p2 = lock.read(async () => {
      events.push('r2 start');
      await r2.promise;
      events.push('r2 end');
    });
    const pw = lock.write(async () => {
      events.push('w start');
      await w.promise;
      events.push('w end');
    });
    const p3 = lock.read(async () => {
      events.push('r3 start');
      await r3.promise;
      events.push('r3 end');
    });

    await tick();
    expect(events).toEqual(['r1 start', 'r2 start']); // two readers at once; writer and r3 wait
    r1.resolve();
    await tick();
    expect(events).toEqual(['r1 start', 'r2 start', 'r1 end']); // writer still waits for r2
    r2.resolve();
    await tick();
    expect(events.slice(3)).toEqual(['r2 end', 'w start']); // r3 does not overtake the writer
    w.resolve();
    await tick();
    expect(events.slice(5)).toEqual(['w end', 'r3 start']);
    r3.resolve();
    await Promise.all([p1, p2, pw, p3]);
  });

  it('releases the lock when the holder throws', async () => {
    const lock = new ReadWriteLock();
    await expect(lock.write(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(lock.write(async () => 'next')).resolves.toBe('next');
  });
});
