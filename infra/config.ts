import { parseConfig } from '../shared/config/load.js';
import { BadRequestError } from '../shared/contract/errors.js';

/**
 * Stage configuration: a pure function of the stage name and a few deploy-time overrides (which
 * app.ts reads from CDK context). Nothing here reads the environment or the disk, so tests build any
 * stage exactly as `cdk synth` does.
 */

/** How the workspaces' network is obtained. */
export type VpcConfig =
  /** A VPC per stage: public subnets hold only the NAT gateways; workspaces use the private ones. */
  | { kind: 'create'; maxAzs: number; natGateways: number }
  /** An existing VPC by id, resolved by a context lookup (cdk.context.json must hold it to synth offline). */
  | { kind: 'import'; vpcId: string };

/**
 * `iam`: every route needs a SigV4-signed request (controllers inside the customer's AWS).
 * `bearer`: every route goes through the Lambda authorizer (hashed bearer keys, controllers outside AWS).
 * An HTTP API route has exactly one authorizer, so this is a per-stage choice.
 */
export type ApiAuthMode = 'iam' | 'bearer';

export interface StageConfig {
  /** Stage name: part of every stack name and the owner id written on state records. */
  name: string;
  vpc: VpcConfig;
  api: {
    auth: ApiAuthMode;
    /** Steady-state requests per second for the whole stage. */
    throttleRatePerSecond: number;
    throttleBurst: number;
  };
  /**
   * Git secrets (Secrets Manager), by name or full ARN. Referenced, never created: operators put
   * the token there themselves. Only the provisioner may read them.
   */
  gitSecrets: string[];
  /**
   * Signing secrets of the configured webhooks (Secrets Manager), by name or full ARN: every
   * `secretsmanager:` secret of the provider config's `webhooks`, plus any given here (context
   * `webhookSecrets`). Referenced, never created. Readable by exactly the functions that deliver
   * events (api, worker, janitor); never by a workspace task.
   */
  webhookSecrets: string[];
  /** Provider configuration (shared/config/schema.ts input) handed to the Lambdas as WSP_CONFIG_JSON. */
  provider: Record<string, unknown>;
  logRetentionDays: LogRetentionDays;
  bucket: {
    /** Git bundles are short-lived transfer objects. */
    bundleExpiryDays: number;
    /** Command output and setup logs kept for inspection. */
    outputExpiryDays: number;
    /**
     * `transfer/`: bundles and directories going INTO workspace tasks (fetched there through
     * presigned GET URLs). Only needed until the task has fetched them.
     */
    transferExpiryDays: number;
    /**
     * `layers/`: cache-layer tars the tasks PUT through presigned URLs; the worker appends them to
     * the base image and deletes them. Leftovers are from failed snapshots.
     */
    layerExpiryDays: number;
  };
  workspace: {
    /** Fargate CPU units (1024 = 1 vCPU) and memory in MiB; must be a valid Fargate pair. */
    cpu: number;
    memoryMiB: number;
    /**
     * Fargate ephemeral storage in GiB, EPHEMERAL_STORAGE_GIB.min–max (21–200); the image counts
     * against it (a cache image holds the whole set-up home). dev 40, prod 60; `-c ephemeralStorageGiB=N`.
     */
    ephemeralStorageGiB: number;
    architecture: 'X86_64' | 'ARM64';
    /** `all`: any outbound traffic (setup scripts install packages). `https`: TCP 443 only. */
    egress: 'all' | 'https';
  };
  janitorRateMinutes: number;
  /**
   * Warm pool: `size` tasks per cache image kept started (from the cache image) so a setup claims
   * one instead of waiting for an image pull. 0 (the default) = no pool; at most WARM_POOL_MAX_SIZE.
   * The scheduled janitor replenishes pools, so with size > 0 it may run tasks.
   */
  warmPool: { size: number };
  provisioner: {
    /**
     * ARN of a Lambda layer version that holds `git` (bin/git, libexec/git-core, lib/): the Lambda
     * runtime has none and the provisioner (worker function) runs git. Added to the worker only.
     * Absent → synth warns, and provisioning fails until one is given (docs/deploy.md builds one).
     */
    gitLayerArn?: string;
  };
}

/** The ephemeral storage a Fargate task may be given (GiB); below 21 Fargate uses its fixed 20. */
export const EPHEMERAL_STORAGE_GIB = { min: 21, max: 200 } as const;

