import { randomUUID } from 'node:crypto';
import { BackendUnavailableError, ConflictError, NotFoundError } from '../../contract/errors.js';
import type { Patch } from '../../contract/state.js';
import { errorFields, silentLogger, type Logger } from '../../log.js';
import { sleep } from '../../lib/sleep.js';
import type { WarmTaskRecord, WarmTaskStore } from './warm-task-store.js';

/**
 * The ECS side of the warm pool (implemented by the EcsBackend with the ECS SDK; a recording fake
 * in tests). Every method may throw BackendUnavailableError.
 */
export interface WarmLauncher {
  /**
   * RunTask from the task definition, tagged with the cache key and `warmTaskId` (the pool's record
   * id — e.g. as `startedBy` or a tag — so a task whose launcher died before its ARN was recorded
   * can still be found and stopped by a reaper); returns the task ARN (the task may still be starting).
   */
  launch(cacheKey: string, taskDefinitionArn: string, warmTaskId: string): Promise<string>;
  /**
   * Which of these tasks are ready (RUNNING + exec agent RUNNING), which are gone (STOPPED/unknown).
   * `knownAt`: when the pool last knew the task existed (its ARN recorded, or seen ready) — ECS may
   * not show a task it has just started, and such a task is not gone.
   */
  probe(tasks: ReadonlyArray<{ taskArn: string; knownAt: Date }>): Promise<{ ready: string[]; gone: string[] }>;
  /** StopTask; a task that is already stopped or unknown is not an error. */
  stop(taskArn: string, reason: string): Promise<void>;
}

export interface WarmPoolOptions {
  /** Written to every record this pool launches (deployment / instance id, for reapers). */
  owner: string;
  log?: Logger;
  now?: () => Date;
  /**
   * A 'starting' record without a task ARN older than this is a launch whose launcher crashed
   * between writing the record and recording RunTask's answer; replenish forgets it (the task, if
   * it started, carries the record id for the reaper). RunTask answers in seconds. Default 600 000 ms.
   */
  launchTimeoutMs?: number;
  /**
   * A 'claimed' record not released for this long belongs to a claimer that died before handing
   * the task to its workspace record; replenish forgets it (never stops the task: a workspace may
   * hold it). Default 3 600 000 ms.
   */
  claimedRetentionMs?: number;
  /**
   * Rounds replenish tries when concurrent replenishers made it withdraw every reservation (see
   * replenish). Default 3.
   */
  maxRounds?: number;
}

/** A claimed task: the workspace owns it now (and must `release` the record once recorded). */
export type ClaimedWarmTask = WarmTaskRecord & { status: 'claimed'; taskArn: string; claimedBy: string };

export interface ReplenishResult {
  /** Tasks started (RunTask answered and its ARN was recorded). */
  launched: number;
  /** Unclaimed tasks stopped: surplus over `size`, or from another task-definition revision. */
  stopped: number;
  /** Records forgotten: task gone, launch never recorded an ARN, or claim never released. */
  removed: number;
}

const UNCLAIMED: readonly WarmTaskRecord['status'][] = ['starting', 'ready'];

/**
 * Warm pool per cache key, its records in a WarmTaskStore (warm-task-store.ts) with conditional writes only (no transactions).
 *
 * Invariants:
 * - Exactly one claimer wins a task: claim is the conditional update ready → claimed.
 * - A record exists BEFORE its RunTask (status 'starting', no taskArn), so every started task has a
 *   record or, if the launcher died mid-launch, a record id in its tags.
 * - Launches never push a pool over `size` unclaimed records, however many replenishers run at
 *   once (proof at `reserve`).
 * - An unclaimed record is deleted (conditionally on its version) BEFORE its task is stopped, so a
 *   task being stopped can no longer be claimed; a record claimed meanwhile is left alone.
 */
export class WarmPool {
  private readonly owner: string;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly launchTimeoutMs: number;
  private readonly claimedRetentionMs: number;
  private readonly maxRounds: number;

