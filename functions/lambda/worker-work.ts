import type { Job, LongWork } from '../../shared/service/long-work.js';
import type { JobHandOff } from './invoke-dispatcher.js';

/**
 * Long work in a Lambda deployment (the service's LongWork port): every job — provisioning, and the
 * fetch/reset operations — is handed to the worker function by ASYNC invoke (invoke-dispatcher.ts):
 * Lambda queues it and the api answers without waiting for the worker (API Gateway caps a request at
 * 30 s). The worker is the only role with the git secrets and the only function with git; it runs the
 * job with `service.runJob` and records the outcome in the state store, where the api reads it.
 */
export class WorkerWork implements LongWork {
  constructor(private readonly jobs: JobHandOff) {}

  dispatch(job: Job): Promise<void> {
    return this.jobs.dispatch(job);
  }

  /** Nothing runs in the background here: jobs run in the worker's own invocation. */
  async drain(): Promise<void> {}
}
