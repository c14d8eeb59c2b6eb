import path from 'node:path';
import { ECRClient } from '@aws-sdk/client-ecr';
import { ECSClient } from '@aws-sdk/client-ecs';
import { S3Client } from '@aws-sdk/client-s3';
import type { ProviderConfig } from '../../config/schema.js';
import { BadRequestError } from '../../contract/errors.js';
import type { Logger } from '../../log.js';
import { S3BlobStore } from './blob-store.js';
import { RegistryCacheImages } from './cache-images.js';
import { createEcrRegistryClient, RegistryClient } from './image/index.js';
import { EcsBackend } from './index.js';
import { EcsTasks } from './tasks.js';
import { EcsWarmLauncher } from './warm-launcher.js';
import { WarmPool } from './warm-pool.js';
import type { WarmTaskStore } from './warm-task-store.js';

/**
 * The Fargate backend from the provider config (`ecs` section; in Lambda filled from the WSP_ECS_*
 * environment the stack sets): real SDK clients (region and endpoints from config or the SDK's usual
 * sources, e.g. AWS_ENDPOINT_URL_*), S3 data bucket, ECR (or any OCI registry) for cache images.
 * Throws BadRequestError naming every missing `ecs.*` field.
 */

const ECR_HOST = /^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$/;

export interface EcsFactoryContext {
  owner: string;
  dataDir: string;
  log: Logger;
  /** For the warm pool's records (only used when ecs.warmPoolSize > 0). */
  warmTasks?: WarmTaskStore;
  /** What is left of the current invocation (Lambda): exec sessions never wait past it. */
  remainingMs?: () => number | undefined;
}

export function createEcsBackendFromConfig(config: ProviderConfig, ctx: EcsFactoryContext): EcsBackend {
  const e = config.ecs;
  const missing = (['cluster', 'taskDefinition', 'bucket', 'repositoryUri'] as const).filter((k) => e[k] === undefined);
  if (e.subnets.length === 0) missing.push('subnets' as never);
  if (e.securityGroups.length === 0) missing.push('securityGroups' as never);
  if (missing.length > 0) {
    throw new BadRequestError(
      `mode 'ecs' needs ${missing.map((m) => `ecs.${m}`).join(', ')} (the CDK stack sets them as WSP_ECS_* for its functions)`,
      missing.map((m) => ({ path: `ecs.${m}`, message: 'required in mode ecs' })),
    );
  }
  const region = e.region ? { region: e.region } : {};
  // One retry policy (ours, with jitter) for ECS: the SDK's own is switched off.
  const ecs = new ECSClient({ ...region, maxAttempts: 1 });
  const s3 = new S3Client({ ...region });
  const slash = e.repositoryUri!.indexOf('/');
  const host = e.repositoryUri!.slice(0, slash);
  const repository = e.repositoryUri!.slice(slash + 1);
  const base = baseImageOf(e, host, repository);
  const ecr = ECR_HOST.exec(host);
  const registry = ecr
    ? () => createEcrRegistryClient(new ECRClient({ region: ecr[2]! }), { registryId: ecr[1]! })
    : async () => new RegistryClient({ endpoint: `${/^(127\.|localhost)/.test(host) ? 'http' : 'https'}://${host}` });
  const common = {
    cluster: e.cluster!,
    container: e.container,
    subnets: e.subnets,
    securityGroups: e.securityGroups,
    baseTaskDefinition: e.taskDefinition!,
    owner: ctx.owner,
  };
  const scratchDir = path.join(ctx.dataDir, 'ecs-scratch');
  const images = new RegistryCacheImages({
    ecs,
    registry,
    baseRepository: base.repository,
    baseReference: base.reference,
    cacheRepository: repository,
    baseTaskDefinition: common.baseTaskDefinition,
    container: common.container,
  });
  const warmPool =
    e.warmPoolSize > 0 && ctx.warmTasks
      ? new WarmPool(
          ctx.warmTasks,
          new EcsWarmLauncher(
            new EcsTasks(ecs, {
              cluster: common.cluster,
              container: common.container,
              network: { subnets: common.subnets, securityGroups: common.securityGroups },
              startedBy: ctx.owner,
            }),
            ctx.owner,
          ),
          { owner: ctx.owner, log: ctx.log },
        )
      : undefined;
  return new EcsBackend({
    ecs,
    ...common,
    blobs: new S3BlobStore({ client: s3, bucket: e.bucket!, prefix: '' }),
    images,
    ...(warmPool ? { warmPool, warmPoolSize: e.warmPoolSize } : {}),
    scratchDir,
    readyTimeoutMs: e.readyTimeoutSeconds * 1000,
    ...(ctx.remainingMs ? { remainingMs: ctx.remainingMs } : {}),
    layerPartBytes: e.layerPartMb * 1024 * 1024,
    log: ctx.log,
  });
}

/**
 * Where the base image is: `ecs.baseImage` (the CDK stack's image asset, in the bootstrap asset
 * repository of the same registry), else the `baseImageTag` of the cache repository.
 */
function baseImageOf(
  e: { baseImage?: string | undefined; baseImageTag: string },
  host: string,
  cacheRepository: string,
): { repository: string; reference: string } {
  if (e.baseImage === undefined) return { repository: cacheRepository, reference: e.baseImageTag };
  const slash = e.baseImage.indexOf('/');
  if (e.baseImage.slice(0, slash) !== host)
    throw new BadRequestError('ecs.baseImage must be in the registry of ecs.repositoryUri', [
      { path: 'ecs.baseImage', message: `registry ${e.baseImage.slice(0, slash)}, expected ${host}` },
    ]);
  const rest = e.baseImage.slice(slash + 1);
  const at = rest.indexOf('@');
  const split = at >= 0 ? at : rest.lastIndexOf(':');
  return { repository: rest.slice(0, split), reference: rest.slice(split + 1) };
}
