import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUpstreamRepo } from '../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../support/git-server.js';
import { settledView, spawnProvider, type SpawnedProvider } from '../support/spawned-provider.js';
import { processesWith, waitFor } from '../support/wait.js';

// Invariant 5: kill -9 the provider at any point; on restart nothing stays transitional, nothing is
// orphaned, no completed command result is lost.
const TOKEN = `crash-${randomBytes(8).toString('hex')}`;
const MARK = `${7 + Math.floor(Math.random() * 1000) / 1000}`; // a unique sleep duration to find our processes
let git: GitServer;
let root: string;
let configFile: string;
let dataDir: string;
let provider: SpawnedProvider | undefined;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-crash-'));
  fs.chmodSync(root, 0o711); // workspace uids traverse to their dirs under the data dir
  git = await startGitServer({ token: TOKEN, root: path.join(root, 'git') });
  createUpstreamRepo(git.root, 'app', { 'a.txt': 'a\n' });
  dataDir = path.join(root, 'data');
  configFile = path.join(root, 'wsp.json');
});

afterAll(async () => {
  await provider?.stop();
  await git?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

function writeConfig(setup: string): void {
  fs.writeFileSync(
    configFile,
    JSON.stringify({
      dataDir,
      repositories: [{ url: git.url('app'), path: 'app', credential: 'env:CRASH_TOKEN' }],
      setup: { script: setup },
      workspace: { network: 'none' },
    }),
  );
}

/** How long a setup may take to settle after a restart (as this file's waitFor). */
const SETTLE_MS = 60_000;

describe('crash safety (kill -9 of the provider process)', () => {
  it('during setup: the restarted provider picks provisioning up where it was — setup runs once, the workspace ends ready', async () => {
    writeConfig(`echo run >> "$HOME/setup-runs"; sleep ${MARK}`);
    provider = await spawnProvider(configFile, { CRASH_TOKEN: TOKEN });
    const created = await provider.api('POST', '/workspaces', {});
    expect(created.status).toBe(202);
    const id = created.body.id as string;
    await waitFor('setup to start', async () =>
      (await provider!.api('GET', `/workspaces/${id}`)).body.steps.some((s: any) => s.step === 'setup')
        ? true
        : undefined,
    );
    await waitFor('the setup process', async () => (processesWith(`sleep ${MARK}`) > 0 ? true : undefined));
    await provider.kill9();

    provider = await spawnProvider(configFile, { CRASH_TOKEN: TOKEN });
    const ws = await settledView(provider, id, SETTLE_MS);
    expect(ws.status, JSON.stringify(ws.failure)).toBe('ready');
    const runs = await provider.api('POST', `/workspaces/${id}/commands`, {
      command: 'wc -l < "$HOME/setup-runs"',
      waitMs: 20_000,
    });
    expect(runs.body.stdout.data.trim()).toBe('1');
    expect(processesWith(`sleep ${MARK}`)).toBe(0);
    // The cache entry it was building was kept, not released by the restart: the next setup hits it.
    const second = (await provider.api('POST', '/workspaces', {})).body.id as string;
    const warm = await settledView(provider, second, SETTLE_MS);
    expect(warm).toMatchObject({ status: 'ready', cache: { hit: true } });
    expect((await provider.api('DELETE', `/workspaces/${second}`)).status).toBe(200);
    const all = (await provider.api('GET', '/workspaces')).body.workspaces as any[];
    expect(all.filter((w) => ['provisioning', 'resetting', 'deleting'].includes(w.status))).toEqual([]);
    expect((await provider.api('DELETE', `/workspaces/${id}`)).status).toBe(200);
    expect(fs.existsSync(path.join(dataDir, 'local', 'workspaces', id))).toBe(false);
    await provider.stop();
  });

  it('during a command: the result is not lost, and a still-running command can be cancelled', async () => {
    writeConfig('true');
    provider = await spawnProvider(configFile, { CRASH_TOKEN: TOKEN });
    const created = await provider.api('POST', '/workspaces', {});
    const id = created.body.id as string;
    await waitFor('ready', async () =>
      (await provider!.api('GET', `/workspaces/${id}`)).body.status === 'ready' ? true : undefined,
    );
    const short = await provider.api('POST', `/workspaces/${id}/commands`, {
      command: 'sleep 1.5; echo finished',
      waitMs: 0,
    });
    const long = await provider.api('POST', `/workspaces/${id}/commands`, { command: `sleep ${MARK}0`, waitMs: 0 });
    expect(short.status).toBe(202);
    await provider.kill9();
    await new Promise((r) => setTimeout(r, 2_000)); // the short command ends while no provider runs

    provider = await spawnProvider(configFile, { CRASH_TOKEN: TOKEN });
    const s = (await provider.api('GET', `/workspaces/${id}/commands/${short.body.id}?waitMs=5000`)).body;
    expect(s).toMatchObject({ state: 'exited', exitCode: 0 });
    expect(s.stdout.data).toBe('finished\n');
    const l = (await provider.api('GET', `/workspaces/${id}/commands/${long.body.id}`)).body;
    expect(l.state).toBe('running');
    const cancelled = (await provider.api('DELETE', `/workspaces/${id}/commands/${long.body.id}`)).body;
    expect(cancelled.state).toBe('killed');
    expect(processesWith(`sleep ${MARK}0`)).toBe(0);
    expect((await provider.api('DELETE', `/workspaces/${id}`)).status).toBe(200);
    await provider.stop();
  });
});