/** Upper bound of warmPool.size: every pooled task is a running Fargate task (billed while idle). */
export const WARM_POOL_MAX_SIZE = 20;

/** Where a git layer's exec path lands (layers are extracted under /opt). */
export const GIT_LAYER_EXEC_PATH = '/opt/libexec/git-core';

/** The values CloudWatch Logs accepts (a subset that stage configs use). */
export type LogRetentionDays = 1 | 3 | 5 | 7 | 14 | 30 | 60 | 90 | 180 | 365 | 731;

/** Deploy-time inputs that are not part of the code (CDK context). All optional. */
export interface StageOverrides {
  gitSecrets?: string[];
  webhookSecrets?: string[];
  vpcId?: string;
  apiAuth?: ApiAuthMode;
  provider?: Record<string, unknown>;
  /** warmPool.size; integer 0–WARM_POOL_MAX_SIZE. */
  warmPoolSize?: number;
  /** provisioner.gitLayerArn; a Lambda layer version ARN. */
  gitLayerArn?: string;
  /** workspace.ephemeralStorageGiB; integer 21–200. */
  ephemeralStorageGiB?: number;
}

export const STAGE_NAMES = ['dev', 'prod'] as const;
export type StageName = (typeof STAGE_NAMES)[number];

const dev: StageConfig = {
  name: 'dev',
  vpc: { kind: 'create', maxAzs: 2, natGateways: 1 },
  api: { auth: 'iam', throttleRatePerSecond: 20, throttleBurst: 40 },
  gitSecrets: [],
  webhookSecrets: [],
  provider: {},
  logRetentionDays: 14,
  bucket: { bundleExpiryDays: 1, outputExpiryDays: 7, transferExpiryDays: 1, layerExpiryDays: 1 },
  workspace: {
    cpu: 1024,
    memoryMiB: 4096,
    ephemeralStorageGiB: 40,
    architecture: 'X86_64',
    egress: 'all',
  },
  janitorRateMinutes: 5,
  warmPool: { size: 0 },
  provisioner: {},
};

const prod: StageConfig = {
  ...dev,
  name: 'prod',
  vpc: { kind: 'create', maxAzs: 3, natGateways: 2 },
  api: { auth: 'iam', throttleRatePerSecond: 100, throttleBurst: 200 },
  logRetentionDays: 90,
  bucket: { bundleExpiryDays: 1, outputExpiryDays: 30, transferExpiryDays: 1, layerExpiryDays: 1 },
  workspace: { ...dev.workspace, cpu: 2048, memoryMiB: 8192, ephemeralStorageGiB: 60 },
  janitorRateMinutes: 1,
};

const STAGES: Record<StageName, StageConfig> = { dev, prod };

/** A Lambda layer *version* ARN (the unversioned layer ARN cannot be attached to a function). */
const LAYER_VERSION_ARN = /^arn:aws[a-z-]*:lambda:[a-z]{2}(-[a-z]+)+-\d:\d{12}:layer:[A-Za-z0-9_-]{1,140}:[1-9]\d*$/;

const SECRET_REF =
  /^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+|[A-Za-z0-9/_+=.@-]{1,512})$/;

/**
 * The configuration of stage `name` with `overrides` applied. A fresh object each call.
 * Throws BadRequestError for an unknown stage or a malformed override (secret reference, VPC id).
 */
