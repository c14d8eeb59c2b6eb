import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readStream, readText, sizeOf, type StoredSpec } from '../../shared/backends/runner/command-record.js';

// The provider reads a command's files (stdout, stderr, exit, pid…) on the HOST, from a directory the
// runner writes — root in a Docker container, through a bind mount. A runner that was taken over
// (a hostile setup once got root in the container this way) swaps a file for a symlink to a host
// secret, or for a FIFO that would hang a blocking open. Neither may work.

const SPEC: StoredSpec = {
  commandId: 'c1',
  timeoutMs: 0,
  maxOutputBytes: 1 << 20,
  startedAt: new Date(0).toISOString(),
};

describe('command files are read without following links or blocking', () => {
  let root: string;
  let dir: string;
  let secret: string;

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-cmdfiles-'));
    dir = path.join(root, 'cmd', 'c1');
    fs.mkdirSync(dir, { recursive: true });
    secret = path.join(root, 'host-secret');
    fs.writeFileSync(secret, 'HOST-SECRET\n', { mode: 0o600 });
  });

  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  it('a regular file is read as before', async () => {
    fs.writeFileSync(path.join(dir, 'stdout'), 'hello\n');
    fs.writeFileSync(path.join(dir, 'exit'), '0 - 0 6 0 1\n');
    expect((await readStream(dir, SPEC, 'stdout', 0, 100)).data.toString()).toBe('hello\n');
    expect(await readText(path.join(dir, 'exit'))).toBe('0 - 0 6 0 1\n');
    expect(await sizeOf(path.join(dir, 'stdout'))).toBe(6);
  });

  it('stdout or exit swapped for a symlink to a host file reads as nothing', async () => {
    fs.symlinkSync(secret, path.join(dir, 'stdout'));
    fs.symlinkSync(secret, path.join(dir, 'exit'));
    expect((await readStream(dir, SPEC, 'stdout', 0, 100)).data.length).toBe(0);
    expect(await readText(path.join(dir, 'exit'))).toBeUndefined();
    expect(await sizeOf(path.join(dir, 'stdout'))).toBe(0);
  });

  it('the command dir itself swapped for a symlink to a host dir reads as nothing', async () => {
    const hostDir = path.join(root, 'host-dir');
    fs.mkdirSync(hostDir);
    fs.writeFileSync(path.join(hostDir, 'stdout'), 'HOST-SECRET\n');
    const linked = path.join(root, 'cmd', 'c2');
    fs.symlinkSync(hostDir, linked);
    expect((await readStream(linked, SPEC, 'stdout', 0, 100)).data.length).toBe(0);
    expect(await readText(path.join(linked, 'stdout'))).toBeUndefined();
  });

  it('a FIFO in place of a file does not hang the provider', async () => {
    execFileSync('mkfifo', [path.join(dir, 'stdout'), path.join(dir, 'exit')]);
    const started = Date.now();
    expect((await readStream(dir, SPEC, 'stdout', 0, 100)).data.length).toBe(0);
    expect(await readText(path.join(dir, 'exit'))).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
