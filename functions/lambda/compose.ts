import { LambdaClient } from '@aws-sdk/client-lambda';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import type { ProviderConfig } from '../../shared/config/schema.js';
import { BackendUnavailableError } from '../../shared/contract/errors.js';
import type { Logger } from '../../shared/log.js';
import type { ServiceDeps } from '../../shared/service/deps.js';
import type { DefaultWorkspaceService } from '../../shared/service/workspace-service.js';
import { ecsBackend, type BackendFactory, type BackendRegistry } from '../compose/backends.js';
import { composeService } from '../compose/compose.js';
import { invocationRemainingMs } from './invocation.js';
import { LambdaInvokeDispatcher, type JobHandOff } from './invoke-dispatcher.js';
import { StepFunctionsHandOff, type StartExecutionClient } from './workflow-hand-off.js';
import { readLambdaSettings, type LambdaSettings } from './settings.js';
import { unavailableBackend } from './unavailable-backend.js';
import { emfMetrics } from './emf-metrics.js';
import { lambdaLogger, lambdaMetrics } from './powertools.js';
import { powertoolsLog } from './powertools-log.js';
import { WorkerWork } from './worker-work.js';

/**
 * The Lambda functions' composition: settings from the environment (settings.ts), then the one
 * composition root (functions/compose/compose.ts) — built once per container (lazily, on the first
 * invocation) and reused by later invocations. Nothing about a workspace is kept here: every call
 * reads its record (and backend handle) from DynamoDB.
 *
 * What is the Lambda's own:
 * - Backends: only the Fargate one is registered (the bundle must not contain dockerode or the local
 *   backend). Any other mode — or an ecs configuration that is incomplete — gets `unavailableBackend`,
 *   which answers 503 with the reason, and creates are refused up front. Tests inject a backend
 *   through `LambdaOverrides.backend`.
 * - Long work (WorkerWork): provisioning starts a Step Functions execution that runs its phases in the
 *   worker function (provision-workflow.ts; no job is bounded by Lambda's 15 min); the operations
 *   fetch and reset go to the worker by async invoke, and their request waits at most
 *   LAMBDA_OPERATION_WAIT_MS for them (the api function has 29 s, API Gateway 30) and answers 202
 *   with the operation to poll after that.
 */

/** How long an api request waits for a fetch/reset it started before answering 202 (whatever the config says). */
export const LAMBDA_OPERATION_WAIT_MS = 20_000;

export interface LambdaOverrides {
  /** Instead of process.env. */
  env?: NodeJS.ProcessEnv;
  /** Instead of the config read from env (tests); the env still supplies instance id, keys, worker name. */
  config?: ProviderConfig;
  /** DynamoDB endpoint (DynamoDB Local in tests); wins over the config's. */
  dynamoEndpoint?: string;
  /** Build the backend (tests: the local backend), whatever the mode. */
  backend?: BackendFactory;
  /** Where jobs go (tests: a hand-off that calls the worker handler). Default: async Lambda invoke. */
  jobs?: JobHandOff;
  /**
   * The Step Functions client provisioning is started with (tests: a fake). Without one, provisioning
   * goes to the worker by async invoke as one job (every phase in one invocation, bounded by its 15 min).
   */
  startExecution?: StartExecutionClient;
  log?: Logger;
}

export interface LambdaContainer {
  settings: LambdaSettings;
  deps: ServiceDeps;
  service: DefaultWorkspaceService;
  close(): Promise<void>;
}

/** The backends a Lambda build contains. */
const LAMBDA_BACKENDS: BackendRegistry = { ecs: ecsBackend };

