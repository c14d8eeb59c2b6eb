import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  DescribeTaskDefinitionCommand,
  ECSClient,
  RegisterTaskDefinitionCommand,
  type RuntimePlatform,
} from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RegistryCacheImages } from '../../../../shared/backends/ecs/cache-images.js';
import { sha256Digest } from '../../../../shared/backends/ecs/image/digest.js';
import type { ImageIndex, ImageManifest } from '../../../../shared/backends/ecs/image/manifest.js';
import {
  OCI_CONFIG,
  OCI_INDEX,
  OCI_LAYER_GZIP,
  OCI_MANIFEST,
} from '../../../../shared/backends/ecs/image/media-types.js';
import { RegistryClient } from '../../../../shared/backends/ecs/image/registry-client.js';
import { registryUnavailable, startRegistry, type LoopbackRegistry } from '../../../support/registry.js';

/**
 * RegistryCacheImages against a real registry (docker-registry on loopback) holding a multi-platform
 * `base` index, with ECS faked at the SDK boundary: the cache layer goes onto the image of the
 * platform the base task definition runs on (its runtimePlatform), never a fixed amd64.
 */

const BASE_TD = 'arn:aws:ecs:eu-west-1:111111111111:task-definition/wsp-workspace:7';
const ecs = new ECSClient({ region: 'eu-west-1', credentials: { accessKeyId: 'AKIDMOCK', secretAccessKey: 'x' } });
const ecsMock = mockClient(ecs);

describe.skipIf(registryUnavailable !== undefined)('cache images on a multi-platform base (real registry)', () => {
  let registry: LoopbackRegistry;
  let client: RegistryClient;
  let tmp: string;
  let layerTar: string;
  const platforms: Record<string, { manifest: string; layer: string }> = {};

  /** A tiny image of one architecture in wsp/base; its manifest digest and its one layer's digest. */
  async function pushTinyImage(arch: string): Promise<{ manifest: string; layer: string; size: number }> {
    const layer = crypto.randomBytes(100);
    const config = Buffer.from(
      JSON.stringify({ architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256Digest(layer)] } }),
    );
    await client.uploadBlob('wsp/base', sha256Digest(layer), layer);
    await client.uploadBlob('wsp/base', sha256Digest(config), config);
    const m: ImageManifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: sha256Digest(config), size: config.length },
      layers: [{ mediaType: OCI_LAYER_GZIP, digest: sha256Digest(layer), size: layer.length }],
    };
    const bytes = Buffer.from(JSON.stringify(m));
    const manifest = await client.putManifest('wsp/base', `only-${arch}`, OCI_MANIFEST, bytes);
    return { manifest, layer: sha256Digest(layer), size: bytes.length };
  }

  beforeAll(async () => {
    registry = await startRegistry();
    client = new RegistryClient({ endpoint: registry.url });
    const amd = await pushTinyImage('amd64');
    const arm = await pushTinyImage('arm64');
    platforms['amd64'] = amd;
    platforms['arm64'] = arm;
    const index: ImageIndex = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        {
          mediaType: OCI_MANIFEST,
          digest: amd.manifest,
          size: amd.size,
          platform: { os: 'linux', architecture: 'amd64' },
        },
        {
          mediaType: OCI_MANIFEST,
          digest: arm.manifest,
          size: arm.size,
          platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
        },
      ],
    };
    await client.putManifest('wsp/base', 'base', OCI_INDEX, Buffer.from(JSON.stringify(index)));
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-cache-images-'));
    layerTar = path.join(tmp, 'layer.tar');
    fs.writeFileSync(layerTar, crypto.randomBytes(4096));
  });
  afterAll(async () => {
    await registry?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });
  beforeEach(() => ecsMock.reset());

  /** Builds a cache image from a base task definition with `runtimePlatform`; what it was appended to. */
  async function buildOn(runtimePlatform: RuntimePlatform | undefined, name: string) {
    ecsMock.on(DescribeTaskDefinitionCommand).resolves({
      taskDefinition: {
        family: 'wsp-workspace',
        taskDefinitionArn: BASE_TD,
        containerDefinitions: [{ name: 'workspace', image: `${registry.host}/wsp/base:base` }],
        ...(runtimePlatform ? { runtimePlatform } : {}),
      },
      tags: [],
    });
    ecsMock
      .on(RegisterTaskDefinitionCommand)
      .resolves({ taskDefinition: { taskDefinitionArn: `${BASE_TD.replace(/:7$/, '')}:8` } });
    const images = new RegistryCacheImages({
      ecs,
      registry: async () => client,
      baseRepository: 'wsp/base',
      baseReference: 'base',
      cacheRepository: 'wsp/cache',
      baseTaskDefinition: BASE_TD,
      container: 'workspace',
    });
    const snap = await images.build({
      name,
      layerTar: async () => fs.createReadStream(layerTar),
      layerKey: `layers/${name}.tar`,
      owner: 'o1',
    });
    const digest = snap.image.slice(snap.image.lastIndexOf('@') + 1);
    const manifest = (await client.getManifest('wsp/cache', digest)).manifest;
    const config = JSON.parse((await client.getBlobBytes('wsp/cache', manifest.config.digest)).toString()) as {
      architecture: string;
    };
    const registered = ecsMock.commandCalls(RegisterTaskDefinitionCommand)[0]!.args[0].input;
    return { snap, manifest, config, registered };
  }

  it('ARM64 task definition: the layer goes onto the linux/arm64 image of the index', async () => {
    const { snap, manifest, config, registered } = await buildOn(
      { cpuArchitecture: 'ARM64', operatingSystemFamily: 'LINUX' },
      'c-arm',
    );
    expect(config.architecture).toBe('arm64');
    expect(manifest.layers.map((l) => l.digest)[0]).toBe(platforms['arm64']!.layer);
    expect(manifest.layers).toHaveLength(2);
    expect(registered.runtimePlatform).toEqual({ cpuArchitecture: 'ARM64', operatingSystemFamily: 'LINUX' });
    expect(registered.containerDefinitions?.[0]?.image).toBe(snap.image);
  });

  it('X86_64 task definition, or none named (Fargate default): linux/amd64', async () => {
    for (const [platform, name] of [
      [{ cpuArchitecture: 'X86_64', operatingSystemFamily: 'LINUX' }, 'c-x86'],
      [undefined, 'c-default'],
    ] as const) {
      const { config, manifest } = await buildOn(platform, name);
      expect(config.architecture, name).toBe('amd64');
      expect(manifest.layers[0]!.digest, name).toBe(platforms['amd64']!.layer);
    }
  });
});
