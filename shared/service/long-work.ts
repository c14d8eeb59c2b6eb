import { errorFields, type Logger } from '../log.js';

/**
 * Where long work runs: the one port through which the service hands off provisioning and the long
 * operations of a ready workspace (fetch, reset: recorded as operations, shared/service/operations.ts,
 * that the request waits for a bounded time and the caller polls after that). The local server runs
 * jobs in its own process (InProcessWork); a Lambda deployment hands them to its worker function by
 * async invoke (functions/lambda/worker-work.ts), which runs them with `DefaultWorkspaceService.runJob`.
 * Nothing waits on a hand-off longer than API Gateway's 30 s, and no job is bounded by the request.
 * Jobs are small and serialisable (ids only) and idempotent to re-run against the state store.
 *
 * `here` is the work done in this process: a runner either calls it, or hands the job to a process
 * that does the same there.
 */
export type Job =
  | { kind: 'provision'; workspaceId: string }
  | { kind: 'operation'; workspaceId: string; operationId: string };

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
