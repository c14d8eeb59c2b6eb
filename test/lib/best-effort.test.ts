import { describe, expect, it } from 'vitest';
import { bestEffort } from '../../shared/lib/best-effort.js';
import { createLogger } from '../../shared/log.js';

function capturingLogger(): { log: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return { log: createLogger({}, (l) => lines.push(JSON.parse(l) as Record<string, unknown>)), lines };
}

describe('bestEffort', () => {
  it('resolves to the value and logs nothing when the step succeeds', async () => {
    const { log, lines } = capturingLogger();
    expect(await bestEffort(Promise.resolve(42), log, 'answering')).toBe(42);
    expect(lines).toEqual([]);
  });

  it('swallows a failure but logs what failed, at warn, with the error message and name', async () => {
    const { log, lines } = capturingLogger();
    expect(await bestEffort(Promise.reject(new TypeError('disk gone')), log, 'removing a temp file')).toBeUndefined();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'warn', error: 'disk gone', errorName: 'TypeError' });
    expect(String(lines[0]!['msg'])).toContain('removing a temp file');
  });
});
