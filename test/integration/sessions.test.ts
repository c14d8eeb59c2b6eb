import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WspClient } from '../../shared/client/client.js';
import type { ConfigInput } from '../../shared/config/schema.js';
import type { StreamView } from '../../shared/contract/views.js';
import type { WspApiError } from '../../shared/client/errors.js';
import { expectStatus } from '../support/api-error.js';
import { filesTargets, type Started } from '../support/files-targets.js';
import type { TestProvider } from '../support/provider-fixture.js';

// Persistent shell sessions (issue 13) over real HTTP through the typed client, on local, Docker and
// Fargate (fake): state persists between runs, interrupt and timeout leave the shell usable, output is
// bounded per run without breaking the framing, a dead shell says `lost`, a reset ends sessions.

const MAX_OUTPUT = 4096;
const CONFIG: ConfigInput = {
  workspace: { network: 'none' },
  commands: { maxOutputBytes: MAX_OUTPUT },
  sessions: { maxPerWorkspace: 3 },
};

const bytesOf = (s: StreamView): Buffer => Buffer.from(s.data, s.encoding === 'base64' ? 'base64' : 'utf8');

for (const target of filesTargets(CONFIG)) {
  describe.skipIf(target.skip !== undefined)(`shell sessions over the API (${target.name})`, () => {
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

    // A failed case leaves no session behind to count against the next one's limit.
    afterEach(async () => {
      for (const s of await client.listSessions(id).catch(() => []))
        await client.deleteSession(id, s.id).catch(() => undefined);
    });

    it('keeps cwd, variables, functions, aliases and PATH between runs; separates stdout and stderr', async () => {
      const s = await client.createSession(id);
      expect(s).toMatchObject({ workspaceId: id, state: 'idle', shell: 'bash' });
      const run = (command: string) => client.runInSession(id, s.id, { command });
      expect(
        await run(
          'mkdir -p sub/dir && cd sub; export EXP=1; PLAIN=two; greet() { echo "hi $1"; }; alias say="echo said"',
        ),
      ).toMatchObject({ state: 'exited', exitCode: 0 });
      const r = await run('pwd; echo "$EXP $PLAIN"; greet you; say it; echo oops >&2');
      expect(r.stdout.data).toMatch(/\/sub\n1 two\nhi you\nsaid it\n$/);
      expect(r.stderr.data).toBe('oops\n');
      // A virtualenv-like activation: PATH and a variable changed by a sourced script.
      await run(
        'mkdir -p venv/bin && printf "#!/bin/sh\\necho from-venv\\n" > venv/bin/vtool && chmod +x venv/bin/vtool && printf "export VIRTUAL_ENV=$PWD/venv\\nexport PATH=$PWD/venv/bin:\\$PATH\\n" > venv/activate',
      );
      await run('. venv/activate');
      const v = await run('vtool; echo "$VIRTUAL_ENV"');
      expect(v.stdout.data).toMatch(/^from-venv\n.*\/sub\/venv\n$/);
      // Exit codes, and binary output.
      expect(await run('(exit 7)')).toMatchObject({ state: 'exited', exitCode: 7 });
      const bin = await run("printf 'a\\000b\\377c'");
      expect(bytesOf(bin.stdout)).toEqual(Buffer.from([0x61, 0, 0x62, 0xff, 0x63]));
      // A fake sentinel printed by the command ends nothing early.
      const fake = await run('echo "deadbeef:3 0"; for n in 1 2 3; do echo "$n:$n 0"; done; sleep 0.3; echo real-end');
      expect(fake.stdout.data).toMatch(/real-end\n$/);
      await client.deleteSession(id, s.id);
    });

    it('interrupts a shell loop: interrupted/130, then the shell goes on in its cwd', async () => {
      const s = await client.createSession(id, { cwd: '.' });
      await client.runInSession(id, s.id, { command: 'cd /tmp' });
      const running = await client.runInSession(
        id,
        s.id,
        { command: 'while true; do sleep 1; done', waitMs: 500 },
        { wait: false },
      );
      expect(running.state).toBe('running');
      expect((await client.getSession(id, s.id)).state).toBe('busy');
      const after = await client.interruptSession(id, s.id);
      expect(after.lastRun).toMatchObject({ runId: running.runId, state: 'interrupted', exitCode: 130 });
      expect(after.state).toBe('idle');
      expect((await client.runInSession(id, s.id, { command: 'pwd' })).stdout.data).toBe('/tmp\n');
      await client.deleteSession(id, s.id);
    });

    it('an interrupt sent the moment a run was (before the shell has read its line) still ends it', async () => {
      // A SIGINT that reaches the shell before it reads the line is lost (the shell abandons an empty
      // line, then runs this one whole): the interrupt must wait for the run to have begun. Several
      // tries, each at once after the run's answer, so that some land in that window.
      const s = await client.createSession(id);
      for (let i = 0; i < 5; i++) {
        const running = await client.runInSession(id, s.id, { command: 'sleep 30', waitMs: 0 }, { wait: false });
        const after = await client.interruptSession(id, s.id);
        expect(after.lastRun, `try ${i}`).toMatchObject({ runId: running.runId, state: 'interrupted', exitCode: 130 });
      }
      expect((await client.runInSession(id, s.id, { command: 'echo alive' })).stdout.data).toBe('alive\n');
      await client.deleteSession(id, s.id);
    });

    it('a timeout interrupts the run and leaves the session usable', async () => {
      const s = await client.createSession(id);
      await client.runInSession(id, s.id, { command: 'cd /tmp; X=kept' });
      const t0 = Date.now();
      const r = await client.runInSession(id, s.id, { command: 'while :; do sleep 1; done', timeoutMs: 1000 });
      expect(r).toMatchObject({ state: 'killed', exitCode: 130, reason: 'timeout' });
      expect(Date.now() - t0).toBeLessThan(15_000);
      expect((await client.runInSession(id, s.id, { command: 'echo "$PWD $X"' })).stdout.data).toBe('/tmp kept\n');
      await client.deleteSession(id, s.id);
    });

    it('bounds each run at maxOutputBytes and keeps its framing over many runs', async () => {
      const s = await client.createSession(id);
      for (let i = 0; i < 3; i++) {
        const r = await client.runInSession(id, s.id, {
          command: `head -c ${MAX_OUTPUT + 100} /dev/zero | tr '\\0' x; head -c ${MAX_OUTPUT + 1} /dev/zero | tr '\\0' y >&2`,
        });
        expect(r).toMatchObject({ state: 'exited', exitCode: 0 });
        expect(r.stdout).toMatchObject({ bytes: MAX_OUTPUT + 100, truncated: true });
        expect(r.stdout.data.length).toBe(MAX_OUTPUT);
        expect(r.stderr).toMatchObject({ bytes: MAX_OUTPUT + 1, truncated: true });
      }
      for (let i = 0; i < 30; i++) {
        const r = await client.runInSession(id, s.id, { command: `echo run ${i}` });
        expect(r.stdout.data).toBe(`run ${i}\n`);
      }
      await client.deleteSession(id, s.id);
    });

    it('a shell killed from inside, or exited, says lost without hanging', async () => {
      const killed = await client.createSession(id);
      const r = await client.runInSession(id, killed.id, { command: 'kill -9 $$' });
      expect(r.state).toBe('lost');
      expect((await client.getSession(id, killed.id)).state).toBe('lost');
      await expectStatus(client.runInSession(id, killed.id, { command: 'true' }), 409, /lost/);
      const exited = await client.createSession(id);
      expect((await client.runInSession(id, exited.id, { command: 'exit 3' })).state).toBe('lost');
      await client.deleteSession(id, killed.id);
      await client.deleteSession(id, exited.id);
    });

    it('one run at a time: of two concurrent runs exactly one is refused (409)', async () => {
      const s = await client.createSession(id);
      const results = await Promise.allSettled([
        client.runInSession(id, s.id, { command: 'sleep 1; echo a' }),
        client.runInSession(id, s.id, { command: 'sleep 1; echo b' }),
      ]);
      const refused = results.filter((r) => r.status === 'rejected');
      expect(refused).toHaveLength(1);
      expect(((refused[0] as PromiseRejectedResult).reason as WspApiError).status).toBe(409);
      await client.deleteSession(id, s.id);
    });

    it('unknown ids are 404, another workspace’s session too; bad input 400; a limit per workspace', async () => {
      const s = await client.createSession(id);
      const other = s.id.replace(/.$/, (c) => (c === 'a' ? 'b' : 'a'));
      await expectStatus(client.getSession(id, other), 404, /session/);
      await expectStatus(client.runInSession(id, other, { command: 'true' }), 404, /session/);
      await expectStatus(client.getSession('ws-000000000000000000000000', s.id), 404, /./);
      const second = (await wsp.setup()).id;
      await expectStatus(client.getSession(second, s.id), 404, /session/);
      await expectStatus(client.deleteSession(second, s.id), 404, /session/);
      await expectStatus(client.createSession(id, { cwd: '/etc' }), 400, /cwd/);
      await expectStatus(client.runInSession(id, s.id, { command: '' }), 400, /command/);
      await expectStatus(client.getSession(id, 'sess-nope'), 400, /sid/);
      const more = [await client.createSession(id), await client.createSession(id)];
      await expectStatus(client.createSession(id), 409, /maxPerWorkspace/);
      for (const m of [s, ...more]) await client.deleteSession(id, m.id);
      expect(await client.listSessions(id)).toEqual([]);
      // Five at once against a limit of three: exactly three are made (the count and the write are one step).
      const racing = await Promise.allSettled(Array.from({ length: 5 }, () => client.createSession(id)));
      const made = racing.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      expect(made).toHaveLength(3);
      for (const r of racing) if (r.status === 'rejected') expect(String(r.reason)).toMatch(/maxPerWorkspace/);
      for (const m of made) await client.deleteSession(id, m.id);
      expect(await client.listSessions(id)).toEqual([]);
    });

    it('a reset ends every session: lost on the next call', async () => {
      const s = await client.createSession(id);
      await client.runInSession(id, s.id, { command: 'echo before' });
      expect((await client.listSessions(id)).map((x) => x.id)).toEqual([s.id]);
      await client.reset(id);
      const after = await client.getSession(id, s.id);
      expect(after.state).toBe('lost');
      await expectStatus(client.runInSession(id, s.id, { command: 'true' }), 409, /lost/);
      const fresh = await client.createSession(id);
      expect((await client.runInSession(id, fresh.id, { command: 'echo again' })).stdout.data).toBe('again\n');
    });
  });
}
