import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalBackend } from '../../../shared/backends/local/index.js';
import type { WorkspaceBackend, WorkspaceCommands } from '../../../shared/contract/backend.js';
import { STDIN_PENDING_MAX_BYTES } from '../../../shared/contract/backend.js';
import { ConflictError, NotFoundError } from '../../../shared/contract/errors.js';
import type { BackendRef } from '../../../shared/contract/workspace.js';
import { newId, planFor } from '../../support/backend-fixture.js';
import { waitFor } from '../../support/wait.js';

// Open stdin on the local backend, both ways a command starts: through the workspace's in-sandbox
// forker (a FIFO in its channel) and through a sandbox of its own (the chain: a pipe from the
// supervisor). The supervisor holds the write end; these are the backend-specific paths under the
// contract cases every backend runs.

const plan = planFor({ workspace: { network: 'none' } });

for (const forker of [true, false]) {
  describe(`open stdin, local backend (${forker ? 'through the forker' : 'a sandbox per command'})`, () => {
    let dataDir: string;
    let backend: WorkspaceBackend;
    let ref: BackendRef;
    let commands: WorkspaceCommands;

    beforeAll(async () => {
      dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-stdin-'));
      backend = await createLocalBackend({ dataDir, owner: 'test-instance', forker });
      ref = await backend.create(plan, { workspaceId: newId('ws'), labels: {} });
      commands = backend.open(ref, plan).commands;
      // A first command starts the workspace's holder (and, in the background, its forker).
      await start(['true']);
      if (forker)
        await waitFor(
          'the forker',
          async () =>
            fs
              .readFileSync(path.join(dataDir, 'local', 'workspaces', String(ref.workspaceId), 'pidns'), 'utf8')
              .split('\n').length === 3 || undefined,
          30_000,
        );
    }, 60_000);

    afterAll(async () => {
      if (backend) {
        for (const ws of await backend.listResources()) await backend.destroy(ws.ref);
        await backend.close?.();
      }
      if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    });

    async function start(argv: string[], extra: { openStdin?: boolean; stdin?: Buffer; timeoutMs?: number } = {}) {
      const commandId = newId('c');
      await commands.start({
        commandId,
        argv,
        cwd: plan.home,
        env: {},
        timeoutMs: extra.timeoutMs ?? 60_000,
        maxOutputBytes: 1 << 20,
        ...extra,
      });
      return commandId;
    }
    const stdout = async (id: string) => (await commands.read(id, 'stdout', 0, 1 << 20)).data.toString();

    it('feeds writes in order after the bytes given at start, and ends at eof', async () => {
      const id = await start(['cat'], { openStdin: true, stdin: Buffer.from('first\n') });
      await commands.writeStdin(id, Buffer.from('second\n'), false);
      await waitFor('cat to echo', async () => ((await stdout(id)) === 'first\nsecond\n' ? true : undefined), 10_000);
      expect((await commands.status(id)).state).toBe('running'); // stdin still open
      await commands.writeStdin(id, Buffer.from([0, 255, 10]), true);
      expect(await commands.wait(id, 10_000)).toMatchObject({ state: 'exited', exitCode: 0 });
      const raw = (await commands.read(id, 'stdout', 0, 1 << 20)).data;
      expect(raw.subarray(-3)).toEqual(Buffer.from([0, 255, 10]));
    });

    it(`reads its stdin from ${forker ? "the forker's channel" : "the supervisor's pipe"}`, async () => {
      const id = await start(['sh', '-c', 'readlink /proc/$$/fd/0; cat'], { openStdin: true });
      await commands.writeStdin(id, Buffer.alloc(0), true);
      expect(await commands.wait(id, 10_000)).toMatchObject({ state: 'exited', exitCode: 0 });
      expect(await stdout(id)).toMatch(
        forker ? /^\/run\/wsp-forker\/f[\d-]+( \(deleted\))?\n$/ : /^pipe:|\/f\d+ \(deleted\)\n$/,
      );
    });

    it('answers a prompt, and a program reading its stdin to the end sees eof only when asked', async () => {
      const id = await start(['sh', '-c', 'read name; echo "hello $name"; wc -c'], { openStdin: true });
      await commands.writeStdin(id, Buffer.from('wsp\n'), false);
      await waitFor('the greeting', async () => ((await stdout(id)) === 'hello wsp\n' ? true : undefined), 10_000);
      await commands.writeStdin(id, Buffer.from('12345'), false);
      expect((await commands.wait(id, 300)).state).toBe('running');
      await commands.writeStdin(id, Buffer.alloc(0), true);
      expect(await commands.wait(id, 10_000)).toMatchObject({ state: 'exited', exitCode: 0 });
      expect(await stdout(id)).toBe('hello wsp\n5\n');
    });

    it('refuses: after eof, without openStdin, after the end, an unknown command', async () => {
      const open = await start(['cat'], { openStdin: true });
      await commands.writeStdin(open, Buffer.from('x'), true);
      await expect(commands.writeStdin(open, Buffer.from('y'), false)).rejects.toBeInstanceOf(ConflictError);
      await commands.wait(open, 10_000);
      await expect(commands.writeStdin(open, Buffer.from('y'), false)).rejects.toBeInstanceOf(ConflictError);
      const closed = await start(['sleep', '30']);
      await expect(commands.writeStdin(closed, Buffer.from('y'), false)).rejects.toThrow(/not started with openStdin/);
      await commands.kill(closed, 'test');
      await expect(commands.writeStdin('c-nope', Buffer.from('y'), false)).rejects.toBeInstanceOf(NotFoundError);
    });

    it('a command that never reads: the supervisor keeps at most the cap, then refuses (never hangs)', async () => {
      const id = await start(['sleep', '60'], { openStdin: true });
      const chunk = Buffer.alloc(256 * 1024, 0x61);
      let refused: unknown;
      let accepted = 0;
      for (let i = 0; i < 16 && refused === undefined; i++) {
        try {
          await commands.writeStdin(id, chunk, false);
          accepted += chunk.length;
        } catch (error) {
          refused = error;
        }
      }
      expect(refused).toBeInstanceOf(ConflictError);
      expect(String((refused as Error).message)).toMatch(/stdin is full/);
      // The pipe holds 64 KiB; the supervisor the rest, up to the cap.
      expect(accepted).toBeLessThanOrEqual(STDIN_PENDING_MAX_BYTES + 256 * 1024);
      await commands.kill(id, 'test');
      expect(await commands.wait(id, 10_000)).toMatchObject({ state: 'killed' });
    });

    it('a timeout still ends a command waiting on its open stdin', async () => {
      const id = await start(['cat'], { openStdin: true, timeoutMs: 500 });
      expect(await commands.wait(id, 10_000)).toMatchObject({ state: 'killed', reason: 'timeout' });
    });
  });
}
