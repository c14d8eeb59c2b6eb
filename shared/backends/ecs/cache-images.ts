import type { Readable } from 'node:stream';
import { DescribeTaskDefinitionCommand, ListTaskDefinitionsCommand, type ECSClient } from '@aws-sdk/client-ecs';
import { BackendUnavailableError } from '../../contract/errors.js';
import {
  appendLayer,
  deregisterCacheTaskDefinition,
  registerCacheTaskDefinition,
  taskDefinitionPlatform,
  type Platform,
  type RegistryClient,
} from './image/index.js';
import { checkName } from '../../lib/names.js';
import { TAG, type ImageSnapshot } from './guest.js';

/**
 * Cache snapshots as images, without a Docker daemon: the home's tar is appended as ONE layer onto the
 * base image through the registry API (ECR or any OCI registry), and a task-definition revision names
 * the new image by digest (RunTask cannot override an image). The snapshot's facts live in that task
 * definition's tags, so any provider process can list them again.
 */

export interface CacheImages {
  /** `layerTar` opens the uncompressed layer tar (read once, streamed into the registry). */
  build(input: {
    name: string;
    layerTar: () => Promise<Readable>;
    layerKey: string;
    owner: string;
    /** 'cache' (default) or 'snapshot' (a fork point, a user snapshot): its tag; both are listed. */
    kind?: 'cache' | 'snapshot';
  }): Promise<ImageSnapshot>;
  /** Idempotent: the task definition is deregistered and the image manifest deleted. */
  remove(snapshot: ImageSnapshot): Promise<void>;
  /** This owner's cache snapshots and user snapshots (ACTIVE task-definition revisions tagged as ours). */
  list(owner: string): Promise<ImageSnapshot[]>;
  /** What fresh workspaces start from (the base task definition's revision), for the cache key. */
  baseIdentity(): Promise<string>;
}

export interface RegistryCacheImagesOptions {
  ecs: ECSClient;
  /** The registry client (ECR: createEcrRegistryClient) — created on first use. */
  registry: () => Promise<RegistryClient>;
  /** Base image: repository and tag/digest in that registry. */
  baseRepository: string;
  baseReference: string;
  /** Repository of cache images (may be the base's). */
  cacheRepository: string;
  /** Base task definition (family[:revision] or ARN); cache revisions join its family. */
  baseTaskDefinition: string;
  container: string;
}

const TAG_LAYER = 'wsp:layer-key';
const TAG_BYTES = 'wsp:layer-bytes';
const TAG_IMAGE = 'wsp:image';

export class RegistryCacheImages implements CacheImages {
  private client: Promise<RegistryClient> | undefined;

  constructor(private readonly o: RegistryCacheImagesOptions) {}

  private registry(): Promise<RegistryClient> {
    this.client ??= this.o.registry().catch((error: unknown) => {
      this.client = undefined;
      throw error;
    });
    return this.client;
  }

  async build(input: {
    name: string;
    layerTar: () => Promise<Readable>;
    layerKey: string;
    owner: string;
    kind?: 'cache' | 'snapshot';
  }): Promise<ImageSnapshot> {
    const name = checkName('snapshot name', input.name);
    const kind = input.kind ?? 'cache';
    const client = await this.registry();
    // A multi-platform base: the image of the platform the task definition runs on.
    const { platform } = await this.base();
    const appended = await appendLayer({
      client,
      baseRepository: this.o.baseRepository,
      baseReference: this.o.baseReference,
      platform,
      targetRepository: this.o.cacheRepository,
      targetTag: `${kind}-${name}`.slice(0, 128),
      layerTar: input.layerTar,
      history: `wsp ${kind} snapshot ${name}`,
      labels: { [TAG.snapshot]: name, [TAG.owner]: input.owner },
    });
    const taskDefinitionArn = await registerCacheTaskDefinition(this.o.ecs, {
      baseTaskDefinition: this.o.baseTaskDefinition,
      image: appended.imageRef,
      containerName: this.o.container,
      tags: {
        [TAG.owner]: input.owner,
        [TAG.snapshot]: name,
        [TAG.kind]: kind,
        [TAG_LAYER]: input.layerKey,
        [TAG_BYTES]: String(appended.compressedSize),
        [TAG_IMAGE]: appended.imageRef,
      },
    });
    return {
      kind: 'ecs-image',
      name,
      image: appended.imageRef,
      taskDefinitionArn,
      layerKey: input.layerKey,
      bytes: appended.compressedSize,
    };
  }

