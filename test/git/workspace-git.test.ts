import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BadRequestError } from '../../shared/contract/errors.js';
import {
  checkoutArgv,
  cloneFromBundleArgv,
  contentCheckArgv,
  diffArgv,
  fetchFromBundleArgv,
  headsArgv,
  parseContentCheck,
  parseHeads,
  parseStatus,
  reconcileChanges,
  refsUpdateInput,
  statusArgv,
} from '../../shared/git/workspace-git.js';
import { commitFiles, createTag, createUpstreamRepo, git } from '../support/git-fixtures.js';
import { removeDirs, runArgvOk, tempDir } from './helpers.js';

const SHA = '0123456789abcdef0123456789abcdef01234567';
const dirs: string[] = [];
afterAll(() => removeDirs(dirs));

describe('argv builders', () => {
  it('never interpolate values into the script: they are positional parameters after $0', () => {
    const values = {
      bundlePath: '/t/b.bundle',
      target: '/w/$(x)',
      originUrl: 'https://h/o.git',
      commit: SHA,
      branch: 'feat/y',
    };
    const argv = cloneFromBundleArgv(values);
    expect(argv.slice(0, 2)).toEqual(['sh', '-c']);
    expect(argv[3]).toBe('wsp-git');
    expect(argv.slice(4)).toEqual(['/t/b.bundle', '/w/$(x)', 'https://h/o.git', SHA, 'feat/y']);
    for (const value of Object.values(values)) expect(argv[2]).not.toContain(value);

    expect(fetchFromBundleArgv({ bundlePath: '/t/b', target: '/w' }).slice(3)).toEqual(['wsp-git', '/t/b', '/w']);
    expect(checkoutArgv({ target: '/w', commit: SHA }).slice(3)).toEqual(['wsp-git', '/w', SHA, '']);
    expect(diffArgv({ target: '/w', baseCommit: SHA }).slice(3)).toEqual(['wsp-git', '/w', SHA]);
    expect(diffArgv({ target: '/w', baseCommit: 'HEAD' }).slice(3)).toEqual(['wsp-git', '/w', 'HEAD']);
  });

  it('disable hooks for git the provider triggers', () => {
    for (const argv of [
      cloneFromBundleArgv({ bundlePath: '/b', target: '/w', originUrl: 'u', commit: SHA }),
      fetchFromBundleArgv({ bundlePath: '/b', target: '/w' }),
      checkoutArgv({ target: '/w', commit: SHA }),
    ]) {
      expect(argv[2]).toContain('core.hooksPath=/dev/null');
      expect(argv[2]).toContain('GIT_TERMINAL_PROMPT=0');
    }
  });

  it('reject malformed commits and branch names with BadRequestError', () => {
    const bad = [
      () => checkoutArgv({ target: '/w', commit: 'main' }),
      () => checkoutArgv({ target: '/w', commit: '--orphan' }),
      () => diffArgv({ target: '/w', baseCommit: SHA.slice(0, 12) }),
      () => checkoutArgv({ target: '/w', commit: SHA, branch: '-b' }),
      () => checkoutArgv({ target: '/w', commit: SHA, branch: 'a..b' }),
      () => checkoutArgv({ target: '/w', commit: SHA, branch: 'a b' }),
      () => cloneFromBundleArgv({ bundlePath: '/b', target: '/w', originUrl: 'u', commit: SHA, branch: 'x.lock' }),
    ];
    for (const build of bad) expect(build).toThrow(BadRequestError);
  });
});

