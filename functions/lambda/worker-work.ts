import type { GitOp, GitOpResult, Job, LongWork } from '../../shared/service/long-work.js';
import { fromAnswer, type GitOpAnswer } from './git-ops.js';
import type { JobHandOff } from './invoke-dispatcher.js';

/**
 * Long work in a Lambda deployment (the service's LongWork port): the worker function runs it.
 * - A provisioning job is handed off by ASYNC invoke (invoke-dispatcher.ts): Lambda queues it and
 *   the API answers 202 without waiting (API Gateway caps a request at 30 s; provisioning is longer).
 * - A git operation (fetch, reset) by SYNCHRONOUS invoke (git-ops.ts): the api waits for the
 *   worker's answer and returns it — the worker is the only role with the git secrets and git.
 * Without `gitOps` (a container with no worker to ask, e.g. the worker itself) operations run here.
 */
export class WorkerWork implements LongWork {
  constructor(
    private readonly jobs: JobHandOff,
    private readonly gitOps: ((op: GitOp) => Promise<GitOpAnswer>) | undefined,
  ) {}

  dispatch(job: Job): Promise<void> {
    return this.jobs.dispatch(job);
  }

  async run<T extends GitOpResult>(op: GitOp, here: () => Promise<T>): Promise<T> {
    if (this.gitOps === undefined) return here();
    // The worker ran the service's own runGitOp: its answer has the operation's result type.
    return fromAnswer(await this.gitOps(op)) as T;
  }

  /** Nothing runs in the background here: jobs run in the worker's own invocation. */
  async drain(): Promise<void> {}
}
