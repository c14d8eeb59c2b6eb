import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConfigInput } from '../../shared/config/schema.js';
import { hostileBackends } from '../support/hostile-backends.js';
import {
  commitFiles,
  createBranch,
  createUpstreamRepo,
  switchBranch,
  type UpstreamRepo,
} from '../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../support/git-server.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';

// Poisoning the shared provisioning cache (issue 9, finding 4). The operator's setup runs a script
// from the repository (as `npm install` runs package scripts). A workspace asks for the attacker's
// branch, whose script plants a .bashrc line, a git hook and a dotfile. The cache entry must come
// from the configured refs only, so the next default-ref workspace holds none of it — and equals a
// cold one. The operator's setup also leaves processes behind that would write into the home later.
const TOKEN = `poison-${randomBytes(10).toString('hex')}`;
const SETUP = [
  '[ ! -f app/setup.sh ] || sh app/setup.sh',
  'echo ran >> "$HOME/setup-runs"',
  // Leftovers: one in setup's process group, one escaped into its own session.
  '(sleep 1; echo late > "$HOME/late.txt") > /dev/null 2>&1 &',
  'setsid sh -c \'sleep 1; echo late > "$HOME/late-setsid.txt"\' > /dev/null 2>&1 &',
].join('\n');
const GOOD_SCRIPT = 'mkdir -p app/build && echo built > app/build/out.txt\n';
const EVIL_SCRIPT = [
  'mkdir -p app/build && echo built > app/build/out.txt',
  'echo \'echo POISONED-BASHRC\' >> "$HOME/.bashrc"',
  "printf '#!/bin/sh\\necho POISONED-HOOK\\n' > app/.git/hooks/post-checkout && chmod +x app/.git/hooks/post-checkout",
  'echo POISONED > "$HOME/.poisoned-dotfile"',
].join('\n');

/** What a poisoned workspace would show; every line is one evil side effect (or its absence). */
const SIDE_EFFECTS =
  'cat ~/.bashrc 2>/dev/null | grep -c POISONED-BASHRC || true; [ -e ~/workspace/app/.git/hooks/post-checkout ] && echo hook || echo no-hook; [ -e ~/.poisoned-dotfile ] && echo dotfile || echo no-dotfile';
const CLEAN = ['0', 'no-hook', 'no-dotfile'];
const POISONED = ['1', 'hook', 'dotfile'];

/**
 * The home's content, without what only records when and how git objects arrived (index stat data,
 * reflogs, pack layout): file names, types, modes, link targets and contents everywhere else —
 * dotfiles, .git/config, .git/hooks and .git/info included — then each repo's HEAD, refs and status.
 */
const CONTENT = [
  'cd ~',
  "skip='-path ./workspace/app/.git/objects -o -path ./workspace/app/.git/logs -o -path ./workspace/app/.git/refs -o -path ./workspace/app/.git/index -o -path ./workspace/app/.git/packed-refs -o -path ./workspace/app/.git/FETCH_HEAD -o -path ./workspace/app/.git/ORIG_HEAD'",
  'find . \\( $skip \\) -prune -o -printf "%p %y %m %l\\n" | LC_ALL=C sort | sha256sum',
  'find . \\( $skip \\) -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum',
  'git -C workspace/app rev-parse HEAD; git -C workspace/app symbolic-ref -q HEAD || echo detached',
  'git -C workspace/app for-each-ref --format="%(refname) %(objectname)"; git -C workspace/app status --porcelain',
].join('\n');

const backends = hostileBackends();

