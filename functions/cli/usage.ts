import type { WspClient } from '../../shared/client/client.js';
import type { UsageView } from '../../shared/contract/views.js';
import type { Io } from './io.js';

/** `wsp usage ID`: what the workspace uses now, one line per resource ("-": the backend cannot tell). */
export async function runUsage(client: WspClient, io: Io, id: string, json: boolean): Promise<number> {
  const usage = await client.usage(id);
  await io.out(json ? `${JSON.stringify(usage, null, 2)}\n` : formatUsage(usage));
  return 0;
}

function formatUsage(u: UsageView): string {
  const of = (now: string, limit: number | null, unit: (n: number) => string): string =>
    limit === null ? now : `${now} of ${unit(limit)}`;
  const lines: Array<[string, string]> = [
    ['cpu', u.cpu.usageSeconds === null ? '-' : `${u.cpu.usageSeconds.toFixed(2)} s`],
    ['memory', of(bytes(u.memory.currentBytes), u.memory.limitBytes, bytes)],
    ['disk', of(bytes(u.disk.usedBytes), u.disk.limitBytes, bytes)],
    ['pids', of(u.pids.current === null ? '-' : String(u.pids.current), u.pids.limit, String)],
    ['source', u.source],
    ['at', u.at],
  ];
  return lines.map(([k, v]) => `${`${k}:`.padEnd(8)}${v}\n`).join('');
}

function bytes(n: number | null): string {
  if (n === null) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let i = 0;
  for (; value >= 1024 && i < units.length - 1; i++) value /= 1024;
  return i === 0 ? `${n} B` : `${value.toFixed(1)} ${units[i]}`;
}
