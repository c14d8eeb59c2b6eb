import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweep } from '../../shared/service/janitor.js';
import { closeTestProvider, hostileBackends } from '../support/hostile-backends.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';

// The agent writes until the host's disk is full. The workspace's writable content is measured by
// the janitor (as the provider: a directory the agent made unreadable still counts); over the limit
// its processes are killed (the writer stops) and commands are refused until a reset.

const LIMIT_MB = 4;

describe.each(hostileBackends())('disk limit ($name backend)', ({ config, skip }) => {
  let wsp: TestProvider;

  beforeAll(async () => {
    if (skip !== undefined) return;
    wsp = await startTestProvider({
      ...config,
      setup: {
        script: 'echo clean > state.txt # disk-limit: a cache key of its own (docker cache images are named by key)',
      },
      workspace: { network: 'none', resources: { diskMb: LIMIT_MB } },
    });
  }, 60_000);

  afterAll(() => closeTestProvider(wsp));

  it.skipIf(skip !== undefined)(
    'a writer past the limit is stopped, commands get 409 until a reset, which clears it',
    async () => {
      const { deps, service } = wsp.provider;
      const ws = await wsp.setup();
      // Under the limit: the sweep leaves it alone.
      expect((await sweep(deps, service)).overDisk).toEqual([]);

      // A hidden writer: data in a directory nobody else may read, and a process that keeps appending.
      const started = await wsp.exec(
        ws.id,
        [
          'mkdir -p hoard && head -c 6000000 /dev/zero > hoard/blob && chmod 000 hoard',
          '(while :; do head -c 65536 /dev/zero >> more.bin; sleep 0.05; done) > /dev/null 2>&1 &',
          'echo started',
        ].join('\n'),
      );
      expect(started.stdout.data, JSON.stringify(started)).toContain('started');

      const report = await sweep(deps, service);
      expect(report.overDisk).toEqual([ws.id]);
      const view = (await wsp.api('GET', `/workspaces/${ws.id}`)).body;
      expect(view.warnings.join('\n')).toMatch(/disk limit exceeded: \d+ MiB used of 4 MiB/);

      // The writer was killed: usage no longer grows.
      const record = (await deps.state.getWorkspace(ws.id))!;
      const files = deps.backend.open(record.backend!, record.plan).files;
      const usage1 = await files.usageBytes!();
      await new Promise((r) => setTimeout(r, 600));
      const usage2 = await files.usageBytes!();
      expect(usage2).toBe(usage1);

      const refused = await wsp.api('POST', `/workspaces/${ws.id}/commands`, { command: 'echo hi' });
      expect(refused.status).toBe(409);
      expect(refused.body.error.message).toMatch(/disk limit/);
      // A second sweep does not kill or warn again.
      expect((await sweep(deps, service)).overDisk).toEqual([]);

      const reset = await wsp.api('POST', `/workspaces/${ws.id}/reset`, {});
      expect(reset.status, reset.text).toBe(200);
      expect(reset.body.matches).toBe(true);
      const after = (await wsp.api('GET', `/workspaces/${ws.id}`)).body;
      expect(after.warnings.join('\n')).not.toMatch(/disk limit/);
      const ok = await wsp.exec(ws.id, 'ls; cat state.txt');
      expect(ok).toMatchObject({ state: 'exited', exitCode: 0 });
      expect(ok.stdout.data).not.toMatch(/hoard|more\.bin/);
      expect((await sweep(deps, service)).overDisk).toEqual([]);
    },
    120_000,
  );
});
