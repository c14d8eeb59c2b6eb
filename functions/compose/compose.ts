import fs from 'node:fs';
import type { ProviderConfig } from '../../shared/config/schema.js';
import type { WorkspaceBackend } from '../../shared/contract/backend.js';
import { BadRequestError } from '../../shared/contract/errors.js';
import { GitBroker } from '../../shared/git/mirror.js';
import { privateDir } from '../../shared/lib/private-dir.js';
import { errorFields, type Logger } from '../../shared/log.js';
import { createSecretResolver } from '../../shared/secrets/default-resolver.js';
import { createSecretsManagerClient } from '../../shared/secrets/secrets-manager-client.js';
import type { ServiceDeps } from '../../shared/service/deps.js';
import type { LongWork } from '../../shared/service/long-work.js';
import type { ServiceMetrics } from '../../shared/service/metrics.js';
import { DefaultWorkspaceService } from '../../shared/service/workspace-service.js';
import { createDynamoClients } from '../../shared/state/client.js';
import { DynamoEventStore } from '../../shared/state/dynamo-events.js';
import { DynamoStateStore } from '../../shared/state/dynamo-store.js';
import { DynamoWarmTaskStore } from '../../shared/state/dynamo-warm-tasks.js';
import { ensureTable } from '../../shared/state/table.js';
import type { BackendContext, BackendRegistry } from './backends.js';

/**
 * The one composition root, used by the local server (functions/server/provider.ts) and the Lambda
 * functions (functions/lambda/compose.ts): data dir, state store (DynamoDB protocol) and the warm
 * pool's records, secret sources, the backend for `config.mode` from the entry point's registry,
 * the git broker, the service. What differs stays with the entry point and comes in as options:
 * instance id, where the state store is, which backends the build contains, what to do when the
 * backend cannot be built, and where long work runs.
 */

export interface CompositionOptions {
  config: ProviderConfig;
  /** Relative local paths in the config resolve against this. */
  baseDir: string;
  /** This provider instance (or Lambda deployment): the owner written on every record. */
  instanceId: string;
  /** For `env:` secrets and AWS credentials. */
  env: NodeJS.ProcessEnv;
  log: Logger;
  /** Where the service's counters go: the server's Prometheus registry, the Lambda's EMF. Default: nowhere. */
  metrics?: ServiceMetrics;
  /** Where the state store is: unset endpoint → the SDK's own (AWS, AWS_ENDPOINT_URL_*); socketPath: the embedded store's. */
  dynamo: { endpoint?: string; socketPath?: string; ensureTable: boolean };
  backends: BackendRegistry;
  /**
   * A backend this build lacks or cannot build. Unset: composition throws (the server does not
   * start). Set: what it returns stands in (Lambda: every backend call answers 503 with `reason`,
   * reads of the state store keep working) and the service refuses creates with `reason`.
   */
  standIn?: (mode: string, reason: string) => WorkspaceBackend;
  /** Where long work runs, knowing whether the backend is unavailable. Default: in this process. */
  work?: (backendUnavailable: string | undefined) => LongWork;
  /** How webhook events are delivered (ServiceDeps.webhookDelivery); default background. */
  webhookDelivery?: 'background' | 'inline';
  /** What is left of the current invocation (Lambda), for backends that must not wait past it. Default: no deadline. */
  remainingMs?: () => number | undefined;
}

export interface Composition {
  deps: ServiceDeps;
  service: DefaultWorkspaceService;
  /** Waits for background work, then closes the state store's clients and the backend's connections. */
  close(): Promise<void>;
}

export async function composeService(o: CompositionOptions): Promise<Composition> {
  const { config, log } = o;
  const dataDir = config.dataDir;
  ensureDataDir(dataDir);

  const dynamo = createDynamoClients({
    region: config.state.region,
    ...(o.dynamo.endpoint !== undefined ? { endpoint: o.dynamo.endpoint } : {}),
    ...(o.dynamo.socketPath !== undefined ? { socketPath: o.dynamo.socketPath } : {}),
    env: o.env,
  });
  if (o.dynamo.ensureTable) await ensureTable(dynamo.client, config.state.tableName);
  const state = new DynamoStateStore(dynamo.doc, config.state.tableName);
  const warmTasks = new DynamoWarmTaskStore(dynamo.doc, config.state.tableName);
  const events = new DynamoEventStore(dynamo.doc, config.state.tableName);

  // The Secrets Manager client is cheap to build; it is only called for `secretsmanager:` references.
  const secrets = createSecretResolver({
    env: o.env,
    secretsManagerClient: createSecretsManagerClient({ region: config.state.region }),
  });
  const { backend, unavailable } = await buildBackend(o, {
    config,
    dataDir,
    instanceId: o.instanceId,
    log: log.child({ part: `${config.mode}-backend` }),
    warmTasks,
    ...(o.remainingMs !== undefined ? { remainingMs: o.remainingMs } : {}),
  });
  for (const warning of backend.warnings) log.warn(warning);
  const broker = new GitBroker({
    mirrorsDir: privateDir(dataDir, 'mirrors'),
    resolveSecret: (ref: string) => secrets.resolve(ref),
    log: log.child({ part: 'git' }),
  });

  const deps: ServiceDeps = {
    config,
    baseDir: o.baseDir,
    instanceId: o.instanceId,
    state,
    events,
    backend,
    broker,
    secrets,
    scratchDir: privateDir(dataDir, 'scratch'),
    log,
    ...(o.metrics !== undefined ? { metrics: o.metrics } : {}),
    ...(o.work !== undefined ? { work: o.work(unavailable) } : {}),
    ...(o.webhookDelivery !== undefined ? { webhookDelivery: o.webhookDelivery } : {}),
    ...(unavailable !== undefined ? { backendUnavailable: unavailable } : {}),
  };
  const service = new DefaultWorkspaceService(deps);
  return {
    deps,
    service,
    async close() {
      await service.drain();
      dynamo.client.destroy();
      // Connections only (the local supervisor's): a backend used again reconnects on demand.
      await backend.close?.();
    },
  };
}

/** The provider's data dir, 0711: workspace sandboxes (other uids) must traverse to their own dirs; nothing here is listable. */
export function ensureDataDir(dataDir: string): void {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o711 });
  fs.chmodSync(dataDir, 0o711);
}

/** The mode's backend from the registry; without a stand-in, a missing or failing factory throws. */
async function buildBackend(
  o: CompositionOptions,
  context: BackendContext,
): Promise<{ backend: WorkspaceBackend; unavailable?: string }> {
  const mode = o.config.mode;
  const factory = o.backends[mode];
  if (factory === undefined) {
    if (o.standIn === undefined)
      throw new BadRequestError(`mode '${mode}' is not available in this build`, [
        { path: 'mode', message: 'unknown mode' },
      ]);
    const reason = `mode ${mode} is not available in this build`;
    return { backend: o.standIn(mode, reason), unavailable: reason };
  }
  try {
    return { backend: await factory(context) };
  } catch (error) {
    if (o.standIn === undefined) throw error;
    const reason = `mode ${mode} is not configured: ${(error as Error).message}`;
    o.log.error(`the ${mode} backend could not be built`, errorFields(error));
    return { backend: o.standIn(mode, reason), unavailable: reason };
  }
}
