/**
 * The git broker: one provider-side mirror per repository URL, fetched with the token given only
 * to the provider's own git process (see git-env.ts), and bundles written from it for workspaces.
 * Workspaces never see the mirror or the token — only bundle files (see workspace-git.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BadRequestError, NotFoundError, type StepFailedError } from '../contract/errors.js';
import { createMirrorBundle, type BundleRequest, type BundleResult } from './bundle.js';
import { authEnv, baseGitEnv, gitStepError, runGit, secretForms, stderrSummary, type GitResult } from './git-env.js';
import {
  isFullObjectId,
  listMirrorRefs,
  resolveMirrorRef,
  type MirrorGit,
  type MirrorRef,
  type ResolvedRef,
} from './refs.js';
import { ReadWriteLock } from './rw-lock.js';

export type { BundleRequest, BundleResult } from './bundle.js';
export type { MirrorRef, ResolvedRef } from './refs.js';

export interface MirrorHandle {
  /** Absolute path of the bare mirror repository on the provider host. */
  dir: string;
  /** The token-free upstream URL. */
  url: string;
}

export interface SyncRequest {
  url: string;
  /** Secret reference (`env:NAME`, `file:/path`, `secretsmanager:…`), never a value. */
  credential?: string;
}

/** What the broker logs through (structurally a subset of shared/log.ts Logger). Fields never hold secrets. */
export interface GitBrokerLog {
  info(message: string, fields?: Record<string, unknown>): void;
}

export interface GitBrokerOptions {
  /** Host directory holding the mirrors (created 0700). */
  mirrorsDir: string;
  /** Turns a credential reference into the token; its errors propagate unchanged. */
  resolveSecret: (reference: string) => Promise<string>;
  log?: GitBrokerLog;
  /** Limit per git process in ms; default 600_000. 0 = none. */
  timeoutMs?: number;
  /** The git executable; default 'git' on PATH (tests inject a recording wrapper). */
  gitPath?: string;
}

/** Refspecs of a mirror: branches and tags only (not refs/pull/* and the like), pruned on fetch. */
const MIRROR_REFSPECS = ['+refs/heads/*:refs/heads/*', '+refs/tags/*:refs/tags/*'];

export class GitBroker {
  private readonly mirrorsDir: string;
  private readonly home: string;
  private readonly timeoutMs: number;
  private readonly syncs = new Map<string, Promise<MirrorHandle>>();
  private readonly locks = new Map<string, ReadWriteLock>();

  constructor(private readonly options: GitBrokerOptions) {
    this.mirrorsDir = path.resolve(options.mirrorsDir);
    this.home = path.join(this.mirrorsDir, '.home');
    this.timeoutMs = options.timeoutMs ?? 600_000;
    fs.mkdirSync(this.home, { recursive: true, mode: 0o700 });
    fs.chmodSync(this.mirrorsDir, 0o700);
    this.removeStaleClones();
  }

  /** Temp clones left by a provider process that died mid-clone (its pid is gone). */
  private removeStaleClones(): void {
    for (const name of fs.readdirSync(this.mirrorsDir)) {
      const pid = /\.git\.tmp-(\d+)-[0-9a-f]+$/.exec(name)?.[1];
      if (pid !== undefined && !processAlive(Number(pid))) {
        fs.rmSync(path.join(this.mirrorsDir, name), { recursive: true, force: true });
        this.options.log?.info('git mirror: removed an interrupted clone', { name });
      }
    }
  }

  /** `<mirrorsDir>/<first 16 hex of sha256(url)>.git` */
  mirrorDir(url: string): string {
    return path.join(this.mirrorsDir, `${createHash('sha256').update(url).digest('hex').slice(0, 16)}.git`);
  }

  /** The mirror of `url` if it has been synced before (e.g. by an earlier provider process). */
  existing(url: string): MirrorHandle | null {
    const dir = this.mirrorDir(url);
    return fs.existsSync(path.join(dir, 'HEAD')) ? { dir, url } : null;
  }

  /**
   * Clone (first time) or fetch the mirror of `url`. Concurrent calls for one URL share one run.
   * Throws StepFailedError('git fetch', …) — "authentication failed for <url>" on 401/403.
   */
  sync(request: SyncRequest): Promise<MirrorHandle> {
    const running = this.syncs.get(request.url);
    if (running !== undefined) return running;
    const run = this.lock(request.url)
      .write(() => this.syncNow(request))
      .finally(() => this.syncs.delete(request.url));
    this.syncs.set(request.url, run);
    return run;
  }

