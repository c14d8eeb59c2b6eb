import type { NetworkPolicy, WorkspacePlan } from './plan.js';
import type { BackendRef, CommandState, SnapshotRef, StreamInfo } from './workspace.js';

/**
 * The backend-neutral contract: lifecycle (create/destroy/snapshot/restore) and executor
 * (commands). Git, setup, caching and reset are written once on top of it (shared/service).
 * No vendor type crosses this interface; handles are serialisable and live in the state store.
 */

export interface CommandSpec {
  /** Unique per workspace; `startCommand` is idempotent on it. */
  commandId: string;
  argv: string[];
  /** Absolute guest path inside the workspace (the service validates it). */
  cwd: string;
  /** Merged over plan.env by the service already. */
  env: Record<string, string>;
  stdin?: Buffer;
  /** 0 = no limit. On expiry the whole process group is killed and the state is `killed`. */
  timeoutMs: number;
  /** Bytes kept per stream; beyond that `truncated` is set and bytes are still counted. */
  maxOutputBytes: number;
  /** Network of this command instead of plan.network (the setup script: plan.setupNetwork). */
  network?: NetworkPolicy;
}

export interface CommandStatus {
  commandId: string;
  state: CommandState;
  exitCode: number | null;
  signal: string | null;
  reason?: string;
  stdout: StreamInfo;
  stderr: StreamInfo;
  startedAt: string;
  endedAt?: string;
}

export interface OutputChunk {
  data: Buffer;
  /** Offset to ask for next. */
  nextOffset: number;
}

export type OutputStream = 'stdout' | 'stderr';

export interface CreateOptions {
  workspaceId: string;
  /** Labels/tags put on every resource, so a reconciler can find it (workspace id, owner, cache key). */
  labels: Record<string, string>;
  /** Start from a cache snapshot instead of an empty home. */
  from?: SnapshotRef;
}

export interface BackendResource {
  workspaceId: string;
  owner: string;
  ref: BackendRef;
}

export interface WorkspaceBackend {
  readonly kind: string;
  /** Human-readable notes about weakened guarantees (e.g. no sandbox available). */
  readonly warnings: readonly string[];

  /** Create the workspace's compute and empty (or snapshot-seeded) home per the plan. */
  create(plan: WorkspacePlan, options: CreateOptions): Promise<BackendRef>;
  /**
   * Optional: does `ref` address the resources `create` made for `workspaceId` (and nothing else)?
   * A ref comes back from the state store, which the service does not trust blindly: a record whose
   * ref names another workspace's resources is refused, never used (shared/service/records.ts).
   */
  refBelongsTo?(ref: BackendRef, workspaceId: string): boolean;
  /** Tear down; idempotent (an unknown or already-removed ref is not an error). */
  destroy(ref: BackendRef): Promise<void>;

  /** Copy a host file into plan.transferDir under `name`, readable by the workspace user. */
  putTransferFile(ref: BackendRef, plan: WorkspacePlan, name: string, hostPath: string): Promise<void>;
  removeTransferFile(ref: BackendRef, plan: WorkspacePlan, name: string): Promise<void>;
  /** Copy a host directory whole into a guest path, owned by the workspace user. */
  putDirectory(ref: BackendRef, plan: WorkspacePlan, hostDir: string, guestPath: string): Promise<void>;

  startCommand(ref: BackendRef, plan: WorkspacePlan, spec: CommandSpec): Promise<void>;
  commandStatus(ref: BackendRef, commandId: string): Promise<CommandStatus>;
  /** Resolve when the command is no longer running or after `waitMs`; returns the status then. */
  waitCommand(ref: BackendRef, commandId: string, waitMs: number): Promise<CommandStatus>;
  readOutput(
    ref: BackendRef,
    commandId: string,
    stream: OutputStream,
    offset: number,
    limit: number,
  ): Promise<OutputChunk>;
  /** Kill the command's process group; no-op if it has ended. */
  killCommand(ref: BackendRef, commandId: string, reason: string): Promise<void>;
  /** Kill every process of the workspace user. */
  killAll(ref: BackendRef): Promise<void>;

  /** Keep the current home as a snapshot (cache entry or baseline). */
  snapshot(ref: BackendRef, plan: WorkspacePlan, purpose: 'cache' | 'baseline', name: string): Promise<SnapshotRef>;
  /** Return the workspace to a snapshot: processes killed, only what changed rewritten. */
  restore(ref: BackendRef, plan: WorkspacePlan, snapshot: SnapshotRef): Promise<void>;
  deleteSnapshot(snapshot: SnapshotRef): Promise<void>;
  snapshotSizeBytes(snapshot: SnapshotRef): Promise<number>;
  /** Every needle found in the snapshot's content (file paths or layer ids), for the secret scan. */
  scanSnapshot(snapshot: SnapshotRef, needles: readonly string[]): Promise<string[]>;

  /**
   * Optional: the digest `fingerprintArgv(plan.home)` (shared/workspace/fingerprint.ts) would print
   * inside the workspace, computed by the backend when it can do that faster (e.g. from the host).
   * Absent → the service runs the script in the workspace. Throws NotFoundError for an unknown
   * workspace, StepFailedError('fingerprint') when the home cannot be read (or changes meanwhile).
   */
  fingerprintHome?(ref: BackendRef, plan: WorkspacePlan): Promise<string>;

  /**
   * Optional: bytes the workspace's writable content uses now (its home and /tmp, or everything it
   * wrote, whichever the backend can measure), read without trusting the workspace (a dir it made
   * unreadable still counts). For the disk limit (plan.resources.diskMb), enforced by the janitor.
   */
  usageBytes?(ref: BackendRef): Promise<number>;

  /**
   * Optional periodic upkeep, called by the janitor with the snapshots of the ready cache entries
   * (e.g. the Fargate backend keeps its warm pools of tasks at size for them and drains the rest).
   */
  maintain?(readyCacheSnapshots: SnapshotRef[]): Promise<void>;

  /** Resources this backend holds that carry our labels (for the reconciler). */
  listResources(): Promise<BackendResource[]>;
  listSnapshots(): Promise<SnapshotRef[]>;
}
