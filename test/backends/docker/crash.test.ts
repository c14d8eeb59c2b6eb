import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUpstreamRepo } from '../../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../../support/git-server.js';
import { settledView, spawnProvider, type SpawnedProvider } from '../../support/spawned-provider.js';
import { BASE_IMAGE, DOCKER_SOCKET, dockerClient, dockerUnavailable } from '../../support/docker-daemon.js';
import { processesWith, waitFor as waitUntil } from '../../support/wait.js';

// Issue 3 acceptance, crash test on docker: kill -9 the provider mid-setup and mid-command; after a
// restart no orphan container or image, nothing transitional, no completed result lost.
const TOKEN = `crash-${randomBytes(8).toString('hex')}`;
const MARK = `${7 + Math.floor(Math.random() * 1000) / 1000}`; // a unique sleep duration to find our processes

/** How long a setup may take to settle after a restart (as this file's waitFor). */
const SETTLE_MS = 90_000;

describe.skipIf(dockerUnavailable !== undefined)('crash safety on docker (kill -9 of the provider process)', () => {
  let git: GitServer;
  let root: string;
  let configFile: string;
  let dataDir: string;
  let provider: SpawnedProvider | undefined;
  const docker = dockerClient();
  const owner = (): string => fs.readFileSync(path.join(dataDir, 'instance-id'), 'utf8').trim();
  const byLabels = (labels: string[]) => JSON.stringify({ label: labels });
  const containersOf = async (id: string) =>
    docker.listContainers({
      all: true,
      filters: byLabels([`wsp.owner=${owner()}`, `wsp.workspace=${id}`, 'wsp.kind=workspace']),
    });
  const imagesOfOwner = async () => docker.listImages({ filters: byLabels([`wsp.owner=${owner()}`]) });

  beforeAll(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-dcrash-'));
    git = await startGitServer({ token: TOKEN, root: path.join(root, 'git') });
    createUpstreamRepo(git.root, 'app', { 'a.txt': 'a\n' });
    dataDir = path.join(root, 'data');
    configFile = path.join(root, 'wsp.json');
  });

  afterAll(async () => {
    await provider?.stop();
    // Whatever a failed assertion left behind, by this instance's label.
    if (fs.existsSync(path.join(dataDir, 'instance-id'))) {
      for (const c of await docker.listContainers({ all: true, filters: byLabels([`wsp.owner=${owner()}`]) }))
        await docker
          .getContainer(c.Id)
          .remove({ force: true })
          .catch(() => undefined);
      for (const i of await imagesOfOwner())
        await docker
          .getImage(i.Id)
          .remove({ force: true })
          .catch(() => undefined);
    }
    await git?.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  function writeConfig(setup: string): void {
    fs.writeFileSync(
      configFile,
      JSON.stringify({
        mode: 'docker',
        docker: { socketPath: DOCKER_SOCKET, baseImage: BASE_IMAGE },
        dataDir,
        repositories: [{ url: git.url('app'), path: 'app', credential: 'env:CRASH_TOKEN' }],
        setup: { script: setup },
        workspace: { network: 'none' },
      }),
    );
  }

  // waitFor's default here: a docker setup takes longer than a local one.
  const waitFor = <T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 90_000) =>
    waitUntil(what, fn, timeoutMs);

  it('during setup: the restarted provider picks provisioning up where it was — setup runs once, the workspace ends ready', async () => {
    writeConfig(`echo run >> "$HOME/setup-runs"; sleep ${MARK}`);
    provider = await spawnProvider(configFile, { CRASH_TOKEN: TOKEN });
    const created = await provider.api('POST', '/workspaces', {});
    expect(created.status).toBe(202);
    const id = created.body.id as string;
    await waitFor('the setup process', async () => (processesWith(`sleep ${MARK}`) > 0 ? true : undefined));
    expect((await containersOf(id)).length).toBe(1);
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
    expect((await containersOf(id)).length).toBe(1);
    const all = (await provider.api('GET', '/workspaces')).body.workspaces as any[];
    expect(all.filter((w) => ['provisioning', 'resetting', 'deleting'].includes(w.status))).toEqual([]);
    expect((await provider.api('DELETE', `/workspaces/${id}`)).status).toBe(200);
    expect(await containersOf(id)).toEqual([]);
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
    await waitFor('the container to go', async () => ((await containersOf(id)).length === 0 ? true : undefined));
    // Its baseline image goes with it; only cache entries' images stay (by design, for the next setup):
    // this test's, and the first test's when it ran before (resumed to ready, it kept its entry).
    const kinds = (await imagesOfOwner()).map((i) => i.Labels?.['wsp.kind']);
    expect(kinds.filter((k) => k !== 'cache')).toEqual([]);
    expect(kinds.length).toBeGreaterThanOrEqual(1);
    await provider.stop();
  });
});
