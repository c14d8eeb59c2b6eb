import type { OperationPhase, ProvisionPhase } from '../contract/workspace.js';
import { errorFields, type Logger } from '../log.js';

/**
 * Where long work runs: the one port through which the service hands off provisioning and the long
 * operations of a ready workspace (fetch, reset: recorded as operations, shared/service/operations.ts,
 * that the request waits for a bounded time and the caller polls after that). The local server runs
 * jobs in its own process (InProcessWork; provisioning's phases in sequence, Provisioner.provision). A
 * Lambda deployment (functions/lambda/worker-work.ts) starts provisioning as a Step Functions execution
 * that runs each phase in the worker function (`provision-phase` jobs) and waits in between, and hands
 * operations to the worker by async invoke; the worker runs them with `DefaultWorkspaceService.runJob`.
 * Nothing waits on a hand-off longer than API Gateway's 30 s, and no job is bounded by the request.
 * Jobs are small and serialisable (ids only) and idempotent to re-run against the state store.
 *
 * `here` is the work done in this process: a runner either calls it, or hands the job to a process
 * that does the same there.
 */
export type Job =
  /** Provision a workspace: its phases (Provisioner.runPhase) run in sequence, however the runner spreads them. */
  | { kind: 'provision'; workspaceId: string }
  /** One phase of it, run by a durable workflow (on AWS: the Step Functions state machine), which gets the outcome. */
  | { kind: 'provision-phase'; workspaceId: string; phase: ProvisionPhase }
  /** The workflow gave up on a phase (retries exhausted, `error` its name): fail the workspace truthfully. */
  | { kind: 'provision-failed'; workspaceId: string; error: string }
  /** A fetch or reset: its phases (Operations.run) in sequence, however the runner spreads them. */
  | { kind: 'operation'; workspaceId: string; operationId: string }
  /** One phase of it, run by a durable workflow (on AWS: the operations state machine). */
  | { kind: 'operation-phase'; workspaceId: string; operationId: string; phase: OperationPhase }
  /** The workflow gave up on a phase (`error` its name): fail the operation (and a reset's workspace). */
  | { kind: 'operation-failed'; workspaceId: string; operationId: string; error: string };

export interface LongWork {
  /** Resolves once the job is handed off (not when it is done); throws if it could not be. */
  dispatch(job: Job, here: () => Promise<void>): Promise<void>;
  /** Waits for jobs running in the background of this process (graceful shutdown, tests). */
  drain(): Promise<void>;
}

/** The local server's: a job runs in the background of this process. */
export class InProcessWork implements LongWork {
  private readonly background = new Set<Promise<void>>();

  constructor(private readonly log: Logger) {}

  async dispatch(_job: Job, here: () => Promise<void>): Promise<void> {
    const p = here()
      .catch((e) => this.log.error('background work failed', errorFields(e)))
      .finally(() => this.background.delete(p));
    this.background.add(p);
  }

  async drain(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }
}