  async remove(snapshot: ImageSnapshot): Promise<void> {
    await deregisterCacheTaskDefinition(this.o.ecs, snapshot.taskDefinitionArn);
    const at = snapshot.image.lastIndexOf('@');
    if (at < 0) return;
    const client = await this.registry();
    await client.deleteManifest(this.o.cacheRepository, snapshot.image.slice(at + 1));
  }

  async list(owner: string): Promise<ImageSnapshot[]> {
    const family = await this.family();
    const arns: string[] = [];
    let nextToken: string | undefined;
    try {
      do {
        const page = await this.o.ecs.send(
          new ListTaskDefinitionsCommand({
            familyPrefix: family,
            status: 'ACTIVE',
            ...(nextToken ? { nextToken } : {}),
          }),
        );
        arns.push(...(page.taskDefinitionArns ?? []));
        nextToken = page.nextToken;
      } while (nextToken);
    } catch (error) {
      throw new BackendUnavailableError(`ECS ListTaskDefinitions failed: ${(error as Error).message}`, error);
    }
    const out: ImageSnapshot[] = [];
    for (const arn of arns) {
      const described = await this.o.ecs
        .send(new DescribeTaskDefinitionCommand({ taskDefinition: arn, include: ['TAGS'] }))
        .catch(() => undefined);
      const tags = Object.fromEntries((described?.tags ?? []).map((t) => [t.key ?? '', t.value ?? '']));
      if (
        (tags[TAG.kind] !== 'cache' && tags[TAG.kind] !== 'snapshot') ||
        tags[TAG.owner] !== owner ||
        !tags[TAG.snapshot] ||
        !tags[TAG_IMAGE] ||
        !tags[TAG_LAYER]
      )
        continue;
      out.push({
        kind: 'ecs-image',
        name: tags[TAG.snapshot]!,
        image: tags[TAG_IMAGE]!,
        taskDefinitionArn: arn,
        layerKey: tags[TAG_LAYER]!,
        bytes: Number(tags[TAG_BYTES] ?? 0) || 0,
      });
    }
    return out;
  }

  /**
   * The base task definition as ECS resolves it (family and revision, once per instance): what a
   * cache entry's key names as its base, so a redeployed base image (a new revision) starts new entries.
   * A new cpuArchitecture is a new revision too, so the platform resolved with it stays right.
   */
  async baseIdentity(): Promise<string> {
    const base = await this.base();
    return `ecs-task-definition:${base.arn}`;
  }

  private resolvedBase: { family: string; arn: string; platform: Platform } | undefined;
  private async base(): Promise<{ family: string; arn: string; platform: Platform }> {
    if (this.resolvedBase) return this.resolvedBase;
    try {
      const out = await this.o.ecs.send(
        new DescribeTaskDefinitionCommand({ taskDefinition: this.o.baseTaskDefinition }),
      );
      this.resolvedBase = {
        family: out.taskDefinition?.family ?? this.o.baseTaskDefinition.split(':')[0]!,
        arn: out.taskDefinition?.taskDefinitionArn ?? this.o.baseTaskDefinition,
        platform: taskDefinitionPlatform(out.taskDefinition),
      };
    } catch (error) {
      throw new BackendUnavailableError(
        `ECS DescribeTaskDefinition ${this.o.baseTaskDefinition} failed: ${(error as Error).message}`,
        error,
      );
    }
    return this.resolvedBase;
  }

  private async family(): Promise<string> {
    return (await this.base()).family;
  }
}