  constructor(
    private readonly store: WarmTaskStore,
    private readonly launcher: WarmLauncher,
    opts: WarmPoolOptions,
  ) {
    this.owner = opts.owner;
    this.log = opts.log ?? silentLogger;
    this.now = opts.now ?? (() => new Date());
    this.launchTimeoutMs = opts.launchTimeoutMs ?? 600_000;
    this.claimedRetentionMs = opts.claimedRetentionMs ?? 3_600_000;
    this.maxRounds = opts.maxRounds ?? 3;
  }

  /**
   * Claim a ready task (conditional ready → claimed); tries the others on conflict; undefined if
   * none is ready. Candidates are tried in random order so concurrent claimers spread out. A round
   * that lost races re-reads the pool once more (a task may have become ready meanwhile).
   */
  async claim(cacheKey: string, workspaceId: string): Promise<ClaimedWarmTask | undefined> {
    for (let round = 0; round < 2; round++) {
      const candidates = shuffle(
        (await this.store.listWarmTasks(cacheKey)).filter((r) => r.status === 'ready' && r.taskArn !== undefined),
      );
      if (candidates.length === 0) return undefined;
      for (const candidate of candidates) {
        try {
          const claimed = await this.store.updateWarmTask(
            cacheKey,
            candidate.id,
            candidate.version,
            { status: 'claimed', claimedBy: workspaceId, updatedAt: this.now().toISOString() },
            ['ready'],
          );
          this.log.info('warm task claimed', {
            cacheKey,
            warmTaskId: claimed.id,
            taskArn: claimed.taskArn,
            workspaceId,
          });
          return claimed as ClaimedWarmTask;
        } catch (err) {
          if (!isLostRace(err)) throw err;
        }
      }
    }
    return undefined;
  }

  /**
   * Bring the pool of `cacheKey` to `size` unclaimed tasks of `taskDefinitionArn`:
   * 1. probe tasks with an ARN: ready → 'ready'; gone → record deleted; forget launches older than
   *    launchTimeoutMs that never recorded an ARN, and claims not released within claimedRetentionMs;
   * 2. stop unclaimed tasks of another revision, and the surplus over `size` (newest, starting first);
   * 3. launch the deficit: reserve records first (bounded under concurrency), then RunTask each and
   *    patch its ARN in. A failed RunTask deletes its record (no phantom) and, after the others are
   *    done, throws BackendUnavailableError (cause kept).
   * Safe to run concurrently and repeatedly; claimed records are the workspaces' and left alone.
   */
  async replenish(cacheKey: string, taskDefinitionArn: string, size: number): Promise<ReplenishResult> {
    const result: ReplenishResult = { launched: 0, stopped: 0, removed: 0 };
    let records = await this.cleanUp(cacheKey, result);

    const wrongRevision = records.filter(
      (r) => UNCLAIMED.includes(r.status) && r.taskDefinitionArn !== taskDefinitionArn,
    );
    for (const r of wrongRevision) if (await this.retire(r, 'warm pool: task definition replaced')) result.stopped++;
    records = records.filter((r) => !wrongRevision.includes(r));

    const unclaimed = records.filter((r) => UNCLAIMED.includes(r.status));
    // Surplus counts launched tasks only: ARN-less records include other replenishers' reservations,
    // which may exceed `size` for a moment before they withdraw them. Launches in flight when `size`
    // shrank are stopped by a later run, once they have an ARN.
    const launched = unclaimed.filter((r) => r.taskArn !== undefined);
    if (launched.length > size) {
      const byPreference = launched.sort(
        (a, b) => Number(a.status === 'ready') - Number(b.status === 'ready') || b.createdAt.localeCompare(a.createdAt),
      );
      for (const r of byPreference.slice(0, launched.length - size))
        if (await this.retire(r, 'warm pool: surplus')) result.stopped++;
      return result;
    }

    const failures: unknown[] = [];
    let deficit = size - unclaimed.length;
    for (let round = 0; deficit > 0 && round < this.maxRounds; round++) {
      if (round > 0) await sleep(Math.random() * 50 * round);
      const reserved = await this.reserve(cacheKey, taskDefinitionArn, size, deficit);
      for (const record of reserved) {
        try {
          if (await this.launchReserved(record)) result.launched++;
        } catch (err) {
          failures.push(err);
        }
      }
      // Everything withdrawn means concurrent replenishers collided: look again after a pause.
      if (reserved.length > 0 || failures.length > 0) break;
      deficit = size - (await this.store.listWarmTasks(cacheKey)).filter((r) => isCounted(r, taskDefinitionArn)).length;
    }
    if (failures.length > 0) {
      throw new BackendUnavailableError(
        `warm pool '${cacheKey}': ${failures.length} launch(es) failed, ${result.launched} launched`,
        failures[0],
      );
    }
    return result;
  }

