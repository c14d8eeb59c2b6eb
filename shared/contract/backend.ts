import type { NetworkPolicy, WorkspacePlan } from './plan.js';
import type { BackendRef, CommandState, SnapshotRef, StreamInfo } from './workspace.js';

/**
 * The backend-neutral contract: a backend (lifecycle, snapshots, base identity) and the workspace
 * handle it opens (commands, files, snapshots of that workspace). Git, setup, caching and reset are
 * written once on top of it (shared/service).
 * No vendor type crosses this interface; refs (BackendRef, SnapshotRef) are serialisable and live in
 * the state store.
 */

export interface CommandSpec {
  /** Unique per workspace; `commands.start` is idempotent on it. */
  commandId: string;
  argv: string[];
  /** Absolute guest path inside the workspace (the service validates it). */
  cwd: string;
  /** Merged over plan.env by the service already. */
  env: Record<string, string>;
  stdin?: Buffer;
  /**
   * Keep stdin open: the command reads a pipe fed by `writeStdin` (after `stdin`, if given) until
   * `writeStdin(…, eof: true)`. Without it stdin is `stdin` then end of file.
   */
  openStdin?: boolean;
  /**
   * Run under a pseudo-terminal of this size (the command is its session leader, the terminal its
   * controlling tty): stdout carries everything the terminal shows, stderr stays empty, and input is
   * the terminal's keyboard (writeStdin; implies openStdin). Resize with `resize`.
   */
  tty?: TerminalSize;
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
  /** Start from a snapshot (purpose 'cache' or 'snapshot') instead of an empty home. */
  from?: SnapshotRef;
}

export interface BackendResource {
  workspaceId: string;
  owner: string;
  ref: BackendRef;
}

/**
 * A backend: where workspaces live (local directories + bwrap, Docker containers, Fargate tasks).
 * Lifecycle, the snapshots it keeps, and the identity of its base; everything done INSIDE one
 * workspace goes through the handle `open` returns.
 */
export interface WorkspaceBackend {
  readonly kind: string;
  /** Human-readable notes about weakened guarantees (e.g. no sandbox available). */
  readonly warnings: readonly string[];

  /**
   * What a cache entry built here depends on besides the plan and the setup inputs: the base a fresh
   * workspace starts from (Docker: the base image's id; Fargate: the base task definition's revision
   * ARN; local: the host). Part of the cache key, so a rebuilt base never serves an old entry.
   */
  baseIdentity(): Promise<string>;

  /** Create the workspace's compute and empty (or snapshot-seeded) home per the plan. */
  create(plan: WorkspacePlan, options: CreateOptions): Promise<BackendRef>;
  /**
   * The workspace `ref` names, run per `plan` (its record's). No I/O: a ref that names nothing (any
   * more) fails on first use (NotFoundError), a malformed one rejects every call.
   */
  open(ref: BackendRef, plan: WorkspacePlan): WorkspaceHandle;
  /**
   * Optional: does `ref` address the resources `create` made for `workspaceId` (and nothing else)?
   * A ref comes back from the state store, which the service does not trust blindly: a record whose
   * ref names another workspace's resources is refused, never used (shared/service/records.ts).
   */
  refBelongsTo?(ref: BackendRef, workspaceId: string): boolean;
  /** Tear down; idempotent (an unknown or already-removed ref is not an error). */
  destroy(ref: BackendRef): Promise<void>;

  /** Snapshots kept by this backend (cache entries and baselines), whoever took them. */
  readonly snapshots: SnapshotStore;

  /**
   * Optional periodic upkeep, called by the janitor with the snapshots of the ready cache entries
   * (e.g. the Fargate backend keeps its warm pools of tasks at size for them and drains the rest).
   */
  maintain?(readyCacheSnapshots: SnapshotRef[]): Promise<void>;

  /** Resources this backend holds that carry our labels (for the reconciler). */
  listResources(): Promise<BackendResource[]>;

  /**
   * Optional: let go of what this process holds open for the backend (the local backend's connection
   * to its command supervisor). Workspaces and their running commands live on.
   */
  close?(): void | Promise<void>;
}

export interface SnapshotStore {
  delete(snapshot: SnapshotRef): Promise<void>;
  sizeBytes(snapshot: SnapshotRef): Promise<number>;
  /** Every needle found in the snapshot's content (file paths or layer ids), for the secret scan. */
  scan(snapshot: SnapshotRef, needles: readonly string[]): Promise<string[]>;
  list(): Promise<SnapshotRef[]>;
}

/** One workspace, opened by its backend: what runs in it, what is copied into it, its snapshots. */
export interface WorkspaceHandle {
  readonly ref: BackendRef;
  readonly commands: WorkspaceCommands;
  readonly files: WorkspaceFiles;
  readonly snapshots: WorkspaceSnapshots;
  /**
   * What the workspace uses now (WorkspaceUsage), measured where the workspace cannot forge it: the
   * host's view of its cgroup, the container engine's stats, root-owned cgroup files read as root.
   * NotFoundError for a workspace that is gone.
   */
  usage(): Promise<WorkspaceUsage>;
}

/**
 * A workspace's resource use at one moment. null: this backend cannot tell (a limit: none is set,
 * or it cannot tell). Memory counts what its cgroup is charged — page cache and tmpfs files
 * included. The numbers cover the workspace's whole compute: helpers of the provider that run
 * inside it (a container's runner, its init) count too.
 */
