import type { WorkspaceUsage } from '../../contract/backend.js';

/** The runner request that measures a container from inside, as root (runner.sh `usage`). */
export const usageArgv = (home: string): string[] => ['usage', home];

/** v1's "no limit" for memory reads back as PAGE_COUNTER_MAX pages: anything this large is none. */
const UNLIMITED_FROM = 2 ** 62;

/**
 * runner.sh `usage`'s answer ("key value" lines) as a WorkspaceUsage; a figure it left out is null.
 * The disk limit is the caller's to say (the runner knows none).
 */
export function parseRunnerUsage(text: string): WorkspaceUsage {
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const space = line.indexOf(' ');
    if (space > 0) values.set(line.slice(0, space), line.slice(space + 1).trim());
  }
  const num = (key: string): number | null => {
    const v = values.get(key);
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : null;
  };
  const limit = (key: string): number | null => {
    const n = num(key);
    return n !== null && n >= UNLIMITED_FROM ? null : n;
  };
  const usec = num('cpu_usec');
  const ns = num('cpu_ns');
  return {
    source: values.get('source') ?? 'runner',
    cpu: { usageSeconds: usec !== null ? usec / 1e6 : ns !== null ? ns / 1e9 : null },
    memory: { currentBytes: num('memory_bytes'), limitBytes: limit('memory_limit') },
    disk: { usedBytes: num('disk_bytes'), limitBytes: null },
    pids: { current: num('pids'), limit: limit('pids_limit') },
  };
}
