import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { CommandStatus, OutputChunk, OutputStream, TerminalSize } from '../../contract/backend.js';
import { BadRequestError } from '../../contract/errors.js';

/**
 * The on-disk command record both command runners write (the local backend's supervisor and the
 * shared runner.sh): spec.json, stdout, stderr and the atomic `exit` line — and how it is read back,
 * by any provider process, also after a restart. One reader for both, so their records cannot drift.
 */

/** What the provider writes before starting the command (spec.json). */
export interface StoredSpec {
  commandId: string;
  timeoutMs: number;
  maxOutputBytes: number;
  startedAt: string;
  /** Started with openStdin: its stdin takes writes until eof (WorkspaceCommands.writeStdin). */
  openStdin?: boolean;
  /** Started under a terminal of this size (CommandSpec.tty; resize applies to it). */
  tty?: TerminalSize;
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

/**
 * Command files are read by the provider on the HOST, in a directory the runner (root in a container,
 * or the local supervisor) writes: a compromised runner must not turn one into a symlink to a host file
 * (it would be served as output) or a FIFO (a blocking open would hang the provider). So: no symlink
 * followed at the file or at its directory, never blocking on open, regular files only.
 */
async function openRegular(file: string): Promise<fs.FileHandle | undefined> {
  try {
    if (!(await fs.lstat(path.dirname(file))).isDirectory()) return undefined;
    const handle = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
    if ((await handle.stat()).isFile()) return handle;
    await handle.close();
  } catch {
    // absent, a symlink (ELOOP) or unreadable: not a command file
  }
  return undefined;
}

export async function readText(file: string): Promise<string | undefined> {
  const handle = await openRegular(file);
  if (handle === undefined) return undefined;
  try {
    return await handle.readFile('utf8');
  } catch {
    return undefined;
  } finally {
    await handle.close();
  }
}

export async function sizeOf(file: string): Promise<number> {
  try {
    const st = await fs.lstat(file);
    return st.isFile() ? st.size : 0;
  } catch {
    return 0;
  }
}

/**
 * Bytes a stream has produced so far: the kept file plus what the runner's output cutter counted
 * past the cap (`<stream>.rest`, see start_output_cutters in runner.sh). Above maxOutputBytes as
 * soon as one byte past the cap came, so a running command already reads as truncated.
 */
export async function streamBytes(file: string): Promise<number> {
  const rest = Number((await readText(`${file}.rest`))?.trim() ?? 0);
  return (await sizeOf(file)) + (Number.isSafeInteger(rest) && rest > 0 ? rest : 0);
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

/** "<code> <signal|-> <killed 0|1> <stdout bytes> <stderr bytes> <ended epoch ms>" (as runner.sh writes it). */
export function formatExit(exit: ExitRecord): string {
  const { code, signal, killed, stdoutBytes, stderrBytes, endedAt } = exit;
  return `${code} ${signal ?? '-'} ${killed ? 1 : 0} ${stdoutBytes} ${stderrBytes} ${Date.parse(endedAt)}\n`;
}

/** "<code> <signal|-> <killed 0|1> <stdout bytes> <stderr bytes> <ended epoch ms>" */
function parseExit(text: string): ExitRecord | undefined {
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

/**
 * Everything a status is made of, as read from a command dir — by the provider from host files
 * (command-files.ts readStatus, Docker) or by the runner inside the workspace (`runner.sh status`,
 * over rpc.ts, Fargate). Both end in statusFromRecord, so the two backends cannot tell it differently.
 */
export interface CommandRecordFiles {
  spec: StoredSpec;
  /** Contents of `exit` (undefined: no file). Read AFTER `alive`: a supervisor ending in between has written it. */
  exit: string | undefined;
  /** Contents of `kill` (undefined: no file). */
  kill: string | undefined;
  /** The supervisor holds its `alive` FIFO (only meaningful while there is no exit record). */
  alive: boolean;
  /** Current sizes of the stdout/stderr files (used while there is no exit record). */
  stdoutBytes: number;
  stderrBytes: number;
}

/** The status the files tell: a valid exit record → exited/killed; else a live supervisor → running; else lost. */
export function statusFromRecord(record: CommandRecordFiles): CommandStatus {
  const { spec } = record;
  const base = { commandId: spec.commandId, startedAt: spec.startedAt };
  const max = spec.maxOutputBytes;
  const exit = record.exit === undefined ? undefined : parseExit(record.exit);
  if (exit === undefined) {
    const out = record.stdoutBytes;
    const err = record.stderrBytes;
    const streams = { stdout: { bytes: out, truncated: out > max }, stderr: { bytes: err, truncated: err > max } };
    if (record.alive) return { ...base, state: 'running', exitCode: null, signal: null, ...streams };
    return { ...base, state: 'lost', exitCode: null, signal: null, reason: 'process vanished', ...streams };
  }
  const streams = {
    stdout: { bytes: exit.stdoutBytes, truncated: exit.stdoutBytes > max },
    stderr: { bytes: exit.stderrBytes, truncated: exit.stderrBytes > max },
  };
  if (exit.killed) {
    const reason = record.kill?.trim() || 'killed';
    return {
      ...base,
      state: 'killed',
      exitCode: null,
      signal: exit.signal ?? 'SIGKILL',
      reason,
      ...streams,
      endedAt: exit.endedAt,
    };
  }
  return { ...base, state: 'exited', exitCode: exit.code, signal: exit.signal, ...streams, endedAt: exit.endedAt };
}

/** Bytes of a stream a read may return: [offset, min(offset + limit, kept)), kept = min(size, maxOutputBytes). */
function readWindow(size: number, maxOutputBytes: number, offset: number, limit: number): number {
  const kept = Math.min(size, maxOutputBytes);
  return Math.max(0, Math.min(offset + limit, kept) - offset);
}

export async function readExit(dir: string): Promise<ExitRecord | undefined> {
  const text = await readText(path.join(dir, 'exit'));
  return text === undefined ? undefined : parseExit(text);
}

/** Throws BadRequestError for a read no stream can answer. */
export function checkReadArgs(stream: OutputStream, offset: number, limit: number): void {
  if (stream !== 'stdout' && stream !== 'stderr')
    throw new BadRequestError("stream must be 'stdout' or 'stderr'", { field: 'stream' });
  if (!Number.isInteger(offset) || offset < 0)
    throw new BadRequestError('offset must be an integer >= 0', { field: 'offset' });
  if (!Number.isInteger(limit) || limit < 0)
    throw new BadRequestError('limit must be an integer >= 0', { field: 'limit' });
}

/** Bytes [offset, min(offset + limit, kept)) of a stream; kept = min(file size, maxOutputBytes). */
export async function readStream(
  dir: string,
  spec: StoredSpec,
  stream: OutputStream,
  offset: number,
  limit: number,
): Promise<OutputChunk> {
  checkReadArgs(stream, offset, limit);
  const handle = await openRegular(path.join(dir, stream));
  if (handle === undefined) return { data: Buffer.alloc(0), nextOffset: offset };
  try {
    const length = readWindow((await handle.stat()).size, spec.maxOutputBytes, offset, limit);
    const data = Buffer.alloc(length);
    const { bytesRead } = length > 0 ? await handle.read(data, 0, length, offset) : { bytesRead: 0 };
    return { data: data.subarray(0, bytesRead), nextOffset: offset + bytesRead };
  } finally {
    await handle.close();
  }
}

/**
 * The wait of every backend: read the status until the command is no longer running or `waitMs` has
 * passed (the last status is returned either way). Between reads `pause(ms, round)` waits at most `ms`
 * (the time left) — a backend may end it early when it learns of an exit. Throws BadRequestError for a
 * negative or non-finite `waitMs`.
 */
export async function waitWhileRunning(
  read: () => Promise<CommandStatus>,
  waitMs: number,
  pause: (maxMs: number, round: number) => Promise<void>,
): Promise<CommandStatus> {
  if (!Number.isFinite(waitMs) || waitMs < 0) throw new BadRequestError('waitMs must be >= 0', { field: 'waitMs' });
  const deadline = Date.now() + waitMs;
  for (let round = 0; ; round++) {
    const status = await read();
    const left = deadline - Date.now();
    if (status.state !== 'running' || left <= 0) return status;
    await pause(left, round);
  }
}
