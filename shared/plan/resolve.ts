import fs from 'node:fs';
import path from 'node:path';
import type { RepoPlan, WorkspacePlan } from '../contract/plan.js';
import { normalizeRepoPath, type ProviderConfig } from '../config/schema.js';

export interface PlanOverrides {
  /** Per-repo refs keyed by repo name (its normalised path). */
  refs?: Record<string, string>;
  env?: Record<string, string>;
}

/**
 * Resolve the workspace plan once, from the validated config and the request's overrides.
 * Every later step reads guest paths from the plan; nothing else spells '/home/node/workspace'.
 * Relative `localPath`s resolve against `baseDir` (the config file's directory, or the cwd).
 */
export function resolveWorkspacePlan(
  config: ProviderConfig,
  overrides: PlanOverrides = {},
  baseDir = process.cwd(),
): WorkspacePlan {
  const home = path.posix.normalize(config.workspace.home);
  const root = path.posix.normalize(config.workspace.guestPath);
  const repos: RepoPlan[] = config.repositories.map((repo) => {
    const rel = normalizeRepoPath(repo.path);
    const name = rel;
    const target = rel === '.' ? root : path.posix.join(root, rel);
    if (repo.localPath !== undefined) {
      const hostPath = path.resolve(baseDir, repo.localPath);
      return { name, path: rel, target, source: { kind: 'localDir', hostPath, hasGitDir: hasGitDir(hostPath) } };
    }
    const ref = overrides.refs?.[name] ?? repo.ref;
    return {
      name,
      path: rel,
      target,
      source: {
        kind: 'git',
        url: repo.url!,
        ...(ref !== undefined ? { ref } : {}),
        ...(repo.credential !== undefined ? { credential: repo.credential } : {}),
      },
    };
  });
  return {
    home,
    root,
    // With no content the root would be an empty directory: start where the user's things are.
    workdir: repos.length > 0 ? root : home,
    user: { ...config.workspace.user },
    transferDir: '/run/wsp',
    repos,
    env: { ...config.workspace.env, ...(overrides.env ?? {}) },
    network: config.workspace.network,
    setupNetwork: config.setup.network,
    resources: { ...config.workspace.resources },
  };
}

function hasGitDir(hostPath: string): boolean {
  try {
    return fs.statSync(path.join(hostPath, '.git')).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Resolve a guest cwd against the plan: relative paths are taken from the workdir; the result must
 * stay inside the home. Returns undefined when it escapes.
 */
export function resolveGuestCwd(plan: WorkspacePlan, cwd: string | undefined): string | undefined {
  const resolved = cwd === undefined ? plan.workdir : path.posix.resolve(plan.workdir, cwd);
  const rel = path.posix.relative(plan.home, resolved);
  if (rel.startsWith('..') || path.posix.isAbsolute(rel)) return undefined;
  return resolved;
}
