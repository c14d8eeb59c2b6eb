import fs from 'node:fs/promises';
import path from 'node:path';
import type { UsageDirs } from './cgroup.js';

/**
 * What a workspace's cgroup says it uses, read from the host (root-owned control files the workspace
 * can neither write nor even see: /sys is not mounted in its sandbox). A file that cannot be read
 * gives null for its figure, never a guess.
 */
export interface CgroupUsage {
  cpuSeconds: number | null;
  memoryBytes: number | null;
  memoryLimitBytes: number | null;
  pids: number | null;
  pidsLimit: number | null;
}

/** v1's "no limit" for memory: PAGE_COUNTER_MAX pages (on 64-bit, anything this large is none). */
const V1_UNLIMITED_FROM = 2 ** 62;

export async function readCgroupUsage(dirs: UsageDirs): Promise<CgroupUsage> {
  if (dirs.version === 2) {
    const { unified } = dirs;
    const usec = keyed(await read(unified, 'cpu.stat'), 'usage_usec');
    return {
      cpuSeconds: usec === null ? null : usec / 1e6,
      memoryBytes: count(await read(unified, 'memory.current')),
      memoryLimitBytes: limit(await read(unified, 'memory.max')),
      pids: count(await read(unified, 'pids.current')),
      pidsLimit: limit(await read(unified, 'pids.max')),
    };
  }
  const ns = count(await read(dirs.cpuacct, 'cpuacct.usage'));
  const memLimit = limit(await read(dirs.memory, 'memory.limit_in_bytes'));
  return {
    cpuSeconds: ns === null ? null : ns / 1e9,
    memoryBytes: count(await read(dirs.memory, 'memory.usage_in_bytes')),
    memoryLimitBytes: memLimit !== null && memLimit >= V1_UNLIMITED_FROM ? null : memLimit,
    pids: count(await read(dirs.pids, 'pids.current')),
    pidsLimit: limit(await read(dirs.pids, 'pids.max')),
  };
}

async function read(dir: string | undefined, file: string): Promise<string | undefined> {
  if (dir === undefined) return undefined;
  try {
    return (await fs.readFile(path.join(dir, file), 'utf8')).trim();
  } catch {
    return undefined;
  }
}

function count(text: string | undefined): number | null {
  return text !== undefined && /^\d+$/.test(text) ? Number(text) : null;
}

/** A limit file: a number, or 'max' (none: null). */
function limit(text: string | undefined): number | null {
  return text === 'max' ? null : count(text);
}

/** `key value` lines (cpu.stat): the value of `key`. */
function keyed(text: string | undefined, key: string): number | null {
  const line = text?.split('\n').find((l) => l.startsWith(`${key} `));
  return count(line?.slice(key.length + 1));
}
