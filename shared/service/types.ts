import type {
  CreateSnapshotParams,
  CreateSessionParams,
  RunInSessionParams,
  SessionWaitParams,
  ArchiveReadOptions,
  CreateWorkspaceParams,
  ForkParams,
  FileDeleteParams,
  FileListParams,
  FilePathParams,
  FileReadOptions,
  FileWriteParams,
  FetchParams,
  OperationWaitParams,
  ReadCommandParams,
  ResetParams,
  RunCommandParams,
  StdinParams,
  TerminalSizeParams,
} from '../contract/inputs.js';
import type {
  ArchiveWritten,
  ChangesView,
  CommandEvent,
  CommandView,
  FileContent,
  FileList,
  FileStat,
  ForkView,
  OperationEvent,
  OperationView,
  SessionRunView,
  SessionView,
  SnapshotView,
  WebhookEventView,
  UsageView,
  WorkspaceEvent,
  WorkspaceView,
} from '../contract/views.js';

/**
 * The one service behind every entry point (local HTTP server, Lambda handlers, CLI via the client).
 * Methods take already-validated inputs and answer with views, both in the contract's language
 * (shared/contract/inputs.ts, views.ts — the HTTP API's zod schemas are checked against them), and
 * throw domain errors (shared/contract/errors.ts); they never return HTTP concepts except `accepted` flags.
 */
export interface WorkspaceService {
  /** Starts provisioning and returns at once (status 'provisioning'); `created` false on an idempotent repeat. */
  createWorkspace(input: CreateWorkspaceParams): Promise<{ workspace: WorkspaceView; created: boolean }>;
  getWorkspace(id: string): Promise<WorkspaceView>;
  listWorkspaces(): Promise<WorkspaceView[]>;
  /** Idempotent: deleting a deleted or unknown-but-once-known workspace returns its view / NotFound. */
  deleteWorkspace(id: string): Promise<WorkspaceView>;

  /** Runs until it ends or `waitMs` passes; a view with state 'running' means "202, poll". */
  runCommand(workspaceId: string, input: RunCommandParams): Promise<CommandView>;
  getCommand(workspaceId: string, commandId: string, query: ReadCommandParams): Promise<CommandView>;
  listCommands(workspaceId: string): Promise<CommandView[]>;
  cancelCommand(workspaceId: string, commandId: string): Promise<CommandView>;
  /** Append the bytes to a running command's open stdin (openStdin); `eof` closes it after them. */
  writeStdin(workspaceId: string, commandId: string, data: Buffer, input: StdinParams): Promise<void>;
  /** New size for a running command's terminal (started with `tty`). */
  resizeCommand(workspaceId: string, commandId: string, size: TerminalSizeParams): Promise<void>;

  /**
   * Long operations: started, then waited for up to `waitMs` (capped: config operations.maxWaitMs, and
   * below API Gateway's 30 s on Lambda). The view says whether it ended (`result` / `error`) or is still
   * `running` — then poll getOperation.
   */
  fetch(workspaceId: string, input: FetchParams, wait?: OperationWaitParams): Promise<OperationView>;
  reset(workspaceId: string, input: ResetParams, wait?: OperationWaitParams): Promise<OperationView>;
  getOperation(workspaceId: string, operationId: string, wait?: OperationWaitParams): Promise<OperationView>;
  listOperations(workspaceId: string): Promise<OperationView[]>;
  /** Until the operation ends or `signal` aborts: the workspace's steps since it began, then its view. */
  watchOperation(workspaceId: string, operationId: string, signal: AbortSignal): AsyncIterable<OperationEvent>;
  changes(workspaceId: string): Promise<ChangesView>;
  /** Its lifecycle webhook events, oldest first, each with every delivery attempt (docs/webhooks.md). */
  listWebhookEvents(workspaceId: string): Promise<WebhookEventView[]>;
  /** CPU, memory, disk and pids of a ready workspace now, from its backend (409 when not ready). */
  usage(workspaceId: string): Promise<UsageView>;

  /**
   * Files, inside the workspace as its user (shared/service/files.ts). Paths: relative to the workdir or
   * absolute, inside the home or /tmp as the workspace sees them (400 otherwise). The workspace must be
   * ready (409); a missing path is NotFound; over files.maxBytes is payload_too_large.
   */
  readFile(workspaceId: string, input: FilePathParams, options?: FileReadOptions): Promise<FileContent>;
  /** Atomic (temp file + rename in the same directory), parents created; answers the new file's stat. */
  writeFile(workspaceId: string, input: FileWriteParams, body: Buffer): Promise<FileStat>;
  statFile(workspaceId: string, input: FilePathParams): Promise<FileStat>;
  listFiles(workspaceId: string, input: FileListParams): Promise<FileList>;
  deleteFile(workspaceId: string, input: FileDeleteParams): Promise<void>;
  /**
   * A directory as a tar, made inside the workspace (symlinks stored as links); missing → NotFound,
   * over files.maxBytes (or options.maxBytes) → payload_too_large (shared/service/archive.ts).
   */
  readArchive(workspaceId: string, input: FilePathParams, options?: ArchiveReadOptions): Promise<Buffer>;
  /** A tar extracted into the directory (created if missing); a hostile archive is refused whole (400). */
  writeArchive(workspaceId: string, input: FilePathParams, body: Buffer): Promise<ArchiveWritten>;

  /** Until the workspace settles (ready/failed/deleted) or `signal` aborts. */
  watchWorkspace(workspaceId: string, signal: AbortSignal): AsyncIterable<WorkspaceEvent>;
  /** Until the command ends or `signal` aborts. */
  watchCommand(workspaceId: string, commandId: string, signal: AbortSignal): AsyncIterable<CommandEvent>;

  /**
   * Fork and snapshots (issue 13; shared/service/snapshots.ts). The source must be ready (409); its
   * commands keep running. `fork` answers the fork point and `count` new workspaces (provisioning);
   * `createSnapshot` answers the snapshot once taken within the wait, or 'creating' (poll getSnapshot).
   * A secret found in the copy fails it (409). `createWorkspace({fromSnapshot})` makes one from a snapshot.
   */
  fork(workspaceId: string, input: ForkParams, wait?: OperationWaitParams): Promise<ForkView>;
  createSnapshot(workspaceId: string, input: CreateSnapshotParams, wait?: OperationWaitParams): Promise<SnapshotView>;
  getSnapshot(id: string): Promise<SnapshotView>;
  listSnapshots(): Promise<SnapshotView[]>;
  /** 409 while it is being taken or a workspace is being made from it. */
  deleteSnapshot(id: string): Promise<void>;

  /**
   * Persistent shell sessions (shared/service/sessions.ts): cwd, variables, functions and aliases
   * persist between runs. The workspace must be ready (409); a busy session refuses a run (409); a
   * session whose shell died answers `lost`. `runInSession` waits up to waitMs (a run still `running` → 202).
   */
  createSession(workspaceId: string, input: CreateSessionParams): Promise<SessionView>;
  runInSession(workspaceId: string, sessionId: string, input: RunInSessionParams): Promise<SessionRunView>;
  getSession(workspaceId: string, sessionId: string, wait: SessionWaitParams): Promise<SessionView>;
  listSessions(workspaceId: string): Promise<SessionView[]>;
  interruptSession(workspaceId: string, sessionId: string): Promise<SessionView>;
  deleteSession(workspaceId: string, sessionId: string): Promise<SessionView>;
}
