import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { killGroup, killSession, startTimeSync, stillOurs } from '../../../shared/backends/local/procs.js';
import { waitFor } from '../../support/wait.js';

// pid_max is 32768 on our machines and a busy CI host wraps it in minutes: a process group recorded by
// a command that ended long ago may have an unrelated process under its number by the time the
// provider (root) kills it (a kill, a reset). The recorded leader start time tells them apart. Here the
// "unrelated process" is a real group whose start time differs from the record.

/** Running (not a zombie waiting for its reap, not gone). */
const alive = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
};

describe('a recorded process group is killed only while it is still the one recorded', () => {
  const children: ChildProcess[] = [];
  const leader = (): number => {
    // setsid-like: a detached child leads a new session and group of its own.
    const child = spawn('sleep', ['60'], { detached: true, stdio: 'ignore' });
    children.push(child);
    return child.pid!;
  };
  afterEach(() => {
    for (const c of children.splice(0)) c.kill('SIGKILL');
  });

  it('a group whose number now belongs to a process with another start time is left alone', async () => {
    const pid = leader();
    const start = startTimeSync(pid)!;
    const reused = { pgid: pid, leaderStart: String(Number(start) + 1) };
    expect(stillOurs(reused)).toBe(false);
    killGroup(reused);
    killSession(reused);
    expect(alive(pid)).toBe(true);
  });

  it('the group recorded (same start time) is killed, and so is one recorded without a start time', async () => {
    for (const record of [
      (pid: number) => ({ pgid: pid, leaderStart: startTimeSync(pid)! }),
      (pid: number) => ({ pgid: pid }),
    ]) {
      const pid = leader();
      const group = record(pid);
      expect(stillOurs(group)).toBe(true);
      killGroup(group);
      await waitFor('the group to be killed', async () => (alive(pid) ? undefined : true), 5000);
    }
  });

  it('a number no process holds any more is "ours" (nothing else can hold it) and killing it is harmless', () => {
    expect(stillOurs({ pgid: 4_194_303, leaderStart: '1' })).toBe(true);
    expect(() => killGroup({ pgid: 4_194_303, leaderStart: '1' })).not.toThrow();
    expect(stillOurs({ pgid: 1 })).toBe(false);
  });
});
