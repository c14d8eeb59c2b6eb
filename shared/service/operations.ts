import { randomBytes } from 'node:crypto';
import { BackendUnavailableError, ConflictError, NotFoundError, WspError, type ErrorCode } from '../contract/errors.js';
import type { FetchParams, ResetParams } from '../contract/inputs.js';
import type { OperationKind, OperationPhase, OperationRecord } from '../contract/workspace.js';
import type { FetchResult, OperationView, ResetResult, SnapshotResult } from '../contract/views.js';
import { sleep } from '../lib/sleep.js';
import { errorFields } from '../log.js';
import { hostDirs, type ServiceDeps } from './deps.js';
import type { LongWork } from './long-work.js';
import { publicError } from './public-error.js';
import type { WorkspaceRecords } from './records.js';
import type { PhaseStep, SaveProgress } from './workspace-ops.js';

/** Operation ids sort by start time (a listing reads oldest first), then random. */
export const newOperationId = (now: Date): string =>
  `op-${now.getTime().toString(16).padStart(12, '0')}${randomBytes(6).toString('hex')}`;

/** How a waiter in another process than the runner looks again: quick at first, then every second. */
const POLL_MIN_MS = 100;
const POLL_MAX_MS = 1_000;

export type OperationInput =
  | { kind: 'fetch'; input: FetchParams }
  | { kind: 'reset'; input: ResetParams }
  /** Take snapshot record `snapshotId` of the workspace's current state (snapshots.ts). */
  | { kind: 'snapshot'; input: { snapshotId: string } };

/** What runs an operation's phases (the service's WorkspaceOps). */
export interface OperationPhases {
  runPhase(op: OperationRecord, save: SaveProgress): Promise<PhaseStep>;
  /** How the phases of one kind hold the workspace in this process. */
  exclusive<T>(kind: OperationKind, workspaceId: string, fn: () => Promise<T>): Promise<T>;
  /** A reset given up on: its workspace failed (if the reset still holds it); the public error. */
  failReset(workspaceId: string, operationId: string, error: unknown): Promise<WspError>;
}

/** After a phase: the operation ended (its record says how), or the phase to run next after a pause. */
export type OperationOutcome = { done: true } | { done: false; next: OperationPhase; waitSeconds: number };

const DONE: OperationOutcome = { done: true };

/**
 * Long operations on a ready workspace (git fetch, reset) as records: a request starts one, waits a
 * bounded time for it (API Gateway answers in 30 s at most; the service's cap says how long), and
 * answers with its result — or with the operation to poll (`GET …/operations/{oid}`). The work runs
 * wherever long work runs (LongWork: this process, or the Lambda worker), and writes its result or
 * its public error into the record; a waiter in this process is woken at once, others poll.
 *
 * The work is phases (OperationPhase), each idempotent against the records: in this process they run
 * in sequence (`run`); on AWS the operations state machine runs each in its own worker invocation
 * (`runPhase`), so no operation is bounded by Lambda's 15 minutes, and a phase cut short runs again.
 */
export class Operations {
  /** Operations running in this process: a waiter here needs no polling. */
  private readonly here = new Map<string, Promise<void>>();

