import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { WorkspaceBackend } from '../../shared/contract/backend.js';
import type { LoadedConfig } from '../../shared/config/load.js';
import { privateDir } from '../../shared/lib/private-dir.js';
import type { Logger } from '../../shared/log.js';
import { startEmbeddedDynamo, type EmbeddedDynamo } from '../../shared/state/embedded.js';
import type { ServiceDeps } from '../../shared/service/deps.js';
import { newInstanceId } from '../../shared/service/ids.js';
import { sweep } from '../../shared/service/janitor.js';
import { reconcile, type ReconcileReport } from '../../shared/service/reconciler.js';
import { errorFields } from '../../shared/log.js';
import type { DefaultWorkspaceService } from '../../shared/service/workspace-service.js';
import { composeService, ensureDataDir } from '../compose/compose.js';
import { MACHINE_BACKENDS } from '../compose/machine-backends.js';
import type { ScrapeMetrics } from './metrics-endpoint.js';
import { prometheusMetrics } from './prometheus.js';

const JANITOR_INTERVAL_MS = 60_000;

export interface Provider {
  service: DefaultWorkspaceService;
  deps: ServiceDeps;
  authToken: string | undefined;
  reconciled: ReconcileReport;
  /** The service's counters as Prometheus text (served at GET /metrics). */
  scrapeMetrics: ScrapeMetrics;
  close(): Promise<void>;
}

/** What a caller may supply instead of building it from the config (tests). */
export interface ProviderOverrides {
  /** Used as is instead of the backend chosen by `mode` (e.g. a Fargate backend over fakes). The caller closes it. */
  backend?: WorkspaceBackend;
}

/**
 * The provider for one machine: its own parts — instance id and auth token (files in the data dir),
 * the embedded state store (dynalite under the data dir) unless a DynamoDB endpoint is given, every
 * backend (functions/compose/machine-backends.ts) — composed by the one composition root
 * (functions/compose/compose.ts); then it reconciles whatever a previous run left behind and runs
 * the janitor. Long work runs in this process.
 */
export async function composeProvider(
  loaded: LoadedConfig,
  log: Logger,
  overrides: ProviderOverrides = {},
): Promise<Provider> {
  const { config, baseDir } = loaded;
  const dataDir = config.dataDir;
  ensureDataDir(dataDir);
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
  const given = overrides.backend;
  const prometheus = prometheusMetrics();
  const composed = await composeService({
    config,
    baseDir,
    instanceId,
    env: process.env,
    log,
    metrics: prometheus.metrics,
    dynamo: {
      ...(endpoint !== undefined ? { endpoint } : {}),
      ...(embedded ? { socketPath: embedded.socketPath } : {}),
      ensureTable: true,
    },
    backends: given !== undefined ? { [config.mode]: async () => given } : MACHINE_BACKENDS,
  });
  const { deps, service } = composed;
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
    scrapeMetrics: prometheus.scrape,
    async close() {
      clearInterval(janitor);
      await sweeping;
      await composed.close();
      await embedded?.close();
    },
  };
}

/** A small secret or id kept in a 0600 file: created once, read afterwards. */
function readOrCreate(file: string, make: () => string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    const value = make();
    fs.writeFileSync(file, `${value}\n`, { mode: 0o600, flag: 'wx' });
    return value;
  }
}
