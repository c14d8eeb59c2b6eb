import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitFiles, createUpstreamRepo, type UpstreamRepo } from '../../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../../support/git-server.js';
import { startTestProvider, type TestProvider } from '../../support/provider-fixture.js';
import { BASE_IMAGE, DOCKER_SOCKET, dockerClient, dockerUnavailable } from '../../support/docker-daemon.js';

// The service over the docker backend, end to end over HTTP: cold setup (repository in through a
// bundle, setup script), warm setup from the committed cache image, reset to the baseline image,
// teardown — and the canary token in no image layer, container environment, response or log line.
const CANARY = `wsp-canary-${randomBytes(12).toString('hex')}`;
const SETUP = [
  'echo "setup ran" >> "$HOME/setup-runs"',
  'mkdir -p app/build && echo built > app/build/out.txt',
  'echo "setup says hello"',
].join('\n');

describe.skipIf(dockerUnavailable !== undefined)('service over the docker backend', () => {
  let git: GitServer;
  let app: UpstreamRepo;
  let wsp: TestProvider;
  let hostRoot: string;
  let cold: any;
  let warm: any;

  beforeAll(async () => {
    process.env.WSP_DOCKER_IT_TOKEN = CANARY;
    hostRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-dit-git-'));
    git = await startGitServer({ token: CANARY, root: hostRoot });
    app = createUpstreamRepo(hostRoot, 'app', {
      'README.md': '# app\n',
      'deps.lock': 'left-pad@1\n',
      '.gitignore': 'build/\n',
    });
    wsp = await startTestProvider({
      mode: 'docker',
      docker: { socketPath: DOCKER_SOCKET, baseImage: BASE_IMAGE },
      repositories: [
        { url: git.url('app'), path: 'app', credential: 'env:WSP_DOCKER_IT_TOKEN', cacheKeyFiles: ['deps.lock'] },
      ],
      setup: { script: SETUP },
      workspace: { network: 'none' },
    });
  });

  afterAll(async () => {
    // Cache images outlive a provider by design; a test's must not outlive the test.
    if (wsp) {
      const backend = wsp.provider.deps.backend;
      for (const ws of await backend.listResources()) await backend.destroy(ws.ref);
      for (const snap of await backend.snapshots.list()) await backend.snapshots.delete(snap);
    }
    await wsp?.close();
    await git?.close();
    fs.rmSync(hostRoot, { recursive: true, force: true });
    delete process.env.WSP_DOCKER_IT_TOKEN;
  });

  it('cold setup: the repository arrives without network, setup runs once as the user', async () => {
    cold = await wsp.setup();
    expect(cold.cache).toMatchObject({ hit: false });
    const r = await wsp.exec(
      cold.id,
      'cat app/README.md app/build/out.txt; wc -l < ~/setup-runs; git -C app remote get-url origin; git -C app rev-parse HEAD; id -u',
    );
    expect(r).toMatchObject({ state: 'exited', exitCode: 0 });
    expect(r.stdout.data.trim().split('\n')).toEqual(['# app', 'built', '1', git.url('app'), app.head, '1000']);
  });

  it('warm setup starts from the cache image and fetches the newer commit', async () => {
    const newer = commitFiles(app, { 'src/feature.js': 'export const f = 2;\n' }, 'feature');
    warm = await wsp.setup();
    expect(warm.cache).toMatchObject({ hit: true, key: cold.cache.key });
    const r = await wsp.exec(warm.id, 'git -C app rev-parse HEAD; wc -l < ~/setup-runs; cat app/src/feature.js');
    expect(r.stdout.data.trim().split('\n')).toEqual([newer, '1', 'export const f = 2;']);
  });

  it('reset returns to the baseline (fingerprint) and ends leftover processes', async () => {
    await wsp.exec(warm.id, 'echo junk > app/junk.txt && rm app/README.md && (sleep 300 > /dev/null 2>&1 &)');
    const reset = await wsp.api('POST', `/workspaces/${warm.id}/reset`, {});
    expect(reset.status).toBe(200);
    const r = await wsp.exec(warm.id, 'ls app; pgrep -u 1000 sleep || echo none');
    expect(r.stdout.data).toContain('README.md');
    expect(r.stdout.data).not.toContain('junk.txt');
    expect(r.stdout.data.trim().split('\n').pop()).toBe('none');
  });

  it('reset with mode recreate makes a new container from the cache image at the baseline commit (a new baseline)', async () => {
    const before = (await wsp.provider.deps.state.getWorkspace(warm.id))!;
    const containerBefore = (await dockerClient().getContainer(String(before.backend!['container'])).inspect()).Id;
    await wsp.exec(warm.id, 'echo junk > app/junk.txt && rm app/README.md');
    const reset = await wsp.api('POST', `/workspaces/${warm.id}/reset`, { mode: 'recreate' });
    expect(reset.status, JSON.stringify(reset.body)).toBe(200);
    // A new baseline (git's index and reflogs are rewritten, so its digest is new); the work tree is the baseline's.
    expect(reset.body).toMatchObject({
      matches: true,
      recreated: true,
      previousBaselineFingerprint: before.baselineFingerprint,
    });
    expect(reset.body.fingerprint).toBe(reset.body.baselineFingerprint);
    const after = (await wsp.provider.deps.state.getWorkspace(warm.id))!;
    expect((await dockerClient().getContainer(String(after.backend!['container'])).inspect()).Id).not.toBe(
      containerBefore,
    );
    const r = await wsp.exec(
      warm.id,
      'ls app; wc -l < ~/setup-runs; git -C app rev-parse HEAD; git -C app status --porcelain | wc -l',
    );
    expect(r.stdout.data).toContain('README.md');
    expect(r.stdout.data).not.toContain('junk.txt');
    expect(r.stdout.data.trim().split('\n').slice(-3)).toEqual([
      '1',
      before.repos.find((x) => x.name === 'app')!.commit,
      '0',
    ]);
  }, 120_000);

  it('reset with mode recreate of a workspace whose cache entry is gone is a 409 and changes nothing', async () => {
    const ws = (await wsp.provider.deps.state.getWorkspace(warm.id))!;
    const entry = (await wsp.provider.deps.state.getCacheEntry(ws.cache!.key))!;
    await wsp.provider.deps.state.updateCacheEntry(entry.key, entry.version, { status: 'building' });
    try {
      const reset = await wsp.api('POST', `/workspaces/${warm.id}/reset`, { mode: 'recreate' });
      expect(reset.status).toBe(409);
      expect(reset.body.error.message).toMatch(/no ready cache entry to recreate from/);
    } finally {
      const now = (await wsp.provider.deps.state.getCacheEntry(entry.key))!;
      await wsp.provider.deps.state.updateCacheEntry(entry.key, now.version, { status: 'ready' });
    }
  });

  it('the canary token is in no image layer, container environment, response or log line', async () => {
    const backend = wsp.provider.deps.backend;
    const snapshots = await backend.snapshots.list();
    expect(snapshots.map((s) => s.purpose).sort()).toEqual(expect.arrayContaining(['baseline', 'cache']));
    for (const snap of snapshots) expect(await backend.snapshots.scan(snap, [CANARY])).toEqual([]);
    const docker = dockerClient();
    const containers = await docker.listContainers({
      all: true,
      filters: JSON.stringify({ label: [`wsp.owner=${wsp.provider.deps.instanceId}`] }),
    });
    expect(containers.length).toBeGreaterThan(0);
    for (const c of containers)
      expect(JSON.stringify((await docker.getContainer(c.Id).inspect()).Config)).not.toContain(CANARY);
    expect(wsp.responses.join('\n')).not.toContain(CANARY);
    expect(wsp.logs.join('\n')).not.toContain(CANARY);
  });

  it('teardown leaves no container of the workspace', async () => {
    for (const id of [cold.id, warm.id])
      expect((await wsp.api('DELETE', `/workspaces/${id}`)).status).toBeLessThan(300);
    const deadline = Date.now() + 60_000;
    const docker = dockerClient();
    const mine = async () =>
      (
        await docker.listContainers({
          all: true,
          filters: JSON.stringify({ label: [`wsp.owner=${wsp.provider.deps.instanceId}`, 'wsp.kind=workspace'] }),
        })
      ).length;
    while ((await mine()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(await mine()).toBe(0);
  });
});