async function composeLambda(overrides: LambdaOverrides = {}): Promise<LambdaContainer> {
  const env = overrides.env ?? process.env;
  const settings = readLambdaSettings(env);
  const configured = overrides.config ?? settings.config;
  const config: ProviderConfig = {
    ...configured,
    operations: { maxWaitMs: Math.min(configured.operations.maxWaitMs, LAMBDA_OPERATION_WAIT_MS) },
  };
  // Powertools (powertools.ts): the service logs and counts into the current invocation's Logger and Metrics.
  const log = overrides.log ?? powertoolsLog(lambdaLogger);
  const endpoint = overrides.dynamoEndpoint ?? config.state.endpoint;

  let lambdaClient: LambdaClient | undefined;
  const lambda = (): LambdaClient => (lambdaClient ??= new LambdaClient({ region: config.state.region }));
  const composed = await composeService({
    config,
    baseDir: process.cwd(),
    instanceId: settings.instanceId,
    env,
    log,
    metrics: emfMetrics(lambdaMetrics),
    dynamo: {
      ...(endpoint ? { endpoint } : {}),
      ensureTable: settings.ensureTable || overrides.dynamoEndpoint !== undefined,
    },
    backends: overrides.backend ? { [config.mode]: overrides.backend } : LAMBDA_BACKENDS,
    standIn: unavailableBackend,
    // A frozen container runs no timers: the first attempt is made in the invocation, retries by the janitor.
    webhookDelivery: 'inline',
    // Built once per container, used by many invocations: each wait is bounded by the current one's time.
    remainingMs: invocationRemainingMs,
    work: () =>
      new WorkerWork(
        routeJobs(
          settings,
          overrides.startExecution ?? sfnStartExecution(config.state.region),
          overrides.jobs ?? workerDispatcher(settings, lambda),
          log,
        ),
      ),
  });
  return {
    settings,
    deps: composed.deps,
    service: composed.service,
    async close() {
      await composed.close();
      lambdaClient?.destroy();
    },
  };
}

/** Provisioning and operations to their state machines (where configured); every other job to `jobs`. */
function routeJobs(settings: LambdaSettings, sfn: StartExecutionClient, jobs: JobHandOff, log: Logger): JobHandOff {
  const workflows = new StepFunctionsHandOff(sfn, {
    ...(settings.provisionStateMachineArn ? { provision: settings.provisionStateMachineArn } : {}),
    ...(settings.operationStateMachineArn ? { operation: settings.operationStateMachineArn } : {}),
  });
  if (!settings.provisionStateMachineArn)
    log.info('no provisioning state machine (WSP_PROVISION_STATE_MACHINE): provisioning is one worker job');
  if (!settings.operationStateMachineArn)
    log.info('no operations state machine (WSP_OPERATION_STATE_MACHINE): a fetch or reset is one worker job');
  return { dispatch: (job) => (workflows.takes(job) ? workflows : jobs).dispatch(job) };
}

/** The AWS SDK's Step Functions client, made on the first start (most invocations never start one). */
function sfnStartExecution(region: string | undefined): StartExecutionClient {
  let client: SFNClient | undefined;
  return {
    async startExecution(input) {
      client ??= new SFNClient(region ? { region } : {});
      await client.send(new StartExecutionCommand(input));
    },
  };
}

function workerDispatcher(settings: LambdaSettings, client: () => LambdaClient): JobHandOff {
  return {
    dispatch(job) {
      if (settings.workerFunctionName === undefined) {
        return Promise.reject(new BackendUnavailableError('no worker function configured (WSP_WORKER_FUNCTION)'));
      }
      return new LambdaInvokeDispatcher(client(), settings.workerFunctionName).dispatch(job);
    },
  };
}

// ---- one container per Lambda execution environment ----

let current: Promise<LambdaContainer> | undefined;
let configured: LambdaOverrides = {};

/**
 * The container for this execution environment, composed on first use. A failed composition is
 * not cached, so the next invocation retries (e.g. after a transient DynamoDB error).
 */
export function lambdaContainer(): Promise<LambdaContainer> {
  if (current === undefined) {
    const attempt = composeLambda(configured);
    current = attempt;
    attempt.catch(() => {
      if (current === attempt) current = undefined;
    });
  }
  return current;
}

/** Test seam: the next `lambdaContainer()` composes with these overrides. Closes the previous container. */
export async function configureLambda(overrides: LambdaOverrides): Promise<void> {
  const previous = current;
  current = undefined;
  configured = overrides;
  await previous?.then(
    (c) => c.close(),
    () => undefined,
  );
}
