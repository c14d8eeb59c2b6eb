/**
 * The workspace plan: resolved once per workspace (shared/plan/resolve.ts), stored with the
 * workspace, and the only place any backend or step reads guest paths from.
 */
export interface WorkspaceUser {
  name: string;
  uid: number;
  gid: number;
}

/** Where a repository's content comes from. Credentials are references, never values. */
export type RepoSource =
  | { kind: 'git'; url: string; ref?: string; credential?: string }
  /** The operator's working tree, copied whole (uncommitted changes and `.git` included). */
  | { kind: 'localDir'; hostPath: string; hasGitDir: boolean };

export interface RepoPlan {
  /** Stable name: the configured relative path, normalised ('.' for the root). */
  name: string;
  /** Relative to the workspace root, normalised, never absolute and never containing '..'. */
  path: string;
  /** Absolute guest path: root + path. */
  target: string;
  source: RepoSource;
}

/** See the config's `networkPolicy`: none, egress (internet without the host's loopback), host (opt-in). */
export type NetworkPolicy = 'none' | 'egress' | 'host';

export interface WorkspacePlan {
  /** Guest home of the workspace user, e.g. /home/node. Persists across commands. */
  home: string;
  /** Workspace root, e.g. /home/node/workspace. Repositories land under it. */
  root: string;
  /** Default working directory of commands: the root when it holds content, else home. */
  workdir: string;
  user: WorkspaceUser;
  /** Read-only guest dir where the provider drops transfer files (git bundles). */
  transferDir: string;
  repos: RepoPlan[];
  /** Environment for every command (config env, then per-workspace env). */
  env: Record<string, string>;
  /** Network of commands (agent commands and the provider's own steps). */
  network: NetworkPolicy;
  /**
   * Network of the setup script only (the provisioner passes it as CommandSpec.network). Absent in
   * plans stored before it existed: those never run setup again.
   */
  setupNetwork?: NetworkPolicy;
  resources: { cpus?: number; memoryMb?: number; pids?: number; diskMb?: number };
}