export function stageConfig(name: string, overrides: StageOverrides = {}): StageConfig {
  const base = (STAGES as Record<string, StageConfig | undefined>)[name];
  if (!base) throw new BadRequestError(`unknown stage '${name}' (known: ${STAGE_NAMES.join(', ')})`);
  const config: StageConfig = structuredClone(base);
  if (overrides.gitSecrets) {
    for (const ref of overrides.gitSecrets) {
      if (!SECRET_REF.test(ref)) throw new BadRequestError(`git secret reference '${ref}' is not a secret name or ARN`);
    }
    config.gitSecrets = [...new Set(overrides.gitSecrets)];
  }
  if (overrides.webhookSecrets) {
    for (const ref of overrides.webhookSecrets) {
      if (!SECRET_REF.test(ref))
        throw new BadRequestError(`webhook secret reference '${ref}' is not a secret name or ARN`);
    }
    config.webhookSecrets = [...new Set(overrides.webhookSecrets)];
  }
  if (overrides.vpcId !== undefined) {
    if (!/^vpc-[0-9a-f]{8,17}$/.test(overrides.vpcId))
      throw new BadRequestError(`'${overrides.vpcId}' is not a VPC id`);
    config.vpc = { kind: 'import', vpcId: overrides.vpcId };
  }
  if (overrides.apiAuth !== undefined) {
    if (overrides.apiAuth !== 'iam' && overrides.apiAuth !== 'bearer') {
      throw new BadRequestError(`api auth must be 'iam' or 'bearer', not '${String(overrides.apiAuth)}'`);
    }
    config.api.auth = overrides.apiAuth;
  }
  if (overrides.provider) {
    // Validated here so a bad config fails the synth, not the first request (throws BadRequestError naming each field).
    parseConfig(overrides.provider);
    config.provider = structuredClone(overrides.provider);
  }
  if (overrides.warmPoolSize !== undefined) config.warmPool.size = overrides.warmPoolSize;
  if (overrides.gitLayerArn !== undefined) config.provisioner.gitLayerArn = overrides.gitLayerArn;
  if (overrides.ephemeralStorageGiB !== undefined) config.workspace.ephemeralStorageGiB = overrides.ephemeralStorageGiB;
  checkRanges(config);
  // Every secret the provider config refers to must be readable by the provisioner: add them.
  for (const ref of secretsReferencedBy(config.provider, 'repositories', 'credential')) {
    if (!SECRET_REF.test(ref))
      throw new BadRequestError(`provider config refers to '${ref}', which is not a secret name or ARN`);
    if (!config.gitSecrets.includes(ref)) config.gitSecrets.push(ref);
  }
  // …and every webhook signing secret it refers to by the functions that deliver events.
  for (const ref of secretsReferencedBy(config.provider, 'webhooks', 'secret')) {
    if (!SECRET_REF.test(ref))
      throw new BadRequestError(`provider config refers to '${ref}', which is not a secret name or ARN`);
    if (!config.webhookSecrets.includes(ref)) config.webhookSecrets.push(ref);
  }
  return config;
}

/** The checks a stage table and overrides alike must pass. Throws BadRequestError naming the field. */
function checkRanges(config: StageConfig): void {
  const integerIn = (value: number, min: number, max: number) =>
    Number.isInteger(value) && value >= min && value <= max;
  if (!integerIn(config.warmPool.size, 0, WARM_POOL_MAX_SIZE)) {
    throw new BadRequestError(
      `warmPool.size must be an integer 0–${WARM_POOL_MAX_SIZE}, not ${String(config.warmPool.size)}`,
    );
  }
  const storage = config.workspace.ephemeralStorageGiB;
  if (!integerIn(storage, EPHEMERAL_STORAGE_GIB.min, EPHEMERAL_STORAGE_GIB.max)) {
    throw new BadRequestError(
      `workspace.ephemeralStorageGiB must be an integer ${EPHEMERAL_STORAGE_GIB.min}–${EPHEMERAL_STORAGE_GIB.max}, not ${String(storage)}`,
    );
  }
  const layer = config.provisioner.gitLayerArn;
  if (layer !== undefined && !LAYER_VERSION_ARN.test(layer)) {
    throw new BadRequestError(
      `provisioner.gitLayerArn '${layer}' is not a Lambda layer version ARN (arn:aws:lambda:<region>:<account>:layer:<name>:<version>)`,
    );
  }
}

/**
 * Secret names/ARNs in the provider config's `secretsmanager:<name-or-arn>[#jsonKey]` references at
 * `<list>[].<field>` (repositories[].credential, webhooks[].secret), without the `#jsonKey` part.
 */
function secretsReferencedBy(provider: Record<string, unknown>, list: string, field: string): string[] {
  const items = Array.isArray(provider[list]) ? (provider[list] as unknown[]) : [];
  const refs = items
    .map((r) => (typeof r === 'object' && r !== null ? (r as Record<string, unknown>)[field] : undefined))
    .filter((c): c is string => typeof c === 'string' && c.startsWith('secretsmanager:'))
    .map((c) => c.slice('secretsmanager:'.length).split('#')[0]!);
  return [...new Set(refs)];
}

/** True when `ref` is a full secret ARN (else it is a secret name). */
export function isSecretArn(ref: string): boolean {
  return ref.startsWith('arn:');
}