  /** See resolveMirrorRef: default branch, branch, tag or commit id → commit. BadRequestError if unknown. */
  resolveRef(mirror: MirrorHandle, ref?: string): Promise<ResolvedRef> {
    return this.lock(mirror.url).read(() => resolveMirrorRef(this.localGit(mirror), mirror.url, ref));
  }

  /** Branches, tags and pins of the mirror. */
  listRefs(mirror: MirrorHandle): Promise<MirrorRef[]> {
    return this.lock(mirror.url).read(() => listMirrorRefs(this.localGit(mirror)));
  }

  /** Branch name → commit for every branch of the mirror (what a fetch of "all heads" brings). */
  async heads(mirror: MirrorHandle): Promise<Record<string, string>> {
    const refs = await this.listRefs(mirror);
    const heads: Record<string, string> = {};
    for (const { ref, commit } of refs)
      if (ref.startsWith('refs/heads/')) heads[ref.slice('refs/heads/'.length)] = commit;
    return heads;
  }

  /**
   * Content (utf8) of `file` (repo-relative) at `commit` in the mirror, or undefined when there is
   * no such file. For cache-key inputs (lockfiles) read without any workspace. Throws
   * BadRequestError for a malformed commit id or a path with `..`.
   */
  async readFile(mirror: MirrorHandle, commit: string, file: string): Promise<string | undefined> {
    if (!isFullObjectId(commit)) throw new BadRequestError(`'${commit}' is not a full commit id`);
    const rel = path.posix.normalize(file.replace(/^\.\/+/, ''));
    if (rel === '.' || rel.startsWith('../') || rel === '..' || path.posix.isAbsolute(rel))
      throw new BadRequestError(`'${file}' is not a repository-relative file path`);
    return this.lock(mirror.url).read(async () => {
      const shown = await this.localGit(mirror)(['cat-file', 'blob', `${commit}:${rel}`]);
      return shown.code === 0 ? shown.stdout : undefined;
    });
  }

  /** See createMirrorBundle. `outPath`'s directory must exist. */
  createBundle(mirror: MirrorHandle, request: BundleRequest, outPath: string): Promise<BundleResult> {
    return this.lock(mirror.url).read(() => createMirrorBundle(this.localGit(mirror), mirror.url, request, outPath));
  }

  private async syncNow({ url, credential }: SyncRequest): Promise<MirrorHandle> {
    const token = credential === undefined ? undefined : await this.options.resolveSecret(credential);
    const env = { ...baseGitEnv(this.home), ...(token ? authEnv(token) : {}) };
    const secrets = token ? secretForms(token) : [];
    const git = (args: string[], cwd?: string): Promise<GitResult> =>
      runGit(args, { cwd, env, secrets, timeoutMs: this.timeoutMs, gitPath: this.options.gitPath });

    const dir = this.mirrorDir(url);
    const started = Date.now();
    if (this.existing(url)) {
      // One look at the upstream's refs first (beside a local read of the mirror's): when its branches,
      // tags and HEAD are what the mirror has, a fetch would change nothing — skipped (one round trip
      // and three git processes fewer on every warm setup). A failed look just fetches.
      const [remote, local] = await Promise.all([git(['ls-remote', '--symref', 'origin'], dir), this.localState(dir)]);
      if (remote.code === 0 && !remote.timedOut && local !== undefined && upToDate(remote.stdout, local)) {
        this.options.log?.info('git mirror up to date', { url, durationMs: Date.now() - started });
        return { dir, url };
      }
      const fetched = await git(['fetch', '--prune', '--quiet', 'origin'], dir);
      if (fetched.code !== 0 || fetched.timedOut) throw fetchError(url, fetched);
      await this.followRemoteHead(dir, remote);
      this.options.log?.info('git mirror fetched', { url, durationMs: Date.now() - started });
    } else {
      await this.cloneMirror(url, dir, git);
      this.options.log?.info('git mirror cloned', { url, durationMs: Date.now() - started });
    }
    return { dir, url };
  }

