import fs from 'node:fs';
import { LambdaClient } from '@aws-sdk/client-lambda';
import type { WorkspaceBackend } from '../../shared/contract/backend.js';
import { BackendUnavailableError } from '../../shared/contract/errors.js';
import type { ProviderConfig } from '../../shared/config/schema.js';
import { GitBroker } from '../../shared/git/mirror.js';
import { privateDir } from '../../shared/lib/private-dir.js';
import { createLogger, errorFields, type Logger } from '../../shared/log.js';
import { createSecretResolver } from '../../shared/secrets/default-resolver.js';
import { createSecretsManagerClient } from '../../shared/secrets/secrets-manager-client.js';
import type { ServiceDeps } from '../../shared/service/deps.js';
import { DefaultWorkspaceService } from '../../shared/service/workspace-service.js';
import { createDynamoClients } from '../../shared/state/client.js';
import { DynamoStateStore } from '../../shared/state/dynamo-store.js';
import { DynamoWarmTaskStore } from '../../shared/state/dynamo-warm-tasks.js';
import { ensureTable } from '../../shared/state/table.js';
import { LambdaInvokeDispatcher, type JobHandOff } from './invoke-dispatcher.js';
import { readLambdaSettings, type LambdaSettings } from './settings.js';
import { unavailableBackend } from './unavailable-backend.js';
import { invokeWorkerGitOp, type GitOpAnswer } from './git-ops.js';
import { WorkerWork } from './worker-work.js';
import type { GitOp } from '../../shared/service/long-work.js';

/**
 * The composition for Lambda: config from the environment, the DynamoDB state store, secret
 * sources, the backend for the mode, the git broker, the service and where its long work runs — built
 * once per container (lazily, on the first invocation) and reused by later invocations. Nothing
 * about a workspace is kept here: every call reads its record (and backend handle) from DynamoDB.
 *
 * Backends are never imported statically (the bundle must not contain dockerode or the local
 * backend). Mode `ecs` builds the Fargate backend from the WSP_ECS_* environment (settings.ts);
 * any other mode — or an ecs configuration that is incomplete — gets `unavailableBackend`, which
 * answers 503 with the reason. Tests inject a backend through `LambdaOverrides.backend`.
 */

export interface LambdaOverrides {
  /** Instead of process.env. */
  env?: NodeJS.ProcessEnv;
  /** Instead of the config read from env (tests); the env still supplies instance id, keys, worker name. */
  config?: ProviderConfig;
  /** DynamoDB endpoint (DynamoDB Local in tests); wins over the config's. */
  dynamoEndpoint?: string;
  /** Instead of invoking the worker function for git operations (tests: run them in process). */
  gitOps?: (op: GitOp) => Promise<GitOpAnswer>;
  /** Build the backend (tests: the local backend). Receives the data dir and the instance id (owner). */
  backend?: (context: { dataDir: string; instanceId: string; log: Logger }) => Promise<WorkspaceBackend>;
  /** Where provisioning jobs go (tests: a hand-off that calls the worker handler). Default: async Lambda invoke. */
  jobs?: JobHandOff;
  log?: Logger;
}

export interface LambdaContainer {
  settings: LambdaSettings;
  deps: ServiceDeps;
  service: DefaultWorkspaceService;
  close(): Promise<void>;
}

export async function composeLambda(overrides: LambdaOverrides = {}): Promise<LambdaContainer> {
  const env = overrides.env ?? process.env;
  const settings = readLambdaSettings(env);
  const config = overrides.config ?? settings.config;
  const log = overrides.log ?? createLogger({ svc: 'wsp-lambda' });
  const dataDir = config.dataDir;
  const { instanceId } = settings;
  // 0711: a sandboxed workspace user (another uid) must traverse to its own dir; nothing here is listable.
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o711 });
  fs.chmodSync(dataDir, 0o711);

  const endpoint = overrides.dynamoEndpoint ?? config.state.endpoint;
  const dynamo = createDynamoClients({ region: config.state.region, ...(endpoint ? { endpoint } : {}), env });
  if (settings.ensureTable || overrides.dynamoEndpoint !== undefined)
    await ensureTable(dynamo.client, config.state.tableName);
  const state = new DynamoStateStore(dynamo.doc, config.state.tableName);

  // The Secrets Manager client is cheap to build and needed only by the worker (the provisioner).
  const secrets = createSecretResolver({
    env,
    secretsManagerClient: createSecretsManagerClient({ region: config.state.region }),
  });
  // Why this container cannot reach workspaces (undefined: it can): create then refuses up front.
  let unavailable: string | undefined;
  let backend: WorkspaceBackend;
  if (overrides.backend)
    backend = await overrides.backend({ dataDir, instanceId, log: log.child({ part: 'backend' }) });
  else if (config.mode === 'ecs') {
    try {
      // Imported lazily: only the Fargate backend is ever bundled into a function (never dockerode).
      const { createEcsBackendFromConfig } = await import('../../shared/backends/ecs/factory.js');
      backend = createEcsBackendFromConfig(config, {
        owner: instanceId,
        dataDir,
        log: log.child({ part: 'ecs-backend' }),
        warmTasks: new DynamoWarmTaskStore(dynamo.doc, config.state.tableName),
      });
    } catch (error) {
      unavailable = `mode ecs is not configured: ${(error as Error).message}`;
      log.error('the Fargate backend could not be built', errorFields(error));
      backend = unavailableBackend(config.mode, unavailable);
    }
  } else {
    unavailable = `mode ${config.mode} is not available in this build`;
    backend = unavailableBackend(config.mode, unavailable);
  }
  const broker = new GitBroker({
    mirrorsDir: privateDir(dataDir, 'mirrors'),
    resolveSecret: (ref: string) => secrets.resolve(ref),
    log: log.child({ part: 'git' }),
  });

  let lambdaClient: LambdaClient | undefined;
  const lambda = (): LambdaClient => (lambdaClient ??= new LambdaClient({ region: config.state.region }));
  // The api function (it knows a worker) hands git operations to it; the worker runs them itself. A
  // container whose backend is unavailable runs them here (they fail as every backend call does).
  const gitOps =
    unavailable !== undefined
      ? undefined
      : (overrides.gitOps ??
        (settings.workerFunctionName !== undefined
          ? invokeWorkerGitOp(lambda(), settings.workerFunctionName)
          : undefined));
  const deps: ServiceDeps = {
    config,
    baseDir: process.cwd(),
    instanceId,
    state,
    backend,
    broker,
    secrets,
    scratchDir: privateDir(dataDir, 'scratch'),
    log,
    work: new WorkerWork(overrides.jobs ?? workerDispatcher(settings, lambda), gitOps),
    ...(unavailable !== undefined ? { backendUnavailable: unavailable } : {}),
  };
  const service = new DefaultWorkspaceService(deps);
  return {
    settings,
    deps,
    service,
    async close() {
      dynamo.client.destroy();
      lambdaClient?.destroy();
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