  /** Every cache key that has a pool record (of any status). */
  async cacheKeys(): Promise<string[]> {
    return [...new Set((await this.store.listWarmTasks()).map((r) => r.cacheKey))].sort();
  }

  /** Stop and forget every unclaimed task of `cacheKey` (cache entry evicted / new revision). Returns records forgotten. */
  async drain(cacheKey: string): Promise<number> {
    let forgotten = 0;
    for (const r of await this.store.listWarmTasks(cacheKey)) {
      if (UNCLAIMED.includes(r.status) && (await this.retire(r, 'warm pool drained'))) forgotten++;
    }
    return forgotten;
  }

  /**
   * Forget a claimed record (the workspace owns the task now). Idempotent: no record is fine.
   * ConflictError if the task's record is not claimed — dropping it would orphan a pool task.
   */
  async release(cacheKey: string, taskArn: string): Promise<void> {
    for (const r of await this.store.listWarmTasks(cacheKey)) {
      if (r.taskArn !== taskArn) continue;
      if (r.status !== 'claimed') {
        throw new ConflictError(
          `warm task '${taskArn}' of '${cacheKey}' is '${r.status}', not claimed; only a claimed task can be released`,
        );
      }
      await this.store.deleteWarmTask(cacheKey, r.id);
    }
  }

  // ---- steps ----------------------------------------------------------------------------------

  /** Probe and prune; returns the records still present (with their new versions). */
  private async cleanUp(cacheKey: string, result: ReplenishResult): Promise<WarmTaskRecord[]> {
    const records = await this.store.listWarmTasks(cacheKey);
    const kept: WarmTaskRecord[] = [];
    const nowMs = this.now().getTime();
    const probed = records.filter((r) => UNCLAIMED.includes(r.status) && r.taskArn !== undefined);
    // updatedAt: when the ARN was recorded ('starting') or the task was seen ready ('ready').
    const { ready, gone } = probed.length
      ? await this.launcher.probe(probed.map((r) => ({ taskArn: r.taskArn as string, knownAt: new Date(r.updatedAt) })))
      : { ready: [], gone: [] };

    for (const r of records) {
      if (r.status === 'claimed') {
        const unreleased = nowMs - Date.parse(r.updatedAt) > this.claimedRetentionMs;
        if (unreleased && (await this.forget(r))) {
          result.removed++;
          this.log.warn('claimed warm task never released; record forgotten', {
            cacheKey,
            warmTaskId: r.id,
            taskArn: r.taskArn,
            workspaceId: r.claimedBy,
          });
        } else if (!unreleased) kept.push(r);
      } else if (r.taskArn === undefined) {
        const stale = nowMs - Date.parse(r.createdAt) > this.launchTimeoutMs;
        if (stale && (await this.forget(r))) {
          result.removed++;
          this.log.warn('warm launch never recorded its task; record forgotten', { cacheKey, warmTaskId: r.id });
        } else if (!stale) kept.push(r);
      } else if (gone.includes(r.taskArn)) {
        if (await this.forget(r)) result.removed++;
      } else if (r.status === 'starting' && ready.includes(r.taskArn)) {
        const updated = await this.patch(r, { status: 'ready' }, ['starting']);
        if (updated) kept.push(updated);
      } else {
        kept.push(r);
      }
    }
    return kept;
  }

