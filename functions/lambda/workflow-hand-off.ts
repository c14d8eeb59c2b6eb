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

/**
 * A state machine's input (infra/constructs/phase-workflow.ts reads these ids and passes them on to
 * every phase): the workspace, and for an operation the operation.
 */
export interface WorkflowExecutionInput {
  workspaceId: string;
  operationId?: string;
}

/** The state machines this deployment has (settings: WSP_PROVISION_STATE_MACHINE, WSP_OPERATION_STATE_MACHINE). */
export interface WorkflowArns {
  provision?: string;
  operation?: string;
}

/**
 * Hands long work to the Step Functions state machines that run it phase by phase in the worker
 * (infra/constructs/phase-workflow.ts): a workspace's provisioning (execution named after the
 * workspace) and a fetch or reset operation (named after the operation). A repeated hand-off (a
 * retried request) never starts a second execution: Step Functions answers a start with the same name
 * and input as a success while it runs, and `ExecutionAlreadyExists` after — both mean the work is (or
 * was) handed off. Any other failure throws BackendUnavailableError (503).
 */
export class StepFunctionsHandOff implements JobHandOff {
  constructor(
    private readonly client: StartExecutionClient,
    private readonly arns: WorkflowArns,
  ) {}

  /** Whether a job of this kind goes to a state machine here. */
  takes(job: Job): boolean {
    return (
      (job.kind === 'provision' && this.arns.provision !== undefined) ||
      (job.kind === 'operation' && this.arns.operation !== undefined)
    );
  }

  async dispatch(job: Job): Promise<void> {
    const target =
      job.kind === 'provision' && this.arns.provision
        ? { arn: this.arns.provision, name: job.workspaceId, input: { workspaceId: job.workspaceId } }
        : job.kind === 'operation' && this.arns.operation
          ? {
              arn: this.arns.operation,
              name: job.operationId,
              input: { workspaceId: job.workspaceId, operationId: job.operationId },
            }
          : undefined;
    if (!target) throw new BackendUnavailableError(`no state machine here runs ${job.kind} jobs`);
    const input: WorkflowExecutionInput = target.input;
    try {
      await this.client.startExecution({
        stateMachineArn: target.arn,
        name: target.name,
        input: JSON.stringify(input),
      });
    } catch (cause) {
      if (cause instanceof Error && cause.name === 'ExecutionAlreadyExists') return;
      throw new BackendUnavailableError(
        `could not start the ${job.kind === 'provision' ? 'provisioning' : 'operations'} workflow`,
        cause,
      );
    }
  }
}