  constructor(
    private readonly deps: ServiceDeps,
    private readonly records: WorkspaceRecords,
    private readonly work: LongWork,
    private readonly phases: OperationPhases,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /**
   * Start `op` on a workspace and wait up to `waitMs` (capped) for it; the view says whether it ended.
   * `id`: one the caller made beforehand (newOperationId) and wrote where the operation's work finds it.
   */
  async start(
    workspaceId: string,
    op: OperationInput,
    waitMs: number | undefined,
    id?: string,
  ): Promise<OperationView> {
    await this.records.get(workspaceId); // 404 (or a refused record) before anything is started
    const at = this.now();
    const record: OperationRecord = {
      workspaceId,
      id: id ?? newOperationId(at),
      version: 1,
      kind: op.kind,
      status: 'running',
      input: { ...op.input },
      owner: this.deps.instanceId,
      phase: 'begin',
      createdAt: at.toISOString(),
      updatedAt: at.toISOString(),
    };
    await this.deps.state.createOperation(record);
    const job = { kind: 'operation', workspaceId, operationId: record.id } as const;
    try {
      await this.work.dispatch(job, () => this.runHere(workspaceId, record.id));
    } catch (error) {
      this.deps.log.error('operation hand-off failed', { workspaceId, operationId: record.id, ...errorFields(error) });
      await this.settle(record, {
        status: 'failed',
        error: errorBody(publicError(op.kind, error, hostDirs(this.deps))),
      });
      throw error;
    }
    return this.wait(workspaceId, record.id, this.capWait(waitMs));
  }

  /** The operation now, or once it ends within `waitMs` (capped). */
  async get(workspaceId: string, operationId: string, waitMs: number | undefined): Promise<OperationView> {
    await this.records.get(workspaceId);
    return this.wait(workspaceId, operationId, this.capWait(waitMs));
  }

  async list(workspaceId: string): Promise<OperationView[]> {
    await this.records.get(workspaceId);
    return (await this.deps.state.listOperations(workspaceId)).map(operationView);
  }

  /**
   * Run the operation here and now, every phase in sequence (in-process long work, or a worker that
   * received the whole job). A re-delivered job for an operation that has ended does nothing. Never
   * throws for the operation's own failure: that is recorded on it.
   */
  async run(workspaceId: string, operationId: string): Promise<void> {
    const record = await this.deps.state.getOperation(workspaceId, operationId);
    if (record === undefined) throw new NotFoundError('operation', operationId);
    if (record.status !== 'running') return;
    await this.phases.exclusive(record.kind, workspaceId, async () => {
      let phase = record.phase ?? 'begin';
      for (;;) {
        const outcome = await this.step(workspaceId, operationId, phase);
        if (outcome.done) return;
        if (outcome.waitSeconds > 0) await sleep(outcome.waitSeconds * 1000);
        phase = outcome.next;
      }
    });
  }

  /**
   * Run one phase (the operations state machine, one worker invocation each). A phase the record is
   * not at (re-delivered, or done by an earlier run) does nothing and answers the phase it is at; an
   * ended operation answers done.
   */
  async runPhase(workspaceId: string, operationId: string, phase: OperationPhase): Promise<OperationOutcome> {
    const record = await this.deps.state.getOperation(workspaceId, operationId);
    if (record === undefined) throw new NotFoundError('operation', operationId);
    if (record.status !== 'running') return DONE;
    return this.phases.exclusive(record.kind, workspaceId, () => this.step(workspaceId, operationId, phase));
  }

  /** The workflow gave up on a phase (retries spent): the operation failed, and a reset's workspace with it. */
  async giveUp(workspaceId: string, operationId: string, error: string): Promise<void> {
    const record = await this.deps.state.getOperation(workspaceId, operationId);
    if (record?.status !== 'running') return;
    const cause = new BackendUnavailableError(`the operations workflow gave up (${error})`);
    const failure = record.kind === 'reset' ? await this.phases.failReset(workspaceId, operationId, cause) : cause;
    await this.settle(record, { status: 'failed', error: errorBody(failure) });
  }

  private async step(workspaceId: string, operationId: string, phase: OperationPhase): Promise<OperationOutcome> {
    let record = await this.deps.state.getOperation(workspaceId, operationId);
    if (record === undefined) throw new NotFoundError('operation', operationId);
    if (record.status !== 'running') return DONE;
    const at = record.phase ?? 'begin';
    if (at !== phase) return { done: false, next: at, waitSeconds: 0 };
    const save: SaveProgress = async (progress) => {
      const current = record!;
      record = await this.deps.state.updateOperation(workspaceId, operationId, current.version, {
        progress: { ...current.progress, ...progress },
        updatedAt: this.now().toISOString(),
      });
    };
    let step: PhaseStep;
    try {
      step = await this.phases.runPhase(record, save);
    } catch (error) {
      const failure = publicError(record.kind, error, hostDirs(this.deps));
      if (!(error instanceof WspError))
        this.deps.log.error('operation failed', {
          workspaceId,
          operationId,
          kind: record.kind,
          phase,
          ...errorFields(error),
        });
      await this.settle(record, { status: 'failed', error: errorBody(failure) });
      return DONE;
    }
    if ('result' in step) {
      await this.settle(record, { status: 'succeeded', result: { ...step.result } });
      return DONE;
    }
    await this.deps.state.updateOperation(workspaceId, operationId, record.version, {
      phase: step.next,
      progress: { ...record.progress, ...step.progress },
      updatedAt: this.now().toISOString(),
    });
    return { done: false, next: step.next, waitSeconds: step.waitSeconds ?? 0 };
  }

  /** Hand a running operation off again (a provider restart): it goes on at the phase its record names. */
  async resume(workspaceId: string, operationId: string): Promise<void> {
    const job = { kind: 'operation', workspaceId, operationId } as const;
    await this.work.dispatch(job, () => this.runHere(workspaceId, operationId));
  }

  /** Fail one operation if it is still running (its runner is about to be stopped). */
  async failRunning(workspaceId: string, operationId: string, reason: string): Promise<void> {
    const op = await this.deps.state.getOperation(workspaceId, operationId);
    if (op?.status !== 'running') return;
    await this.settle(op, { status: 'failed', error: { code: 'backend_unavailable', message: reason } });
  }

  /**
   * Fail this instance's operations still recorded running (start-up: whoever ran them is gone), or —
   * with `olderThanMs` — any running one not updated for that long (a Lambda worker killed hard).
   */
  async failAbandoned(
    workspaceIds: readonly string[],
    reason: string,
    olderThanMs?: number,
    spare: ReadonlySet<string> = new Set(),
  ): Promise<string[]> {
    const failed: string[] = [];
    const cutoff = olderThanMs === undefined ? undefined : this.now().getTime() - olderThanMs;
    for (const workspaceId of workspaceIds) {
      for (const op of await this.deps.state.listOperations(workspaceId)) {
        if (op.status !== 'running' || this.here.has(op.id) || spare.has(op.id)) continue;
        if (cutoff === undefined ? op.owner !== this.deps.instanceId : Date.parse(op.updatedAt) > cutoff) continue;
        await this.settle(op, { status: 'failed', error: { code: 'backend_unavailable', message: reason } });
        failed.push(op.id);
      }
    }
    return failed;
  }

  private runHere(workspaceId: string, operationId: string): Promise<void> {
    const running = this.run(workspaceId, operationId).finally(() => this.here.delete(operationId));
    this.here.set(operationId, running);
    return running;
  }

  private async wait(workspaceId: string, operationId: string, waitMs: number): Promise<OperationView> {
    const deadline = Date.now() + waitMs;
    const running = this.here.get(operationId);
    if (running !== undefined && waitMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        running.catch(() => undefined),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, waitMs);
        }),
      ]);
      clearTimeout(timer);
    }
    for (let round = 0; ; round++) {
      const record = await this.deps.state.getOperation(workspaceId, operationId);
      if (record === undefined) throw new NotFoundError('operation', operationId);
      const left = deadline - Date.now();
      if (record.status !== 'running' || left <= 0) return operationView(record);
      await sleep(Math.min(left, POLL_MAX_MS, POLL_MIN_MS * 1.5 ** round));
    }
  }

  private capWait(waitMs: number | undefined): number {
    const cap = this.deps.config.operations.maxWaitMs;
    return Math.min(waitMs ?? cap, cap);
  }

  /** Record the end of an operation; a writer that lost the race re-reads (the first end wins). */
  private async settle(
    record: OperationRecord,
    end: Pick<OperationRecord, 'status' | 'result' | 'error'>,
  ): Promise<void> {
    const at = this.now().toISOString();
    let current = record;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await this.deps.state.updateOperation(current.workspaceId, current.id, current.version, {
          ...end,
          updatedAt: at,
          endedAt: at,
        });
        return;
      } catch (error) {
        if (!(error instanceof ConflictError)) throw error;
        const again = await this.deps.state.getOperation(current.workspaceId, current.id);
        if (again === undefined || again.status !== 'running') return;
        current = again;
      }
    }
  }
}

function errorBody(error: WspError): NonNullable<OperationRecord['error']> {
  return {
    code: error.code,
    message: error.message,
    ...(error.details !== undefined ? { details: error.details } : {}),
  };
}

function operationView(r: OperationRecord): OperationView {
  return {
    id: r.id,
    workspaceId: r.workspaceId,
    kind: r.kind as OperationKind,
    status: r.status,
    ...(r.status === 'running' ? { phase: r.phase ?? 'begin' } : {}),
    input: r.input,
    ...(r.result !== undefined ? { result: r.result as unknown as FetchResult | ResetResult | SnapshotResult } : {}),
    ...(r.error !== undefined ? { error: r.error } : {}),
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    ...(r.endedAt !== undefined ? { endedAt: r.endedAt } : {}),
  };
}

/** An operation that failed, as the error the request would have thrown (same code → same HTTP status). */
export function operationError(view: OperationView): WspError {
  const e = view.error ?? { code: 'internal', message: 'operation failed' };
  return new WspError(e.code as ErrorCode, e.message, e.details !== undefined ? { details: e.details } : undefined);
}
