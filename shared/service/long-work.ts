import type { FetchParams, ResetParams } from '../contract/inputs.js';
import type { FetchResult, ResetResult } from '../contract/views.js';
import { errorFields, type Logger } from '../log.js';

/**
 * Where long work runs: the one port through which the service starts provisioning (a job: fire
 * and forget) and runs the git operations of a ready workspace (fetch, reset: the caller waits for
 * the answer). The local server runs both in its own process (InProcessWork); a Lambda deployment
 * hands both to its worker function (functions/lambda/worker-work.ts), which runs them with
 * `DefaultWorkspaceService.runJob` / `runGitOp`. Jobs and ops are small and serialisable (ids and
 * the validated request body); a job is idempotent to re-run against the state store.
 *
 * `here` is the work done in this process: a runner either calls it, or hands the work to a process
 * that does the same there.
 */
export type Job = { kind: 'provision'; workspaceId: string };

export type GitOp =
  | { kind: 'fetch'; workspaceId: string; input: FetchParams }
  | { kind: 'reset'; workspaceId: string; input: ResetParams };

export type GitOpResult = FetchResult | ResetResult;

export interface LongWork {
  /** Resolves once the job is handed off (not when it is done); throws if it could not be. */
  dispatch(job: Job, here: () => Promise<void>): Promise<void>;
  /** Resolves with the operation's answer; a domain error is thrown as itself. */
  run<T extends GitOpResult>(op: GitOp, here: () => Promise<T>): Promise<T>;
  /** Waits for jobs running in the background of this process (graceful shutdown, tests). */
  drain(): Promise<void>;
}

/** The local server's: a job runs in the background of this process, an operation inline. */
export class InProcessWork implements LongWork {
  private readonly background = new Set<Promise<void>>();

  constructor(private readonly log: Logger) {}

  async dispatch(_job: Job, here: () => Promise<void>): Promise<void> {
    const p = here()
      .catch((e) => this.log.error('background work failed', errorFields(e)))
      .finally(() => this.background.delete(p));
    this.background.add(p);
  }

  run<T extends GitOpResult>(_op: GitOp, here: () => Promise<T>): Promise<T> {
    return here();
  }

  async drain(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }
}
