import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { S3Client } from '@aws-sdk/client-s3';
import { S3BlobStore } from '../../shared/backends/ecs/blob-store.js';
import { RegistryCacheImages } from '../../shared/backends/ecs/cache-images.js';
import { RegistryClient } from '../../shared/backends/ecs/image/index.js';
import { EcsBackend, type EcsBackendOptions } from '../../shared/backends/ecs/index.js';
import { defaultRetryPolicy, type RetryPolicy } from '../../shared/backends/ecs/retry.js';
import type { ContractHandle } from './backend-fixture.js';
import { DOCKER_SOCKET, dockerClient } from './docker-daemon.js';
import { fakeAwsProfile, type FakeAwsProfile } from './fake-aws-profile.js';
import { FakeEcs } from './fake-ecs.js';
import { startFakeS3, type FakeS3 } from './fake-s3.js';
import { bridgeIntoDockerNetns, type NetnsBridge } from './netns-bridge.js';
import type { ConfigInput } from '../../shared/config/schema.js';
import { startTestProvider, type TestProvider } from './provider-fixture.js';
import { pushBaseImage, startRegistry, type LoopbackRegistry } from './registry.js';

const run = promisify(execFile);

/**
 * A Fargate backend with only AWS's control plane faked: ECS at the SDK boundary (fake-ecs.ts: tasks are
 * Docker containers, ECS Exec is a loopback SSM agent over `docker exec -t`), S3 as a loopback
 * S3-protocol server reached by the tasks' real curl through presigned URLs, and a real OCI registry
 * (Debian's docker-registry) that cache layers are appended to and the task containers pull from.
 * Task containers run with network 'host' inside the test dockerd's own loopback-only namespace; the
 * S3 and registry ports are bridged into it (netns-bridge.ts).
 */

const RUNNER_DIR = path.dirname(fileURLToPath(new URL('../../shared/backends/runner/runner.sh', import.meta.url)));
export const ECS_CLUSTER = 'wsp-test';

/** Shared by every backend of one test file: the registry with the base image pushed once. */
interface Infra {
  s3: FakeS3;
  registry: LoopbackRegistry;
  bridges: NetnsBridge[];
  baseImage: string;
}
let infra: Promise<Infra> | undefined;
let users = 0;

async function startInfra(): Promise<Infra> {
  const s3 = await startFakeS3({ bucket: 'wsp-data' });
  const registry = await startRegistry();
  const bridges = [
    await bridgeIntoDockerNetns(Number(new URL(s3.endpoint).port)),
    await bridgeIntoDockerNetns(registry.port),
  ];
  const baseImage = await pushBaseImage(registry);
  return { s3, registry, bridges, baseImage };
}

async function ensureImage(image: string): Promise<void> {
  const docker = (...args: string[]) =>
    run('docker', ['-H', `unix://${DOCKER_SOCKET}`, ...args], { maxBuffer: 16 * 1024 * 1024 });
  try {
    await docker('image', 'inspect', image);
  } catch {
    await docker('pull', '-q', image);
  }
}

/** Fast, deterministic enough for tests: same shape as production, shorter waits. */
export const TEST_RETRY: RetryPolicy = {
  attempts: 4,
  baseMs: 20,
  capMs: 200,
  random: Math.random,
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
};

/**
 * The backend's timing against the fake's profile. Fast: TEST_RETRY and quick polls. Realistic: the
 * production retry policy and readiness polls (both wait through the policy's sleep), that sleep
 * scaled like the fake's delays (fake-aws-profile.ts), so backoff meets throttling bursts and slow
 * starts as it would in AWS.
 */
function timing(profile: FakeAwsProfile): Pick<EcsBackendOptions, 'retry' | 'readyTimeoutMs' | 'readyPollMs'> {
  if (profile.name === 'fast') return { retry: TEST_RETRY, readyTimeoutMs: 60_000, readyPollMs: { min: 20, max: 200 } };
  const s = profile.scale;
  return {
    retry: { ...defaultRetryPolicy, sleep: (ms) => new Promise((r) => setTimeout(r, ms * s)) },
    readyTimeoutMs: Math.max(60_000, 10 * 60_000 * s),
  };
}

/** The image's size on the test daemon (0 when it is not there: a task that never starts pulls nothing). */
async function imageBytes(image: string): Promise<number> {
  return (
    (
      await dockerClient()
        .getImage(image)
        .inspect()
        .catch(() => undefined)
    )?.Size ?? 0
  );
}

export interface EcsHandle extends ContractHandle {
  backend: EcsBackend;
  fake: FakeEcs;
  s3: FakeS3;
  owner: string;
  options: EcsBackendOptions;
}

