import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BadRequestError, StepFailedError } from '../../shared/contract/errors.js';
import { basicCredential, secretForms } from '../../shared/git/git-env.js';
import { GitBroker } from '../../shared/git/mirror.js';
import {
  commitFiles,
  createBranch,
  createTag,
  createUpstreamRepo,
  setDefaultBranch,
  switchBranch,
  type UpstreamRepo,
} from '../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../support/git-server.js';
import { countFiles, filesContaining, removeDirs, tempDir } from './helpers.js';

const TOKEN = 'ghp_canaryMirrorToken_7f3a9c';
const secrets: Record<string, string> = { 'env:GOOD': TOKEN, 'env:BAD': 'wrong-token-value-123' };
const resolveSecret = async (ref: string): Promise<string> => {
  const value = secrets[ref];
  if (value === undefined) throw new Error(`unknown secret ${ref}`);
  return value;
};

let server: GitServer;
let repo: UpstreamRepo;
const dirs: string[] = [];

beforeAll(async () => {
  server = await startGitServer({ token: TOKEN });
  repo = createUpstreamRepo(server.root, 'app', { 'README.md': '# app\n', 'src/main.ts': 'export {};\n' });
  createTag(repo, 'v1.0.0', 'HEAD', 'release 1.0.0');
  createTag(repo, 'light', 'HEAD');
});
afterAll(async () => {
  await server.close();
  removeDirs(dirs);
});

function broker(extra: Partial<ConstructorParameters<typeof GitBroker>[0]> = {}): {
  broker: GitBroker;
  mirrorsDir: string;
} {
  const mirrorsDir = tempDir('mirrors');
  dirs.push(mirrorsDir);
  return { broker: new GitBroker({ mirrorsDir, resolveSecret, ...extra }), mirrorsDir };
}