describe('parsers', () => {
  it('parseHeads collects HEAD, refs and the peeled basis', () => {
    const tagObject = 'a'.repeat(40);
    const out = `HEAD ${SHA}\nrefs/remotes/origin/main ${SHA} \nrefs/tags/v1 ${tagObject} ${'b'.repeat(40)}\nrefs/heads/main ${SHA} \n`;
    expect(parseHeads(out)).toEqual({
      head: SHA,
      remotes: { main: SHA },
      refs: [
        { ref: 'refs/remotes/origin/main', object: SHA, commit: SHA },
        { ref: 'refs/tags/v1', object: tagObject, commit: 'b'.repeat(40) },
        { ref: 'refs/heads/main', object: SHA, commit: SHA },
      ],
      basis: [SHA, 'b'.repeat(40)],
    });
    expect(parseHeads('HEAD -\n')).toEqual({ head: null, refs: [], remotes: {}, basis: [] });
  });

  it('refsUpdateInput maps branches to origin/*, keeps tags, skips pins, prunes vanished origin refs only', () => {
    const input = refsUpdateInput(
      [
        { ref: 'refs/heads/main', object: SHA, commit: SHA },
        { ref: 'refs/tags/v1', object: 'a'.repeat(40), commit: SHA },
        { ref: `refs/wsp/pins/${SHA}`, object: SHA, commit: SHA },
      ],
      parseHeads(
        `HEAD ${SHA}\nrefs/remotes/origin/old ${SHA}\nrefs/remotes/origin/HEAD ${SHA}\nrefs/tags/mine ${SHA}\n`,
      ),
    ).toString('utf8');
    expect(input).toBe(
      `delete refs/remotes/origin/old\nupdate refs/remotes/origin/main ${SHA}\nupdate refs/tags/v1 ${'a'.repeat(40)}\n`,
    );
  });
});

describe('status and diff inside a real repository', () => {
  let repo: string;
  let home: string;
  let base: string;

  beforeAll(() => {
    const root = tempDir('upstream');
    home = tempDir('home');
    dirs.push(root, home);
    const upstream = createUpstreamRepo(root, 'changes', {
      'README.md': 'hello\n',
      'remove-me.txt': 'x\n',
      'rename-me.txt': 'same content for rename detection\n',
      'bin/data.bin': new Uint8Array([0, 1, 2, 3]),
      'file with space.txt': 'space\n',
    });
    createTag(upstream, 'v1', 'HEAD', 'annotated');
    base = upstream.head;
    repo = upstream.work; // a normal clone: good enough for what status/diff look at
    commitFiles(upstream, {}, 'noop'); // the agent committed something too: diff is vs base, not HEAD
    fs.writeFileSync(path.join(repo, 'README.md'), 'hello\nworld\n');
    fs.rmSync(path.join(repo, 'remove-me.txt'));
    fs.writeFileSync(path.join(repo, 'bin/data.bin'), new Uint8Array([9, 0, 9]));
    fs.writeFileSync(path.join(repo, 'staged-new.txt'), 'new\n');
    git(repo, ['add', 'staged-new.txt']);
    git(repo, ['mv', 'rename-me.txt', 'renamed.txt']);
    fs.mkdirSync(path.join(repo, 'untracked dir'));
    fs.writeFileSync(path.join(repo, 'untracked dir', 'u.txt'), 'untracked\n');
    fs.writeFileSync(path.join(repo, 'file with space.txt'), 'changed\n');
  });

  it('parseStatus(statusArgv) lists modified, added, deleted, renamed and untracked files', async () => {
    const { stdout } = await runArgvOk(statusArgv({ target: repo, baseCommit: base }), { cwd: repo, home });
    const entries = parseStatus(stdout);
    const byPath = Object.fromEntries(entries.map((e) => [e.path, e]));
    expect(byPath['README.md']).toMatchObject({ code: ' M', kind: 'modified', index: ' ', worktree: 'M' });
    expect(byPath['bin/data.bin']).toMatchObject({ kind: 'modified' });
    expect(byPath['file with space.txt']).toMatchObject({ kind: 'modified' });
    expect(byPath['remove-me.txt']).toMatchObject({ kind: 'deleted', worktree: 'D' });
    expect(byPath['staged-new.txt']).toMatchObject({ kind: 'added', index: 'A' });
    expect(byPath['renamed.txt']).toMatchObject({ kind: 'renamed', origPath: 'rename-me.txt' });
    expect(byPath['untracked dir/u.txt']).toMatchObject({ kind: 'untracked', index: '?', worktree: '?' });
    expect(entries).toHaveLength(7);
  });

  it('diffArgv shows text changes against the base commit and a binary summary', async () => {
    const { stdout } = await runArgvOk(diffArgv({ target: repo, baseCommit: base }), { cwd: repo, home });
    expect(stdout).toContain('diff --git a/README.md b/README.md');
    expect(stdout).toContain('+world');
    expect(stdout).toContain('deleted file mode');
    expect(stdout).toMatch(/Binary files a\/bin\/data\.bin and b\/bin\/data\.bin differ/);
    expect(stdout).toContain('+++ b/staged-new.txt');
    expect(stdout).not.toContain('untracked');
  });

  it('headsArgv prints HEAD and refs that parseHeads understands', async () => {
    const { stdout } = await runArgvOk(headsArgv({ target: repo }), { cwd: repo, home });
    const heads = parseHeads(stdout);
    expect(heads.head).toBe(git(repo, ['rev-parse', 'HEAD']));
    expect(heads.refs.map((r) => r.ref)).toEqual(
      expect.arrayContaining(['refs/heads/main', 'refs/remotes/origin/main', 'refs/tags/v1']),
    );
    expect(heads.refs.find((r) => r.ref === 'refs/tags/v1')?.commit).toBe(base);
    expect(heads.basis).toContain(base);
  });

  it('checkoutArgv carries local changes instead of discarding them', async () => {
    await runArgvOk(checkoutArgv({ target: repo, commit: base, branch: 'review' }), { cwd: repo, home });
    expect(git(repo, ['rev-parse', 'HEAD'])).toBe(base);
    expect(git(repo, ['symbolic-ref', 'HEAD'])).toBe('refs/heads/review');
    expect(git(repo, ['config', 'branch.review.merge'])).toBe('refs/heads/review');
    expect(fs.readFileSync(path.join(repo, 'README.md'), 'utf8')).toBe('hello\nworld\n');
  });
});

