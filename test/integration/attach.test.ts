import { PassThrough, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { WspClient } from '../../shared/client/client.js';
import { WspApiError } from '../../shared/client/errors.js';
import { runShell } from '../../functions/cli/shell.js';
import { closeTestProvider } from '../support/hostile-backends.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';
import { rootUnavailable } from '../support/root.js';

// Terminals over the local server (issue 13's acceptance): a command under a pseudo-terminal,
// attached over a WebSocket — a python REPL driven as a person would (a variable defined and read
// back, Ctrl-C out of a `while True`, exit) — and `wsp shell` on top of it. As the attacker too:
// no token, someone else's command, a plain GET.

describe.skipIf(rootUnavailable !== undefined)('attach and terminals over the local server', () => {
  let wsp: TestProvider;
  let client: WspClient;
  let id: string;

  beforeAll(async () => {
    wsp = await startTestProvider({ workspace: { network: 'none' } });
    client = new WspClient({ baseUrl: wsp.url, token: wsp.token });
    id = (await wsp.setup()).id;
  }, 120_000);

  afterAll(async () => {
    if (wsp) await closeTestProvider(wsp);
  });

  /** What the terminal showed so far, and a way to wait for a pattern in it (from a given point). */
  function screenOf(ws: WebSocket) {
    let text = '';
    let end: { state: string; exitCode: number | null } | undefined;
    const waiters: Array<() => void> = [];
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) text += data.subarray(1).toString('utf8');
      else {
        const m = JSON.parse(data.toString('utf8'));
        if (m.type === 'end') end = m.command;
      }
      for (const w of waiters.splice(0)) w();
    });
    ws.on('close', () => {
      for (const w of waiters.splice(0)) w();
    });
    const waitFor = async (pattern: RegExp, from = 0): Promise<void> => {
      const deadline = Date.now() + 15_000;
      while (!pattern.test(text.slice(from))) {
        if (Date.now() > deadline)
          throw new Error(`timed out waiting for ${pattern}; the screen: ${JSON.stringify(text)}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 200);
        });
      }
    };
    return {
      get text() {
        return text;
      },
      get end() {
        return end;
      },
      waitFor,
      type: (keys: string) => ws.send(Buffer.from(keys), { binary: true }),
    };
  }

  it('a python REPL through attach: a variable kept, Ctrl-C out of a loop, resize, exit', async () => {
    const started = await client.runCommand(
      id,
      { argv: ['python3', '-q'], tty: { rows: 24, cols: 80 }, env: { TERM: 'xterm' }, waitMs: 0 },
      { wait: false },
    );
    const ws = await client.attach(id, started.id);
    const screen = screenOf(ws);
    await screen.waitFor(/>>> $/);
    screen.type('x = 6 * 7\r');
    screen.type('print("x is", x)\r');
    await screen.waitFor(/x is 42/);
    let mark = screen.text.length;
    screen.type('while True: pass\r\r');
    await new Promise((r) => setTimeout(r, 500));
    screen.type('\x03');
    await screen.waitFor(/KeyboardInterrupt/, mark);
    mark = screen.text.length;
    screen.type('print("still", x + 1)\r');
    await screen.waitFor(/still 43/, mark);
    ws.send(JSON.stringify({ type: 'resize', rows: 50, cols: 132 }));
    await new Promise((r) => setTimeout(r, 200));
    mark = screen.text.length;
    screen.type('import os; print(os.get_terminal_size())\r');
    await screen.waitFor(/columns=132, lines=50/, mark);
    screen.type('exit()\r');
    await new Promise<void>((resolve) => ws.once('close', () => resolve()));
    expect(screen.end).toMatchObject({ state: 'exited', exitCode: 0 });
  });

  it('`wsp shell` drives the workspace shell from a terminal stream and exits with its code', async () => {
    const input = new PassThrough() as unknown as NodeJS.ReadStream;
    let shown = '';
    const output = new Writable({
      write(chunk: Buffer, _enc, done) {
        shown += chunk.toString('utf8');
        done();
      },
    }) as unknown as NodeJS.WriteStream;
    const errors: string[] = [];
    const code = runShell(
      client,
      { out: async () => undefined, err: async (d) => void errors.push(String(d)) },
      { workspaceId: id, argv: ['sh', '-i'], input, output },
    );
    // Keys arrive as typed (they wait in the pipe until the terminal is up).
    (input as unknown as PassThrough).write('cd /tmp && echo "at $(pwd) $((6 * 7))"\r');
    (input as unknown as PassThrough).write('exit 5\r');
    expect(await code).toBe(5);
    expect(shown).toMatch(/at \/tmp 42/);
    expect(errors).toEqual([]);
  });

  it('refuses without the token, for a command of nobody, and without the upgrade', async () => {
    const started = await client.runCommand(id, { argv: ['sleep', '30'], waitMs: 0 }, { wait: false });
    const anonymous = new WspClient({ baseUrl: wsp.url });
    const status = async (p: Promise<unknown>) =>
      p.then(
        () => 0,
        (e: unknown) => (e instanceof WspApiError ? e.status : -1),
      );
    expect(await status(anonymous.attach(id, started.id))).toBe(401);
    const other = (real: string) => real.replace(/.$/, (c) => (c === 'a' ? 'b' : 'a'));
    expect(await status(client.attach(id, other(started.id)))).toBe(404);
    expect(await status(client.attach(other(id), started.id))).toBe(404);
    const plain = await fetch(`${wsp.url}/workspaces/${id}/commands/${started.id}/attach`, {
      headers: { authorization: `Bearer ${wsp.token}` },
    });
    expect(plain.status).toBe(400);
    expect(((await plain.json()) as { error: { message: string } }).error.message).toMatch(/WebSocket/);
    await client.cancelCommand(id, started.id);
  });
});
