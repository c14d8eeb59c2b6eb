import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConfigInput } from '../../shared/config/schema.js';
import { reconcile } from '../../shared/service/reconciler.js';
import { dockerUnavailable } from '../support/docker-daemon.js';
import { makeEcsBackend, startEcsProvider, type EcsHandle } from '../support/ecs-fixture.js';
import { commitFiles, createUpstreamRepo, type UpstreamRepo } from '../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../support/git-server.js';
import { closeTestProvider, hostileBackends } from '../support/hostile-backends.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';
import { registryUnavailable } from '../support/registry.js';

// Fork and snapshots (issue 13) end to end over real HTTP, on every backend: local (bubblewrap), Docker,
// and Fargate over the fakes (ecs-fixture.ts). The acceptance case: a workspace with a running process
// and dirty files (modified, staged, untracked, a local commit on a new branch) forked N times gives N
// workspaces with those files and that git state and WITHOUT the process; each resets to the fork point
// (not the source's baseline) and fetches new upstream commits through the token-less path. A token
// planted in the home makes a snapshot and a fork fail the secret scan, as for cache entries.

const TOKEN = `wsp-fork-${randomBytes(12).toString('hex')}`;
const MAX_COUNT = 3;
const MARKER = 'wsp-fork-marker';
/**
 * Processes whose command line names the marker (from /proc: no ps in every image); the pattern's
 * brackets keep this very command from matching itself.
 */
const COUNT_MARKED = `n=0; for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < "$f" 2>/dev/null | grep -q '${MARKER.slice(0, -1)}[${MARKER.slice(-1)}]' && n=$((n+1)); done; echo $n`;
/** The git state a fork must have: branch, HEAD, index and working tree as porcelain. */
const GIT_STATE = 'cd app && git rev-parse --abbrev-ref HEAD && git rev-parse HEAD && git status --porcelain=v1 -uall';

const BASE_CONFIG = (gitUrl: string): ConfigInput => ({
  repositories: [{ url: gitUrl, path: 'app', credential: 'env:WSP_FORK_TOKEN' }],
  workspace: { network: 'none' },
  fork: { maxCount: MAX_COUNT },
});

interface Target {
  name: string;
  skip: string | undefined;
  start(config: ConfigInput): Promise<{ wsp: TestProvider; close(): Promise<void> }>;
}

const [local, docker] = hostileBackends();
const targets: Target[] = [
  ...[local!, docker!].map((b) => ({
    name: b.name,
    skip: b.skip,
    async start(config: ConfigInput) {
      const wsp = await startTestProvider({ ...b.config, ...config });
      return { wsp, close: () => closeTestProvider(wsp) };
    },
  })),
  {
    name: 'ecs (fake)',
    skip: dockerUnavailable ?? registryUnavailable,
    async start(config: ConfigInput) {
      const ecs: EcsHandle = await makeEcsBackend();
      const provider = await startEcsProvider(ecs, config);
      return {
        wsp: provider.wsp,
        async close() {
          await provider.close();
          await ecs.cleanup();
        },
      };
    },
  },
];

let git: GitServer;
let app: UpstreamRepo;
let hostRoot: string;

beforeAll(async () => {
  process.env.WSP_FORK_TOKEN = TOKEN;
  hostRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-fork-git-'));
  git = await startGitServer({ token: TOKEN, root: hostRoot });
  app = createUpstreamRepo(hostRoot, 'app', { 'README.md': '# app\n', 'src/a.txt': 'a\n' });
});

afterAll(async () => {
  await git?.close();
  if (hostRoot) fs.rmSync(hostRoot, { recursive: true, force: true });
  delete process.env.WSP_FORK_TOKEN;
});

