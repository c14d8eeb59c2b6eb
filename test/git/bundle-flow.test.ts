/**
 * The whole flow for real: mirror (token-checking server) → bundle → workspace-side argv run with
 * spawn in a temp dir (no sandbox here) → the workspace repo is at the right commit, with a
 * token-free origin and no token anywhere.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { secretForms } from '../../shared/git/git-env.js';
import { GitBroker, type MirrorHandle } from '../../shared/git/mirror.js';
import {
  checkoutArgv,
  cloneFromBundleArgv,
  fetchFromBundleArgv,
  headsArgv,
  parseHeads,
  refsUpdateArgv,
  refsUpdateInput,
  type WorkspaceHeads,
} from '../../shared/git/workspace-git.js';
import {
  commitFiles,
  createBranch,
  createTag,
  createUpstreamRepo,
  deleteBranch,
  deleteFiles,
  forcePush,
  git,
  switchBranch,
  type UpstreamRepo,
} from '../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../support/git-server.js';
import { filesContaining, removeDirs, runArgv, runArgvOk, tempDir } from './helpers.js';

const TOKEN = 'ghp_canaryBundleToken_e41d07';
const BINARY = new Uint8Array([0, 255, 1, 254, 2, 0, 0, 7]);

let server: GitServer;
let broker: GitBroker;
let mirrorsDir: string;
let transfer: string;
let home: string;
const dirs: string[] = [];

beforeAll(async () => {
  server = await startGitServer({ token: TOKEN });
  mirrorsDir = tempDir('mirrors');
  transfer = tempDir('transfer');
  home = tempDir('home');
  dirs.push(mirrorsDir, transfer, home);
  broker = new GitBroker({ mirrorsDir, resolveSecret: async () => TOKEN });
});
afterAll(async () => {
  await server.close();
  removeDirs(dirs);
});

let bundleCount = 0;
function bundlePath(): string {
  return path.join(transfer, `b${++bundleCount}.bundle`);
}

async function sync(name: string): Promise<MirrorHandle> {
  return broker.sync({ url: server.url(name), credential: 'env:TOKEN' });
}

async function heads(target: string): Promise<WorkspaceHeads> {
  return parseHeads((await runArgvOk(headsArgv({ target }), { cwd: target, home })).stdout);
}

function workspace(): string {
  const dir = tempDir('ws');
  dirs.push(dir);
  return dir;
}

function expectNoToken(...where: string[]): void {
  for (const dir of where) expect(filesContaining(dir, secretForms(TOKEN))).toEqual([]);
}

describe('full bundle → clone', () => {
  let upstream: UpstreamRepo;
  let mirror: MirrorHandle;

  beforeAll(async () => {
    upstream = createUpstreamRepo(server.root, 'full', {
      'README.md': '# full\n',
      'src/a.ts': 'a\n',
      'bin/data.bin': BINARY,
    });
    createTag(upstream, 'v1', 'HEAD', 'release');
    mirror = await sync('full');
  });

  it('clones into a new subdirectory on the default branch, tracking origin, with a token-free origin', async () => {
    const resolved = await broker.resolveRef(mirror);
    const out = bundlePath();
    const bundle = await broker.createBundle(mirror, { include: [resolved.commit], basis: [] }, out);
    expect(bundle.empty).toBe(false);
    expect(bundle.heads).toEqual(expect.arrayContaining(['refs/heads/main', 'refs/tags/v1']));
    expect(fs.statSync(out).mode & 0o777).toBe(0o600);

    const ws = workspace();
    const target = path.join(ws, 'repos', 'full');
    await runArgvOk(
      cloneFromBundleArgv({
        bundlePath: out,
        target,
        originUrl: mirror.url,
        commit: resolved.commit,
        branch: resolved.branch,
      }),
      {
        cwd: ws,
        home,
      },
    );

    expect(fs.readFileSync(path.join(target, 'README.md'), 'utf8')).toBe('# full\n');
    expect(fs.readFileSync(path.join(target, 'src/a.ts'), 'utf8')).toBe('a\n');
    expect(new Uint8Array(fs.readFileSync(path.join(target, 'bin/data.bin')))).toEqual(BINARY);
    expect(git(target, ['rev-parse', 'HEAD'])).toBe(upstream.head);
    expect(git(target, ['symbolic-ref', 'HEAD'])).toBe('refs/heads/main');
    expect(git(target, ['rev-parse', '--abbrev-ref', 'main@{upstream}'])).toBe('origin/main');
    expect(git(target, ['remote', 'get-url', 'origin'])).toBe(server.url('full'));
    expect(git(target, ['tag', '--list'])).toBe('v1');
    expect(git(target, ['status', '--porcelain'])).toBe('');
    expect(git(target, ['config', '--list', '--local']).toLowerCase()).not.toContain('extraheader');
    expectNoToken(ws, transfer, mirrorsDir);
  });

  it('clones detached when no branch is given', async () => {
    const out = bundlePath();
    await broker.createBundle(mirror, { include: [upstream.head], basis: [] }, out);
    const ws = workspace();
    const target = path.join(ws, 'r');
    await runArgvOk(cloneFromBundleArgv({ bundlePath: out, target, originUrl: mirror.url, commit: upstream.head }), {
      cwd: ws,
      home,
    });
    expect(git(target, ['rev-parse', 'HEAD'])).toBe(upstream.head);
    expect((await runArgv(['git', '-C', target, 'symbolic-ref', '-q', 'HEAD'], { cwd: ws, home })).code).not.toBe(0);
  });

  it("clones into the workspace root itself (target exists and is empty; absolute or '.')", async () => {
    const out = bundlePath();
    await broker.createBundle(mirror, { include: [upstream.head], basis: [] }, out);
    for (const useDot of [false, true]) {
      const root = workspace();
      const target = useDot ? '.' : root;
      await runArgvOk(
        cloneFromBundleArgv({ bundlePath: out, target, originUrl: mirror.url, commit: upstream.head, branch: 'main' }),
        {
          cwd: root,
          home,
        },
      );
      expect(fs.existsSync(path.join(root, '.git'))).toBe(true);
      expect(fs.readFileSync(path.join(root, 'README.md'), 'utf8')).toBe('# full\n');
      expect(git(root, ['rev-parse', 'HEAD'])).toBe(upstream.head);
    }
  });

  it('refuses a target that already holds a repository', async () => {
    const out = bundlePath();
    await broker.createBundle(mirror, { include: [upstream.head], basis: [] }, out);
    const ws = workspace();
    git(ws, ['init', '--quiet']);
    const result = await runArgv(
      cloneFromBundleArgv({ bundlePath: out, target: ws, originUrl: mirror.url, commit: upstream.head }),
      { cwd: ws, home },
    );
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('already has a .git');
  });

  it('passes values as positional parameters: quotes and $(…) in paths and URL are inert', async () => {
    const out = path.join(transfer, `it's $(touch pwned) "x".bundle`);
    await broker.createBundle(mirror, { include: [upstream.head], basis: [] }, out);
    const ws = workspace();
    const target = path.join(ws, `dir with 'quote' $(touch pwned) ;x`);
    const originUrl = `${mirror.url}?$(touch pwned)`;
    await runArgvOk(
      cloneFromBundleArgv({ bundlePath: out, target, originUrl, commit: upstream.head, branch: 'main' }),
      { cwd: ws, home },
    );
    expect(git(target, ['remote', 'get-url', 'origin'])).toBe(originUrl);
    expect(fs.existsSync(path.join(ws, 'pwned'))).toBe(false);
    expect(fs.existsSync(path.join(target, 'pwned'))).toBe(false);
  });
});

describe('incremental bundles', () => {
  let upstream: UpstreamRepo;
  let ws: string;

  beforeAll(async () => {
    upstream = createUpstreamRepo(server.root, 'inc', {
      'keep.txt': 'keep\n',
      'change.txt': 'v1\n',
      'gone.txt': 'bye\n',
    });
    const mirror = await sync('inc');
    const out = bundlePath();
    await broker.createBundle(mirror, { include: [upstream.head], basis: [] }, out);
    ws = workspace();
    await runArgvOk(
      cloneFromBundleArgv({
        bundlePath: out,
        target: ws,
        originUrl: mirror.url,
        commit: upstream.head,
        branch: 'main',
      }),
      {
        cwd: ws,
        home,
      },
    );
  });

  it('brings new upstream commits with a bundle that only holds what the workspace lacks', async () => {
    const before = (await heads(ws)).basis;
    commitFiles(upstream, { 'change.txt': 'v2\n', 'new/file.txt': 'new\n' }, 'change and add');
    const newHead = deleteFiles(upstream, ['gone.txt'], 'delete');
    const mirror = await sync('inc');
    const target = await broker.resolveRef(mirror, 'main');
    expect(target.commit).toBe(newHead);

    const out = bundlePath();
    const bundle = await broker.createBundle(mirror, { include: [target.commit], basis: (await heads(ws)).basis }, out);
    expect(bundle).toMatchObject({ empty: false, heads: ['refs/heads/main'] });
    // Incremental: the bundle names the workspace's commit as a prerequisite.
    const verify = git(mirror.dir, ['bundle', 'verify', out]);
    expect(verify).toContain('requires');
    expect(verify).toContain(before[0]!);

    await runArgvOk(fetchFromBundleArgv({ bundlePath: out, target: ws }), { cwd: ws, home });
    await runArgvOk(checkoutArgv({ target: ws, commit: target.commit, branch: target.branch }), { cwd: ws, home });
    expect(git(ws, ['rev-parse', 'HEAD'])).toBe(newHead);
    expect(git(ws, ['rev-parse', 'refs/remotes/origin/main'])).toBe(newHead);
    expect(git(ws, ['symbolic-ref', 'HEAD'])).toBe('refs/heads/main');
    expect(fs.readFileSync(path.join(ws, 'change.txt'), 'utf8')).toBe('v2\n');
    expect(fs.readFileSync(path.join(ws, 'new/file.txt'), 'utf8')).toBe('new\n');
    expect(fs.existsSync(path.join(ws, 'gone.txt'))).toBe(false);
    expectNoToken(ws, transfer);
  });

  it('reports {empty:true} and writes nothing when the workspace is up to date', async () => {
    const mirror = await sync('inc');
    const out = bundlePath();
    const bundle = await broker.createBundle(
      mirror,
      { include: [(await broker.resolveRef(mirror)).commit], basis: (await heads(ws)).basis },
      out,
    );
    expect(bundle).toMatchObject({ empty: true, heads: [] });
    expect(fs.existsSync(out)).toBe(false);
  });

  it('applies ref-only changes (new tag on a known commit, deleted branch) with refsUpdateArgv', async () => {
    createBranch(upstream, 'topic');
    switchBranch(upstream, 'main');
    let mirror = await sync('inc');
    let out = bundlePath();
    let current = await heads(ws);
    let bundle = await broker.createBundle(mirror, { include: [], basis: current.basis }, out);
    expect(bundle.empty).toBe(true); // topic points at a commit the workspace has: nothing to send…
    await runArgvOk(refsUpdateArgv({ target: ws }), { cwd: ws, home, stdin: refsUpdateInput(bundle.refs, current) });
    expect(git(ws, ['rev-parse', 'refs/remotes/origin/topic'])).toBe(
      git(upstream.dir, ['rev-parse', 'refs/heads/topic']),
    );

    const tagged = createTag(upstream, 'release-light');
    deleteBranch(upstream, 'topic');
    mirror = await sync('inc');
    out = bundlePath();
    current = await heads(ws);
    bundle = await broker.createBundle(mirror, { include: [], basis: current.basis }, out);
    expect(bundle.empty).toBe(true);
    await runArgvOk(refsUpdateArgv({ target: ws }), { cwd: ws, home, stdin: refsUpdateInput(bundle.refs, current) });
    expect(git(ws, ['rev-parse', 'refs/tags/release-light'])).toBe(tagged);
    expect(git(ws, ['for-each-ref', '--format=%(refname)', 'refs/remotes/origin'])).toBe('refs/remotes/origin/main');
  });

  it('drops basis commits the mirror never saw (a local agent commit, a made-up id)', async () => {
    fs.writeFileSync(path.join(ws, 'agent.txt'), 'agent work\n');
    git(ws, ['add', 'agent.txt']);
    git(ws, ['commit', '--quiet', '-m', 'agent commit']);
    const agentCommit = git(ws, ['rev-parse', 'HEAD']);
    const newHead = commitFiles(upstream, { 'more.txt': 'more\n' }, 'more');
    const mirror = await sync('inc');

    const current = await heads(ws);
    expect(current.basis).toContain(agentCommit);
    const out = bundlePath();
    const bundle = await broker.createBundle(
      mirror,
      { include: [newHead], basis: [...current.basis, 'f'.repeat(40)] },
      out,
    );
    expect(bundle.empty).toBe(false);
    await runArgvOk(fetchFromBundleArgv({ bundlePath: out, target: ws }), { cwd: ws, home });
    expect(git(ws, ['rev-parse', 'refs/remotes/origin/main'])).toBe(newHead);
    // The agent's branch is untouched by the fetch.
    expect(git(ws, ['rev-parse', 'HEAD'])).toBe(agentCommit);
  });
});

describe('commits no branch or tag reaches', () => {
  it('pins a force-pushed-away commit so a bundle still carries it', async () => {
    const upstream = createUpstreamRepo(server.root, 'force', { 'a.txt': '1\n' });
    const lost = commitFiles(upstream, { 'a.txt': '2\n' }, 'to be force-pushed away');
    let mirror = await sync('force');
    forcePush(upstream, upstream.head);
    const rewritten = commitFiles(upstream, { 'a.txt': '3\n' }, 'rewritten');
    mirror = await sync('force');
    expect((await broker.resolveRef(mirror, 'main')).commit).toBe(rewritten);
    expect((await broker.resolveRef(mirror, lost)).commit).toBe(lost); // still in the mirror's objects

    const out = bundlePath();
    const bundle = await broker.createBundle(mirror, { include: [lost], basis: [] }, out);
    expect(bundle.heads).toEqual(expect.arrayContaining(['refs/heads/main', `refs/wsp/pins/${lost}`]));

    const ws = workspace();
    await runArgvOk(cloneFromBundleArgv({ bundlePath: out, target: ws, originUrl: mirror.url, commit: lost }), {
      cwd: ws,
      home,
    });
    expect(git(ws, ['rev-parse', 'HEAD'])).toBe(lost);
    expect(fs.readFileSync(path.join(ws, 'a.txt'), 'utf8')).toBe('2\n');
    expect(git(ws, ['rev-parse', 'refs/remotes/origin/main'])).toBe(rewritten);
  });

  it('rejects an include commit the mirror does not have', async () => {
    const mirror = await sync('force');
    await expect(broker.createBundle(mirror, { include: ['a'.repeat(40)], basis: [] }, bundlePath())).rejects.toThrow(
      `commit ${'a'.repeat(40)} not found in ${server.url('force')}`,
    );
    await expect(broker.createBundle(mirror, { include: ['HEAD'], basis: [] }, bundlePath())).rejects.toThrow(
      /not a full commit id/,
    );
  });
});