  /**
   * Reserve up to `wanted` launches: write that many 'starting' records, re-read the pool
   * (strongly consistent) and withdraw as many of ours as the pool now exceeds `size`.
   *
   * Why this bounds concurrent replenishers: each one writes its records before it reads. Of any
   * set of replenishers, the one that reads last sees every record the others kept (kept records
   * are never withdrawn later), and keeps only what fits under `size` after counting them. So
   * kept launches never exceed size minus the unclaimed tasks that existed. Colliding replenishers
   * may all withdraw (under-launch); the next round or the next replenish fills the pool.
   */
  private async reserve(
    cacheKey: string,
    taskDefinitionArn: string,
    size: number,
    wanted: number,
  ): Promise<WarmTaskRecord[]> {
    const at = this.now().toISOString();
    const mine: WarmTaskRecord[] = Array.from({ length: wanted }, () => ({
      cacheKey,
      id: randomUUID(),
      taskDefinitionArn,
      status: 'starting',
      owner: this.owner,
      createdAt: at,
      updatedAt: at,
      version: 1,
    }));
    for (const r of mine) await this.store.putWarmTask(r);

    const counted = (await this.store.listWarmTasks(cacheKey)).filter((r) => isCounted(r, taskDefinitionArn));
    const excess = Math.max(0, counted.length - size);
    const withdrawn = mine.slice(0, Math.min(excess, mine.length));
    for (const r of withdrawn) await this.store.deleteWarmTask(cacheKey, r.id);
    if (withdrawn.length > 0)
      this.log.info('warm launches withdrawn (pool full)', { cacheKey, withdrawn: withdrawn.length });
    return mine.slice(withdrawn.length);
  }

  /**
   * RunTask for a reserved record and patch its ARN in. If the record vanished meanwhile (drained,
   * or forgotten as stale) the new task belongs to nobody: stop it and report false.
   * A failed RunTask deletes the record and rethrows.
   */
  private async launchReserved(record: WarmTaskRecord): Promise<boolean> {
    let taskArn: string;
    try {
      taskArn = await this.launcher.launch(record.cacheKey, record.taskDefinitionArn, record.id);
    } catch (err) {
      this.log.error('warm launch failed', { cacheKey: record.cacheKey, warmTaskId: record.id, ...errorFields(err) });
      await this.store.deleteWarmTask(record.cacheKey, record.id);
      throw err;
    }
    if (await this.patch(record, { taskArn }, ['starting'])) {
      this.log.info('warm task launched', { cacheKey: record.cacheKey, warmTaskId: record.id, taskArn });
      return true;
    }
    this.log.warn('warm task record vanished during launch; stopping the task', {
      cacheKey: record.cacheKey,
      warmTaskId: record.id,
      taskArn,
    });
    await this.launcher.stop(taskArn, 'warm pool: record removed during launch');
    return false;
  }

  /** Delete an unclaimed record at its version, then stop its task. False if it changed (claimed) or vanished. */
  private async retire(record: WarmTaskRecord, reason: string): Promise<boolean> {
    if (!(await this.forget(record))) return false;
    // An ARN-less record is a launch in flight: its launcher finds the record gone and stops the task.
    if (record.taskArn !== undefined) await this.launcher.stop(record.taskArn, reason);
    this.log.info('warm task retired', {
      cacheKey: record.cacheKey,
      warmTaskId: record.id,
      taskArn: record.taskArn,
      reason,
    });
    return true;
  }

  /** Conditional delete; false when someone else changed or removed the record first. */
  private async forget(record: WarmTaskRecord): Promise<boolean> {
    try {
      await this.store.deleteWarmTask(record.cacheKey, record.id, record.version);
      return true;
    } catch (err) {
      if (isLostRace(err)) return false;
      throw err;
    }
  }

  /** Conditional update; undefined when someone else changed or removed the record first. */
  private async patch(
    record: WarmTaskRecord,
    patch: Patch<WarmTaskRecord>,
    expectedStatus: WarmTaskRecord['status'][],
  ): Promise<WarmTaskRecord | undefined> {
    try {
      return await this.store.updateWarmTask(
        record.cacheKey,
        record.id,
        record.version,
        { ...patch, updatedAt: this.now().toISOString() },
        expectedStatus,
      );
    } catch (err) {
      if (isLostRace(err)) return undefined;
      throw err;
    }
  }
}

/** Counts toward the pool's size: unclaimed and of the current revision. */
function isCounted(r: WarmTaskRecord, taskDefinitionArn: string): boolean {
  return UNCLAIMED.includes(r.status) && r.taskDefinitionArn === taskDefinitionArn;
}

function isLostRace(err: unknown): boolean {
  return err instanceof ConflictError || err instanceof NotFoundError;
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}
