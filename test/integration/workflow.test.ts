import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitFiles, createUpstreamRepo, type UpstreamRepo } from '../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../support/git-server.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';

// The whole core loop over real HTTP: a token-checking git server with two repositories, the local
// backend, the embedded state store. One provider for the file; tests run in order.
const CANARY = `wsp-canary-${randomBytes(12).toString('hex')}`;
const SETUP = [
  'echo "setup ran at $(date +%s%N)" >> "$HOME/setup-runs"',
  'mkdir -p app/build && echo built > app/build/out.txt',
  'echo "setup says hello"',
].join('\n');

let git: GitServer;
let app: UpstreamRepo;
let lib: UpstreamRepo;
let wsp: TestProvider;
let hostRoot: string;

beforeAll(async () => {
  process.env.WSP_IT_TOKEN = CANARY;
  hostRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-it-git-'));
  git = await startGitServer({ token: CANARY, root: hostRoot });
  app = createUpstreamRepo(hostRoot, 'app', {
    'README.md': '# app\n',
    'deps.lock': 'left-pad@1\n',
    'src/index.js': 'console.log(1)\n',
    '.gitignore': 'build/\n',
  });
  lib = createUpstreamRepo(hostRoot, 'lib', { 'lib.txt': 'lib v1\n' });
  wsp = await startTestProvider({
    repositories: [
      { url: git.url('app'), path: 'app', credential: 'env:WSP_IT_TOKEN', cacheKeyFiles: ['deps.lock'] },
      { url: git.url('lib'), path: 'libs/lib', credential: 'env:WSP_IT_TOKEN' },
    ],
    setup: { script: SETUP },
    workspace: { network: 'none' },
    commands: { maxOutputBytes: 1024 * 1024 },
  });
});

afterAll(async () => {
  await wsp?.close();
  await git?.close();
  fs.rmSync(hostRoot, { recursive: true, force: true });
  delete process.env.WSP_IT_TOKEN;
});

let cold: any;
let warm: any;

