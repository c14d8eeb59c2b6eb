import { BadRequestError, ConflictError, NotFoundError, StepFailedError } from '../contract/errors.js';
import type { CreateSnapshotParams, ForkParams, OperationWaitParams } from '../contract/inputs.js';
import type { ForkView, SnapshotResult, SnapshotView } from '../contract/views.js';
import type { SnapshotKind, SnapshotRecord, WorkspaceRecord } from '../contract/workspace.js';
import { bestEffort } from '../lib/best-effort.js';
import { errorFields } from '../log.js';
import { hostDirs, type ServiceDeps } from './deps.js';
import { newSnapshotId, newWorkspaceId } from './ids.js';
import { newOperationId, operationError, type Operations } from './operations.js';
import { publicError } from './public-error.js';
import type { WorkspaceRecords } from './records.js';
import { workspaceView } from './views.js';

/** A fork point nobody made workspaces from (the request died between the two) goes after this. */
const UNCLAIMED_FORK_POINT_MS = 60 * 60_000;

/** What creates workspaces (the service's createWorkspace path, shared with `fromSnapshot`). */
export type CreateFromSnapshot = (
  snapshot: SnapshotRecord,
  options: { id: string; labels: Record<string, string>; ttlSeconds?: number; forkedFrom?: string },
) => Promise<WorkspaceRecord>;

/**
 * Snapshots of a workspace's CURRENT state (issue 13): user snapshots (named, kept until deleted) and
 * fork points (what a fork's copies are made from, kept while one of them is still being made).
 *
 * Taking one is a 'snapshot' operation on the source (operations.ts): it runs wherever long work runs
 * (this process; the Lambda worker through the operations state machine — a Fargate layer append takes
 * minutes), in the source's gate beside commands (they keep running: the copy is of the files at that
 * moment, crash-consistent where a command writes meanwhile) but never beside a reset, fetch or delete of
 * the source in this process; across processes a reset that overlapped the copy fails it (409). The
 * backend snapshot is secret-scanned like a cache entry (every value the resolver handed out): one hit
 * and it is deleted and the snapshot failed. Workspaces made from it get its files and git state (never
 * its processes: a snapshot holds files only) and take their own baseline from it, so a reset returns
 * to the fork point.
 */
export class Snapshots {
  constructor(
    private readonly deps: ServiceDeps,
    private readonly records: WorkspaceRecords,
    private readonly operations: Operations,
    private readonly createFrom: CreateFromSnapshot,
  ) {}

  /** A user snapshot: answered once taken (or 'creating' after the wait: poll GET /snapshots/{sid}). */
  async create(sourceId: string, input: CreateSnapshotParams, wait: OperationWaitParams): Promise<SnapshotView> {
    const record = await this.take(sourceId, 'user', input, wait.waitMs);
    return snapshotView(record);
  }

  /**
   * `count` workspaces from the source's current state: the fork point is taken first (waited for up to
   * `waitMs`; a failure within it is this request's error and makes no workspace), then the workspaces
   * are created from it — each provisions by itself, waiting for the fork point if it is still taken.
   */
  async fork(sourceId: string, input: ForkParams, wait: OperationWaitParams): Promise<ForkView> {
    const max = this.deps.config.fork.maxCount;
    if (input.count < 1 || input.count > max)
      throw new BadRequestError(`count must be between 1 and ${max} (config fork.maxCount)`, [
        { path: 'body.count', message: `1..${max}` },
      ]);
    const point = await this.take(sourceId, 'fork', { forkCount: input.count }, wait.waitMs);
    const workspaces = [];
    for (let i = 0; i < input.count; i++)
      workspaces.push(
        workspaceView(
          await this.createFrom(point, {
            id: newWorkspaceId(),
            labels: input.labels ?? {},
            ...(input.ttlSeconds !== undefined ? { ttlSeconds: input.ttlSeconds } : {}),
            forkedFrom: sourceId,
          }),
        ),
      );
    return { snapshot: snapshotView(point), workspaces };
  }

  async get(id: string): Promise<SnapshotView> {
    return snapshotView(await this.require(id));
  }

  async list(): Promise<SnapshotView[]> {
    const out: SnapshotView[] = [];
    for (const r of await this.deps.state.listSnapshots()) out.push(snapshotView(await this.settle(r)));
    return out;
  }

  /**
   * Remove a snapshot (record, then the backend's copy). Refused (409) while it is being taken or a
   * workspace is still being made from it; workspaces already made from it keep their own baselines.
   */
  async delete(id: string): Promise<void> {
    const r = await this.require(id);
    if (r.status === 'creating') throw new ConflictError(`snapshot '${id}' is being taken; delete it when that ends`);
    const users = await this.provisioningFrom(id);
    if (users.length > 0)
      throw new ConflictError(`snapshot '${id}' is in use: workspace ${users.join(', ')} is being made from it`, {
        details: { workspaces: users },
      });
    await this.remove(r);
  }

