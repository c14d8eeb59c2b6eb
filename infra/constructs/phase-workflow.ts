import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import {
  Choice,
  Condition,
  DefinitionBody,
  Errors,
  Fail,
  JitterType,
  JsonPath,
  LogLevel,
  Pass,
  Result,
  StateMachine,
  StateMachineType,
  Succeed,
  TaskInput,
  Timeout,
  Wait,
  WaitTime,
} from 'aws-cdk-lib/aws-stepfunctions';
import { LambdaInvoke } from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { acknowledgeWildcardResource } from '../nag.js';

export interface PhaseWorkflowProps {
  /** What runs: `provision` (a workspace's provisioning) or `operation` (a fetch or reset). */
  work: 'provision' | 'operation';
  /** The worker function: it runs each phase (`<work>-phase` jobs) and fails the work (`<work>-failed`). */
  worker: IFunction;
  /** The worker's own timeout; a phase invocation is given a little more. */
  workerTimeout: Duration;
  /** Longest the whole work may take (provisioning: longer than the setup script's own timeout). */
  timeout: Duration;
  logRetention: RetentionDays;
}

/** Errors of a worker invocation cut short (its own early timeout, Lambda's hard one, a task timeout). */
const PHASE_TIMEOUT_ERRORS = ['TimeoutError', 'Sandbox.Timedout', 'Lambda.Unknown', Errors.TIMEOUT];

/** Per kind of work: its first phase, the ids its jobs carry (from the execution's input), its comment. */
const WORK = {
  provision: {
    firstPhase: 'start',
    ids: ['workspaceId'],
    comment: 'Provisioning of one workspace, phase by phase (execution name = workspace id)',
  },
  operation: {
    firstPhase: 'begin',
    ids: ['workspaceId', 'operationId'],
    comment: 'A fetch or reset of one workspace, phase by phase (execution name = operation id)',
  },
} as const;

/**
 * Long work as a durable workflow (Step Functions Standard): a loop that runs one phase of it in the
 * worker — provisioning (shared/service/provisioner.ts) or an operation, fetch or reset
 * (shared/service/operations.ts) — then does what the answer says: `done` ends it, else Wait
 * `waitSeconds` and run `next`. The loop's state is the records (each phase is idempotent), so a
 * throttled, failed or timed-out invocation is simply retried; when the retries are spent the Catch
 * has the worker fail the work truthfully (a workspace's compute freed). The api starts one execution
 * per workspace or operation, named after it (functions/lambda/workflow-hand-off.ts).
 *
 *   Begin → RunPhase → WhatNext ─ done ─────────→ Settled
 *              ↑            ├─ next → Pause ──┐
 *              └────────────┼─────────────────┘
 *                           └─ neither → NoOutcome → FailWork → GaveUp
 *   RunPhase (retries spent) ──────────────────────→ FailWork
 */
export class PhaseWorkflow extends Construct {
  readonly stateMachine: StateMachine;

  constructor(scope: Construct, id: string, props: PhaseWorkflowProps) {
    super(scope, id);
    const work = WORK[props.work];
    const ids = Object.fromEntries(work.ids.map((name) => [name, JsonPath.stringAt(`$.${name}`)]));
    const begin = new Pass(this, 'Begin', {
      comment: 'The first phase',
      result: Result.fromObject({ done: false, next: work.firstPhase, waitSeconds: 0 }),
      resultPath: '$.outcome',
    });
    const runPhase = new LambdaInvoke(this, 'RunPhase', {
      comment: 'One phase in the worker; answers {done} or {next, waitSeconds}',
      lambdaFunction: props.worker,
      payload: TaskInput.fromObject({
        kind: `${props.work}-phase`,
        ...ids,
        phase: JsonPath.stringAt('$.outcome.next'),
      }),
      payloadResponseOnly: true,
      resultPath: '$.outcome',
      // Lambda service errors (ServiceException, …) are retried by the construct's default policy.
      retryOnServiceExceptions: true,
      taskTimeout: Timeout.duration(props.workerTimeout.plus(Duration.minutes(1))),
    });
    runPhase.addRetry({
      errors: ['Lambda.TooManyRequestsException'],
      interval: Duration.seconds(5),
      maxAttempts: 8,
      backoffRate: 2,
      maxDelay: Duration.minutes(2),
      jitterStrategy: JitterType.FULL,
    });
    // A phase is idempotent against the state store: one cut short is run again.
    runPhase.addRetry({
      errors: PHASE_TIMEOUT_ERRORS,
      interval: Duration.seconds(10),
      maxAttempts: 2,
      backoffRate: 2,
    });

    const failWork = new LambdaInvoke(this, 'FailWork', {
      comment: 'The workflow gave up: the worker fails the work truthfully (and frees compute it holds)',
      lambdaFunction: props.worker,
      payload: TaskInput.fromObject({
        kind: `${props.work}-failed`,
        ...ids,
        error: JsonPath.stringAt('$.error.Error'),
      }),
      payloadResponseOnly: true,
      resultPath: JsonPath.DISCARD,
      retryOnServiceExceptions: true,
      taskTimeout: Timeout.duration(props.workerTimeout.plus(Duration.minutes(1))),
    });
    failWork.addRetry({
      errors: ['Lambda.TooManyRequestsException', ...PHASE_TIMEOUT_ERRORS],
      interval: Duration.seconds(5),
      maxAttempts: 4,
      backoffRate: 2,
    });
    failWork.next(
      new Fail(this, 'GaveUp', {
        error: props.work === 'provision' ? 'ProvisioningFailed' : 'OperationFailed',
        cause: props.work === 'provision' ? 'see the workspace record' : 'see the operation record',
      }),
    );
    runPhase.addCatch(failWork, { errors: [Errors.ALL], resultPath: '$.error' });

    const noOutcome = new Pass(this, 'NoOutcome', {
      comment: 'The worker answered neither done nor next (a refused job)',
      result: Result.fromObject({ Error: 'NoOutcome' }),
      resultPath: '$.error',
    }).next(failWork);
    const pause = new Wait(this, 'Pause', { time: WaitTime.secondsPath('$.outcome.waitSeconds') }).next(runPhase);
    const whatNext = new Choice(this, 'WhatNext')
      .when(
        Condition.and(Condition.isPresent('$.outcome.done'), Condition.booleanEquals('$.outcome.done', true)),
        new Succeed(this, 'Settled'),
      )
      .when(Condition.and(Condition.isPresent('$.outcome.next'), Condition.isPresent('$.outcome.waitSeconds')), pause)
      .otherwise(noOutcome);

    const logs = new LogGroup(this, 'Logs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.stateMachine = new StateMachine(this, 'StateMachine', {
      comment: work.comment,
      stateMachineType: StateMachineType.STANDARD,
      definitionBody: DefinitionBody.fromChainable(begin.next(runPhase).next(whatNext)),
      timeout: props.timeout,
      tracingEnabled: true,
      // Execution data (inputs, outputs) holds only ids and phase names, never a secret.
      logs: { destination: logs, level: LogLevel.ALL, includeExecutionData: false },
    });
    const role = this.stateMachine.role;
    acknowledgeWildcardResource(
      role,
      `${props.worker.functionArn}:*`,
      "The worker's versions and aliases (CDK's LambdaInvoke grant): the state machine invokes the worker and nothing else.",
    );
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'X-Ray trace segments and CloudWatch Logs log-delivery actions (granted by CDK for tracing and logging) support no resource-level permissions.',
    });
  }
}
