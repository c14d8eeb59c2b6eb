import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WspClient } from '../../shared/client/client.js';
import type { ConfigInput } from '../../shared/config/schema.js';
import { expectStatus } from '../support/api-error.js';
import { filesTargets, type Started } from '../support/files-targets.js';
import type { TestProvider } from '../support/provider-fixture.js';
import { waitFor } from '../support/wait.js';

// Input while a command runs (issue 13): POST /workspaces/{id}/commands/{cid}/stdin for a command
// started with `openStdin`, over real HTTP through the typed client, as a controller drives an
// interactive program — and as the attacker: input for a command that ended, never opened its stdin,
// or belongs to nobody.

const CONFIG: ConfigInput = { workspace: { network: 'none' } };

for (const target of filesTargets(CONFIG)) {
  describe.skipIf(target.skip !== undefined)(`open stdin over the API (${target.name})`, () => {
    let started: Started;
    let wsp: TestProvider;
    let client: WspClient;
    let id: string;

    beforeAll(async () => {
      started = await target.start();
      wsp = started.wsp;
      client = new WspClient({ baseUrl: wsp.url, token: wsp.token });
      id = (await wsp.setup()).id;
    }, 120_000);

    afterAll(async () => {
      await started?.close();
    });

    /** Started, not waited for (it waits for input). */
    const start = (body: { command: string; openStdin?: boolean }) =>
      client.runCommand(id, { ...body, waitMs: 0 }, { wait: false });
    const output = async (cid: string) => (await client.getCommand(id, cid)).stdout.data;

    it('drives an interactive program: a prompt answered, state kept between inputs, eof ends it', async () => {
      const started = await start({
        command: 'total=0; while read n; do total=$((total + n)); echo "sum $total"; done; echo "final $total"',
        openStdin: true,
      });
      expect(started.state).toBe('running');
      await client.writeStdin(id, started.id, '2\n');
      await waitFor('the first sum', async () => ((await output(started.id)) === 'sum 2\n' ? true : undefined), 15_000);
      await client.writeStdin(id, started.id, new TextEncoder().encode('40\n'));
      await waitFor(
        'the second sum',
        async () => ((await output(started.id)) === 'sum 2\nsum 42\n' ? true : undefined),
        15_000,
      );
      expect((await client.getCommand(id, started.id)).state).toBe('running');
      await client.writeStdin(id, started.id, '', { eof: true });
      const ended = await client.waitForCommand(id, started.id);
      expect(ended).toMatchObject({ state: 'exited', exitCode: 0 });
      expect(ended.stdout.data).toBe('sum 2\nsum 42\nfinal 42\n');
    });

    it('refuses input it cannot deliver, with the status that says why', async () => {
      const closed = await start({ command: 'sleep 30' });
      await expectStatus(client.writeStdin(id, closed.id, 'x'), 409, /openStdin/);
      await client.cancelCommand(id, closed.id);
      await expectStatus(client.writeStdin(id, closed.id, 'x'), 409, /killed|ended/);
      const open = await start({ command: 'cat > /dev/null', openStdin: true });
      await client.writeStdin(id, open.id, 'bye', { eof: true });
      await expectStatus(client.writeStdin(id, open.id, 'again'), 409, /closed|exited|ended/);
      // Well-formed ids of nothing (a malformed one is a 400).
      const other = (real: string) => real.replace(/.$/, (c) => (c === 'a' ? 'b' : 'a'));
      await expectStatus(client.writeStdin(id, other(open.id), 'x'), 404, /./);
      await expectStatus(client.writeStdin(other(id), open.id, 'x'), 404, /./);
      const tooBig = await start({ command: 'cat > /dev/null', openStdin: true });
      await expectStatus(client.writeStdin(id, tooBig.id, new Uint8Array(1024 * 1024 + 1)), 413, /at most/);
      await client.writeStdin(id, tooBig.id, '', { eof: true });
      expect(await client.waitForCommand(id, tooBig.id)).toMatchObject({ state: 'exited', exitCode: 0 });
    });

    it('a terminal over the API: its size, a resize, keys in (Ctrl-C as a byte)', async () => {
      const started = await client.runCommand(
        id,
        {
          argv: ['sh', '-c', 'stty size; trap "stty size" WINCH; echo ready; while :; do sleep 0.1; done'],
          tty: { rows: 24, cols: 80 },
          waitMs: 0,
        },
        { wait: false },
      );
      await waitFor('ready', async () => ((await output(started.id)).includes('ready') ? true : undefined), 15_000);
      expect(await output(started.id)).toBe('24 80\r\nready\r\n');
      await client.resizeCommand(id, started.id, { rows: 40, cols: 100 });
      await waitFor(
        'the new size',
        async () => ((await output(started.id)).includes('40 100') ? true : undefined),
        15_000,
      );
      await client.writeStdin(id, started.id, '\x03');
      const ended = await client.waitForCommand(id, started.id);
      expect(ended.state).not.toBe('running');
      expect(ended.stderr.bytes).toBe(0);
      await expectStatus(client.resizeCommand(id, started.id, { rows: 10, cols: 10 }), 409, /./);
    });

    it('without a token, nothing is delivered (401)', async () => {
      const open = await start({ command: 'cat', openStdin: true });
      const res = await fetch(`${wsp.url}/workspaces/${id}/commands/${open.id}/stdin?eof=true`, {
        method: 'POST',
        body: 'intruder',
      });
      expect(res.status).toBe(401);
      expect((await client.getCommand(id, open.id)).state).toBe('running');
      await client.writeStdin(id, open.id, 'owner\n', { eof: true });
      expect((await client.waitForCommand(id, open.id)).stdout.data).toBe('owner\n');
    });
  });
}