export interface WorkspaceUsage {
  /** Where the numbers come from, for people (e.g. 'cgroup v2', 'docker stats', 'task cgroup v1'). */
  source: string;
  /** CPU time used since the workspace's compute (or its cgroup) began, in seconds (user + system). */
  cpu: { usageSeconds: number | null };
  memory: { currentBytes: number | null; limitBytes: number | null };
  /** Bytes its writable content takes (what the disk limit is measured by, plan.resources.diskMb). */
  disk: { usedBytes: number | null; limitBytes: number | null };
  /** Tasks (processes and threads). */
  pids: { current: number | null; limit: number | null };
}

export interface WorkspaceCommands {
  start(spec: CommandSpec): Promise<void>;
  status(commandId: string): Promise<CommandStatus>;
  /** Resolve when the command is no longer running or after `waitMs`; returns the status then. */
  wait(commandId: string, waitMs: number): Promise<CommandStatus>;
  read(commandId: string, stream: OutputStream, offset: number, limit: number): Promise<OutputChunk>;
  /**
   * Optional: every kept byte of an ended command's `stream` (`bytes` of them, as its status said) by the
   * backend's bulk path, where paging through `read` would be slow or cross a narrow channel (Fargate:
   * the task PUTs the file to a presigned S3 URL, never through the exec PTY). Absent → `read` in pages.
   */
  readAll?(commandId: string, stream: OutputStream, bytes: number): Promise<Buffer>;
  /** Kill the command's process group; no-op if it has ended. */
  kill(commandId: string, reason: string): Promise<void>;
  /**
   * Send `signal` to the command's process group — its processes inside the workspace only (never a
   * sandbox's host-side helpers); no-op once it has ended. A shell session interrupts what its shell
   * runs this way (the shell traps it and lives on). NotFoundError: unknown command.
   */
  signal(commandId: string, signal: CommandSignal): Promise<void>;
  /**
   * New size for the terminal of a command started with `tty` (its foreground gets SIGWINCH). No-op
   * once it has ended. NotFoundError: unknown command; ConflictError: it has no terminal.
   */
  resize(commandId: string, size: TerminalSize): Promise<void>;
  /**
   * Optional: drop an ended command's record and output (its files, and whatever else the backend keeps
   * for it), so that short system commands (Files API operations) leave nothing behind; afterwards
   * `status` answers NotFoundError. Idempotent: an unknown (or forgotten) command, or a workspace that
   * is gone, is not an error. A command still running is REFUSED (ConflictError), never forgotten: its
   * record is what `kill`, `killAll` and the timeout find it by, and its supervisor still writes it —
   * kill it (and let `kill` settle) first.
   * It also ends `start`'s idempotency for that id: a later start of the same id would start a new
   * command. So forget only ids nobody will start again — fresh ones the caller made for one run whose
   * `start` has returned (never a setup command, whose start a re-run phase repeats).
   */
  forget?(commandId: string): Promise<void>;
  /** Kill every process of the workspace user. */
  killAll(): Promise<void>;
  /**
   * Append `data` to the stdin of a command started with `openStdin` (in call order), then close it
   * when `eof`. Resolves once the backend holds the bytes (the command may read them later): at most
   * STDIN_PENDING_MAX_BYTES may wait unread, more is refused (ConflictError, "stdin is full") until the
   * command reads. NotFoundError: unknown command. ConflictError: not started with openStdin, ended,
   * or its stdin closed already. The bytes are the workspace's own input: never logged.
   */
  writeStdin(commandId: string, data: Buffer, eof: boolean): Promise<void>;
}

/** A terminal's size in character cells (1..1000 each). */
export interface TerminalSize {
  rows: number;
  cols: number;
}

/** What a controller may send a running command (besides kill). */
export type CommandSignal = 'SIGINT' | 'SIGTERM';

/** Bytes of open stdin a backend keeps for a command that is not reading (writeStdin). */
export const STDIN_PENDING_MAX_BYTES = 1024 * 1024;

export interface WorkspaceFiles {
  /** Copy a host file into plan.transferDir under `name`, readable by the workspace user. */
  putTransferFile(name: string, hostPath: string): Promise<void>;
  removeTransferFile(name: string): Promise<void>;
  /** Copy a host directory whole into a guest path, owned by the workspace user. */
  putDirectory(hostDir: string, guestPath: string): Promise<void>;
  /**
   * Optional: the digest `fingerprintArgv(plan.home)` (shared/workspace/fingerprint.ts) would print
   * inside the workspace, computed by the backend when it can do that faster (e.g. from the host).
   * Absent → the service runs the script in the workspace. Throws NotFoundError for an unknown
   * workspace, StepFailedError('fingerprint') when the home cannot be read (or changes meanwhile).
   */
  fingerprintHome?(): Promise<string>;
  /**
   * Optional: bytes the workspace's writable content uses now (its home and /tmp, or everything it
   * wrote, whichever the backend can measure), read without trusting the workspace (a dir it made
   * unreadable still counts). For the disk limit (plan.resources.diskMb), enforced by the janitor.
   */
  usageBytes?(): Promise<number>;
}

/**
 * What a snapshot is for: a cache entry, a workspace's baseline (what its reset returns to; may live
 * inside the workspace's compute), or a 'snapshot' of a workspace's current state (a fork point, a
 * user snapshot) — like a cache entry, durable beyond the workspace and usable as `CreateOptions.from`,
 * kept apart from the cache entries' names. A 'snapshot' may be taken while commands run: the copy is
 * of the files at that moment (crash-consistent where a command writes meanwhile).
 */
export type SnapshotPurpose = 'cache' | 'baseline' | 'snapshot';

export interface WorkspaceSnapshots {
  /** Keep the current home as a snapshot (see SnapshotPurpose). */
  take(purpose: SnapshotPurpose, name: string): Promise<SnapshotRef>;
  /** Return the workspace to a snapshot: processes killed, only what changed rewritten. */
  restore(snapshot: SnapshotRef): Promise<void>;
}
