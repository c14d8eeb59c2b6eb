import path from 'node:path';
import { BadRequestError } from '../../shared/contract/errors.js';
import { parseConfig } from '../../shared/config/load.js';
import type { ProviderConfig } from '../../shared/config/schema.js';
import { parseKeyHashes } from './api-keys.js';

/**
 * Everything a Lambda handler reads from its environment, read once per container.
 *
 * Env (set by the CDK stack, infra/):
 * - `WSP_CONFIG_JSON`: the provider configuration (shared/config/schema.ts) as inline JSON; default `{}`.
 * - `WSP_MODE`: backend mode; default `ecs`. Overrides the config's `mode`.
 * - `TABLE_NAME`: DynamoDB table (required in AWS; default `wsp`). `AWS_REGION`: set by Lambda.
 * - `WSP_DYNAMODB_ENDPOINT`: endpoint override (DynamoDB Local); `AWS_ENDPOINT_URL[_DYNAMODB]` also
 *   work, handled by the SDK itself (LocalStack).
 * - `WSP_DATA_DIR`: scratch and git mirrors; default `/tmp/wsp` (the only writable path in Lambda).
 * - `WSP_INSTANCE_ID`: the owner written on every record. All containers of one deployment must
 *   share it, or the janitor would not recognise the workspaces other containers created; default `wsp-lambda`.
 * - `WSP_WORKER_FUNCTION`: name or ARN of the worker function (api only).
 * - `WSP_PROVISION_STATE_MACHINE`: ARN of the provisioning state machine (api only).
 * - `WSP_OPERATION_STATE_MACHINE`: ARN of the operations (fetch, reset) state machine (api only).
 * - `WSP_API_KEY_HASHES`: comma-separated hex sha256 of accepted bearer keys. When set, the api
 *   handler checks the bearer key itself too (defence in depth behind the authorizer).
 * - `WSP_ENSURE_TABLE=1`: create the table if missing (LocalStack / DynamoDB Local only; the
 *   deployed roles have no CreateTable).
 * - The Fargate backend (config `ecs`, set by infra/constructs/workspace-compute.ts): `WSP_ECS_CLUSTER`,
 *   `WSP_ECS_TASK_DEFINITION`, `WSP_ECS_CONTAINER`, `WSP_ECS_SUBNETS` and `WSP_ECS_SECURITY_GROUPS`
 *   (comma-separated), `WSP_BUCKET`, `WSP_ECR_REPOSITORY_URI`, `WSP_ECS_BASE_IMAGE` (or `WSP_ECS_BASE_IMAGE_TAG`),
 *   `WSP_ECS_WARM_POOL_SIZE`. Each overrides the same field of WSP_CONFIG_JSON's `ecs`.
 */
export interface LambdaSettings {
  config: ProviderConfig;
  instanceId: string;
  workerFunctionName: string | undefined;
  /** ARN of the Step Functions state machine that runs provisioning's phases. */
  provisionStateMachineArn: string | undefined;
  /** ARN of the Step Functions state machine that runs the phases of fetch and reset operations. */
  operationStateMachineArn: string | undefined;
  /** sha256 digests of the accepted bearer keys (empty: the api handler does not check keys). */
  apiKeyHashes: Buffer[];
  ensureTable: boolean;
}

const DEFAULT_LAMBDA_DATA_DIR = '/tmp/wsp';
const DEFAULT_LAMBDA_INSTANCE_ID = 'wsp-lambda';

/** Throws BadRequestError naming the bad variable or config field. */
export function readLambdaSettings(env: NodeJS.ProcessEnv = process.env): LambdaSettings {
  let input: Record<string, unknown> = {};
  if (env.WSP_CONFIG_JSON !== undefined && env.WSP_CONFIG_JSON.trim() !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(env.WSP_CONFIG_JSON);
    } catch (cause) {
      throw new BadRequestError(
        'WSP_CONFIG_JSON is not valid JSON',
        [{ path: 'WSP_CONFIG_JSON', message: 'not JSON' }],
        cause,
      );
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new BadRequestError('WSP_CONFIG_JSON must be a JSON object', [
        { path: 'WSP_CONFIG_JSON', message: 'not an object' },
      ]);
    }
    input = parsed as Record<string, unknown>;
  }
  const state = { ...(input['state'] as Record<string, unknown> | undefined) };
  if (env.TABLE_NAME) state['tableName'] = env.TABLE_NAME;
  if (env.AWS_REGION) state['region'] = env.AWS_REGION;
  if (env.WSP_DYNAMODB_ENDPOINT) state['endpoint'] = env.WSP_DYNAMODB_ENDPOINT;
  // Never the embedded dynalite: a Lambda keeps nothing between invocations.
  state['embedded'] = false;
  const config = parseConfig({
    ...input,
    ecs: ecsFromEnv(env, input['ecs']),
    mode: env.WSP_MODE ?? input['mode'] ?? 'ecs',
    dataDir: path.resolve(env.WSP_DATA_DIR || DEFAULT_LAMBDA_DATA_DIR),
    state,
    // API Gateway authenticates (IAM or the authorizer); the api handler re-checks hashed keys itself.
    auth: { disabled: true },
  });
  return {
    config,
    instanceId: env.WSP_INSTANCE_ID || DEFAULT_LAMBDA_INSTANCE_ID,
    workerFunctionName: env.WSP_WORKER_FUNCTION || undefined,
    provisionStateMachineArn: env.WSP_PROVISION_STATE_MACHINE || undefined,
    operationStateMachineArn: env.WSP_OPERATION_STATE_MACHINE || undefined,
    apiKeyHashes: keyHashes(env.WSP_API_KEY_HASHES),
    ensureTable: env.WSP_ENSURE_TABLE === '1',
  };
}

const list = (v: string): string[] =>
  v
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);

/** The `ecs` config section with the stack's WSP_ECS_* variables over WSP_CONFIG_JSON's (validated by the schema). */
function ecsFromEnv(env: NodeJS.ProcessEnv, fromJson: unknown): Record<string, unknown> {
  const ecs: Record<string, unknown> = { ...(fromJson as Record<string, unknown> | undefined) };
  const set = (name: string, field: string, map: (v: string) => unknown = (v) => v): void => {
    const v = env[name];
    if (v !== undefined && v.trim() !== '') ecs[field] = map(v.trim());
  };
  set('WSP_ECS_CLUSTER', 'cluster');
  set('WSP_ECS_TASK_DEFINITION', 'taskDefinition');
  set('WSP_ECS_CONTAINER', 'container');
  set('WSP_ECS_SUBNETS', 'subnets', list);
  set('WSP_ECS_SECURITY_GROUPS', 'securityGroups', list);
  set('WSP_BUCKET', 'bucket');
  set('WSP_ECR_REPOSITORY_URI', 'repositoryUri');
  set('WSP_ECS_BASE_IMAGE_TAG', 'baseImageTag');
  set('WSP_ECS_BASE_IMAGE', 'baseImage');
  // Not a number → the schema names ecs.warmPoolSize.
  set('WSP_ECS_WARM_POOL_SIZE', 'warmPoolSize', (v) => (/^\d+$/.test(v) ? Number(v) : v));
  if (env.AWS_REGION && ecs['region'] === undefined) ecs['region'] = env.AWS_REGION;
  return ecs;
}

function keyHashes(value: string | undefined): Buffer[] {
  try {
    return parseKeyHashes(value);
  } catch (cause) {
    throw new BadRequestError((cause as Error).message, [{ path: 'WSP_API_KEY_HASHES', message: 'malformed' }], cause);
  }
}
