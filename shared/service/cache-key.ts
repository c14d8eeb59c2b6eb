import { createHash } from 'node:crypto';
import type { WorkspacePlan } from '../contract/plan.js';

/** Bump when the layout of a cache entry changes: old entries then simply miss. */
const PROVIDER_FORMAT_VERSION = 1;

export interface CacheKeyInputs {
  backendKind: string;
  /** Identity of the base image or host the workspace starts from. */
  baseIdentity: string;
  plan: WorkspacePlan;
  setupScript: string;
  /** Environment the setup script runs with (config workspace.env). */
  setupEnv: Record<string, string>;
  /** Per repo name: [relative path, content] of each cacheKeyFiles entry (content undefined = absent). */
  keyFiles: Record<string, [string, string | undefined][]>;
}

/**
 * The provisioning-cache key (mission.md): backend kind, base identity, format version, repos
 * (url or local path, plus target path — NOT the commit), the setup script, the key files' contents.
 * Commits are left out on purpose: a newer commit is reached by fetching into a warm entry.
 */
export function computeCacheKey(inputs: CacheKeyInputs): string {
  return `ck-${sha256(JSON.stringify(canonical(inputs, true))).slice(0, 32)}`;
}

/**
 * The restore key (like a CI cache's restore-keys): the cache key without the key files' contents —
 * same backend, base, repos, setup script and environment. Entries that share it differ only in a
 * cacheKeyFiles file (a lockfile bump), so one may start from the other and re-run setup on top.
 */
export function computeRestoreKey(inputs: CacheKeyInputs): string {
  return `rk-${sha256(JSON.stringify(canonical(inputs, false))).slice(0, 32)}`;
}

function canonical(inputs: CacheKeyInputs, withKeyFileContents: boolean) {
  return {
    v: PROVIDER_FORMAT_VERSION,
    backend: inputs.backendKind,
    base: inputs.baseIdentity,
    home: inputs.plan.home,
    root: inputs.plan.root,
    user: inputs.plan.user,
    repos: inputs.plan.repos.map((r) => ({
      path: r.path,
      source: r.source.kind === 'git' ? { git: r.source.url } : { dir: r.source.hostPath },
      keyFiles: (inputs.keyFiles[r.name] ?? []).map(([p, content]) =>
        withKeyFileContents ? [p, content === undefined ? null : sha256(content)] : [p],
      ),
    })),
    setup: sha256(inputs.setupScript),
    setupEnv: sha256(JSON.stringify(Object.entries(inputs.setupEnv).sort())),
  };
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');
