import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalBackend } from '../../../shared/backends/local/index.js';
import type { TerminalSize, WorkspaceBackend, WorkspaceCommands } from '../../../shared/contract/backend.js';
import { ConflictError } from '../../../shared/contract/errors.js';
import type { BackendRef } from '../../../shared/contract/workspace.js';
import { newId, planFor } from '../../support/backend-fixture.js';
import { rootUnavailable } from '../../support/root.js';
import { waitFor } from '../../support/wait.js';

// Commands under a pseudo-terminal on the local backend: the workspace's forker (forker.py) makes the
// terminal inside the sandbox and bridges it to the supervisor's FIFOs; input is the open stdin,
// resize an ioctl on its side. What a terminal UI (`wsp shell`, attach) stands on.

const plan = planFor({ workspace: { network: 'none' } });

describe.skipIf(rootUnavailable !== undefined)('terminals (tty), local backend', () => {
  let dataDir: string;
  let backend: WorkspaceBackend;
  let ref: BackendRef;
  let commands: WorkspaceCommands;

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-tty-'));
    backend = await createLocalBackend({ dataDir, owner: 'test-instance' });
    ref = await backend.create(plan, { workspaceId: newId('ws'), labels: {} });
    commands = backend.open(ref, plan).commands;
  }, 60_000);

  afterAll(async () => {
    if (backend) {
      for (const ws of await backend.listResources()) await backend.destroy(ws.ref);
      await backend.close?.();
    }
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  });

  async function start(argv: string[], tty?: TerminalSize, timeoutMs = 60_000) {
    const commandId = newId('c');
    await commands.start({
      commandId,
      argv,
      cwd: plan.home,
      env: { TERM: 'xterm' },
      timeoutMs,
      maxOutputBytes: 1 << 20,
      ...(tty ? { tty } : {}),
    });
    return commandId;
  }
  const screen = async (id: string) => (await commands.read(id, 'stdout', 0, 1 << 20)).data.toString();
  const until = (id: string, pattern: RegExp) =>
    waitFor(`${pattern} on the terminal`, async () => (pattern.test(await screen(id)) ? true : undefined), 15_000);

  it('gives the command a controlling terminal of the asked size (the first command of a workspace too)', async () => {
    const id = await start(
      ['sh', '-c', 'tty; stty size; test -t 0 && test -t 1 && test -t 2 && echo all-three; echo to-stderr >&2; exit 3'],
      { rows: 30, cols: 100 },
    );
    expect(await commands.wait(id, 20_000)).toMatchObject({ state: 'exited', exitCode: 3 });
    const text = await screen(id);
    expect(text).toMatch(/^\/dev\/pts\/\d+\r\n30 100\r\nall-three\r\nto-stderr\r\n$/);
    expect((await commands.read(id, 'stderr', 0, 100)).data.length).toBe(0);
  });

  it('drives an interactive shell: input, ^C interrupts the foreground only, exit', async () => {
    const id = await start(['sh', '-i'], { rows: 24, cols: 80 });
    await commands.writeStdin(id, Buffer.from('echo sum-$((40 + 2))\n'), false);
    await until(id, /sum-42/);
    await commands.writeStdin(id, Buffer.from('sleep 100\n'), false);
    await new Promise((r) => setTimeout(r, 300));
    await commands.writeStdin(id, Buffer.from('\x03'), false);
    await commands.writeStdin(id, Buffer.from('echo still-$((1 + 1))\n'), false);
    await until(id, /still-2/);
    expect((await commands.status(id)).state).toBe('running');
    await commands.writeStdin(id, Buffer.from('exit 7\n'), false);
    expect(await commands.wait(id, 20_000)).toMatchObject({ state: 'exited', exitCode: 7 });
  });

  it('resizes: the foreground gets SIGWINCH and sees the new size', async () => {
    const id = await start(['sh', '-c', 'trap "stty size" WINCH; echo ready; while :; do sleep 0.1; done'], {
      rows: 24,
      cols: 80,
    });
    await until(id, /ready/);
    await commands.resize(id, { rows: 40, cols: 132 });
    await until(id, /40 132/);
    await commands.kill(id, 'done');
    expect(await commands.wait(id, 20_000)).toMatchObject({ state: 'killed' });
    await commands.resize(id, { rows: 10, cols: 10 }); // ended: a no-op
  });

  it('eof is the end-of-file key; resize refuses a command without a terminal', async () => {
    const id = await start(['cat'], { rows: 24, cols: 80 });
    await commands.writeStdin(id, Buffer.from('line\n'), true);
    expect(await commands.wait(id, 20_000)).toMatchObject({ state: 'exited', exitCode: 0 });
    const plain = await start(['sleep', '30']);
    await expect(commands.resize(plain, { rows: 10, cols: 10 })).rejects.toBeInstanceOf(ConflictError);
    await commands.kill(plain, 'done');
  });

  it('a timeout ends a terminal command and what it started', async () => {
    const id = await start(['sh', '-c', 'sleep 300 & sleep 300'], { rows: 24, cols: 80 }, 800);
    expect(await commands.wait(id, 20_000)).toMatchObject({ state: 'killed', reason: 'timeout' });
  });
});
