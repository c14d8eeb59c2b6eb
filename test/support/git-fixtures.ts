/**
 * Upstream repositories for tests: a bare repo under the git server's root (what clients fetch)
 * plus a work clone under `<root>/.work/<name>` to commit from. Commits are pushed to the bare
 * repo over the filesystem, so fixtures never need the server's token.
 *
 * Author/committer and dates are fixed, and no host config is read, so the same content gives
 * the same commit ids on every machine.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface UpstreamRepo {
  name: string;
  /** The bare repository (what the server serves). */
  dir: string;
  /** The work clone commits are made in. */
  work: string;
  /** Commit id of the default branch after creation. */
  head: string;
  /** Default branch name ('main'). */
  branch: string;
}

/** File contents by repo-relative path; Uint8Array for binary content. */
export type FileMap = Record<string, string | Uint8Array>;

/** Environment for fixture git: deterministic identity, no system/global config, no prompts. */
function fixtureGitEnv(): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: '/nonexistent',
    LC_ALL: 'C',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_AUTHOR_NAME: 'Fixture Author',
    GIT_AUTHOR_EMAIL: 'author@fixture.invalid',
    GIT_AUTHOR_DATE: '2024-01-01T00:00:00Z',
    GIT_COMMITTER_NAME: 'Fixture Committer',
    GIT_COMMITTER_EMAIL: 'committer@fixture.invalid',
    GIT_COMMITTER_DATE: '2024-01-01T00:00:00Z',
  };
}

/** Run git synchronously with the fixture env; returns trimmed stdout; throws with stderr. */
export function git(cwd: string, args: string[]): string {
  return execFileSync('git', args, {
    cwd,
    env: fixtureGitEnv(),
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

/**
 * Create `<root>/<name>.git` (bare, default branch `main`) with one commit holding `files`.
 * `name` must not end in `.git`.
 */
export function createUpstreamRepo(root: string, name: string, files: FileMap): UpstreamRepo {
  const dir = path.join(root, `${name}.git`);
  const work = path.join(root, '.work', name);
  fs.mkdirSync(path.dirname(work), { recursive: true });
  git(root, ['init', '--quiet', '--bare', '--initial-branch=main', dir]);
  git(root, ['init', '--quiet', '--initial-branch=main', work]);
  git(work, ['remote', 'add', 'origin', dir]);
  const repo: UpstreamRepo = { name, dir, work, head: '', branch: 'main' };
  repo.head = commitFiles(repo, files, 'initial commit');
  return repo;
}

/** Write files (creating directories), commit them on the current branch, push; returns the commit. */
export function commitFiles(repo: UpstreamRepo, files: FileMap, message: string): string {
  for (const [rel, content] of Object.entries(files)) {
    const file = path.join(repo.work, rel);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content);
  }
  // No paths → an empty commit (`git add --all` without a pathspec would stage everything).
  if (Object.keys(files).length > 0) git(repo.work, ['add', '--all', '--', ...Object.keys(files)]);
  return commitAndPush(repo, message);
}

/** Delete files, commit, push; returns the commit. */
export function deleteFiles(repo: UpstreamRepo, paths: string[], message: string): string {
  git(repo.work, ['rm', '--quiet', '--', ...paths]);
  return commitAndPush(repo, message);
}

/** Create (or move) branch `name` at `from` (default: current HEAD) and switch the work clone to it. */
export function createBranch(repo: UpstreamRepo, name: string, from = 'HEAD'): string {
  git(repo.work, ['checkout', '--quiet', '-B', name, from]);
  git(repo.work, ['push', '--quiet', '--force', 'origin', `HEAD:refs/heads/${name}`]);
  return git(repo.work, ['rev-parse', 'HEAD']);
}

/** Switch the work clone to an existing branch (later commits go there). */
export function switchBranch(repo: UpstreamRepo, name: string): void {
  git(repo.work, ['checkout', '--quiet', name]);
}

/** Delete a branch upstream. */
export function deleteBranch(repo: UpstreamRepo, name: string): void {
  git(repo.work, ['push', '--quiet', 'origin', `:refs/heads/${name}`]);
}

/** Tag `commit` (default HEAD); annotated when `message` is given. Returns the tagged commit. */
export function createTag(repo: UpstreamRepo, name: string, commit = 'HEAD', message?: string): string {
  const args = message === undefined ? ['tag', name, commit] : ['tag', '-a', '-m', message, name, commit];
  git(repo.work, args);
  git(repo.work, ['push', '--quiet', 'origin', `refs/tags/${name}`]);
  return git(repo.work, ['rev-parse', `${name}^{commit}`]);
}

/** Force-move the current branch to `commit` upstream (simulates a force-push / history rewrite). */
export function forcePush(repo: UpstreamRepo, commit: string): void {
  git(repo.work, ['reset', '--quiet', '--hard', commit]);
  git(repo.work, ['push', '--quiet', '--force', 'origin', 'HEAD']);
}

/** Point the bare repo's HEAD (the default branch clients see) at `branch`. */
export function setDefaultBranch(repo: UpstreamRepo, branch: string): void {
  git(repo.dir, ['symbolic-ref', 'HEAD', `refs/heads/${branch}`]);
}

function commitAndPush(repo: UpstreamRepo, message: string): string {
  git(repo.work, ['commit', '--quiet', '--allow-empty', '-m', message]);
  git(repo.work, ['push', '--quiet', 'origin', 'HEAD']);
  return git(repo.work, ['rev-parse', 'HEAD']);
}
