import type {
  CreateWorkspaceParams,
  FetchParams,
  ReadCommandParams,
  ResetParams,
  RunCommandParams,
} from '../contract/inputs.js';
import type {
  ChangesView,
  CommandEvent,
  CommandView,
  FetchResult,
  ResetResult,
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

  fetch(workspaceId: string, input: FetchParams): Promise<FetchResult>;
  reset(workspaceId: string, input: ResetParams): Promise<ResetResult>;
  changes(workspaceId: string): Promise<ChangesView>;

  /** Until the workspace settles (ready/failed/deleted) or `signal` aborts. */
  watchWorkspace(workspaceId: string, signal: AbortSignal): AsyncIterable<WorkspaceEvent>;
  /** Until the command ends or `signal` aborts. */
  watchCommand(workspaceId: string, commandId: string, signal: AbortSignal): AsyncIterable<CommandEvent>;
}
