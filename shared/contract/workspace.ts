import type { WorkspacePlan } from './plan.js';
import type { WebhookEventType, WorkspaceWebhook } from './webhooks.js';

export type WorkspaceStatus = 'provisioning' | 'ready' | 'resetting' | 'deleting' | 'deleted' | 'failed';

/**
 * A serialisable backend handle, kept in the state store so any process can rebuild it:
 * `{ kind: 'local', workspaceId, dir }`, `{ kind: 'docker', workspaceId, container }` (the name,
 * stable across a reset), `{ kind: 'ecs', taskArn }`.
 */
export interface BackendRef {
  kind: string;
  [key: string]: string | number | boolean;
}

/** A serialisable handle to a snapshot (cache entry or baseline) kept by a backend. */
export interface SnapshotRef {
  kind: string;
  [key: string]: string | number | boolean;
}

export interface RepoState {
  name: string;
  path: string;
  /** Commit checked out at the baseline (git sources only). */
  commit?: string;
  ref?: string;
  /**
   * On a cache entry: the digest of the mirror's branches and tags the repo's remote-tracking refs
   * and tags were set to (git/refs.ts refsDigest). A warm start at the same commit and ref whose
   * mirror still has that digest has nothing to fetch or check out.
   */
  refsDigest?: string;
}

export interface CacheInfo {
  key: string;
  hit: boolean;
  /** Why it hit or missed, in words: 'entry ready', 'no entry for key', 'entry building elsewhere', … */
  reason: string;
  /** A miss started from this older entry (same restore key: only a cacheKeyFiles file differs), setup re-run on top. */
  restoredFrom?: string;
}

export interface ProgressStep {
  at: string;
  step: string;
  message: string;
}

export interface Lease {
  owner: string;
  expiresAt: number;
}

/**
 * Provisioning runs in resumable phases (shared/service/provisioner.ts), each re-runnable against the
 * state store: `start` (resolve, cache decision, compute, repositories, the setup command started, or
 * the whole warm path), `await-setup` (one look at the setup command), `finish` (cache entry, baseline,
 * ready). Any process may run the next one: the local server in sequence, Step Functions on AWS.
 */
export type ProvisionPhase = 'start' | 'await-setup' | 'finish';

/** A repository's ref as resolved once, at `start` (a re-run never re-resolves: a branch may have moved). */
export interface ResolvedRef {
  name: string;
  commit: string;
  ref: string;
  branch?: string;
}

/** What a phase needs from the earlier ones, written on the workspace record. */
export interface ProvisionProgress {
  /** The phase to run next. */
  phase: ProvisionPhase;
  /** The requested refs. */
  resolved: ResolvedRef[];
  /** Where setup runs (the configured refs whenever the cache is in play). */
  setupAt: ResolvedRef[];
  /** The ready cache entry's snapshot the compute starts from (a warm start, or a restore). */
  from?: SnapshotRef;
  /** `from` is an older entry of the same restore key (not this key's): setup runs on top of it. */
  restoredFrom?: string;
  /** Key of the cache entry this workspace builds (its `builder`). */
  buildingKey?: string;
  /** Repositories already put into the workspace (a re-run `start` skips them). */
  synced: string[];
  /** Per repository put in at `setupAt`: the refsDigest of what it got (kept on the cache entry). */
  refsDigests?: Record<string, string>;
  /** When the setup command was last seen running (ISO): progress for the janitor. */
  setupCheckedAt?: string;
}

export interface WorkspaceRecord {
  id: string;
  status: WorkspaceStatus;
  /** Incremented by every write; every write is conditional on it. */
  version: number;
  plan: WorkspacePlan;
  backend?: BackendRef;
  baseline?: SnapshotRef;
  baselineFingerprint?: string;
  repos: RepoState[];
  cache?: CacheInfo;
  labels: Record<string, string>;
  idempotencyKey?: string;
  owner: string;
  lease?: Lease;
  failure?: { step: string; message: string };
  warnings: string[];
  /**
   * Set by the janitor when the workspace's writable content went over plan.resources.diskMb: its
   * processes were killed and commands are refused (409) until a reset (which clears it) or delete.
   */
  diskExceeded?: { usedBytes: number; limitBytes: number; at: string };
  /** Progress of long work (provisioning, fetch, reset), newest last, bounded. */
  steps: ProgressStep[];
  /** Internal command id of the setup script's run, so its output can be read and streamed. */
  setupCommandId?: string;
  /** Where provisioning is (while 'provisioning'): see ProvisionProgress. */
  provisioning?: ProvisionProgress;
  /** The reset operation that made it 'resetting' (its phases may run in several processes). */
  resetBy?: string;
  createdAt: string;
  updatedAt: string;
  /** Epoch seconds after which the record (and workspace) may be reaped. */
  expiresAt?: number;
  /** Made from this snapshot (a user snapshot, or the fork point of a fork): see SnapshotRecord. */
  fromSnapshot?: string;
  /** A fork: the workspace it was forked from (its state at the fork point is `fromSnapshot`). */
  forkedFrom?: string;
  /** Its own lifecycle webhook (`POST /workspaces {"webhook"}`); the secret is never part of a view. */
  webhook?: WorkspaceWebhook;
  /**
   * The webhook event its last status change owes (written in the same conditional write as the
   * status), so a process that died before recording the event leaves the janitor something to repair.
   */
  lastEvent?: { id: string; type: WebhookEventType };
}

