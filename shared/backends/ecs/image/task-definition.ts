import {
  DeleteTaskDefinitionsCommand,
  DeregisterTaskDefinitionCommand,
  DescribeTaskDefinitionCommand,
  RegisterTaskDefinitionCommand,
  type DeleteTaskDefinitionsCommandOutput,
  type DescribeTaskDefinitionCommandOutput,
  type ECSClient,
  type RegisterTaskDefinitionCommandInput,
  type RegisterTaskDefinitionCommandOutput,
  type Tag,
  type TaskDefinition,
} from '@aws-sdk/client-ecs';
import { BackendUnavailableError, BadRequestError } from '../../../contract/errors.js';
import { LINUX_AMD64, type Platform } from './manifest.js';

/**
 * One task-definition revision per cache image (RunTask cannot override a container's image):
 * a copy of the base task definition with the workspace container's image replaced.
 */
export interface CacheTaskDefinitionInput {
  /** family, family:revision or ARN of the base (workspace) task definition */
  baseTaskDefinition: string;
  /** The cache image, preferably digest-pinned (`AppendLayerResult.imageRef`). */
  image: string;
  /** The container whose image is replaced; default: the only container, else the one named 'workspace'. */
  containerName?: string;
  /** Family of the new revision; default the base's family (ECS task-definition families allow [A-Za-z0-9_-], ≤ 255). */
  family?: string;
  /** Merged over the base's tags (e.g. wsp:cache-key, wsp:owner). */
  tags?: Record<string, string>;
}

/**
 * The TaskDefinition fields RegisterTaskDefinition accepts. Everything Describe adds
 * (taskDefinitionArn, revision, status, requiresAttributes, compatibilities, registeredAt/By,
 * deregisteredAt, deleteRequestedAt) is left out by construction: this is an allow-list.
 */
const REGISTERABLE = [
  'taskRoleArn',
  'executionRoleArn',
  'networkMode',
  'containerDefinitions',
  'volumes',
  'placementConstraints',
  'requiresCompatibilities',
  'cpu',
  'memory',
  'pidMode',
  'ipcMode',
  'proxyConfiguration',
  'inferenceAccelerators',
  'ephemeralStorage',
  'runtimePlatform',
  'enableFaultInjection',
] as const satisfies readonly (keyof TaskDefinition & keyof RegisterTaskDefinitionCommandInput)[];

const FAMILY_RE = /^[A-Za-z0-9_-]{1,255}$/;

function pickContainer(def: TaskDefinition, wanted: string | undefined): string {
  const names = (def.containerDefinitions ?? []).map((c) => c.name ?? '');
  if (wanted !== undefined) {
    if (!names.includes(wanted))
      throw new BadRequestError(
        `task definition ${def.family} has no container '${wanted}' (it has: ${names.join(', ') || 'none'})`,
      );
    return wanted;
  }
  if (names.length === 1) return names[0]!;
  if (names.includes('workspace')) return 'workspace';
  throw new BadRequestError(
    `task definition ${def.family} has ${names.length} containers (${names.join(', ')}); name the workspace container`,
  );
}

/** The RegisterTaskDefinition input for a cache revision of `base` (pure; exported for tests). */
function cacheTaskDefinitionRequest(
  base: TaskDefinition,
  baseTags: Tag[],
  input: CacheTaskDefinitionInput,
): RegisterTaskDefinitionCommandInput {
  const family = input.family ?? base.family;
  if (!family || !FAMILY_RE.test(family))
    throw new BadRequestError(`invalid task definition family '${String(family).slice(0, 80)}'`);
  const container = pickContainer(base, input.containerName);
  const request: RegisterTaskDefinitionCommandInput = { family, containerDefinitions: undefined };
  for (const key of REGISTERABLE) {
    if (base[key] !== undefined) (request as unknown as Record<string, unknown>)[key] = structuredClone(base[key]);
  }
  request.containerDefinitions = (request.containerDefinitions ?? []).map((c) =>
    c.name === container ? { ...c, image: input.image } : c,
  );
  const tags = new Map(baseTags.filter((t) => t.key !== undefined).map((t) => [t.key!, t.value ?? '']));
  for (const [key, value] of Object.entries(input.tags ?? {})) tags.set(key, value);
  if (tags.size > 0) request.tags = [...tags].map(([key, value]) => ({ key, value }));
  return request;
}

