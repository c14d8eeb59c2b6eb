import type { SessionRecord } from './session.js';
import type { CacheEntryRecord, CommandRecord, OperationRecord, SnapshotRecord, WorkspaceRecord } from './workspace.js';

/**
 * State store port. Every update is conditional on `version` (and the caller's expectations);
 * a lost condition throws ConflictError. Implementations: shared/state/dynamo (DynamoDB protocol:
 * AWS, LocalStack, DynamoDB Local, or the embedded dynalite endpoint).
 */
export interface WorkspaceQuery {
  owner?: string;
  status?: WorkspaceRecord['status'][];
}

export type Patch<T> = Partial<Omit<T, 'version'>>;

export interface StateStore {
  /** Throws ConflictError if the id exists. */
  createWorkspace(record: WorkspaceRecord): Promise<void>;
  getWorkspace(id: string): Promise<WorkspaceRecord | undefined>;
  listWorkspaces(query?: WorkspaceQuery): Promise<WorkspaceRecord[]>;
  /**
   * Apply `patch` iff the stored version equals `expectedVersion` (and, if given, the status is one
   * of `expectedStatus`). Returns the new record (version + 1). ConflictError otherwise.
   */
  updateWorkspace(
    id: string,
    expectedVersion: number,
    patch: Patch<WorkspaceRecord>,
    expectedStatus?: WorkspaceRecord['status'][],
  ): Promise<WorkspaceRecord>;
  /** Remove the record, its commands and operations (after teardown, once 'deleted' has been observed). */
  deleteWorkspace(id: string): Promise<void>;

  createCommand(record: CommandRecord): Promise<void>;
  getCommand(workspaceId: string, commandId: string): Promise<CommandRecord | undefined>;
  listCommands(workspaceId: string): Promise<CommandRecord[]>;
  updateCommand(
    workspaceId: string,
    commandId: string,
    expectedVersion: number,
    patch: Patch<CommandRecord>,
  ): Promise<CommandRecord>;

  createOperation(record: OperationRecord): Promise<void>;
  getOperation(workspaceId: string, operationId: string): Promise<OperationRecord | undefined>;
  /** Operations of one workspace in id order (ids sort by time). */
  listOperations(workspaceId: string): Promise<OperationRecord[]>;
  updateOperation(
    workspaceId: string,
    operationId: string,
    expectedVersion: number,
    patch: Patch<OperationRecord>,
  ): Promise<OperationRecord>;

  /** Claim an idempotency key for a workspace id; returns the id that holds it (ours or earlier). */
  claimIdempotencyKey(key: string, workspaceId: string): Promise<string>;

  /** Throws ConflictError if the key exists. */
  createCacheEntry(record: CacheEntryRecord): Promise<void>;
  getCacheEntry(key: string): Promise<CacheEntryRecord | undefined>;
  listCacheEntries(): Promise<CacheEntryRecord[]>;
  updateCacheEntry(key: string, expectedVersion: number, patch: Patch<CacheEntryRecord>): Promise<CacheEntryRecord>;
  deleteCacheEntry(key: string, expectedVersion: number): Promise<void>;

  // ---- snapshots (fork points and user snapshots) ----
  /** Throws ConflictError if the id exists. */
  createSnapshot(record: SnapshotRecord): Promise<void>;
  getSnapshot(id: string): Promise<SnapshotRecord | undefined>;
  listSnapshots(): Promise<SnapshotRecord[]>;
  updateSnapshot(id: string, expectedVersion: number, patch: Patch<SnapshotRecord>): Promise<SnapshotRecord>;
  /** Delete iff the stored version is `expectedVersion`. NotFoundError if gone, ConflictError if changed. */
  deleteSnapshot(id: string, expectedVersion: number): Promise<void>;

  // ---- shell sessions (items of their workspace: deleteWorkspace removes them) ----
  /** Throws ConflictError if the id exists. */
  createSession(record: SessionRecord): Promise<void>;
  getSession(workspaceId: string, sessionId: string): Promise<SessionRecord | undefined>;
  listSessions(workspaceId: string): Promise<SessionRecord[]>;
  updateSession(
    workspaceId: string,
    sessionId: string,
    expectedVersion: number,
    patch: Patch<SessionRecord>,
  ): Promise<SessionRecord>;
  /** Delete iff the stored version is `expectedVersion`. NotFoundError if gone, ConflictError if changed. */
  deleteSession(workspaceId: string, sessionId: string, expectedVersion: number): Promise<void>;
}
