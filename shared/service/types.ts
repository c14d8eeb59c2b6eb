import type {
  ChangesView,
  CommandView,
  CreateWorkspaceBody,
  FetchBody,
  FetchResult,
  ReadCommandQuery,
  ResetBody,
  ResetResult,
  RunCommandBody,
  WorkspaceView,
} from '../api/schemas.js';

/** Events streamed over SSE while a workspace provisions (or a fetch/reset runs). */
export type WorkspaceEvent =
  | { type: 'status'; status: WorkspaceView['status']; workspace: WorkspaceView }
  | { type: 'step'; at: string; step: string; message: string }
  | { type: 'output'; commandId: string; stream: 'stdout' | 'stderr'; data: string };

/** Events streamed over SSE for one command: output as it comes, then its final view. */
export type CommandEvent =
  | { type: 'output'; stream: 'stdout' | 'stderr'; data: string; offset: number }
  | { type: 'end'; command: CommandView };

/**
 * The one service behind every entry point (local HTTP server, Lambda handlers, CLI via the client).
 * Methods take already-validated inputs (shared/api/schemas.ts) and throw domain errors
 * (shared/contract/errors.ts); they never return HTTP concepts except `accepted` flags.
 */
export interface WorkspaceService {
  /** Starts provisioning and returns at once (status 'provisioning'); `created` false on an idempotent repeat. */
  createWorkspace(input: CreateWorkspaceBody): Promise<{ workspace: WorkspaceView; created: boolean }>;
  getWorkspace(id: string): Promise<WorkspaceView>;
  listWorkspaces(): Promise<WorkspaceView[]>;
  /** Idempotent: deleting a deleted or unknown-but-once-known workspace returns its view / NotFound. */
  deleteWorkspace(id: string): Promise<WorkspaceView>;

  /** Runs until it ends or `waitMs` passes; a view with state 'running' means "202, poll". */
  runCommand(workspaceId: string, input: RunCommandBody): Promise<CommandView>;
  getCommand(workspaceId: string, commandId: string, query: ReadCommandQuery): Promise<CommandView>;
  listCommands(workspaceId: string): Promise<CommandView[]>;
  cancelCommand(workspaceId: string, commandId: string): Promise<CommandView>;

  fetch(workspaceId: string, input: FetchBody): Promise<FetchResult>;
  reset(workspaceId: string, input: ResetBody): Promise<ResetResult>;
  changes(workspaceId: string): Promise<ChangesView>;

  /** Until the workspace settles (ready/failed/deleted) or `signal` aborts. */
  watchWorkspace(workspaceId: string, signal: AbortSignal): AsyncIterable<WorkspaceEvent>;
  /** Until the command ends or `signal` aborts. */
  watchCommand(workspaceId: string, commandId: string, signal: AbortSignal): AsyncIterable<CommandEvent>;
}
