import type { WorkspaceWebhook } from './webhooks.js';
/**
 * What the service accepts: inputs already validated at the edge. The HTTP API's zod schemas
 * (shared/api/schemas.ts) parse requests into exactly these types — a compile-time check there keeps
 * the two identical — so these are the types after defaults are applied.
 */

export interface CreateWorkspaceParams {
  /** Ref (branch, tag or commit) per repository name (its configured path). */
  refs?: Record<string, string>;
  env?: Record<string, string>;
  labels?: Record<string, string>;
  ttlSeconds?: number;
  idempotencyKey?: string;
  /** Start from this snapshot (its files, git state and plan) instead of provisioning; no `refs` then. */
  fromSnapshot?: string;
  /** This workspace's own lifecycle webhook, besides the configured ones (its secret is never answered). */
  webhook?: WorkspaceWebhook;
}

/** Exactly one of `argv` and `command`. */
export interface RunCommandParams {
  argv?: string[];
  /** A shell string, run with `bash -lc` if bash exists, else `sh -c`. */
  command?: string;
  /** Relative to the workspace's workdir, or absolute; must stay inside the workspace home. */
  cwd?: string;
  env?: Record<string, string>;
  stdin?: string;
  stdinEncoding: 'utf8' | 'base64';
  /** Keep stdin open after `stdin` for POST …/commands/{cid}/stdin, until `eof`. */
  openStdin?: boolean;
  /** Run under a pseudo-terminal of this size (stdout is the screen, stderr stays empty; implies openStdin). */
  tty?: TerminalSizeParams;
  timeoutMs?: number;
  waitMs?: number;
}

/** A terminal's size in character cells. */
export interface TerminalSizeParams {
  rows: number;
  cols: number;
}

/** POST …/commands/{cid}/stdin: close stdin after the body's bytes. */
export interface StdinParams {
  eof: boolean;
}

export interface ReadCommandParams {
  stdoutOffset: number;
  stderrOffset: number;
  /** Max bytes per stream in this answer (an entry point may send fewer: `nextOffset` says where to read on). */
  limit: number;
  /** Long-poll: wait up to this long for the command to end. */
  waitMs: number;
}

export interface FetchParams {
  /** Repository names to fetch; all git repositories when absent. */
  repos?: string[];
  /** Check out this ref in this repository after fetching. */
  checkout?: { repo: string; ref: string };
}

/** How long a request that starts or reads a long operation waits for it to end (capped by the entry point). */
export interface OperationWaitParams {
  waitMs?: number;
}

export type ResetMode = 'restore' | 'recreate';

export interface ResetParams {
  /** Move to new refs as part of the reset; the new state becomes the baseline. */
  refs?: Record<string, string>;
  /**
   * 'restore' (default): back to the baseline in place (only what changed is rewritten).
   * 'recreate': new compute from the workspace's cache entry, at the baseline commits; that becomes
   * the new baseline (same files and HEAD, new git metadata — see ResetResult).
   */
  mode?: ResetMode;
}

/**
 * A path of the Files API: relative to the workspace's workdir, or absolute. It must stay inside the
 * home or /tmp as the workspace sees them (symlinks resolved inside the workspace, never on the host).
 */
export interface FilePathParams {
  path: string;
}

export interface FileWriteParams extends FilePathParams {
  /** Octal permission bits (e.g. '0644'); absent → an existing file keeps its mode, a new one is 0644. */
  mode?: string;
}

export interface FileListParams extends FilePathParams {
  recursive: boolean;
}

export interface FileDeleteParams extends FilePathParams {
  /** A non-empty directory is refused (409) without it. */
  recursive: boolean;
}

export interface FileReadOptions {
  range?: ByteRange;
  /** The entry point carries at most this many bytes of a file (below config files.maxBytes). */
  maxBytes?: number;
}

export interface ArchiveReadOptions {
  /** The entry point carries at most this many bytes of a tar (below config files.maxBytes). */
  maxBytes?: number;
}

/** A `Range: bytes=…` request: `first`-`last` (last absent: to the end), or the last `suffix` bytes. */
export type ByteRange = { first: number; last?: number } | { suffix: number };

/** N copies of a workspace's current state (POST /workspaces/{id}/fork). */
export interface ForkParams {
  /** 1..config fork.maxCount. */
  count: number;
  /** Labels of the new workspaces (the source's are not copied). */
  labels?: Record<string, string>;
  ttlSeconds?: number;
}

/** A named snapshot of a workspace's current state (POST /workspaces/{id}/snapshots). */
export interface CreateSnapshotParams {
  name?: string;
  labels?: Record<string, string>;
}

/** POST /workspaces/{id}/sessions: a persistent shell. */
export interface CreateSessionParams {
  /** Relative to the workspace's workdir, or absolute; must stay inside the workspace home. */
  cwd?: string;
  env?: Record<string, string>;
  /** Default bash (sh where bash is absent). */
  shell?: 'bash' | 'sh';
}

/** POST …/sessions/{sid}/run: one command line, run in the session's shell. */
export interface RunInSessionParams {
  command: string;
  /** 0 = no limit; default commands.defaultTimeoutMs. On expiry: SIGINT, then SIGTERM, then the shell is killed. */
  timeoutMs?: number;
  /** How long the request waits for the run's end (default commands.defaultWaitMs); still running → 202. */
  waitMs?: number;
}

/** GET …/sessions/{sid}: long-poll the current run's end. */
export interface SessionWaitParams {
  waitMs: number;
}
