import fs from 'node:fs/promises';
import type { CommandStatus } from '../../contract/backend.js';
import { readExit, readText, streamBytes, type StoredSpec } from '../runner/command-record.js';
import { commandFile } from '../runner/command-files.js';
import { liveStartTime, type RecordedGroup } from './procs.js';

/**
 * The on-disk record of one command (written by commands.ts and supervisor/daemon.ts), and how its status
 * is read back from it — by any provider process, also after a restart.
 */

/** Is the supervisor recorded in `pid` still the same live process (start time checked against pid reuse)? */
export async function supervisorLives(dir: string): Promise<boolean> {
  const text = await readText(commandFile(dir, 'pid'));
  if (text === undefined) return false;
  const [pid, start] = text.trim().split(' ');
  if (pid === undefined || start === undefined || !/^\d+$/.test(pid)) return false;
  return (await liveStartTime(Number(pid))) === start;
}

/** The command's process group as its supervisor recorded it: `pgid [leader start time]`. */
export async function readPgid(dir: string): Promise<RecordedGroup | undefined> {
  const [pgid, leaderStart] = ((await readText(commandFile(dir, 'pgid'))) ?? '').trim().split(' ');
  const n = Number(pgid);
  if (!Number.isInteger(n) || n <= 1) return undefined;
  return { pgid: n, ...(leaderStart && /^\d+$/.test(leaderStart) ? { leaderStart } : {}) };
}

async function readKillReason(dir: string): Promise<string | undefined> {
  return (await readText(commandFile(dir, 'kill')))?.trim() || undefined;
}

/** Record why the command is being killed; the first reason wins. */
export async function writeKillReason(dir: string, reason: string): Promise<void> {
  try {
    await fs.writeFile(commandFile(dir, 'kill'), `${reason}\n`, { flag: 'wx', mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
}

/** The status as the files tell it: exit record → ended; live supervisor → running; else lost. */
export async function readStatus(dir: string, spec: StoredSpec): Promise<CommandStatus> {
  const base = { commandId: spec.commandId, startedAt: spec.startedAt };
  const max = spec.maxOutputBytes;
  let exit = await readExit(dir);
  if (exit === undefined) {
    if (await supervisorLives(dir)) {
      const [out, err] = await Promise.all([
        streamBytes(commandFile(dir, 'stdout')),
        streamBytes(commandFile(dir, 'stderr')),
      ]);
      return {
        ...base,
        state: 'running',
        exitCode: null,
        signal: null,
        stdout: { bytes: out, truncated: out > max },
        stderr: { bytes: err, truncated: err > max },
      };
    }
    // The supervisor may have written its record and ended between the two reads.
    exit = await readExit(dir);
  }
  if (exit === undefined) {
    const [out, err] = await Promise.all([
      streamBytes(commandFile(dir, 'stdout')),
      streamBytes(commandFile(dir, 'stderr')),
    ]);
    return {
      ...base,
      state: 'lost',
      exitCode: null,
      signal: null,
      reason: 'process vanished',
      stdout: { bytes: out, truncated: out > max },
      stderr: { bytes: err, truncated: err > max },
    };
  }
  const streams = {
    stdout: { bytes: exit.stdoutBytes, truncated: exit.stdoutBytes > max },
    stderr: { bytes: exit.stderrBytes, truncated: exit.stderrBytes > max },
  };
  if (exit.killed) {
    return {
      ...base,
      state: 'killed',
      exitCode: null,
      signal: exit.signal ?? 'SIGKILL',
      reason: (await readKillReason(dir)) ?? 'killed',
      ...streams,
      endedAt: exit.endedAt,
    };
  }
  return { ...base, state: 'exited', exitCode: exit.code, signal: exit.signal, ...streams, endedAt: exit.endedAt };
}
