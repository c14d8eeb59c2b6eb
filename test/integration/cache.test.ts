import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitFiles, createTag, createUpstreamRepo, type UpstreamRepo } from '../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../support/git-server.js';
import { startTestProvider } from '../support/provider-fixture.js';

// Provisioning cache: single-flight per key, eviction by count, secret scan before an entry is kept.
const TOKEN = `cache-${randomBytes(10).toString('hex')}`;
let git: GitServer;
let app: UpstreamRepo;
let root: string;

beforeAll(async () => {
  process.env.WSP_CACHE_TOKEN = TOKEN;
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-cache-'));
  git = await startGitServer({ token: TOKEN, root });
  app = createUpstreamRepo(root, 'app', { 'deps.lock': 'v1\n', 'a.txt': 'a\n' });
});

afterAll(async () => {
  await git?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

const repo = () => ({
  url: git.url('app'),
  path: 'app',
  credential: 'env:WSP_CACHE_TOKEN',
  cacheKeyFiles: ['deps.lock'],
});

describe('provisioning cache', () => {
  it('builds each key once when setups race (single-flight)', async () => {
    const wsp = await startTestProvider({ repositories: [repo()], setup: { script: 'sleep 0.5; echo run >> ~/runs' } });
    try {
      const all = await Promise.all([wsp.setup(), wsp.setup(), wsp.setup()]);
      const misses = all.filter((w) => !w.cache.hit);
      expect(misses).toHaveLength(1);
      expect(all.filter((w) => w.cache.hit).map((w) => w.cache.reason)).toEqual([
        'entry built by a concurrent setup',
        'entry built by a concurrent setup',
      ]);
      for (const w of all) expect((await wsp.exec(w.id, 'wc -l < ~/runs')).stdout.data.trim()).toBe('1');
    } finally {
      await wsp.close();
    }
  });

  it('evicts the least recently used entry beyond maxEntries, snapshot included', async () => {
    const wsp = await startTestProvider({
      repositories: [repo()],
      setup: { script: 'true' },
      cache: { maxEntries: 1 },
    });
    try {
      const first = await wsp.setup();
      const snapshotsBefore = fs.readdirSync(path.join(wsp.dataDir, 'local', 'snapshots'));
      commitFiles(app, { 'deps.lock': `v${Date.now()}\n` }, 'new deps');
      const second = await wsp.setup();
      expect(second.cache.key).not.toBe(first.cache.key);
      const entries = await wsp.provider.deps.state.listCacheEntries();
      expect(entries.map((e) => e.key)).toEqual([second.cache.key]);
      const snapshotsAfter = fs.readdirSync(path.join(wsp.dataDir, 'local', 'snapshots'));
      const firstEntrySnapshot = snapshotsBefore.find((s) => s.includes(first.cache.key));
      expect(firstEntrySnapshot).toBeDefined();
      expect(snapshotsAfter).not.toContain(firstEntrySnapshot);
      expect(wsp.logs.some((l) => l.includes('cache entry evicted'))).toBe(true);
    } finally {
      await wsp.close();
    }
  });

  it('a ready entry whose snapshot vanished is a miss that rebuilds the entry, not a failed workspace', async () => {
    const wsp = await startTestProvider({
      repositories: [repo()],
      setup: { script: 'echo run >> ~/runs # vanished snapshot' },
    });
    try {
      const first = await wsp.setup();
      const [entry] = (await wsp.provider.deps.state.listCacheEntries()).filter((e) => e.key === first.cache.key);
      expect(entry?.status).toBe('ready');
      // Pruned behind the provider's back (by hand, a lost disk, another tool).
      await wsp.provider.deps.backend.snapshots.delete(entry!.snapshot!);
      const second = await wsp.setup();
      expect(second.status).toBe('ready');
      expect(second.steps.map((s: { message: string }) => s.message)).toContain(
        "the entry's snapshot is gone: rebuilding the entry",
      );
      expect((await wsp.exec(second.id, 'cat ~/runs')).stdout.data).toBe('run\n');
      const rebuilt = (await wsp.provider.deps.state.listCacheEntries()).find((e) => e.key === first.cache.key);
      expect(rebuilt?.status).toBe('ready');
      expect((await wsp.setup()).cache.hit).toBe(true);
    } finally {
      await wsp.close();
    }
  });

  it('a warm start at an unchanged commit whose mirror refs are unchanged fetches nothing and equals the entry; a new upstream tag is fetched', async () => {
    const wsp = await startTestProvider({ repositories: [repo()], setup: { script: 'echo run >> ~/runs' } });
    const refsOf = async (id: string) =>
      (await wsp.exec(id, 'cd ~/workspace/app && git rev-parse HEAD && git symbolic-ref -q HEAD; git for-each-ref'))
        .stdout.data;
    const messages = (ws: { steps: { message: string }[] }) => ws.steps.map((s) => s.message).join('\n');
    try {
      const cold = await wsp.setup();
      const warm = await wsp.setup();
      expect(warm.cache.hit).toBe(true);
      expect(messages(warm)).toMatch(/app unchanged since the cache entry \([0-9a-f]{12}\): nothing to fetch/);
      expect(await refsOf(warm.id)).toBe(await refsOf(cold.id));
      const entry = (await wsp.provider.deps.state.listCacheEntries()).find((e) => e.key === cold.cache.key);
      expect(entry?.repos[0]?.refsDigest).toMatch(/^[0-9a-f]{64}$/);

      createTag(app, `t-${Date.now()}`); // same commit, one more ref upstream
      const tagged = await wsp.setup();
      expect(tagged.cache.hit).toBe(true);
      expect(messages(tagged)).toMatch(/fetching app: /);
      const refs = await refsOf(tagged.id);
      expect(refs).toMatch(/refs\/tags\/t-\d+/);
      expect(refs.split('\n')[0]).toBe((await refsOf(cold.id)).split('\n')[0]); // HEAD unchanged
    } finally {
      await wsp.close();
    }
  });

  it('restore keys: a lockfile bump starts from the newest entry of the same repos and setup, re-runs setup on top, and keeps the result as the new entry', async () => {
    // An "incremental install": each line of deps.lock is installed once; what the home has is kept.
    const install =
      'cd ~/workspace/app && while read -r d; do [ -e ~/pkgs/"$d" ] || { mkdir -p ~/pkgs; echo "$d" > ~/pkgs/"$d"; echo "$d" >> ~/installed; }; done < deps.lock';
    const wsp = await startTestProvider({ repositories: [repo()], setup: { script: install } });
    try {
      commitFiles(app, { 'deps.lock': 'a\nb\n' }, 'deps a b');
      const first = await wsp.setup();
      expect(first.cache).toMatchObject({ hit: false });
      expect(first.cache.restoredFrom).toBeUndefined();
      commitFiles(app, { 'deps.lock': 'a\nb\nc\n' }, 'deps + c');
      const second = await wsp.setup();
      expect(second.cache).toMatchObject({ hit: false, restoredFrom: first.cache.key });
      // Only the new dependency was installed on top of the restored home.
      expect((await wsp.exec(second.id, 'cat ~/installed')).stdout.data).toBe('a\nb\nc\n');
      expect((await wsp.exec(second.id, 'ls ~/pkgs | tr "\\n" " "')).stdout.data).toBe('a b c ');
      const entries = await wsp.provider.deps.state.listCacheEntries();
      expect(entries.find((e) => e.key === second.cache.key)).toMatchObject({
        status: 'ready',
        restoreKey: entries.find((e) => e.key === first.cache.key)?.restoreKey,
      });
      // The new entry serves the next setup at that lockfile as a plain hit.
      const third = await wsp.setup();
      expect(third.cache).toMatchObject({ hit: true, key: second.cache.key });
      expect((await wsp.exec(third.id, 'cat ~/installed')).stdout.data).toBe('a\nb\nc\n');
    } finally {
      await wsp.close();
    }
  });

  it('restore keys can be switched off (cache.restore false): a lockfile bump builds from nothing', async () => {
    const wsp = await startTestProvider({
      repositories: [repo()],
      setup: { script: 'echo run >> ~/runs' },
      cache: { restore: false },
    });
    try {
      await wsp.setup();
      commitFiles(app, { 'deps.lock': `v${Date.now()}\n` }, 'new deps');
      const second = await wsp.setup();
      expect(second.cache.hit).toBe(false);
      expect(second.cache.restoredFrom).toBeUndefined();
      expect((await wsp.exec(second.id, 'cat ~/runs')).stdout.data).toBe('run\n');
    } finally {
      await wsp.close();
    }
  });

  it('refuses to keep an entry that contains a secret value, and says so on the workspace', async () => {
    // The operator put the token into the workspace env by mistake; setup writes it to a file.
    const wsp = await startTestProvider({
      repositories: [repo()],
      setup: { script: 'echo "$OOPS" > ~/leaked' },
      workspace: { env: { OOPS: TOKEN } },
    });
    try {
      const ws = await wsp.setup();
      expect(ws.warnings.join(' ')).toMatch(/cache entry refused: a secret value was found/);
      const entries = await wsp.provider.deps.state.listCacheEntries();
      expect(entries.every((e) => e.status !== 'ready')).toBe(true);
      const next = await wsp.setup();
      expect(next.cache.hit).toBe(false);
    } finally {
      await wsp.close();
    }
  });
});
