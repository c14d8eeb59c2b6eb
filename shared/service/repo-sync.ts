import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { RepoPlan, WorkspacePlan } from '../contract/plan.js';
import { StepFailedError } from '../contract/errors.js';
import type { BackendRef } from '../contract/workspace.js';
import type { MirrorHandle } from '../git/mirror.js';
import type { BundleResult } from '../git/bundle.js';
import { refsDigest } from '../git/refs.js';
import {
  checkoutArgv,
  cloneFromBundleArgv,
  fetchFromBundleArgv,
  headsArgv,
  parseHeads,
  refsUpdateArgv,
  refsUpdateInput,
} from '../git/workspace-git.js';
import type { ServiceDeps } from './deps.js';
import { runStep } from './steps.js';

type GitRepo = RepoPlan & { source: Extract<RepoPlan['source'], { kind: 'git' }> };

export function gitRepos(plan: WorkspacePlan): GitRepo[] {
  return plan.repos.filter((r): r is GitRepo => r.source.kind === 'git');
}

/** Repos ordered so that a parent path is populated before a repo nested inside it. */
export function byDepth<T extends { path: string }>(repos: T[]): T[] {
  const depth = (p: string): number => (p === '.' ? 0 : p.split('/').length);
  return [...repos].sort((a, b) => depth(a.path) - depth(b.path));
}

/**
 * Moves git objects from the provider's mirror into a workspace without a token ever entering it:
 * the provider writes a bundle, the backend drops it into the read-only transfer dir, and the
 * workspace's own git (as the workspace user) clones or fetches from that file.
 */
export class RepoSync {
  constructor(private readonly deps: ServiceDeps) {}

  /** The provider's mirror of the repo, brought up to date (the only place its token is used). */
  mirror(repo: GitRepo): Promise<MirrorHandle> {
    const { url, credential } = repo.source;
    return this.deps.broker.sync({ url, ...(credential ? { credential } : {}) });
  }

  /**
   * Full bundle → clone at `commit` (on `branch` when the ref was a branch). Answers the refsDigest of
   * the branches and tags the clone got.
   */
  async clone(
    ref: BackendRef,
    plan: WorkspacePlan,
    repo: GitRepo,
    mirror: MirrorHandle,
    target: { commit: string; branch?: string },
  ): Promise<string> {
    let digest = '';
    await this.withBundle(ref, plan, mirror, [target.commit], [], async (bundlePath, bundle) => {
      digest = refsDigest(bundle.refs);
      if (!bundlePath) throw new StepFailedError(`clone ${repo.name}`, 'the mirror produced an empty bundle');
      await runStep(
        this.deps.backend,
        ref,
        plan,
        cloneFromBundleArgv({
          bundlePath,
          target: repo.target,
          originUrl: repo.source.url,
          commit: target.commit,
          ...(target.branch ? { branch: target.branch } : {}),
        }),
        { step: `clone ${repo.name}` },
      );
    });
    return digest;
  }

  /** What the workspace's repo has now: HEAD and remote-tracking heads (the incremental basis). */
  async heads(ref: BackendRef, plan: WorkspacePlan, repo: GitRepo): Promise<ReturnType<typeof parseHeads>> {
    const out = await runStep(this.deps.backend, ref, plan, headsArgv({ target: repo.target }), {
      step: `read heads of ${repo.name}`,
    });
    return parseHeads(out.stdout);
  }

  /**
   * Incremental bundle against what the workspace has → fetch, then set refs/remotes/origin/* and tags
   * to the mirror's (a bundle leaves out refs whose tips the workspace already has, e.g. a new tag on a
   * known commit, so refs are written explicitly; origin/* refs of deleted branches are pruned).
   * Answers the refsDigest of the branches and tags the workspace's refs now equal.
   */
  async fetch(
    ref: BackendRef,
    plan: WorkspacePlan,
    repo: GitRepo,
    mirror: MirrorHandle,
    include: string[],
  ): Promise<string> {
    const have = await this.heads(ref, plan, repo);
    let digest = '';
    await this.withBundle(ref, plan, mirror, include, have.basis, async (bundlePath, bundle) => {
      digest = refsDigest(bundle.refs);
      if (bundlePath)
        await runStep(this.deps.backend, ref, plan, fetchFromBundleArgv({ bundlePath, target: repo.target }), {
          step: `fetch ${repo.name}`,
        });
      await runStep(this.deps.backend, ref, plan, refsUpdateArgv({ target: repo.target }), {
        step: `update refs of ${repo.name}`,
        stdin: refsUpdateInput(bundle.refs, have),
      });
    });
    return digest;
  }

  async checkout(
    ref: BackendRef,
    plan: WorkspacePlan,
    repo: GitRepo,
    target: { commit: string; branch?: string },
  ): Promise<void> {
    await runStep(
      this.deps.backend,
      ref,
      plan,
      checkoutArgv({ target: repo.target, commit: target.commit, ...(target.branch ? { branch: target.branch } : {}) }),
      { step: `checkout ${repo.name}` },
    );
  }

  /** `use` gets the bundle's guest path, or undefined when the workspace already has every object. */
  private async withBundle(
    ref: BackendRef,
    plan: WorkspacePlan,
    mirror: MirrorHandle,
    include: string[],
    basis: string[],
    use: (guestPath: string | undefined, bundle: BundleResult) => Promise<void>,
  ): Promise<void> {
    const name = `${randomBytes(8).toString('hex')}.bundle`;
    const hostPath = path.join(this.deps.scratchDir, name);
    await fs.mkdir(this.deps.scratchDir, { recursive: true, mode: 0o700 });
    try {
      const bundle = await this.deps.broker.createBundle(mirror, { include, basis }, hostPath);
      if (bundle.empty) return await use(undefined, bundle);
      const { files } = this.deps.backend.open(ref, plan);
      await files.putTransferFile(name, hostPath);
      try {
        await use(path.posix.join(plan.transferDir, name), bundle);
      } finally {
        await files.removeTransferFile(name);
      }
    } finally {
      await fs.rm(hostPath, { force: true });
    }
  }
}