/**
 * Registers the cache revision: DescribeTaskDefinition (with tags) of the base, then
 * RegisterTaskDefinition. Returns the new revision's ARN. Throws BadRequestError for a bad
 * family/container, BackendUnavailableError (with the SDK error as cause) when ECS fails.
 */
export async function registerCacheTaskDefinition(ecs: ECSClient, input: CacheTaskDefinitionInput): Promise<string> {
  let described: DescribeTaskDefinitionCommandOutput;
  try {
    described = await ecs.send(
      new DescribeTaskDefinitionCommand({ taskDefinition: input.baseTaskDefinition, include: ['TAGS'] }),
    );
  } catch (error) {
    throw new BackendUnavailableError(
      `ECS DescribeTaskDefinition ${input.baseTaskDefinition} failed: ${(error as Error).name}: ${(error as Error).message}`,
      error,
    );
  }
  if (!described.taskDefinition)
    throw new BackendUnavailableError(
      `ECS DescribeTaskDefinition ${input.baseTaskDefinition} returned no task definition`,
    );
  const request = cacheTaskDefinitionRequest(described.taskDefinition, described.tags ?? [], input);
  let registered: RegisterTaskDefinitionCommandOutput;
  try {
    registered = await ecs.send(new RegisterTaskDefinitionCommand(request));
  } catch (error) {
    throw new BackendUnavailableError(
      `ECS RegisterTaskDefinition ${request.family} failed: ${(error as Error).name}: ${(error as Error).message}`,
      error,
    );
  }
  const arn = registered.taskDefinition?.taskDefinitionArn;
  if (!arn) throw new BackendUnavailableError(`ECS RegisterTaskDefinition ${request.family} returned no ARN`);
  return arn;
}

/**
 * The image platform a task definition runs on: its runtimePlatform.cpuArchitecture (ARM64 →
 * linux/arm64; X86_64, or none named — Fargate's default — → linux/amd64). A cache layer must go onto
 * that platform's image of a multi-platform base, or the task cannot start it.
 */
export function taskDefinitionPlatform(def: Pick<TaskDefinition, 'runtimePlatform'> | undefined): Platform {
  return def?.runtimePlatform?.cpuArchitecture === 'ARM64' ? { os: 'linux', architecture: 'arm64' } : LINUX_AMD64;
}

const isMissing = (error: unknown): boolean =>
  /does not exist|unable to describe task definition/i.test((error as Error)?.message ?? '');

/**
 * Eviction: deregisters the revision (new RunTasks can no longer use it; running tasks are not
 * affected) and, with `delete: true`, asks ECS to delete it. Idempotent: an unknown revision is fine.
 */
export async function deregisterCacheTaskDefinition(
  ecs: ECSClient,
  taskDefinitionArn: string,
  options: { delete?: boolean } = {},
): Promise<void> {
  try {
    await ecs.send(new DeregisterTaskDefinitionCommand({ taskDefinition: taskDefinitionArn }));
  } catch (error) {
    if (!isMissing(error))
      throw new BackendUnavailableError(
        `ECS DeregisterTaskDefinition ${taskDefinitionArn} failed: ${(error as Error).name}: ${(error as Error).message}`,
        error,
      );
  }
  if (!options.delete) return;
  let out: DeleteTaskDefinitionsCommandOutput;
  try {
    out = await ecs.send(new DeleteTaskDefinitionsCommand({ taskDefinitions: [taskDefinitionArn] }));
  } catch (error) {
    if (isMissing(error)) return;
    throw new BackendUnavailableError(
      `ECS DeleteTaskDefinitions ${taskDefinitionArn} failed: ${(error as Error).name}: ${(error as Error).message}`,
      error,
    );
  }
  const failure = out.failures?.find((f) => !/does not exist|missing/i.test(`${f.reason ?? ''} ${f.detail ?? ''}`));
  if (failure)
    throw new BackendUnavailableError(
      `ECS DeleteTaskDefinitions ${taskDefinitionArn} failed: ${failure.reason ?? 'unknown'}`,
    );
}