export async function makeEcsBackend(overrides: Partial<EcsBackendOptions> = {}): Promise<EcsHandle> {
  users++;
  infra ??= startInfra();
  const { s3, registry } = await infra;
  const docker = dockerClient();
  const label = `wsp-ecs-test-${randomBytes(4).toString('hex')}`;
  const profile = fakeAwsProfile();
  const fake = await FakeEcs.start({
    docker,
    runnerDir: RUNNER_DIR,
    network: 'host',
    label,
    ensureImage,
    imageBytes,
    profile,
  });
  const baseTaskDefinition = fake.registerBase('wsp-workspace', `${registry.host}/wsp/base:bookworm`);
  const s3Client = new S3Client({
    endpoint: s3.endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret-key' },
  });
  const blobs = new S3BlobStore({ client: s3Client, bucket: s3.bucket, prefix: '' });
  const images = new RegistryCacheImages({
    ecs: fake.client,
    registry: async () => new RegistryClient({ endpoint: registry.url }),
    baseRepository: 'wsp/base',
    baseReference: 'bookworm',
    cacheRepository: 'wsp/cache',
    baseTaskDefinition,
    container: 'workspace',
  });
  const owner = label;
  const options: EcsBackendOptions = {
    ecs: fake.client,
    cluster: ECS_CLUSTER,
    container: 'workspace',
    subnets: ['subnet-private-a'],
    securityGroups: ['sg-workspaces'],
    baseTaskDefinition,
    owner,
    blobs,
    images,
    ...timing(profile),
    ...overrides,
  };
  const backend = new EcsBackend(options);
  return {
    backend,
    fake,
    s3,
    owner,
    options,
    reopen: async () => new EcsBackend(options),
    async loseCommand(ref, commandId) {
      const task = fake.tasks.get(String(ref.taskArn));
      if (!task) throw new Error('unknown task');
      const dir = `/var/lib/wsp/cmd/${commandId}`;
      await run('docker', [
        '-H',
        `unix://${DOCKER_SOCKET}`,
        'exec',
        task.container,
        'sh',
        '-c',
        `kill -KILL "$(cat ${dir}/pid)" "-$(cat ${dir}/pgid)"`,
      ]);
    },
    // The command's dir in the task (ls as root: it is root-only) and every object naming the command.
    async commandLeftovers(ref, commandId) {
      const task = fake.tasks.get(String(ref.taskArn));
      if (!task) throw new Error('unknown task');
      const dir = `/var/lib/wsp/cmd/${commandId}`;
      const { stdout } = await run('docker', [
        '-H',
        `unix://${DOCKER_SOCKET}`,
        'exec',
        task.container,
        'sh',
        '-c',
        `if [ -e ${dir} ]; then ls -A ${dir}; fi`,
      ]);
      const files = stdout
        .split('\n')
        .filter((n) => n !== '')
        .map((n) => `file:${n}`);
      const objects = [...s3.objects.keys()].filter((k) => k.includes(`/${commandId}/`)).map((k) => `object:${k}`);
      return [...files, ...objects];
    },
    async cleanup() {
      for (const ws of await backend.listResources()) await backend.destroy(ws.ref);
      for (const snap of await backend.snapshots.list()) await backend.snapshots.delete(snap);
      backend.close();
      if (profile.name === 'realistic') console.info(`fake AWS (seed ${profile.seed}): ${JSON.stringify(fake.stats)}`);
      await fake.stop();
      users--;
      if (users === 0 && infra !== undefined) {
        const done = await infra;
        infra = undefined;
        for (const b of done.bridges) await b.close();
        await done.registry.stop();
        await done.s3.stop();
      }
    },
  };
}

/**
 * A provider in mode ecs over the fakes (real HTTP on 127.0.0.1): its instance id is the backend's
 * owner, as in a deployment (one owner per stack). `backend()` is the EcsBackend it runs on.
 */
export async function startEcsProvider(
  ecs: EcsHandle,
  config: ConfigInput = {},
): Promise<{ wsp: TestProvider; backend: () => EcsBackend; close(): Promise<void> }> {
  let backend: EcsBackend | undefined;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-ecs-provider-'));
  fs.writeFileSync(path.join(dataDir, 'instance-id'), `${ecs.owner}\n`, { mode: 0o600 });
  const wsp = await startTestProvider(
    { ...config, mode: 'ecs' },
    {
      dataDir,
      backend: (log) => {
        backend = new EcsBackend({ ...ecs.options, log });
        return backend;
      },
    },
  );
  return {
    wsp,
    backend: () => backend!,
    async close() {
      await wsp.close();
      backend?.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