describe('content check against the baseline (contentCheckArgv → parseContentCheck → reconcileChanges)', () => {
  it('finds a skip-worktree edit, an info/exclude file and a file hidden by an added .gitignore rule; names tricky paths exactly', async () => {
    const root = tempDir('upstream');
    const home = tempDir('home');
    dirs.push(root, home);
    const upstream = createUpstreamRepo(root, 'hide', {
      '.gitignore': 'deps/\n',
      'a.txt': 'a\n',
      'flagged\nname.txt': 'n\n',
    });
    const repo = upstream.work;
    fs.appendFileSync(path.join(repo, 'a.txt'), 'more\n');
    fs.appendFileSync(path.join(repo, 'flagged\nname.txt'), 'more\n');
    git(repo, ['update-index', '--skip-worktree', '--', 'a.txt']);
    git(repo, ['update-index', '--assume-unchanged', '--', 'flagged\nname.txt']);
    fs.writeFileSync(path.join(repo, 'info-excluded.txt'), 'x\n');
    fs.appendFileSync(path.join(repo, '.git/info/exclude'), 'info-excluded.txt\n');
    fs.writeFileSync(path.join(repo, 'gi-hidden.txt'), 'x\n');
    fs.appendFileSync(path.join(repo, '.gitignore'), 'gi-hidden.txt\n');
    fs.mkdirSync(path.join(repo, 'deps'));
    fs.writeFileSync(path.join(repo, 'deps/d.txt'), 'baseline rule\n');

    const at = { target: repo, baseCommit: upstream.head };
    const check = parseContentCheck((await runArgvOk(contentCheckArgv(at), { cwd: repo, home })).stdout);
    expect(check.flagged).toEqual(
      new Map([
        ['a.txt', 'skip-worktree'],
        ['flagged\nname.txt', 'assume-unchanged'],
      ]),
    );
    expect([...check.changed.keys()].sort()).toEqual(['.gitignore', 'a.txt', 'flagged\nname.txt']);
    const status = parseStatus((await runArgvOk(statusArgv(at), { cwd: repo, home })).stdout);
    const whole = reconcileChanges(status, check);
    expect(Object.fromEntries(whole.hidden.map((h) => [h.path, h.how]))).toEqual({
      'a.txt': 'skip-worktree',
      'flagged\nname.txt': 'assume-unchanged',
      'info-excluded.txt': 'ignored',
      'gi-hidden.txt': 'ignored',
    });
    const codes = Object.fromEntries(whole.status.map((e) => [e.path, e.code]));
    expect(codes).toMatchObject({
      'a.txt': ' M',
      'flagged\nname.txt': ' M',
      'info-excluded.txt': '??',
      'gi-hidden.txt': '!!',
    });
    expect(Object.keys(codes).some((p) => p.startsWith('deps'))).toBe(false);
  });
});