describe('GitBroker.sync', () => {
  it('clones a mirror with the right token, mode 0700, token-free origin, and no token in any file', async () => {
    const { broker: b, mirrorsDir } = broker();
    const before = server.requests.length;
    const mirror = await b.sync({ url: server.url('app'), credential: 'env:GOOD' });

    expect(mirror.url).toBe(server.url('app'));
    expect(mirror.dir).toBe(b.mirrorDir(server.url('app')));
    expect(path.basename(mirror.dir)).toMatch(/^[0-9a-f]{16}\.git$/);
    expect(fs.statSync(mirror.dir).mode & 0o777).toBe(0o700);
    const served = server.requests.slice(before);
    expect(served.length).toBeGreaterThan(0);
    expect(served.every((r) => r.authorized)).toBe(true);

    const config = fs.readFileSync(path.join(mirror.dir, 'config'), 'utf8');
    expect(config).toContain(`url = ${server.url('app')}`);
    expect(config).not.toMatch(/extraheader/i);

    // Fetch again (the second path: fetch + ls-remote) before scanning every file.
    await commitFiles(repo, { 'later.txt': 'later\n' }, 'later');
    await b.sync({ url: server.url('app'), credential: 'env:GOOD' });
    expect(countFiles(mirrorsDir)).toBeGreaterThan(5);
    expect(filesContaining(mirrorsDir, secretForms(TOKEN))).toEqual([]);

    // The scan itself can find a leak: plant the base64 form in a copy and look again.
    const control = tempDir('control');
    dirs.push(control);
    fs.writeFileSync(
      path.join(control, 'config'),
      `[http]\n\textraHeader = Authorization: Basic ${basicCredential(TOKEN)}\n`,
    );
    expect(filesContaining(control, secretForms(TOKEN))).toEqual([path.join(control, 'config')]);
  });

  it('fails clearly with a wrong token, without the token in the error or a half mirror left', async () => {
    const { broker: b, mirrorsDir } = broker();
    const error = await b.sync({ url: server.url('app'), credential: 'env:BAD' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StepFailedError);
    expect((error as StepFailedError).step).toBe('git fetch');
    expect((error as Error).message).toBe(`git fetch failed: authentication failed for ${server.url('app')}`);
    const everything = `${(error as Error).message} ${JSON.stringify((error as StepFailedError).result)}`;
    for (const form of [...secretForms('wrong-token-value-123'), ...secretForms(TOKEN)])
      expect(everything).not.toContain(form);
    expect(fs.readdirSync(mirrorsDir).filter((n) => n !== '.home')).toEqual([]);
  });

  it('fails clearly without a credential', async () => {
    const { broker: b } = broker();
    await expect(b.sync({ url: server.url('app') })).rejects.toThrow(`authentication failed for ${server.url('app')}`);
  });

  it('fails with "not found" for an unknown repository', async () => {
    const { broker: b } = broker();
    await expect(b.sync({ url: server.url('nope'), credential: 'env:GOOD' })).rejects.toThrow(
      /repository .*nope\.git not found/,
    );
  });

  it('removes temp clones of dead provider processes on start, and keeps live ones', async () => {
    const { mirrorsDir } = broker();
    const dead = path.join(mirrorsDir, 'abcdef0123456789.git.tmp-999999999-0a1b2c3d');
    const live = path.join(mirrorsDir, `abcdef0123456789.git.tmp-${process.pid}-0a1b2c3d`);
    fs.mkdirSync(path.join(dead, 'objects'), { recursive: true });
    fs.mkdirSync(live);
    new GitBroker({ mirrorsDir, resolveSecret });
    expect(fs.existsSync(dead)).toBe(false);
    expect(fs.existsSync(live)).toBe(true);
  });

  it('shares one fetch between concurrent callers for the same URL', async () => {
    const { broker: b } = broker();
    const url = server.url('app');
    await b.sync({ url, credential: 'env:GOOD' });

    let before = server.requests.length;
    await b.sync({ url, credential: 'env:GOOD' });
    const oneFetch = server.requests.length - before;

    before = server.requests.length;
    const first = b.sync({ url, credential: 'env:GOOD' });
    const second = b.sync({ url, credential: 'env:GOOD' });
    expect(second).toBe(first);
    await Promise.all([first, second]);
    expect(server.requests.length - before).toBe(oneFetch);
  });

  it('follows a change of the upstream default branch on the next sync', async () => {
    const upstream = createUpstreamRepo(server.root, 'headmove', { 'a.txt': 'a\n' });
    const devCommit = createBranch(upstream, 'dev');
    const { broker: b } = broker();
    const url = server.url('headmove');
    let mirror = await b.sync({ url, credential: 'env:GOOD' });
    expect((await b.resolveRef(mirror)).branch).toBe('main');

    setDefaultBranch(upstream, 'dev');
    mirror = await b.sync({ url, credential: 'env:GOOD' });
    expect(await b.resolveRef(mirror)).toEqual({ commit: devCommit, ref: 'dev', branch: 'dev' });
  });

  it('never puts the token in any git argv (recording wrapper), while the env does carry it', async () => {
    const binDir = tempDir('recorder');
    dirs.push(binDir);
    const log = path.join(binDir, 'argv.log');
    const wrapper = path.join(binDir, 'git');
    // Records argv, and only whether an auth header reached the env (never its value).
    fs.writeFileSync(
      wrapper,
      `#!/bin/sh
{ printf 'ARGV'; for a in "$@"; do printf ' [%s]' "$a"; done; printf '\\n'
  case "\${GIT_CONFIG_VALUE_0-}" in "Authorization: Basic "*) echo ENV_AUTH ;; esac
} >> '${log}'
exec git "$@"
`,
      { mode: 0o755 },
    );
    const { broker: b } = broker({ gitPath: wrapper });
    const recorded = createUpstreamRepo(server.root, 'recorded', { 'a.txt': 'a\n' });
    createTag(recorded, 'v1.0.0', 'HEAD', 'annotated');
    const url = server.url('recorded');
    const mirror = await b.sync({ url, credential: 'env:GOOD' });
    // Unchanged upstream: one look at its refs, no fetch.
    await b.sync({ url, credential: 'env:GOOD' });
    const unchanged = fs.readFileSync(log, 'utf8');
    expect(unchanged).toMatch(/^ARGV \[ls-remote\]/m);
    expect(unchanged).not.toMatch(/^ARGV \[fetch\]/m);
    // A new commit upstream: fetched.
    const later = commitFiles(recorded, { 'b.txt': 'b\n' }, 'later');
    await b.sync({ url, credential: 'env:GOOD' });
    expect((await b.resolveRef(mirror)).commit).toBe(later);
    await b.resolveRef(mirror, 'v1.0.0');
    await b.createBundle(mirror, { include: [], basis: [] }, path.join(binDir, 'out.bundle'));

    const argv = fs.readFileSync(log, 'utf8');
    expect(argv).toMatch(/^ARGV \[clone\]/m);
    expect(argv).toMatch(/^ARGV \[fetch\]/m);
    expect(argv).toMatch(/^ARGV \[ls-remote\]/m);
    expect(argv).toMatch(/^ARGV \[bundle\] \[create\]/m);
    expect(argv).toContain('ENV_AUTH'); // the channel the token does use
    for (const form of secretForms(TOKEN)) expect(argv).not.toContain(form);
  });
});

describe('GitBroker.resolveRef', () => {
  let b: GitBroker;
  let mirror: Awaited<ReturnType<GitBroker['sync']>>;
  let upstream: UpstreamRepo;
  let featureCommit: string;
  let tagCommit: string;

  beforeAll(async () => {
    upstream = createUpstreamRepo(server.root, 'refs', { 'a.txt': 'a\n' });
    tagCommit = createTag(upstream, 'v2', 'HEAD', 'annotated');
    featureCommit = createBranch(upstream, 'feature/x');
    featureCommit = commitFiles(upstream, { 'b.txt': 'b\n' }, 'feature work');
    switchBranch(upstream, 'main');
    ({ broker: b } = broker());
    mirror = await b.sync({ url: server.url('refs'), credential: 'env:GOOD' });
  });

  it('defaults to the HEAD branch', async () => {
    expect(await b.resolveRef(mirror)).toEqual({ commit: upstream.head, ref: 'main', branch: 'main' });
  });

  it('resolves branches (also as refs/heads/…), annotated tags to their commit, and shas', async () => {
    expect(await b.resolveRef(mirror, 'feature/x')).toEqual({
      commit: featureCommit,
      ref: 'feature/x',
      branch: 'feature/x',
    });
    expect(await b.resolveRef(mirror, 'refs/heads/feature/x')).toMatchObject({
      commit: featureCommit,
      branch: 'feature/x',
    });
    expect(await b.resolveRef(mirror, 'v2')).toEqual({ commit: tagCommit, ref: 'v2' });
    expect(await b.resolveRef(mirror, 'refs/tags/v2')).toEqual({ commit: tagCommit, ref: 'refs/tags/v2' });
    expect(await b.resolveRef(mirror, featureCommit)).toEqual({ commit: featureCommit, ref: featureCommit });
    expect(await b.resolveRef(mirror, featureCommit.slice(0, 10))).toEqual({
      commit: featureCommit,
      ref: featureCommit.slice(0, 10),
    });
  });

  it('rejects unknown refs and shas with BadRequestError naming the URL', async () => {
    for (const ref of ['nope', 'refs/heads/nope', '0123456789abcdef0123456789abcdef01234567', 'deadbeef']) {
      const error = await b.resolveRef(mirror, ref).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BadRequestError);
      expect((error as Error).message).toBe(`ref ${ref} not found in ${server.url('refs')}`);
    }
    await expect(b.resolveRef(mirror, '--upload-pack=evil')).rejects.toBeInstanceOf(BadRequestError);
  });

  it('heads() maps every branch to its commit', async () => {
    expect(await b.heads(mirror)).toEqual({ main: upstream.head, 'feature/x': featureCommit });
  });

  it('readFile() reads a file at a commit, undefined when absent', async () => {
    expect(await b.readFile(mirror, featureCommit, 'b.txt')).toBe('b\n');
    expect(await b.readFile(mirror, featureCommit, './a.txt')).toBe('a\n');
    expect(await b.readFile(mirror, upstream.head, 'b.txt')).toBeUndefined();
    await expect(b.readFile(mirror, featureCommit, '../etc/passwd')).rejects.toBeInstanceOf(BadRequestError);
    await expect(b.readFile(mirror, 'main', 'a.txt')).rejects.toBeInstanceOf(BadRequestError);
  });

  it('lists branches and tags with peeled commits', async () => {
    const refs = await b.listRefs(mirror);
    expect(refs).toEqual(
      expect.arrayContaining([
        { ref: 'refs/heads/main', object: upstream.head, commit: upstream.head },
        { ref: 'refs/heads/feature/x', object: featureCommit, commit: featureCommit },
        expect.objectContaining({ ref: 'refs/tags/v2', commit: tagCommit }),
      ]),
    );
    const tag = refs.find((r) => r.ref === 'refs/tags/v2');
    expect(tag?.object).not.toBe(tagCommit); // annotated: the tag object
  });
});
