import fs from 'node:fs/promises';
import path from 'node:path';
import type { OutputChunk, OutputStream } from '../../contract/backend.js';
import { BadRequestError } from '../../contract/errors.js';

/**
 * The on-disk command record both command runners write (the local backend's run-command.sh and the
 * shared runner.sh): spec.json, stdout, stderr and the atomic `exit` line — and how it is read back,
 * by any provider process, also after a restart. One reader for both, so their records cannot drift.
 */

/** What the provider writes before starting the command (spec.json). */
export interface StoredSpec {
  commandId: string;
  timeoutMs: number;
  maxOutputBytes: number;
  startedAt: string;
}

/** The runner's last word (file `exit`). */
export interface ExitRecord {
  code: number;
  signal: string | null;
  killed: boolean;
  stdoutBytes: number;
  stderrBytes: number;
  endedAt: string;
}

export async function readText(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch {
    return undefined;
  }
}

export async function sizeOf(file: string): Promise<number> {
  try {
    return (await fs.stat(file)).size;
  } catch {
    return 0;
  }
}

export async function readSpec(dir: string): Promise<StoredSpec | undefined> {
  const text = await readText(path.join(dir, 'spec.json'));
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as StoredSpec;
  } catch {
    return undefined;
  }
}

/** "<code> <signal|-> <killed 0|1> <stdout bytes> <stderr bytes> <ended epoch ms>" */
export function parseExit(text: string): ExitRecord | undefined {
  const [code, signal, killed, out, err, ended] = text.trim().split(/\s+/);
  const numbers = [code, out, err, ended].map(Number);
  if (numbers.some((n) => !Number.isFinite(n)) || signal === undefined || killed === undefined) return undefined;
  return {
    code: numbers[0]!,
    signal: signal === '-' ? null : signal,
    killed: killed === '1',
    stdoutBytes: numbers[1]!,
    stderrBytes: numbers[2]!,
    endedAt: new Date(numbers[3]!).toISOString(),
  };
}

export async function readExit(dir: string): Promise<ExitRecord | undefined> {
  const text = await readText(path.join(dir, 'exit'));
  return text === undefined ? undefined : parseExit(text);
}

/** Throws BadRequestError for a read no stream can answer. */
export function checkReadArgs(stream: OutputStream, offset: number, limit: number): void {
  if (stream !== 'stdout' && stream !== 'stderr') throw new BadRequestError("stream must be 'stdout' or 'stderr'", { field: 'stream' });
  if (!Number.isInteger(offset) || offset < 0) throw new BadRequestError('offset must be an integer >= 0', { field: 'offset' });
  if (!Number.isInteger(limit) || limit < 0) throw new BadRequestError('limit must be an integer >= 0', { field: 'limit' });
}

/** Bytes [offset, min(offset + limit, kept)) of a stream; kept = min(file size, maxOutputBytes). */
export async function readStream(dir: string, spec: StoredSpec, stream: OutputStream, offset: number, limit: number): Promise<OutputChunk> {
  checkReadArgs(stream, offset, limit);
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(path.join(dir, stream), 'r');
  } catch {
    return { data: Buffer.alloc(0), nextOffset: offset };
  }
  try {
    const kept = Math.min((await handle.stat()).size, spec.maxOutputBytes);
    const length = Math.max(0, Math.min(offset + limit, kept) - offset);
    const data = Buffer.alloc(length);
    const { bytesRead } = length > 0 ? await handle.read(data, 0, length, offset) : { bytesRead: 0 };
    return { data: data.subarray(0, bytesRead), nextOffset: offset + bytesRead };
  } finally {
    await handle.close();
  }
}