for (const target of targets) {
  describe.skipIf(target.skip !== undefined)(`fork and snapshots over HTTP: ${target.name}`, () => {
    let wsp: TestProvider;
    let close: () => Promise<void>;
    let source: any;

    beforeAll(async () => {
      ({ wsp, close } = await target.start(BASE_CONFIG(git.url('app'))));
      source = await wsp.setup();
    }, 600_000);

    afterAll(async () => {
      await close?.();
    }, 300_000);

    async function settled(id: string): Promise<any> {
      const deadline = Date.now() + 300_000;
      for (;;) {
        const r = await wsp.api('GET', `/workspaces/${id}`);
        expect(r.status).toBe(200);
        if (r.body.status !== 'provisioning') return r.body;
        if (Date.now() > deadline) throw new Error(`${id} still provisioning`);
        await new Promise((res) => setTimeout(res, 200));
      }
    }

    const out = async (id: string, command: string): Promise<string> => {
      const r = await wsp.exec(id, command);
      expect(r.exitCode, `${command}: ${r.stderr?.data}`).toBe(0);
      return r.stdout.data;
    };

    it('a fork of a workspace with a running process and dirty files: N workspaces with its files and git state, without the process', async () => {
      // Dirty state of every kind: a local commit on a new branch, a staged file, a modified tracked file, an untracked file.
      await out(
        source.id,
        [
          'cd app',
          'git -c user.email=a@b -c user.name=agent checkout -q -b work',
          'echo committed > committed.txt && git add committed.txt',
          'git -c user.email=a@b -c user.name=agent commit -q -m "local work"',
          'echo staged > staged.txt && git add staged.txt',
          'echo modified >> README.md',
          'echo dirty > dirty.txt',
        ].join(' && '),
      );
      // A process that keeps writing into the home while the fork is taken (crash-consistent copy).
      const running = await wsp.api('POST', `/workspaces/${source.id}/commands`, {
        // Written whole (a temp file renamed): a copy taken at any instant finds it non-empty once it exists.
        argv: ['sh', '-c', 'while :; do date > ticker.tmp && mv ticker.tmp ticker.txt; sleep 0.2; done', MARKER],
        waitMs: 0,
      });
      expect(running.status).toBe(202);
      // The check below can fail: the source does show the marked process.
      expect(Number(await out(source.id, COUNT_MARKED))).toBeGreaterThanOrEqual(1);
      expect(
        await out(source.id, 'for i in $(seq 100); do test -s ticker.txt && break; sleep 0.1; done; cat ticker.txt'),
      ).not.toBe('');
      const sourceGit = await out(source.id, GIT_STATE);
      expect(sourceGit).toMatch(/^work\n/);
      expect(sourceGit).toContain('A  staged.txt');
      expect(sourceGit).toContain(' M README.md');
      expect(sourceGit).toContain('?? dirty.txt');

      const forked = await wsp.api('POST', `/workspaces/${source.id}/fork`, { count: 2, labels: { rollout: 'b' } });
      expect(forked.status, forked.text).toBe(202);
      expect(forked.body.snapshot).toMatchObject({ kind: 'fork', status: 'ready', sourceWorkspaceId: source.id });
      expect(forked.body.workspaces).toHaveLength(2);
      const ids: string[] = forked.body.workspaces.map((w: any) => w.id);
      expect(new Set(ids).size).toBe(2);
      for (const w of forked.body.workspaces)
        expect(w).toMatchObject({
          status: 'provisioning',
          forkedFrom: source.id,
          fromSnapshot: forked.body.snapshot.id,
          labels: { rollout: 'b' },
        });

      // The source keeps running: its process was not stopped by the fork.
      const still = await wsp.api('GET', `/workspaces/${source.id}/commands/${running.body.id}`);
      expect(still.body.state).toBe('running');

      for (const id of ids) {
        const fork = await settled(id);
        expect(fork.status, JSON.stringify(fork.failure)).toBe('ready');
        expect(fork.forkedFrom).toBe(source.id);
        expect(await out(id, 'cat app/dirty.txt app/staged.txt && tail -1 app/README.md')).toBe(
          'dirty\nstaged\nmodified\n',
        );
        expect(await out(id, GIT_STATE)).toBe(sourceGit);
        expect(await out(id, 'test -s ticker.txt && echo copied')).toBe('copied\n');
        expect(Number(await out(id, COUNT_MARKED))).toBe(0);
        // Nor its command records: commands belong to the source.
        expect((await wsp.api('GET', `/workspaces/${id}/commands/${running.body.id}`)).status).toBe(404);
      }
      await wsp.api('DELETE', `/workspaces/${source.id}/commands/${running.body.id}`);

      // Each fork is its own: a write in one is not in the other, nor in the source.
      await out(ids[0]!, 'echo only-in-a > app/a-only.txt');
      expect(await out(ids[1]!, 'test -e app/a-only.txt; echo $?')).toBe('1\n');
      expect(await out(source.id, 'test -e app/a-only.txt; echo $?')).toBe('1\n');

      // A reset of a fork returns to the fork point, not to the source's baseline.
      const reset = await wsp.api('POST', `/workspaces/${ids[0]}/reset`, {});
      expect(reset.status, reset.text).toBe(200);
      expect(reset.body.matches).toBe(true);
      expect(await out(ids[0]!, 'test -e app/a-only.txt; echo $?')).toBe('1\n');
      expect(await out(ids[0]!, GIT_STATE)).toBe(sourceGit);
      expect(reset.body.fingerprint).not.toBe(source.baselineFingerprint);

      // The token-less fetch path works in a fork: new upstream commits arrive.
      const head = commitFiles(app, { 'NEW.md': `new ${randomBytes(4).toString('hex')}\n` }, 'upstream moves on');
      const fetched = await wsp.api('POST', `/workspaces/${ids[1]}/git/fetch`, {});
      expect(fetched.status, fetched.text).toBe(200);
      expect(fetched.body.repos[0]).toMatchObject({ name: 'app', heads: { main: head } });
      expect(await out(ids[1]!, `cd app && git cat-file -t ${head} && git remote get-url origin`)).toBe(
        `commit\n${git.url('app')}\n`,
      );
      // The source's own reset still returns to its original baseline.
      const back = await wsp.api('POST', `/workspaces/${source.id}/reset`, {});
      expect(back.body).toMatchObject({ matches: true, fingerprint: source.baselineFingerprint });
      expect(await out(source.id, 'test -e app/dirty.txt; echo $?')).toBe('1\n');

      // While a workspace is still being made from the fork point, neither the janitor nor a DELETE removes it
      // (a provisioning record written straight into the state store: no timing involved).
      const { state } = wsp.provider.deps;
      const holder = {
        ...(await state.getWorkspace(ids[0]!))!,
        id: `ws-${randomBytes(12).toString('hex')}`,
        status: 'provisioning' as const,
        version: 1,
        backend: undefined,
        baseline: undefined,
      };
      await state.createWorkspace(holder);
      expect(await wsp.provider.service.snapshots.sweep()).not.toContain(forked.body.snapshot.id);
      const refused = await wsp.api('DELETE', `/snapshots/${forked.body.snapshot.id}`);
      expect(refused.status).toBe(409);
      expect(refused.body.error.message).toContain(holder.id);
      await state.updateWorkspace(holder.id, 1, { status: 'deleted' });
      await state.deleteWorkspace(holder.id);

      // Once every copy is made and settled, the janitor removes the fork point; the forks keep their baselines.
      const removed = await wsp.provider.service.snapshots.sweep();
      expect(removed).toContain(forked.body.snapshot.id);
      expect((await wsp.api('GET', `/snapshots/${forked.body.snapshot.id}`)).status).toBe(404);
      await out(ids[1]!, 'echo later > app/later.txt');
      const again = await wsp.api('POST', `/workspaces/${ids[1]}/reset`, {});
      expect(again.body.matches).toBe(true);
      expect(await out(ids[1]!, 'cat app/dirty.txt; test -e app/later.txt; echo $?')).toBe('dirty\n1\n');
      expect(JSON.stringify(wsp.responses)).not.toContain(TOKEN);
    }, 900_000);

    it('a named snapshot: workspaces are created from it (fromSnapshot), it is listed, survives reconcile, and is deleted', async () => {
      await out(source.id, 'echo snap > app/snap.txt');
      const created = await wsp.api('POST', `/workspaces/${source.id}/snapshots`, {
        name: 'before refactor',
        labels: { step: '7' },
      });
      expect(created.status, created.text).toBe(201);
      expect(created.body).toMatchObject({
        kind: 'user',
        status: 'ready',
        name: 'before refactor',
        labels: { step: '7' },
      });
      const sid = created.body.id;
      expect(created.body.sizeBytes).toBeGreaterThan(0);
      expect((await wsp.api('GET', '/snapshots')).body.snapshots.map((s: any) => s.id)).toContain(sid);
      await out(source.id, 'rm app/snap.txt');

      // A reconcile deletes backend snapshots nothing references: a snapshot record references this one.
      await reconcile(wsp.provider.deps, wsp.provider.service);
      const made = await wsp.api('POST', '/workspaces', { fromSnapshot: sid, labels: { from: 'snap' } });
      expect(made.status, made.text).toBe(202);
      expect(made.body.fromSnapshot).toBe(sid);
      const ws = await settled(made.body.id);
      expect(ws.status, JSON.stringify(ws.failure)).toBe('ready');
      expect(ws.forkedFrom).toBeUndefined();
      expect(await out(ws.id, 'cat app/snap.txt')).toBe('snap\n');
      expect(await out(source.id, 'test -e app/snap.txt; echo $?')).toBe('1\n');

      // In use by a workspace being made from it → 409; once made, it can go (the workspace keeps its baseline).
      expect((await wsp.api('DELETE', `/snapshots/${sid}`)).status).toBe(204);
      expect((await wsp.api('GET', `/snapshots/${sid}`)).status).toBe(404);
      expect((await wsp.api('POST', '/workspaces', { fromSnapshot: sid })).status).toBe(404);
      await out(ws.id, 'rm app/snap.txt');
      expect((await wsp.api('POST', `/workspaces/${ws.id}/reset`, {})).body.matches).toBe(true);
      expect(await out(ws.id, 'cat app/snap.txt')).toBe('snap\n');
      await wsp.api('DELETE', `/workspaces/${ws.id}`);
    }, 600_000);

    it('as the attacker: a token planted in the home fails the snapshot and the fork (secret scan), and no workspace is made', async () => {
      await out(source.id, `printf '%s' '${TOKEN}' > .cache-token`);
      const t0 = new Date().toISOString();
      const before = (await wsp.api('GET', '/workspaces')).body.workspaces.length;
      const snap = await wsp.api('POST', `/workspaces/${source.id}/snapshots`, {});
      expect(snap.status).toBe(409);
      expect(snap.body.error.message).toMatch(/secret/);
      const fork = await wsp.api('POST', `/workspaces/${source.id}/fork`, { count: 1 });
      expect(fork.status).toBe(409);
      expect((await wsp.api('GET', '/workspaces')).body.workspaces.length).toBe(before);
      const listed = (await wsp.api('GET', '/snapshots')).body.snapshots.filter((s: any) => s.createdAt >= t0);
      expect(listed.map((s: any) => [s.kind, s.status]).sort()).toEqual([
        ['fork', 'failed'],
        ['user', 'failed'],
      ]);
      expect(listed[0].failure.message).toMatch(/secret/);
      // Nothing the scan refused is kept by the backend.
      const kept = await wsp.provider.deps.backend.snapshots.list();
      for (const s of listed) expect(kept.map((k) => String(k.name))).not.toContain(s.id);
      await out(source.id, 'rm .cache-token');
      const ok = await wsp.api('POST', `/workspaces/${source.id}/snapshots`, {});
      expect(ok.status, ok.text).toBe(201);
      expect((await wsp.api('DELETE', `/snapshots/${ok.body.id}`)).status).toBe(204);
    }, 600_000);

    it('a fork answered before its fork point is taken (?waitMs=0): the copies wait for it, then start from it', async () => {
      await out(source.id, 'echo early > app/early.txt');
      const forked = await wsp.api('POST', `/workspaces/${source.id}/fork?waitMs=0`, { count: 1 });
      expect(forked.status, forked.text).toBe(202);
      expect(['creating', 'ready']).toContain(forked.body.snapshot.status);
      const copy = await settled(forked.body.workspaces[0].id);
      expect(copy.status, JSON.stringify(copy.failure)).toBe('ready');
      expect(await out(copy.id, 'cat app/early.txt')).toBe('early\n');
      const point = await wsp.api('GET', `/snapshots/${forked.body.snapshot.id}`);
      expect(point.body).toMatchObject({ status: 'ready', kind: 'fork' });
      const op = await wsp.api('GET', `/workspaces/${source.id}/operations/${point.body.operationId}`);
      expect(op.body).toMatchObject({ kind: 'snapshot', status: 'succeeded', result: { snapshotId: point.body.id } });
      await wsp.api('DELETE', `/workspaces/${copy.id}`);
      await out(source.id, 'rm app/early.txt');
    }, 600_000);

    it('bad input: count outside 1..maxCount is 400, unknown ids 404, a workspace that is not ready 409', async () => {
      const zero = await wsp.api('POST', `/workspaces/${source.id}/fork`, { count: 0 });
      expect(zero.status).toBe(400);
      const many = await wsp.api('POST', `/workspaces/${source.id}/fork`, { count: MAX_COUNT + 1 });
      expect(many.status).toBe(400);
      expect(many.body.error.message).toContain(`1 and ${MAX_COUNT}`);
      expect((await wsp.api('POST', `/workspaces/${source.id}/fork`, {})).status).toBe(400);
      expect((await wsp.api('POST', `/workspaces/ws-${'0'.repeat(24)}/fork`, { count: 1 })).status).toBe(404);
      expect((await wsp.api('GET', `/snapshots/snap-${'0'.repeat(24)}`)).status).toBe(404);
      expect((await wsp.api('DELETE', `/snapshots/snap-${'0'.repeat(24)}`)).status).toBe(404);
      expect((await wsp.api('GET', '/snapshots/nope')).status).toBe(400);
      expect((await wsp.api('POST', '/workspaces', { fromSnapshot: 'nope' })).status).toBe(400);
      const both = await wsp.api('POST', '/workspaces', {
        fromSnapshot: `snap-${'0'.repeat(24)}`,
        refs: { app: 'main' },
      });
      expect(both.status).toBe(400);
      // A workspace that is not ready (deleted) cannot be forked or snapshotted.
      const gone = await wsp.setup();
      await wsp.api('DELETE', `/workspaces/${gone.id}`);
      expect((await wsp.api('POST', `/workspaces/${gone.id}/fork`, { count: 1 })).status).toBe(409);
      expect((await wsp.api('POST', `/workspaces/${gone.id}/snapshots`, {})).status).toBe(409);
    }, 600_000);
  });
}
