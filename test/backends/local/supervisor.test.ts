import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { liveStartTime } from '../../../shared/backends/local/procs.js';
import { startTestProvider, type TestProvider } from '../../support/provider-fixture.js';
import { waitFor } from '../../support/wait.js';

// The local backend's command supervisor (shared/backends/local/supervisor/daemon.ts) starts and
// supervises every command of a data dir from one detached process. The attacker runs commands and
// looks for what of the provider a command can reach (descriptors, the supervisor's socket), and
// kills what it can; the operator kills the supervisor itself.

describe('the local command supervisor', () => {
  let wsp: TestProvider;
  let id: string;

  beforeAll(async () => {
    wsp = await startTestProvider({ workspace: { network: 'none' } });
    id = (await wsp.setup()).id;
  }, 60_000);

  afterAll(async () => {
    if (wsp)
      for (const ws of await wsp.provider.deps.backend.listResources()) await wsp.provider.deps.backend.destroy(ws.ref);
    await wsp?.close();
    if (wsp) fs.rmSync(wsp.dataDir, { recursive: true, force: true });
  });

  const runDir = (): string => path.join(wsp.dataDir, 'local', 'run');
  /** Pid of the supervisor that recorded itself for a command. */
  const supervisorOf = (commandId: string): number =>
    Number(
      fs
        .readFileSync(path.join(wsp.dataDir, 'local', 'workspaces', id, 'commands', commandId, 'pid'), 'utf8')
        .split(' ')[0],
    );

  it("a command holds no descriptor of the provider's: its stdio, the namespaces it is in, /dev/null", async () => {
    // bash's own descriptors, listed by a child into a file (a pipeline's pipe would be bash's for a
    // moment too; the listing's own directory descriptor is not bash's).
    const r = await wsp.exec(id, 'ls -l /proc/$$/fd > /tmp/fds; tail -n +2 /tmp/fds');
    expect(r.exitCode, String(r.stderr.data)).toBe(0);
    const targets = String(r.stdout.data)
      .trim()
      .split('\n')
      .map((l) => {
        const m = /\s(\d+) -> (.*)$/.exec(l)!;
        return { fd: Number(m[1]), target: m[2]! };
      });
    expect(targets.length).toBeGreaterThanOrEqual(3);
    for (const { fd, target } of targets) {
      if (fd === 0) expect(target).toMatch(/\/stdin \(deleted\)$|\.in \(deleted\)$|^\/dev\/null$/);
      else if (fd === 1 || fd === 2)
        // its output FIFOs: the supervisor's pool, or the forker's channel (unlinked once the forker reported the start)
        expect(target).toMatch(/\/f\d+ \(deleted\)$|^\/run\/wsp-forker\/f[\d-]+( \(deleted\))?$/);
      else if (fd === 7) expect(target).toMatch(/^user:\[\d+\]$/);
      else if (fd === 8) expect(target).toMatch(/^pid:\[\d+\]$/);
      else expect(target, `fd ${fd}`).toBe('/dev/null');
    }
  });

  it('a command can reopen its own output (/dev/stdout, /dev/stderr) as its own uid', async () => {
    const r = await wsp.exec(id, 'echo out > /dev/stdout; echo err > /dev/stderr; echo via-tee | tee /dev/stderr');
    expect(r.exitCode, String(r.stderr.data)).toBe(0);
    expect(String(r.stdout.data)).toBe('out\nvia-tee\n');
    expect(String(r.stderr.data)).toBe('err\nvia-tee\n');
  });

  it('the supervisor is out of the workspace’s reach: its socket and run dir are not in the sandbox', async () => {
    const socket = fs.readdirSync(runDir()).find((f) => f.endsWith('.sock'));
    expect(socket).toBeDefined();
    expect(fs.statSync(runDir()).mode & 0o777).toBe(0o700);
    const r = await wsp.exec(id, `ls -la ${JSON.stringify(path.join(runDir(), socket!))} 2>&1; echo rc=$?`);
    expect(String(r.stdout.data)).toMatch(/No such file or directory|Permission denied/);
  });

  it('a background process holding stdout does not hold the exit record; what it writes later stays capped', async () => {
    const r = await wsp.api('POST', `/workspaces/${id}/commands`, {
      command: '(sleep 2; head -c 20000000 /dev/zero) & echo started',
      waitMs: 20_000,
    });
    expect(r.body).toMatchObject({ state: 'exited', exitCode: 0 });
    expect(String(r.body.stdout.data)).toBe('started\n');
    const dir = path.join(wsp.dataDir, 'local', 'workspaces', id, 'commands', r.body.id);
    // The stream goes on being capped after the record: the kept file never passes the cap.
    await waitFor(
      'the count past the cap',
      async () => (fs.existsSync(path.join(dir, 'stdout.rest')) ? true : undefined),
      20_000,
    );
    const cap = wsp.provider.deps.config.commands.maxOutputBytes;
    expect(fs.statSync(path.join(dir, 'stdout')).size).toBeLessThanOrEqual(cap);
  }, 60_000);

  it('killed under a running command: the command reads lost, and the next command starts a new supervisor', async () => {
    const started = await wsp.api('POST', `/workspaces/${id}/commands`, { command: 'sleep 300', waitMs: 0 });
    expect(started.body.state).toBe('running');
    const pid = supervisorOf(started.body.id);
    process.kill(pid, 'SIGKILL');
    const lost = await wsp.api('GET', `/workspaces/${id}/commands/${started.body.id}?waitMs=10000`);
    expect(lost.body).toMatchObject({ state: 'lost' });
    const next = await wsp.exec(id, 'echo again');
    expect(next).toMatchObject({ state: 'exited', exitCode: 0 });
    expect(String(next.stdout.data)).toBe('again\n');
    expect(supervisorOf(next.id)).not.toBe(pid);
    await wsp.exec(id, 'pkill -KILL -x sleep || true');
  }, 60_000);

  it('ends by itself once no provider is connected and no command runs', async () => {
    const other = await startTestProvider({ workspace: { network: 'none' } });
    try {
      const ws = await other.setup();
      const r = await other.exec(ws.id, 'true');
      const dir = path.join(other.dataDir, 'local', 'workspaces', ws.id, 'commands', r.id);
      const pid = Number(fs.readFileSync(path.join(dir, 'pid'), 'utf8').split(' ')[0]);
      expect(await liveStartTime(pid)).toBeDefined();
      for (const w of await other.provider.deps.backend.listResources())
        await other.provider.deps.backend.destroy(w.ref);
      await other.close(); // closes its connection to the supervisor
      await waitFor(
        'the idle supervisor to end',
        async () => ((await liveStartTime(pid)) === undefined ? true : undefined),
        30_000,
      );
      expect(fs.readdirSync(path.join(other.dataDir, 'local', 'run')).filter((f) => f.endsWith('.sock'))).toEqual([]);
    } finally {
      fs.rmSync(other.dataDir, { recursive: true, force: true });
    }
  }, 90_000);
});
