import { BackendUnavailableError } from '../../shared/contract/errors.js';
import type { Job } from '../../shared/service/long-work.js';
import type { JobHandOff } from './invoke-dispatcher.js';

/**
 * The one call the api makes to Step Functions (`StartExecution`), behind an interface so the hand-off
 * is tested with a fake. The deployed client is the AWS SDK's `SFNClient` (`@aws-sdk/client-sfn`).
 */
export interface StartExecutionClient {
  /** Throws an error named `ExecutionAlreadyExists` when an execution of that name exists (and has ended, or another input). */
  startExecution(input: { stateMachineArn: string; name: string; input: string }): Promise<void>;
}

/** The state machine's input (infra/constructs/provision-workflow.ts reads `$.workspaceId`). */
export interface ProvisionExecutionInput {
  workspaceId: string;
}

/**
 * Hands a workspace's provisioning to the Step Functions state machine that runs its phases in the
 * worker (infra/constructs/provision-workflow.ts). The execution is named after the workspace, so a
 * repeated hand-off (a retried request) never starts a second one: Step Functions answers a start
 * with the same name and input as a success while it runs, and `ExecutionAlreadyExists` after — both
 * mean the work is (or was) handed off. Any other failure throws BackendUnavailableError (503).
 */
export class StepFunctionsHandOff implements JobHandOff {
  constructor(
    private readonly client: StartExecutionClient,
    private readonly stateMachineArn: string,
  ) {}

  async dispatch(job: Job): Promise<void> {
    if (job.kind !== 'provision')
      throw new BackendUnavailableError(`the provisioning workflow does not run ${job.kind} jobs`);
    const input: ProvisionExecutionInput = { workspaceId: job.workspaceId };
    try {
      await this.client.startExecution({
        stateMachineArn: this.stateMachineArn,
        name: job.workspaceId,
        input: JSON.stringify(input),
      });
    } catch (cause) {
      if (cause instanceof Error && cause.name === 'ExecutionAlreadyExists') return;
      throw new BackendUnavailableError('could not start the provisioning workflow', cause);
    }
  }
}