  /** A snapshot record, its status brought up to date (see settle); NotFoundError when unknown. */
  async require(id: string): Promise<SnapshotRecord> {
    const r = await this.deps.state.getSnapshot(id);
    if (!r) throw new NotFoundError('snapshot', id);
    return this.settle(r);
  }

  /**
   * The 'snapshot' operation's one phase: take the backend snapshot of the source's current state,
   * refuse it when a reset overlapped the copy or a secret is inside, record it ready. A re-run (its
   * worker cut short) takes it again under the same name (replacing a half-recorded one).
   */
  async takePhase(workspaceId: string, snapshotId: string): Promise<SnapshotResult> {
    const snap = await this.deps.state.getSnapshot(snapshotId);
    if (!snap) throw new NotFoundError('snapshot', snapshotId);
    if (snap.status === 'ready') return { snapshotId, sizeBytes: snap.sizeBytes ?? 0 };
    if (snap.status === 'failed')
      throw new ConflictError(`snapshot '${snapshotId}' failed: ${snap.failure?.message ?? 'unknown'}`);
    try {
      return await this.takeNow(workspaceId, snap);
    } catch (error) {
      const failure = publicError('snapshot', error, hostDirs(this.deps));
      await this.fail(snapshotId, failure.message);
      throw failure;
    }
  }

  private async takeNow(workspaceId: string, snap: SnapshotRecord): Promise<SnapshotResult> {
    const { backend, secrets } = this.deps;
    const ws = await this.ready(workspaceId);
    const startedAt = new Date().toISOString();
    const ref = await backend.open(ws.backend!, ws.plan).snapshots.take('snapshot', snap.id);
    // Named on the record at once: from here on the reconciler sees it referenced, a delete finds it.
    let current = await this.patch(snap.id, { snapshot: ref });
    try {
      const after = await this.records.get(workspaceId);
      if (after.status !== 'ready' || after.steps.some((s) => s.step === 'reset' && s.at >= startedAt))
        throw new ConflictError(
          `workspace '${workspaceId}' was reset or deleted while the snapshot was taken; take it again`,
        );
      const hits = await backend.snapshots.scan(ref, secrets.knownSecretValues());
      if (hits.length > 0) {
        this.deps.log.error('snapshot refused: secret found', {
          workspaceId,
          snapshotId: snap.id,
          places: hits.length,
        });
        throw new ConflictError(
          `snapshot refused: a secret value was found in the workspace (${hits.length} place(s)); remove it and try again`,
        );
      }
      const sizeBytes = await backend.snapshots.sizeBytes(ref);
      current = await this.patch(snap.id, { status: 'ready', sizeBytes });
      await this.records.addStep(workspaceId, 'snapshot', `snapshot ${snap.id} taken (${snap.kind})`);
      return { snapshotId: current.id, sizeBytes };
    } catch (error) {
      await bestEffort(backend.snapshots.delete(ref), this.deps.log, 'deleting a refused snapshot');
      throw error;
    }
  }

  /**
   * Janitor: fork points of this instance that nothing is being made from any more (every copy made
   * and settled — ready ones have baselines of their own — or the copies not all made within an hour:
   * the request died) are removed; snapshots whose operation ended without them (its worker lost) are
   * failed.
   */
  async sweep(now = new Date()): Promise<string[]> {
    const removed: string[] = [];
    for (const listed of await this.deps.state.listSnapshots()) {
      if (listed.owner !== this.deps.instanceId) continue;
      try {
        const r = await this.settle(listed);
        if (r.kind !== 'fork' || r.status === 'creating') continue;
        if ((await this.provisioningFrom(r.id)).length > 0) continue;
        const made = await this.madeFrom(r.id);
        const age = now.getTime() - Date.parse(r.createdAt);
        if (r.status === 'ready' && made < (r.forkCount ?? 1) && age < UNCLAIMED_FORK_POINT_MS) continue;
        await this.remove(r);
        removed.push(r.id);
      } catch (error) {
        this.deps.log.warn('snapshot sweep: not removed', { snapshotId: listed.id, ...errorFields(error) });
      }
    }
    return removed;
  }

  // ---- helpers ----

