import type { WorkspaceBackend } from '../contract/backend.js';
import { ConflictError, NotFoundError } from '../contract/errors.js';
import type { Patch, StateStore } from '../contract/state.js';
import type { ProgressStep, WorkspaceRecord, WorkspaceStatus } from '../contract/workspace.js';
import { noMetrics, stepKind, type ServiceMetrics } from './metrics.js';

/**
 * True when the record's stored backend ref addresses another workspace's resources (the backend
 * says so: WorkspaceBackend.refBelongsTo). Such a ref is never used: it is how a write to the state
 * store would turn into running as, resetting or deleting another workspace.
 */
export function hasForeignRef(
  backend: Pick<WorkspaceBackend, 'refBelongsTo'> | undefined,
  r: WorkspaceRecord,
): boolean {
  return r.backend !== undefined && backend?.refBelongsTo !== undefined && !backend.refBelongsTo(r.backend, r.id);
}

const MAX_STEPS = 100;

/** What a status change owes the lifecycle webhooks (webhooks/events.ts WebhookEvents). */
export interface TransitionEvents {
  /** The event this change owes, written on the record with the status. */
  owed(ws: WorkspaceRecord, to: WorkspaceStatus): WorkspaceRecord['lastEvent'];
  /** Once the change is written: record the event it owed and hand it to delivery. */
  transitioned(after: WorkspaceRecord): Promise<void>;
}

/**
 * Read-modify-write helpers over the state store. Every write is conditional on the version read;
 * status transitions also on the expected source statuses. Field updates retry on a lost race;
 * transitions do not (a stale writer must see the conflict).
 */
export class WorkspaceRecords {
  constructor(
    private readonly state: StateStore,
    private readonly now: () => Date,
    /** Verifies stored backend refs; every operation on a workspace reads its record through `get`. */
    private readonly backend?: Pick<WorkspaceBackend, 'refBelongsTo'>,
    private readonly metrics: ServiceMetrics = noMetrics,
    /** Lifecycle webhooks: told of every status change that is an event (ready, reset, failed, deleted). */
    private readonly events?: TransitionEvents,
  ) {}

  async get(id: string): Promise<WorkspaceRecord> {
    const r = await this.state.getWorkspace(id);
    if (!r) throw new NotFoundError('workspace', id);
    if (hasForeignRef(this.backend, r)) {
      throw new ConflictError(`workspace '${id}': its stored backend ref does not belong to it; refusing to use it`, {
        details: { status: r.status },
      });
    }
    return r;
  }

  /**
   * Move `from` → `to` in one conditional write; ConflictError when the status is not in `from`.
   * A progress `step` given here lands in the same write, so a watcher that stops at the new status
   * has already seen it. Every status change goes through here, so the lifecycle is counted here
   * (countTransition), once per change actually written.
   */
  async transition(
    id: string,
    from: WorkspaceStatus[],
    to: WorkspaceStatus,
    patch: Patch<WorkspaceRecord> = {},
    step?: { step: string; message: string },
  ): Promise<WorkspaceRecord> {
    const r = await this.get(id);
    if (!from.includes(r.status)) {
      throw new ConflictError(`workspace '${id}' is ${r.status}; this needs it to be ${from.join(' or ')}`, {
        details: { status: r.status },
      });
    }
    const at = this.now().toISOString();
    const steps = step ? { steps: [...r.steps, { at, ...step }].slice(-MAX_STEPS) } : {};
    const owed = this.events?.owed(r, to);
    const after = await this.state.updateWorkspace(
      id,
      r.version,
      { ...patch, ...steps, ...(owed !== undefined ? { lastEvent: owed } : {}), status: to, updatedAt: at },
      from,
    );
    countTransition(this.metrics, r, after, Date.parse(at));
    if (owed !== undefined) await this.events?.transitioned(after);
    return after;
  }

  /** Apply a field update (no status change), re-reading and retrying if another writer got in first. */
  async update(id: string, mutate: (r: WorkspaceRecord) => Patch<WorkspaceRecord>): Promise<WorkspaceRecord> {
    for (let attempt = 0; ; attempt++) {
      const r = await this.get(id);
      try {
        return await this.state.updateWorkspace(id, r.version, { ...mutate(r), updatedAt: this.now().toISOString() });
      } catch (error) {
        if (!(error instanceof ConflictError) || attempt >= 8) throw error;
      }
    }
  }

  async addStep(id: string, step: string, message: string): Promise<ProgressStep> {
    const entry = { at: this.now().toISOString(), step, message };
    await this.update(id, (r) => ({ steps: [...r.steps, entry].slice(-MAX_STEPS) }));
    return entry;
  }
}

/**
 * The lifecycle counts of one written transition: provisioning → ready is a setup (its duration from
 * the accepted record's createdAt), resetting → ready a reset, anything → failed a failure at its step.
 */
function countTransition(metrics: ServiceMetrics, before: WorkspaceRecord, after: WorkspaceRecord, atMs: number): void {
  if (after.status === 'ready' && before.status === 'provisioning')
    metrics.seconds('setupDuration', Math.max(0, atMs - Date.parse(before.createdAt)) / 1000);
  else if (after.status === 'ready' && before.status === 'resetting') metrics.count('resets');
  else if (after.status === 'failed' && before.status !== 'failed') {
    const step = after.failure?.step ?? 'unknown';
    metrics.count(
      'workspaceFailures',
      stepKind(
        step,
        before.plan.repos.map((r) => r.name),
      ),
    );
  }
}
