import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rootUnavailable } from '../support/root.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';

// The local backend starts a workspace's commands through an in-sandbox forker (a python process of
// the workspace's own uid, shared/backends/local/forker-start.ts and supervisor/forked.ts). The
// attacker owns that process: it stops it, kills it, writes into its channel and lies to it. None of
// that may reach the provider's supervisor (shared by every workspace), another workspace, or the
// guarantees on its own commands that the provider keeps host-side (timeouts, output caps).

const skip = rootUnavailable;
const CONFIG = { workspace: { network: 'none' as const } };
// `pkill -x python3`: the forker is the only python3 of these workspaces when it is signalled (and
// `pkill -f` would match the signalling shell's own command line).

describe.skipIf(skip !== undefined)('the in-sandbox forker, attacked by its own workspace (local backend)', () => {
  let wsp: TestProvider;

  beforeAll(async () => {
    wsp = await startTestProvider(CONFIG);
  }, 60_000);

  afterAll(async () => {
    if (wsp) {
      const backend = wsp.provider.deps.backend;
      for (const ws of await backend.listResources()) await backend.destroy(ws.ref);
    }
    await wsp?.close();
    if (wsp) fs.rmSync(wsp.dataDir, { recursive: true, force: true });
  });

  async function run(id: string, command: string, extra: Record<string, unknown> = {}) {
    const r = await wsp.exec(id, command, extra);
    return {
      id: r.id as string,
      exitCode: r.exitCode as number | null,
      state: r.state as string,
      stdout: String(r.stdout.data),
      stderr: String(r.stderr.data),
    };
  }
  const parentArgs = 'tr "\\0" " " < /proc/$PPID/cmdline';
  /**
   * Until a command runs through the forker: a new holder's forker starts beside the command that
   * started the holder (that one takes a sandbox of its own), so it is up a moment later.
   */
  async function forkerUp(id: string): Promise<void> {
    for (let i = 0; i < 100; i++) {
      if ((await run(id, parentArgs)).stdout.includes('/run/wsp-forker/forker.py')) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error('no command ran through the forker');
  }

  it('runs commands on network none through the forker, and they share one network namespace', async () => {
    const a = await wsp.setup();
    // The first command after setup (whose end killed everything) starts a holder, and takes a sandbox
    // of its own; the forker then runs the next ones.
    expect((await run(a.id, parentArgs)).stdout).not.toContain('forker.py');
    await forkerUp(a.id);
    // A server one command leaves on lo is reachable by the next (one namespace, as in a container).
    const serve = await run(
      a.id,
      `python3 -c 'import socket,os
s=socket.socket(); s.bind(("127.0.0.1", 4711)); s.listen()
if os.fork(): os._exit(0)
c,_=s.accept(); c.send(b"hello"); c.close()' > /dev/null 2>&1; echo up`,
    );
    expect(serve.stdout).toBe('up\n');
    const get = await run(
      a.id,
      `python3 -c 'import socket; s=socket.create_connection(("127.0.0.1", 4711)); print(s.recv(5).decode())'`,
    );
    expect(get.stdout, get.stderr).toBe('hello\n');
  }, 60_000);

  it('its channel cannot be written, listed or swapped from inside', async () => {
    const a = await wsp.setup();
    await forkerUp(a.id);
    const r = await run(
      a.id,
      'ls /run/wsp-forker 2>&1; echo x > /run/wsp-forker/evil 2>&1; rm -f /run/wsp-forker/req 2>&1; ln -s / /run/wsp-forker/l 2>&1; echo done',
    );
    expect(r.stdout).toMatch(/Permission denied/);
    expect(r.stdout).toMatch(/Read-only file system|Permission denied/);
    const chan = path.join(wsp.dataDir, 'local', 'workspaces', a.id, 'chan');
    expect(fs.readdirSync(chan).sort()).toEqual(expect.arrayContaining(['forker.py', 'req']));
    expect(fs.existsSync(path.join(chan, 'evil'))).toBe(false);
    expect(fs.existsSync(path.join(chan, 'l'))).toBe(false);
    expect(fs.statSync(chan).uid).toBe(0);
    // Garbage on its request FIFO (any length, no newline, bad tokens) breaks nothing.
    await run(
      a.id,
      'head -c 100000 /dev/urandom > /run/wsp-forker/req; printf "s 0123\\nk zz\\ns ../../etc/passwd\\n" > /run/wsp-forker/req; echo',
    );
    expect((await run(a.id, 'echo still')).stdout).toBe('still\n');
  }, 60_000);

  it('a stopped forker stalls only its own workspace: the command fails clearly, the next one runs without it', async () => {
    const a = await wsp.setup();
    const b = await wsp.setup();
    await forkerUp(a.id);
    // Stopped from the background, once this command's end is reported (a command that stops the
    // forker under itself waits for its timeout: next test).
    const stop = await run(a.id, `(sleep 0.5; pkill -STOP -x python3) > /dev/null 2>&1 & echo stopping`);
    expect(stop.stdout).toBe('stopping\n');
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const stalled = wsp.exec(a.id, 'echo never');
    // Meanwhile the supervisor serves everyone else at once.
    const t0 = Date.now();
    expect((await run(b.id, 'echo b')).stdout).toBe('b\n');
    expect(Date.now() - t0).toBeLessThan(5_000);
    const r = await stalled;
    expect(r.exitCode).toBe(125);
    expect(String(r.stderr.data)).toContain('did not start the command in time');
    expect(String(r.stdout.data)).toBe('');
    // The workspace goes on, through a sandbox per command (its forker is not used again).
    const next = await run(a.id, `echo works; ${parentArgs}`);
    expect(next.stdout).toMatch(/^works\n/);
    expect(next.stdout).not.toContain('forker.py');
  }, 60_000);

  it('a timeout holds even when the command stops its forker; output stays capped', async () => {
    const a = await wsp.setup();
    await forkerUp(a.id);
    const cap = wsp.provider.deps.config.commands.maxOutputBytes;
    const r = await run(a.id, `pkill -STOP -x python3; head -c ${cap + 100_000} /dev/zero; sleep 300`, {
      timeoutMs: 1_000,
      waitMs: 20_000,
    });
    expect(r.state).toBe('killed');
    const status = await wsp.api('GET', `/workspaces/${a.id}/commands/${r.id}`);
    expect(status.body.stdout).toMatchObject({ truncated: true });
    expect(status.body.stdout.bytes).toBeGreaterThan(cap);
    // The sleep was killed by the provider (host-side group kill), not by the stopped forker.
    const left = await run(a.id, "ps -e -o args= | grep -x 'sleep 300' || echo none");
    expect(left.stdout).toBe('none\n');
  }, 60_000);

  it('a killed forker costs only the fast path: background processes live on, the next command works', async () => {
    const a = await wsp.setup();
    await forkerUp(a.id);
    await run(a.id, 'sleep 3201 > /dev/null 2>&1 & echo ok');
    const r = await run(a.id, `pkill -KILL -x python3; sleep 1; echo after`);
    // The forker ran this command: it ends without a status of its own, and says why.
    expect(r.exitCode).toBe(125);
    expect(r.stderr).toContain("the workspace's command runner ended while the command ran");
    const next = await run(a.id, 'echo works; pgrep -x -a sleep');
    expect(next.stdout).toMatch(/^works\n/);
    expect(next.stdout).toContain('sleep 3201');
  }, 60_000);
});