  /** Clone into a temp dir and rename, so a crash never leaves a half mirror at `dir`. */
  private async cloneMirror(
    url: string,
    dir: string,
    git: (args: string[], cwd?: string) => Promise<GitResult>,
  ): Promise<void> {
    const tmp = `${dir}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      const cloned = await git(['clone', '--bare', '--quiet', '--', url, tmp]);
      if (cloned.code !== 0 || cloned.timedOut) throw fetchError(url, cloned);
      for (const [i, spec] of MIRROR_REFSPECS.entries()) {
        await this.configure(tmp, [i === 0 ? '--replace-all' : '--add', 'remote.origin.fetch', spec]);
      }
      // gc in the foreground: no detached process outliving the call with the token in its env.
      await this.configure(tmp, ['gc.autoDetach', 'false']);
      fs.chmodSync(tmp, 0o700);
      fs.renameSync(tmp, dir);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }

  private async configure(dir: string, args: string[]): Promise<void> {
    const result = await this.gitIn(dir)(['config', ...args]);
    if (result.code !== 0) throw gitStepError('git config', stderrSummary(result), result);
  }

  /** Keep the mirror's HEAD on the upstream default branch (git fetch does not update it). */
  private async followRemoteHead(dir: string, lsRemote: GitResult): Promise<void> {
    const match = /^ref: (refs\/heads\/\S+)\tHEAD$/m.exec(lsRemote.stdout);
    if (lsRemote.code !== 0 || !match?.[1]) return;
    const git = this.gitIn(dir);
    const exists = await git(['show-ref', '--verify', '--quiet', match[1]]);
    if (exists.code === 0) await git(['symbolic-ref', 'HEAD', match[1]]);
  }

  /** The mirror's branches and tags ("<object> <ref>" lines, sorted) and its HEAD file; undefined if unreadable. */
  private async localState(dir: string): Promise<{ refs: string[]; head: string } | undefined> {
    const listed = await this.gitIn(dir)([
      'for-each-ref',
      '--format=%(objectname) %(refname)',
      'refs/heads',
      'refs/tags',
    ]);
    if (listed.code !== 0) return undefined;
    const head = await fs.promises.readFile(path.join(dir, 'HEAD'), 'utf8').catch(() => undefined);
    if (head === undefined) return undefined;
    return { refs: listed.stdout.split('\n').filter(Boolean).sort(), head: head.trim() };
  }

  /** git inside a mirror without any credential (local operations only). */
  private localGit(mirror: MirrorHandle): MirrorGit {
    if (!fs.existsSync(path.join(mirror.dir, 'HEAD'))) throw new NotFoundError('git mirror', mirror.url);
    return this.gitIn(mirror.dir);
  }

  private gitIn(dir: string): MirrorGit {
    const env = baseGitEnv(this.home);
    return (args, extra) =>
      runGit(args, { cwd: dir, env, stdin: extra?.stdin, timeoutMs: this.timeoutMs, gitPath: this.options.gitPath });
  }

  private lock(url: string): ReadWriteLock {
    let lock = this.locks.get(url);
    if (!lock) {
      lock = new ReadWriteLock();
      this.locks.set(url, lock);
    }
    return lock;
  }
}

/**
 * Does `ls-remote --symref` output describe the mirror as it is: the same branches and tags at the
 * same objects (peeled `^{}` lines and other namespaces left out, as the refspecs do) and, when the
 * upstream names its HEAD branch, the mirror's HEAD on it (what followRemoteHead would set)?
 */
function upToDate(lsRemote: string, local: { refs: string[]; head: string }): boolean {
  const remote: string[] = [];
  let head: string | undefined;
  for (const line of lsRemote.split('\n')) {
    const symref = /^ref: (refs\/heads\/\S+)\tHEAD$/.exec(line);
    if (symref) {
      head = symref[1];
      continue;
    }
    const [object, ref] = line.split('\t');
    if (!object || !ref || ref.endsWith('^{}')) continue;
    if (ref.startsWith('refs/heads/') || ref.startsWith('refs/tags/')) remote.push(`${object} ${ref}`);
  }
  remote.sort();
  if (head !== undefined && local.head !== `ref: ${head}`) return false;
  return remote.length === local.refs.length && remote.every((r, i) => r === local.refs[i]);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const AUTH_FAILED =
  /Authentication failed|could not read (Username|Password)|terminal prompts disabled|returned error: 40[13]\b|HTTP Basic: Access denied/i;
const NOT_FOUND =
  /Repository not found|returned error: 404\b|does not appear to be a git repository|repository '.*' not found/i;
const UNREACHABLE =
  /Could not resolve host|Failed to connect|Connection refused|Connection timed out|Couldn't connect/i;

/** A failed clone/fetch, worded for humans; the result (scrubbed by runGit) rides along. */
function fetchError(url: string, result: GitResult): StepFailedError {
  const summary = stderrSummary(result);
  if (result.timedOut) return gitStepError('git fetch', `timed out fetching ${url}`, result);
  if (AUTH_FAILED.test(result.stderr)) return gitStepError('git fetch', `authentication failed for ${url}`, result);
  if (NOT_FOUND.test(result.stderr))
    return gitStepError('git fetch', `repository ${url} not found (or the credential cannot see it)`, result);
  if (UNREACHABLE.test(result.stderr)) return gitStepError('git fetch', `cannot reach ${url}: ${summary}`, result);
  return gitStepError('git fetch', `${url}: ${summary}`, result);
}