for (const backend of backends) {
  describe.skipIf(backend.skip !== undefined)(
    `cache poisoning through a refs override (${backend.name} backend)`,
    () => {
      let root: string;
      let git: GitServer;
      let app: UpstreamRepo;
      let evilHead: string;
      let cached: TestProvider;
      let uncached: TestProvider;
      const env = `WSP_POISON_TOKEN_${backend.name.toUpperCase()}`;

      beforeAll(async () => {
        process.env[env] = TOKEN;
        root = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-poison-'));
        git = await startGitServer({ token: TOKEN, root });
        app = createUpstreamRepo(root, 'app', {
          'README.md': '# app\n',
          'setup.sh': GOOD_SCRIPT,
          '.gitignore': 'build/\n',
        });
        createBranch(app, 'evil');
        evilHead = commitFiles(app, { 'setup.sh': EVIL_SCRIPT }, 'a helpful change');
        switchBranch(app, 'main');
        const config = (cache: boolean): ConfigInput => ({
          ...backend.config,
          repositories: [{ url: git.url('app'), path: 'app', credential: `env:${env}` }],
          setup: { script: SETUP },
          workspace: { network: 'none' },
          cache: { enabled: cache },
        });
        cached = await startTestProvider(config(true));
        uncached = await startTestProvider(config(false));
      });

      afterAll(async () => {
        for (const wsp of [cached, uncached]) {
          if (!wsp) continue;
          if (backend.name === 'docker') {
            // Cache images outlive a provider by design; a test's must not outlive the test.
            const b = wsp.provider.deps.backend;
            for (const ws of await b.listResources()) await b.destroy(ws.ref);
            for (const snap of await b.snapshots.list()) await b.snapshots.delete(snap);
          }
          await wsp.close();
        }
        await git?.close();
        fs.rmSync(root, { recursive: true, force: true });
        delete process.env[env];
      });

      const lines = async (wsp: TestProvider, id: string, command: string): Promise<string[]> => {
        const r = await wsp.exec(id, command);
        expect(r, r.stderr?.data).toMatchObject({ state: 'exited', exitCode: 0 });
        return r.stdout.data.trim().split('\n');
      };

      it('the evil branch is really hostile: without a cache, its setup plants everything', async () => {
        const ws = await uncached.setup({ refs: { app: 'evil' } });
        expect(ws.cache).toMatchObject({ hit: false, reason: 'cache disabled' });
        expect(await lines(uncached, ws.id, SIDE_EFFECTS)).toEqual(POISONED);
        await uncached.api('DELETE', `/workspaces/${ws.id}`);
      });

      it('an override on an empty cache builds the entry from the configured refs, then checks out its own', async () => {
        const evil = await cached.setup({ refs: { app: 'evil' } });
        expect(evil.cache.hit).toBe(false);
        expect(evil.cache.reason).toMatch(/^refs override \(app\): built the entry from the configured refs/);
        expect(evil.repos).toEqual([expect.objectContaining({ name: 'app', commit: evilHead, ref: 'evil' })]);
        // Its tree is the evil branch; the setup that ran was the configured branch's.
        expect(
          await lines(cached, evil.id, `git -C app rev-parse HEAD; git -C app symbolic-ref HEAD; ${SIDE_EFFECTS}`),
        ).toEqual([evilHead, 'refs/heads/evil', ...CLEAN]);
        const entries = await cached.provider.deps.state.listCacheEntries();
        expect(entries).toHaveLength(1);
        expect(entries[0]).toMatchObject({
          key: evil.cache.key,
          status: 'ready',
          repos: [expect.objectContaining({ name: 'app', commit: app.head, ref: 'main' })],
        });

        // A second override is served from that entry.
        const again = await cached.setup({ refs: { app: 'evil' } });
        expect(again.cache).toMatchObject({ hit: true, key: evil.cache.key });
        expect(again.cache.reason).toMatch(/^refs override \(app\): started from the configured-ref entry/);
        expect(
          await lines(cached, again.id, `git -C app rev-parse HEAD; wc -l < ~/setup-runs; ${SIDE_EFFECTS}`),
        ).toEqual([evilHead, '1', ...CLEAN]);
        for (const w of [evil, again]) await cached.api('DELETE', `/workspaces/${w.id}`);
      });

      it('the next default-ref workspace is a clean hit that equals a cold one at the same commit', async () => {
        const warm = await cached.setup();
        expect(warm.cache.hit).toBe(true);
        expect(warm.cache.reason).not.toMatch(/override/);
        expect(warm.repos).toEqual([expect.objectContaining({ name: 'app', commit: app.head, ref: 'main' })]);
        expect(await lines(cached, warm.id, SIDE_EFFECTS)).toEqual(CLEAN);
        const cold = await uncached.setup();
        expect(cold.cache).toMatchObject({ hit: false, reason: 'cache disabled' });
        const a = await lines(cached, warm.id, CONTENT);
        const b = await lines(uncached, cold.id, CONTENT);
        expect(a).toEqual(b);
        expect(a).toContain(app.head);
        for (const [wsp, w] of [
          [cached, warm],
          [uncached, cold],
        ] as const)
          await wsp.api('DELETE', `/workspaces/${w.id}`);
      });

      it("setup's leftover processes are killed before the snapshots: nothing they would write lands anywhere", async () => {
        // Built here or a hit on the entry: the entry was kept right after setup, too.
        const ws = await cached.setup();
        // The leftovers would have written 1 s after setup; give them twice that.
        await new Promise((r) => setTimeout(r, 2000));
        const check = 'ls -a ~; ps -u "$(id -u)" -o args= | grep -c "^sleep 1" || true';
        const out = await lines(cached, ws.id, check);
        expect(out).not.toContain('late.txt');
        expect(out).not.toContain('late-setsid.txt');
        expect(out.at(-1)).toBe('0');
        // The entry (what this hit started from) and a cold workspace have neither.
        const cold = await uncached.setup();
        await new Promise((r) => setTimeout(r, 2000));
        const coldOut = await lines(uncached, cold.id, check);
        expect(coldOut).not.toContain('late.txt');
        expect(coldOut).not.toContain('late-setsid.txt');
        expect(coldOut.at(-1)).toBe('0');
        for (const [wsp, w] of [
          [cached, ws],
          [uncached, cold],
        ] as const)
          await wsp.api('DELETE', `/workspaces/${w.id}`);
      });
    },
  );
}