describe('core loop over HTTP (local backend)', () => {
  it('cold setup clones both repositories and runs setup once', async () => {
    cold = await wsp.setup({ labels: { task: 'cold' } });
    expect(cold.cache).toMatchObject({ hit: false });
    expect(cold.repos).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: 'app', commit: app.head }),
        expect.objectContaining({ name: 'libs/lib', commit: lib.head }),
      ]),
    );
    const r = await wsp.exec(
      cold.id,
      'cat app/README.md libs/lib/lib.txt app/build/out.txt; wc -l < ~/setup-runs; git -C app remote get-url origin; git -C app rev-parse HEAD',
    );
    expect(r).toMatchObject({ state: 'exited', exitCode: 0 });
    const lines = r.stdout.data.trim().split('\n');
    expect(lines).toEqual(['# app', 'lib v1', 'built', '1', git.url('app'), app.head]);
    // The setup's output is kept and readable as a command.
    const setupOut = await wsp.api('GET', `/workspaces/${cold.id}/commands/${cold.setupCommandId}`);
    expect(setupOut.body.stdout.data).toContain('setup says hello');
  });

  it('warm setup at a newer commit fetches instead of cloning and does not re-run setup', async () => {
    const newer = commitFiles(app, { 'src/feature.js': 'export const f = 2;\n' }, 'feature');
    warm = await wsp.setup();
    expect(warm.cache).toMatchObject({ hit: true, key: cold.cache.key });
    expect(warm.repos.find((r: any) => r.name === 'app').commit).toBe(newer);
    const r = await wsp.exec(
      warm.id,
      'git -C app rev-parse HEAD; wc -l < ~/setup-runs; cat app/src/feature.js; git -C app reflog --format=%H | tail -n 1',
    );
    const [head, runs, feature, firstReflog] = r.stdout.data.trim().split('\n');
    expect(head).toBe(newer);
    expect(runs).toBe('1'); // the cached setup's single run, not a second one
    expect(feature).toBe('export const f = 2;');
    expect(firstReflog).toBe(app.head); // the repo was born at the cached commit, then moved: no re-clone
  });

  it('a change to a cacheKeyFiles file misses the cache, and restores from the older entry (setup re-run on top)', async () => {
    commitFiles(app, { 'deps.lock': 'left-pad@2\n' }, 'bump deps');
    const ws = await wsp.setup();
    expect(ws.cache.hit).toBe(false);
    expect(ws.cache.key).not.toBe(cold.cache.key);
    expect(ws.cache.restoredFrom).toBe(cold.cache.key);
    expect(ws.cache.reason).toContain(`restored from entry ${cold.cache.key}`);
    // The older entry's home, then setup once more on top of it.
    const r = await wsp.exec(ws.id, 'wc -l < ~/setup-runs');
    expect(r.stdout.data.trim()).toBe('2');
    expect((await wsp.api('DELETE', `/workspaces/${ws.id}`)).status).toBe(200);
  });

  it('runs argv verbatim with env, stdin and a non-zero exit as data', async () => {
    const r = await wsp.exec(warm.id, '', {}).catch((e) => e);
    expect(String(r)).toContain('400');
    const argv = await wsp.api('POST', `/workspaces/${warm.id}/commands`, {
      argv: ['printf', '%s|', 'a b', "it's", 'ünï'],
      waitMs: 10_000,
    });
    expect(argv.status).toBe(201);
    expect(argv.body.stdout.data).toBe("a b|it's|ünï|");
    const env = await wsp.exec(warm.id, 'echo "$GREETING"; cat; exit 7', {
      env: { GREETING: 'hi' },
      stdin: 'from stdin\n',
    });
    expect(env).toMatchObject({ state: 'exited', exitCode: 7 });
    expect(env.stdout.data).toBe('hi\nfrom stdin\n');
    const cwd = await wsp.exec(warm.id, 'pwd', { cwd: 'libs/lib' });
    expect(cwd.stdout.data.trim()).toBe(`${warm.plan.root}/libs/lib`);
  });

  it('kills a command at its timeout, with its process group', async () => {
    const r = await wsp.exec(warm.id, 'sleep 300 & sleep 300; echo never', { timeoutMs: 500 });
    expect(r).toMatchObject({ state: 'killed', reason: 'timeout' });
    const ps = await wsp.exec(warm.id, 'ps -u "$(id -u)" -o args= | grep -c "^sleep 300" || true');
    expect(ps.stdout.data.trim()).toBe('0');
  });

  it('returns 202 for a long command, and cancels it', async () => {
    const started = await wsp.api('POST', `/workspaces/${warm.id}/commands`, {
      command: 'echo started; sleep 300',
      waitMs: 200,
    });
    expect(started.status).toBe(202);
    expect(started.body.state).toBe('running');
    const cancelled = await wsp.api('DELETE', `/workspaces/${warm.id}/commands/${started.body.id}`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ state: 'killed', reason: 'cancelled' });
    const again = await wsp.api('GET', `/workspaces/${warm.id}/commands/${started.body.id}`);
    expect(again.body.stdout.data).toBe('started\n');
  });

  it('bounds large output and pages through it', async () => {
    const r = await wsp.exec(warm.id, 'head -c 3000000 /dev/zero | tr "\\0" x');
    expect(r.state).toBe('exited');
    expect(r.stdout.bytes).toBe(3_000_000);
    expect(r.stdout.truncated).toBe(true);
    // 1 MiB is kept: a read past it is empty, a read across its end is cut at it.
    const past = await wsp.api('GET', `/workspaces/${warm.id}/commands/${r.id}?stdoutOffset=1048576&limit=100000`);
    expect(past.body.stdout.data.length).toBe(0);
    const across = await wsp.api('GET', `/workspaces/${warm.id}/commands/${r.id}?stdoutOffset=1000000&limit=100000`);
    expect(across.body.stdout.data.length).toBe(48_576);
    expect(across.body.stdout.nextOffset).toBe(1_048_576);
    const first = await wsp.api('GET', `/workspaces/${warm.id}/commands/${r.id}?stdoutOffset=1000&limit=10`);
    expect(first.body.stdout).toMatchObject({ data: 'xxxxxxxxxx', offset: 1000, nextOffset: 1010 });
  });

  it('fetches new upstream commits through the provider and checks one out', async () => {
    const next = commitFiles(lib, { 'lib.txt': 'lib v2\n' }, 'lib v2');
    const r = await wsp.api('POST', `/workspaces/${warm.id}/git/fetch`, {
      repos: ['libs/lib'],
      checkout: { repo: 'libs/lib', ref: 'main' },
    });
    expect(r.status).toBe(200);
    expect(r.body.repos[0]).toMatchObject({ name: 'libs/lib', checkedOut: next, after: next });
    const cat = await wsp.exec(
      warm.id,
      'cat libs/lib/lib.txt; git -C libs/lib config --list | grep -ci extraheader || true',
    );
    expect(cat.stdout.data).toBe('lib v2\n0\n');
  });

  it("shows the agent's changes against the baseline", async () => {
    await wsp.exec(warm.id, 'echo changed >> app/README.md && echo new > app/untracked.txt && rm app/src/index.js');
    const r = await wsp.api('GET', `/workspaces/${warm.id}/changes`);
    expect(r.status).toBe(200);
    const appChanges = r.body.repos.find((x: any) => x.name === 'app');
    expect(appChanges.status).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ path: 'README.md' }),
        expect.objectContaining({ path: 'untracked.txt' }),
        expect.objectContaining({ path: 'src/index.js' }),
      ]),
    );
    expect(appChanges.diff).toContain('+changed');
  });

  it('resets to the baseline: fingerprint matches, files and processes are gone', async () => {
    await wsp.exec(
      warm.id,
      [
        'echo x >> libs/lib/lib.txt',
        'chmod +x app/README.md',
        'mkdir -p app/build/deep && echo y > app/build/deep/z',
        'ln -s /etc/passwd app/link',
        'echo t > /tmp/scratch',
        'echo h > ~/.bash_history_x',
        '(setsid sleep 1000 >/dev/null 2>&1 &)',
        'nohup sleep 999 >/dev/null 2>&1 &',
      ].join('; '),
    );
    const reset = await wsp.api('POST', `/workspaces/${warm.id}/reset`, {});
    expect(reset.status).toBe(200);
    expect(reset.body.matches).toBe(true);
    expect(reset.body.fingerprint).toBe(warm.baselineFingerprint);
    const check = await wsp.exec(
      warm.id,
      'ls app; cat app/README.md; ls /tmp | wc -l; ps -u "$(id -u)" -o args= | grep -c "^sleep 99" || true',
    );
    expect(check.stdout.data).not.toContain('untracked.txt');
    expect(check.stdout.data).not.toContain('link');
    expect(check.stdout.data).toContain('# app\n');
    expect(check.stdout.data.trim().split('\n').slice(-2)).toEqual(['0', '0']);
    const changes = await wsp.api('GET', `/workspaces/${warm.id}/changes`);
    for (const repo of changes.body.repos) expect(repo.status).toEqual([]);
  });

  it('a warm workspace equals a cold one at the same commits', async () => {
    // A second provider with the cache off builds cold at the same (newest) commits.
    const coldProvider = await startTestProvider({
      repositories: [
        { url: git.url('app'), path: 'app', credential: 'env:WSP_IT_TOKEN', cacheKeyFiles: ['deps.lock'] },
        { url: git.url('lib'), path: 'libs/lib', credential: 'env:WSP_IT_TOKEN' },
      ],
      setup: { script: SETUP },
      workspace: { network: 'none' },
      cache: { enabled: false },
    });
    try {
      const warmNow = await wsp.setup();
      const coldNow = await coldProvider.setup();
      expect(warmNow.cache.hit).toBe(true);
      expect(coldNow.cache).toMatchObject({ hit: false, reason: 'cache disabled' });
      expect(coldNow.repos).toEqual(warmNow.repos);
      // Working trees (content, modes, symlinks; .git internals differ by history of arrival).
      const tree =
        'cd ~/workspace && find . -path "*/.git" -prune -o -printf "%p %y %m %l\\n" | LC_ALL=C sort | sha256sum; find . -path "*/.git" -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum; git -C app rev-parse HEAD; git -C libs/lib rev-parse HEAD; for r in app libs/lib; do git -C $r for-each-ref --format="%(refname) %(objectname)"; git -C $r status --porcelain; done';
      const a = await wsp.exec(warmNow.id, tree);
      const b = await coldProvider.exec(coldNow.id, tree);
      expect(a.exitCode).toBe(0);
      expect(a.stdout.data).toBe(b.stdout.data);
      await wsp.api('DELETE', `/workspaces/${warmNow.id}`);
      await coldProvider.api('DELETE', `/workspaces/${coldNow.id}`);
    } finally {
      await coldProvider.close();
    }
  });

  it('canary: the token is nowhere — workspace files, processes, outputs, cache, state, logs, responses', async () => {
    const needles = [
      CANARY,
      Buffer.from(`x-access-token:${CANARY}`).toString('base64'),
      Buffer.from(CANARY).toString('base64'),
    ];
    // Inside the workspace: every file it can read, and every process it can see.
    // Patterns come in on stdin (never argv or env, which /proc would show), reversed so the stored stdin
    // file does not itself hold the canary; grep reads them from a pipe.
    const probe = [
      'pats=$(rev)',
      'grep -rlaF -f <(printf "%s\\n" "$pats") ~ /tmp 2>/dev/null',
      'for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do cat "$f" 2>/dev/null; echo; done | grep -caF -f <(printf "%s\\n" "$pats") || true',
    ].join('\n');
    const inside = await wsp.exec(warm.id, probe, {
      stdin: `${needles.map((n) => [...n].reverse().join('')).join('\n')}\n`,
    });
    expect(inside.stdout.data).toBe('0\n');
    // Every file under the provider's data dir: workspaces, snapshots, cache, scratch, command outputs, mirrors.
    const hits: string[] = [];
    const walk = (dir: string): void => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.isFile()) {
          const data = fs.readFileSync(p);
          for (const n of needles) if (data.includes(n)) hits.push(`${p}`);
        }
      }
    };
    walk(wsp.dataDir);
    expect(hits).toEqual([]);
    // State items, log lines, API responses.
    const state = wsp.provider.deps.state;
    const items: unknown[] = [...(await state.listWorkspaces()), ...(await state.listCacheEntries())];
    for (const w of await state.listWorkspaces()) items.push(...(await state.listCommands(w.id)));
    const corpora = { state: JSON.stringify(items), logs: wsp.logs.join('\n'), responses: wsp.responses.join('\n') };
    for (const [name, text] of Object.entries(corpora))
      for (const n of needles) expect(text.includes(n), `${name} contains the canary`).toBe(false);
    expect(wsp.logs.length).toBeGreaterThan(0);
  });

  it('tears down idempotently', async () => {
    const first = await wsp.api('DELETE', `/workspaces/${warm.id}`);
    expect(first.status).toBe(200);
    expect(first.body.status).toBe('deleted');
    const second = await wsp.api('DELETE', `/workspaces/${warm.id}`);
    expect(second.status).toBe(200);
    const exec = await wsp.api('POST', `/workspaces/${warm.id}/commands`, { command: 'true' });
    expect(exec.status).toBe(409);
    expect(fs.existsSync(path.join(wsp.dataDir, 'local', 'workspaces', warm.id))).toBe(false);
    expect((await wsp.api('GET', '/workspaces/ws-000000000000000000000000')).status).toBe(404);
  });
});
