import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import { BackendUnavailableError } from '../../shared/contract/errors.js';
import type { Job } from '../../shared/service/long-work.js';

/** How the api function hands a job to the worker (tests replace it: LambdaOverrides.jobs). */
export interface JobHandOff {
  /** Resolves once the job is handed off (not when it is done). */
  dispatch(job: Job): Promise<void>;
}

/**
 * Hands a job to the worker function with an asynchronous invoke (`InvocationType: 'Event'`): Lambda
 * queues it and answers 202 at once, retries a failed run twice, and the API request returns without
 * waiting (API Gateway caps a request at 30 s; provisioning takes longer). The job is only ids, so the
 * payload never carries a secret. A failed hand-off throws BackendUnavailableError (503) with the cause.
 */
export class LambdaInvokeDispatcher implements JobHandOff {
  constructor(
    private readonly client: Pick<LambdaClient, 'send'>,
    /** Name or ARN of the worker function. */
    private readonly functionName: string,
  ) {}

  async dispatch(job: Job): Promise<void> {
    let status: number | undefined;
    try {
      const out = await this.client.send(
        new InvokeCommand({
          FunctionName: this.functionName,
          InvocationType: 'Event',
          Payload: new TextEncoder().encode(JSON.stringify(job)),
        }),
      );
      status = out.StatusCode;
    } catch (cause) {
      throw new BackendUnavailableError(`could not hand the ${job.kind} job to the worker function`, cause);
    }
    if (status !== 202)
      throw new BackendUnavailableError(
        `the worker function did not accept the ${job.kind} job (status ${status ?? 'none'})`,
      );
  }
}
