import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { WorkspaceBackend } from '../../shared/contract/backend.js';
import { BadRequestError } from '../../shared/contract/errors.js';
import type { LoadedConfig } from '../../shared/config/load.js';
import { GitBroker } from '../../shared/git/mirror.js';
import { privateDir } from '../../shared/lib/private-dir.js';
import type { Logger } from '../../shared/log.js';
import { createSecretResolver } from '../../shared/secrets/default-resolver.js';
import { createSecretsManagerClient } from '../../shared/secrets/secrets-manager-client.js';
import { createDynamoClients } from '../../shared/state/client.js';
import { DynamoStateStore } from '../../shared/state/dynamo-store.js';
import { DynamoWarmTaskStore } from '../../shared/state/dynamo-warm-tasks.js';
import { startEmbeddedDynamo, type EmbeddedDynamo } from '../../shared/state/embedded.js';
import { ensureTable } from '../../shared/state/table.js';
import type { ServiceDeps } from '../../shared/service/deps.js';
import { newInstanceId } from '../../shared/service/ids.js';
import { sweep } from '../../shared/service/janitor.js';
import { reconcile, type ReconcileReport } from '../../shared/service/reconciler.js';
import { errorFields } from '../../shared/log.js';
import { DefaultWorkspaceService } from '../../shared/service/workspace-service.js';

const JANITOR_INTERVAL_MS = 60_000;

export interface Provider {
  service: DefaultWorkspaceService;
  deps: ServiceDeps;
  authToken: string | undefined;
  reconciled: ReconcileReport;
  close(): Promise<void>;
}

/** What a caller may supply instead of building it from the config (tests). */
export interface ProviderOverrides {
  /** Used as is instead of the backend chosen by `mode` (e.g. a Fargate backend over fakes). The caller closes it. */
  backend?: WorkspaceBackend;
}

/**
 * Compose the provider for one machine: data dir, instance id, auth token, state store (embedded
 * dynalite under the data dir, or a given DynamoDB endpoint), secret sources, the backend chosen by
 * `mode` (imported lazily: only the chosen backend's code loads) unless `overrides.backend` is given,
 * the git broker, the service — then reconcile whatever a previous run left behind.
 */
export async function composeProvider(
  loaded: LoadedConfig,
  log: Logger,
  overrides: ProviderOverrides = {},
): Promise<Provider> {
  const { config, baseDir } = loaded;
  const dataDir = config.dataDir;
  // 0711: workspace sandboxes (other uids) must traverse to their own dirs; nothing here is listable.
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o711 });
  fs.chmodSync(dataDir, 0o711);
  const instanceId = readOrCreate(path.join(dataDir, 'instance-id'), newInstanceId);
  const authToken = config.auth.disabled
    ? undefined
    : (config.auth.token ??
      readOrCreate(path.join(dataDir, 'auth-token'), () => randomBytes(24).toString('base64url')));

  let embedded: EmbeddedDynamo | undefined;
  let endpoint = config.state.endpoint;
  const sdkEndpoint = process.env.AWS_ENDPOINT_URL_DYNAMODB ?? process.env.AWS_ENDPOINT_URL;
  if (endpoint === undefined && sdkEndpoint === undefined && config.state.embedded) {
    // A unix socket in the root-only state dir: no workspace can reach it (see embedded.ts).
    embedded = await startEmbeddedDynamo({ dir: privateDir(dataDir, 'state') });
    endpoint = embedded.endpoint;
  }
  const dynamo = createDynamoClients({
    region: config.state.region,
    ...(endpoint ? { endpoint } : {}),
    ...(embedded ? { socketPath: embedded.socketPath } : {}),
  });
  await ensureTable(dynamo.client, config.state.tableName);
  const state = new DynamoStateStore(dynamo.doc, config.state.tableName);

  const usesSecretsManager = config.repositories.some((r) => r.credential?.startsWith('secretsmanager:'));
  const secrets = createSecretResolver(
    usesSecretsManager ? { secretsManagerClient: createSecretsManagerClient({ region: config.state.region }) } : {},
  );
  const warmTasks = new DynamoWarmTaskStore(dynamo.doc, config.state.tableName);
  const backend = overrides.backend ?? (await loadBackend(config, dataDir, instanceId, log, warmTasks));
  for (const warning of backend.warnings) log.warn(warning);
  const broker = new GitBroker({
    mirrorsDir: privateDir(dataDir, 'mirrors'),
    resolveSecret: (ref: string) => secrets.resolve(ref),
    log: log.child({ part: 'git' }),
  });

  const deps: ServiceDeps = {
    config,
    baseDir,
    instanceId,
    state,
    backend,
    broker,
    secrets,
    scratchDir: privateDir(dataDir, 'scratch'),
    log,
  };
  const service = new DefaultWorkspaceService(deps);
  const reconciled = await reconcile(deps, service);
  // The janitor: TTL, idle timeout and cache limits, once a minute (never keeps the process alive).
  let sweeping: Promise<unknown> = Promise.resolve();
  const janitor = setInterval(() => {
    sweeping = sweep(deps, service).catch((e) => log.warn('janitor sweep failed', errorFields(e)));
  }, JANITOR_INTERVAL_MS);
  janitor.unref();
  return {
    service,
    deps,
    authToken,
    reconciled,
    async close() {
      clearInterval(janitor);
      await sweeping;
      await service.drain();
      dynamo.client.destroy();
      await embedded?.close();
    },
  };
}

async function loadBackend(
  config: LoadedConfig['config'],
  dataDir: string,
  owner: string,
  log: Logger,
  warmTasks: DynamoWarmTaskStore,
): Promise<WorkspaceBackend> {
  const mode = config.mode;
  switch (mode) {
    case 'local': {
      const { createLocalBackend } = await import('../../shared/backends/local/index.js');
      return createLocalBackend({ dataDir, owner, log: log.child({ part: 'local-backend' }) });
    }
    case 'docker': {
      const { createDockerBackend } = await import('../../shared/backends/docker/index.js');
      const { socketPath, baseImage } = config.docker;
      return createDockerBackend({
        dataDir,
        owner,
        baseImage,
        ...(socketPath !== undefined ? { socketPath } : {}),
        log: log.child({ part: 'docker-backend' }),
      });
    }
    case 'ecs': {
      // Fargate from this machine: the same backend the Lambda functions use (config section `ecs`).
      const { createEcsBackendFromConfig } = await import('../../shared/backends/ecs/factory.js');
      return createEcsBackendFromConfig(config, { owner, dataDir, log: log.child({ part: 'ecs-backend' }), warmTasks });
    }
    default:
      throw new BadRequestError(`mode '${mode as string}' is not available in this build`, [
        { path: 'mode', message: 'unknown mode' },
      ]);
  }
}

/** A small secret or id kept in a 0600 file: created once, read afterwards. */
function readOrCreate(file: string, make: () => string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    const value = make();
    fs.writeFileSync(file, value + '\n', { mode: 0o600, flag: 'wx' });
    return value;
  }
}