  private async take(
    sourceId: string,
    kind: SnapshotKind,
    input: CreateSnapshotParams & { forkCount?: number },
    waitMs: number | undefined,
  ): Promise<SnapshotRecord> {
    if (this.deps.backendUnavailable !== undefined) await this.records.get(sourceId); // 404 first, then the backend's 503
    const ws = await this.ready(sourceId);
    const at = new Date();
    const operationId = newOperationId(at);
    const record: SnapshotRecord = {
      id: newSnapshotId(),
      version: 1,
      status: 'creating',
      kind,
      ...(input.name !== undefined ? { name: input.name } : {}),
      ...(input.forkCount !== undefined ? { forkCount: input.forkCount } : {}),
      sourceWorkspaceId: sourceId,
      operationId,
      backendKind: this.deps.backend.kind,
      plan: ws.plan,
      repos: ws.repos,
      labels: input.labels ?? {},
      owner: this.deps.instanceId,
      createdAt: at.toISOString(),
      updatedAt: at.toISOString(),
    };
    await this.deps.state.createSnapshot(record);
    const op = await this.operations.start(
      sourceId,
      { kind: 'snapshot', input: { snapshotId: record.id } },
      waitMs,
      operationId,
    );
    if (op.status === 'failed') throw operationError(op);
    return this.require(record.id);
  }

  /** The source must be ready (a snapshot of a half-reset or provisioning home is no state at all). */
  private async ready(id: string): Promise<WorkspaceRecord> {
    const ws = await this.records.get(id);
    if (ws.status !== 'ready' || !ws.backend)
      throw new ConflictError(`workspace '${id}' is ${ws.status}; a snapshot or fork needs it ready`, {
        details: { status: ws.status },
      });
    if (ws.diskExceeded)
      throw new ConflictError(`workspace '${id}' is over its disk limit; reset it before a snapshot or fork`, {
        details: { status: ws.status, diskExceeded: ws.diskExceeded },
      });
    return ws;
  }

  /**
   * A 'creating' snapshot whose operation ended without making it ready (a worker lost, the workflow
   * gave up) is failed with that operation's error: nothing else would ever settle it.
   */
  private async settle(r: SnapshotRecord): Promise<SnapshotRecord> {
    if (r.status !== 'creating') return r;
    const op = await this.deps.state.getOperation(r.sourceWorkspaceId, r.operationId);
    if (op?.status === 'running') return r;
    const again = await this.deps.state.getSnapshot(r.id);
    if (again?.status !== 'creating') return again ?? r;
    const message = op?.error?.message ?? 'the operation taking it ended without it';
    await this.fail(r.id, message);
    return (await this.deps.state.getSnapshot(r.id)) ?? r;
  }

  private async fail(id: string, message: string): Promise<void> {
    await bestEffort(
      this.patch(id, { status: 'failed', failure: { step: 'snapshot', message } }),
      this.deps.log,
      'marking a snapshot failed',
    );
  }

  /** Record first (a conditional delete: one that changed meanwhile is left), then the backend's copy. */
  private async remove(r: SnapshotRecord): Promise<void> {
    await this.deps.state.deleteSnapshot(r.id, r.version);
    if (r.snapshot) await this.deps.backend.snapshots.delete(r.snapshot);
  }

  private async patch(id: string, patch: Partial<SnapshotRecord>): Promise<SnapshotRecord> {
    for (let attempt = 0; ; attempt++) {
      const r = await this.deps.state.getSnapshot(id);
      if (!r) throw new NotFoundError('snapshot', id);
      try {
        return await this.deps.state.updateSnapshot(id, r.version, { ...patch, updatedAt: new Date().toISOString() });
      } catch (error) {
        if (!(error instanceof ConflictError) || attempt >= 8) throw error;
      }
    }
  }

  /** Workspaces still being made from the snapshot (they create their compute from it). */
  private async provisioningFrom(id: string): Promise<string[]> {
    const busy = await this.deps.state.listWorkspaces({ status: ['provisioning'] });
    return busy.filter((w) => w.status === 'provisioning' && w.fromSnapshot === id).map((w) => w.id);
  }

  private async madeFrom(id: string): Promise<number> {
    return (await this.deps.state.listWorkspaces()).filter((w) => w.fromSnapshot === id).length;
  }
}

/** Every backend snapshot a snapshot record names (the reconciler keeps them). */
export async function snapshotRefsInUse(deps: Pick<ServiceDeps, 'state'>): Promise<string[]> {
  return (await deps.state.listSnapshots()).flatMap((r) => (r.snapshot ? [JSON.stringify(r.snapshot)] : []));
}

function snapshotView(r: SnapshotRecord): SnapshotView {
  return {
    id: r.id,
    status: r.status,
    kind: r.kind,
    ...(r.name !== undefined ? { name: r.name } : {}),
    sourceWorkspaceId: r.sourceWorkspaceId,
    operationId: r.operationId,
    labels: r.labels,
    ...(r.sizeBytes !== undefined ? { sizeBytes: r.sizeBytes } : {}),
    ...(r.failure ? { failure: r.failure } : {}),
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}

/** A workspace made from a snapshot that cannot be (the snapshot failed or went): why, for its failure. */
export function snapshotUnusable(r: SnapshotRecord | undefined, id: string): StepFailedError {
  if (!r) return new StepFailedError('snapshot', `snapshot '${id}' is gone`);
  return new StepFailedError('snapshot', `snapshot '${id}' failed: ${r.failure?.message ?? 'unknown'}`);
}
