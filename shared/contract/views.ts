import type { WorkspaceUsage } from './backend.js';
import type { SessionRunState, SessionShell, SessionState } from './session.js';
import type { WebhookEventType } from './webhooks.js';
import type { CommandState, WorkspaceStatus } from './workspace.js';

/**
 * What the service answers with: the API's response bodies and streamed events. The HTTP API's zod
 * schemas (shared/api/schemas.ts, response-schemas.ts) document exactly these types — a compile-time
 * check there keeps the two identical.
 */

export interface StreamView {
  /** Base64 when `encoding` is base64 (non-UTF-8 output), else text. */
  data: string;
  encoding: 'utf8' | 'base64';
  offset: number;
  nextOffset: number;
  bytes: number;
  truncated: boolean;
}

export interface CommandView {
  id: string;
  workspaceId: string;
  state: CommandState;
  exitCode: number | null;
  signal: string | null;
  reason?: string;
  argv: string[];
  cwd: string;
  stdout: StreamView;
  stderr: StreamView;
  startedAt: string;
  endedAt?: string;
  durationMs?: number;
}

/** The workspace plan as shown (its documented fields; the rest passes through). */
export interface PlanView {
  home: string;
  root: string;
  workdir: string;
  user: { name: string; uid: number; gid: number };
  repos: {
    name: string;
    path: string;
    target: string;
    source: { kind: string; [key: string]: unknown };
  }[];
  [key: string]: unknown;
}

export interface WorkspaceView {
  id: string;
  status: WorkspaceStatus;
  plan: PlanView;
  repos: { name: string; path: string; commit?: string; ref?: string }[];
  cache?: { key: string; hit: boolean; reason: string; restoredFrom?: string };
  baselineFingerprint?: string;
  labels: Record<string, string>;
  failure?: { step: string; message: string };
  warnings: string[];
  steps: { at: string; step: string; message: string }[];
  setupCommandId?: string;
  createdAt: string;
  updatedAt: string;
  expiresAt?: number;
  /** Made from this snapshot (a user snapshot or a fork point). */
  fromSnapshot?: string;
  /** A fork: the workspace it was forked from. */
  forkedFrom?: string;
  /** Its own lifecycle webhook (given at create), without the secret. */
  webhook?: { url: string; events: WebhookEventType[] };
}

/** `GET /workspaces/{id}/events` with `Accept: application/json`: one lifecycle event, what was sent and every delivery attempt. */
export interface WebhookEventView {
  id: string;
  workspaceId: string;
  type: WebhookEventType;
  createdAt: string;
  /** The body every attempt POSTs (parsed): `{id, type, at, workspaceId, data}`. */
  payload: Record<string, unknown>;
  deliveries: {
    hook: string;
    url: string;
    state: 'pending' | 'delivered' | 'failed';
    attempts: { at: string; status?: number; error?: string; durationMs: number }[];
    nextAttemptAt?: string;
  }[];
}

export interface FetchResult {
  repos: {
    name: string;
    before?: string;
    after?: string;
    heads: Record<string, string>;
    checkedOut?: string;
  }[];
}

export interface ResetResult {
  fingerprint: string;
  baselineFingerprint: string;
  matches: boolean;
  restored?: number;
  removed?: number;
  /** mode 'recreate': new compute and a new baseline (its fingerprint is `baselineFingerprint`). */
  recreated?: boolean;
  /** mode 'recreate': the replaced baseline's fingerprint (the new one differs: git's index and reflogs are rewritten). */
  previousBaselineFingerprint?: string;
  durationMs: number;
}

/** GET /workspaces/{id}/usage: the backend's measurement (WorkspaceUsage), when and of which workspace. */
export interface UsageView extends WorkspaceUsage {
  workspaceId: string;
  /** When it was measured (ISO 8601). */
  at: string;
}

/** A long operation (git fetch, reset): `result` once it succeeded, `error` (code, message) once it failed. */
export interface OperationView {
  id: string;
  workspaceId: string;
  kind: 'fetch' | 'reset' | 'snapshot';
  status: 'running' | 'succeeded' | 'failed';
  /** While running: the phase it is in (begin, restore, replace, sync, move, verify). */
  phase?: 'begin' | 'restore' | 'replace' | 'sync' | 'move' | 'verify';
  input: Record<string, unknown>;
  result?: FetchResult | ResetResult | SnapshotResult;
  error?: { code: string; message: string; details?: unknown };
  createdAt: string;
  updatedAt: string;
  endedAt?: string;
}

