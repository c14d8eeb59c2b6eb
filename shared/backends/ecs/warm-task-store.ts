import type { Patch } from '../../contract/state.js';

/**
 * The port through which the Fargate backend's warm pool (warm-pool.ts) keeps its records: declared
 * here, by the only code that needs it, and implemented by the state adapter
 * (shared/state/dynamo-warm-tasks.ts: the same DynamoDB table as the core StateStore, its own items).
 * Every write is conditional; a lost condition throws ConflictError, a record gone NotFoundError.
 */

/**
 * Lifecycle of one warm-pool task record: 'starting' (launch in flight or task not yet ready),
 * 'ready' (RUNNING with the exec agent up; claimable), 'claimed' (a workspace owns the task; the
 * record is kept only until the workspace releases it).
 */
export type WarmTaskStatus = 'starting' | 'ready' | 'claimed';

/**
 * One task of a cache key's warm pool (Fargate tasks pre-started from the cache image's task
 * definition). The record is written BEFORE RunTask, so it is named by `id` (chosen by the pool)
 * rather than by the task ARN, which only exists once RunTask has answered; `taskArn` is patched in
 * then. A 'starting' record without `taskArn` is a launch in flight (or one whose launcher crashed:
 * the task, if any, carries `id` as a tag so it can be found).
 */
export interface WarmTaskRecord {
  cacheKey: string;
  /** Stable record id within the pool (a random UUID), also passed to the launcher as a tag. */
  id: string;
  /** ECS task ARN; absent until RunTask returned. */
  taskArn?: string;
  taskDefinitionArn: string;
  status: WarmTaskStatus;
  /** Workspace id that claimed the task (status 'claimed' only). */
  claimedBy?: string;
  /** Provider instance / deployment that launched the task (for reapers). */
  owner: string;
  createdAt: string;
  updatedAt: string;
  /** Incremented by every write; every write is conditional on it. */
  version: number;
}

/** Warm-pool task records, one partition per cache key. */
export interface WarmTaskStore {
  /** Throws ConflictError if (cacheKey, id) exists. */
  putWarmTask(record: WarmTaskRecord): Promise<void>;
  getWarmTask(cacheKey: string, id: string): Promise<WarmTaskRecord | undefined>;
  /**
   * With `cacheKey`: that pool's records, strongly consistent (the pool's launch bound relies on
   * it), oldest first. Without: every pool's records (an index read, eventually consistent on AWS).
   */
  listWarmTasks(cacheKey?: string): Promise<WarmTaskRecord[]>;
  /**
   * Apply `patch` iff the stored version equals `expectedVersion` (and, if given, the status is one
   * of `expectedStatus`). Returns the new record (version + 1). ConflictError if changed,
   * NotFoundError if gone.
   */
  updateWarmTask(
    cacheKey: string,
    id: string,
    expectedVersion: number,
    patch: Patch<WarmTaskRecord>,
    expectedStatus?: WarmTaskRecord['status'][],
  ): Promise<WarmTaskRecord>;
  /**
   * Remove a record. With `expectedVersion`: only that version (ConflictError if changed,
   * NotFoundError if gone) — so a record claimed meanwhile is never dropped. Without: idempotent.
   */
  deleteWarmTask(cacheKey: string, id: string, expectedVersion?: number): Promise<void>;
}