export type CommandState = 'running' | 'exited' | 'killed' | 'lost';

export interface StreamInfo {
  /** Bytes the command wrote to this stream. */
  bytes: number;
  /** True when more was written than is kept (`bytes` > kept bytes). */
  truncated: boolean;
}

export interface CommandRecord {
  workspaceId: string;
  id: string;
  version: number;
  state: CommandState;
  argv: string[];
  cwd: string;
  /** Internal steps (setup, git) are not listed to agents. */
  internal: boolean;
  timeoutMs: number;
  exitCode: number | null;
  signal: string | null;
  /** Why it was killed or lost ('timeout', 'cancelled', 'provider restarted', …). */
  reason?: string;
  stdout: StreamInfo;
  stderr: StreamInfo;
  startedAt: string;
  endedAt?: string;
  durationMs?: number;
}

export type OperationKind = 'fetch' | 'reset' | 'snapshot';
export type OperationStatus = 'running' | 'succeeded' | 'failed';

/**
 * Where a running operation is. Every operation starts at `begin` (a fetch does all its work there);
 * a reset goes on to `restore` (in place) or `replace` + `sync` (mode 'recreate'), then `move` (only
 * with `refs`) and `verify`. Each phase is idempotent against the records, so a phase cut short (its
 * worker gone) is run again — on AWS by the operations state machine, one invocation per phase.
 */
export type OperationPhase = 'begin' | 'restore' | 'replace' | 'sync' | 'move' | 'verify';

/** What an operation's earlier phases left for the later ones (on its record). */
export interface OperationProgress {
  /** When its work began (epoch ms): a reset's `durationMs` spans every phase. */
  startedAt?: number;
  /** A recreate: the fingerprint of the baseline it replaced. */
  previousBaselineFingerprint?: string;
  /** A fetch: the repositories already fetched (a re-run goes on with the rest). */
  fetched?: Record<string, unknown>[];
}

/**
 * A long operation on a ready workspace (git fetch, reset): started by a request that answers within
 * a bounded wait (API Gateway's 30 s) and polled after that. Runs wherever long work runs.
 */
export interface OperationRecord {
  workspaceId: string;
  id: string;
  version: number;
  kind: OperationKind;
  status: OperationStatus;
  /** The validated request body (FetchParams / ResetParams). */
  input: Record<string, unknown>;
  /** The operation's answer once it succeeded (FetchResult / ResetResult). */
  result?: Record<string, unknown>;
  /** Why it failed: the code and message the request would have answered (never a host path). */
  error?: { code: string; message: string; details?: unknown };
  /** Instance that started it (the reconciler settles only its own). */
  owner: string;
  /** The phase to run next while running (records written before phases existed have none: `begin`). */
  phase?: OperationPhase;
  progress?: OperationProgress;
  createdAt: string;
  updatedAt: string;
  endedAt?: string;
}

export type CacheEntryStatus = 'building' | 'ready' | 'failed';

export interface CacheEntryRecord {
  key: string;
  status: CacheEntryStatus;
  version: number;
  backendKind: string;
  snapshot?: SnapshotRef;
  repos: RepoState[];
  /** Instance that builds the entry, and until when (single-flight lease). */
  lease?: Lease;
  /** Workspace that builds the entry: a re-run of its `start` phase finds the entry its own. */
  builder?: string;
  /** The key without the key files' contents (cache-key.ts computeRestoreKey): a later miss may start from it. */
  restoreKey?: string;
  sizeBytes?: number;
  createdAt: string;
  lastUsedAt: string;
}

// ---- snapshots of a workspace's current state (fork, user snapshots: issue 13) ----

export type SnapshotStatus = 'creating' | 'ready' | 'failed';
/** 'user': named by a caller (POST /workspaces/{id}/snapshots), kept until deleted. 'fork': a fork point, kept while a workspace made from it lives. */
export type SnapshotKind = 'user' | 'fork';

/**
 * A snapshot of one workspace's current state (files, git state; never processes), taken by a
 * 'snapshot' operation on its source, secret-scanned like a cache entry, and what new workspaces are
 * created from (`WorkspaceRecord.fromSnapshot`). The backend snapshot (`snapshot`) is durable on every
 * backend (local: a root-only copy; Docker: a committed image; Fargate: a layer appended to the base).
 */
export interface SnapshotRecord {
  id: string;
  version: number;
  status: SnapshotStatus;
  kind: SnapshotKind;
  name?: string;
  /** A fork point: how many workspaces the fork makes from it (the janitor removes it once all are made and settled). */
  forkCount?: number;
  sourceWorkspaceId: string;
  /** The operation on the source that takes it. */
  operationId: string;
  backendKind: string;
  snapshot?: SnapshotRef;
  /** The source's plan: what a workspace made from the snapshot runs per (its paths, user, repositories). */
  plan: WorkspacePlan;
  /** The source's baseline commits (what `changes` of a workspace made from it diffs against). */
  repos: RepoState[];
  labels: Record<string, string>;
  sizeBytes?: number;
  failure?: { step: string; message: string };
  /** Instance that created it (the reconciler and janitor settle only their own). */
  owner: string;
  createdAt: string;
  updatedAt: string;
}