/**
 * How git had been told to hide a changed file from the workspace's own status/diff: an index flag
 * (skip-worktree, assume-unchanged), an ignore rule added since the baseline or .git/info/exclude
 * ('ignored'), attributes added since the baseline ('attributes'), or git's index saying unchanged
 * while the content differs ('index').
 */
export type HiddenHow = 'skip-worktree' | 'assume-unchanged' | 'ignored' | 'attributes' | 'index';

export interface ChangesView {
  repos: {
    name: string;
    path: string;
    baseCommit?: string;
    head?: string;
    status: { code: string; path: string; origPath?: string }[];
    /** Changed files git had been told to hide (see HiddenHow); each is also in `status`. */
    hidden: { path: string; how: HiddenHow }[];
    diff: string;
    diffTruncated: boolean;
  }[];
}

/** Events streamed while a workspace provisions (or a fetch/reset runs). */
export type WorkspaceEvent =
  | { type: 'status'; status: WorkspaceStatus; workspace: WorkspaceView }
  | { type: 'step'; at: string; step: string; message: string }
  | { type: 'output'; commandId: string; stream: 'stdout' | 'stderr'; data: string };

/** Events streamed for one long operation: the workspace's progress steps since it began, then its final view. */
export type OperationEvent =
  | { type: 'step'; at: string; step: string; message: string }
  | { type: 'end'; operation: OperationView };

/** Events streamed for one command: output as it comes (`offset`: byte offset of `data` in its stream), then its final view. */
export type CommandEvent =
  | { type: 'output'; stream: 'stdout' | 'stderr'; data: string; offset: number }
  | { type: 'end'; command: CommandView };

export type FileType = 'file' | 'dir' | 'symlink' | 'other';

/** One entry as the workspace sees it (lstat: a symlink is reported as one, with its target). */
export interface FileStat {
  type: FileType;
  /** Bytes (a symlink: the length of its target). */
  size: number;
  /** Permission bits as 4 octal digits, e.g. '0644'. */
  mode: string;
  /** Last modification, ISO 8601. */
  mtime: string;
  target?: string;
}

export interface FileEntry extends FileStat {
  /** Last path component. */
  name: string;
  /** Absolute path inside the workspace (the listed directory as asked for, then the entry's relative path). */
  path: string;
}

export interface FileList {
  /** The listed directory, absolute. */
  path: string;
  /** Sorted by path. */
  entries: FileEntry[];
  /** More entries exist than the provider's cap (config files.maxListEntries) let through. */
  truncated: boolean;
  /** Entries left out because their name is not valid UTF-8 (JSON cannot carry it; v1 skips them). */
  skippedNonUtf8: number;
}

/** What a tar extracted into a directory (PUT /workspaces/{id}/archive). */
export interface ArchiveWritten {
  /** The directory, absolute. */
  path: string;
  /** Entries the archive held (its top directory `./` counted when listed). */
  entries: number;
}

/** A file's bytes (a whole file, or the range asked for). */
export interface FileContent {
  data: Buffer;
  /** Size of the whole file. */
  size: number;
  /** The byte range `data` holds when a Range was asked for (inclusive). */
  range?: { first: number; last: number };
}

/** What a 'snapshot' operation answers once it succeeded. */
export interface SnapshotResult {
  snapshotId: string;
  sizeBytes: number;
}

/** A snapshot of a workspace's current state (a user snapshot, or the fork point of a fork). */
export interface SnapshotView {
  id: string;
  status: 'creating' | 'ready' | 'failed';
  kind: 'user' | 'fork';
  name?: string;
  sourceWorkspaceId: string;
  /** The operation on the source workspace that takes it. */
  operationId: string;
  labels: Record<string, string>;
  sizeBytes?: number;
  failure?: { step: string; message: string };
  createdAt: string;
  updatedAt: string;
}

/** A fork's answer: its fork point and the new workspaces (provisioning from it). */
export interface ForkView {
  snapshot: SnapshotView;
  workspaces: WorkspaceView[];
}

/** One run of a session: its output is bounded like a command's (commands.maxOutputBytes per stream). */
export interface SessionRunView {
  runId: string;
  state: SessionRunState;
  exitCode: number | null;
  reason?: string;
  /** Output from offset 0, at most commands.maxOutputBytes each (`bytes`: all the run wrote; `truncated`). */
  stdout: StreamView;
  stderr: StreamView;
  startedAt: string;
  endedAt?: string;
  durationMs?: number;
}

export interface SessionView {
  id: string;
  workspaceId: string;
  state: SessionState;
  cwd: string;
  shell: SessionShell;
  reason?: string;
  createdAt: string;
  /** The run going on, or the last one (with its output while the session is not lost). */
  lastRun?: SessionRunView;
}
