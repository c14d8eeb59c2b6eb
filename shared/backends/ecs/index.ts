import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ECSClient } from '@aws-sdk/client-ecs';
import type {
  BackendResource,
  CreateOptions,
  SnapshotStore,
  WorkspaceBackend,
  WorkspaceHandle,
} from '../../contract/backend.js';
import type { WorkspacePlan } from '../../contract/plan.js';
import type { BackendRef, SnapshotRef } from '../../contract/workspace.js';
import { BadRequestError } from '../../contract/errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { checkPlanShape } from '../plan-check.js';
import { scanLayerTar } from '../tar/scan.js';
import { openOrReject } from '../handle.js';
import type { BlobStore } from './blob-store.js';
import type { CacheImages } from './cache-images.js';
import { rpcRunner } from './commands.js';
import { ExecChannels, TaskGoneError } from './exec-channel.js';
import { checkName } from '../../lib/names.js';
import { ecsRef, GUEST, parseRef, parseSnapshot, pristineDir, TAG, type ImageSnapshot } from './guest.js';
import type { RetryPolicy } from './retry.js';
import type { SsmTransport } from './ssm/transport.js';
import { EcsTasks } from './tasks.js';
import { BLOB, type EcsContext, EcsWorkspace } from './workspace.js';
import { planParts } from './layer-upload.js';
import type { WarmPool } from './warm-pool.js';
import { bestEffort } from '../../lib/best-effort.js';

export interface EcsBackendOptions {
  ecs: ECSClient;
  cluster: string;
  /** Container name of the workspace in every task definition. */
  container: string;
  subnets: string[];
  securityGroups: string[];
  /** Task definition (ARN or family[:revision]) of fresh workspaces: the base image. */
  baseTaskDefinition: string;
  /**
   * This provider's owner id: `startedBy` and the owner tag of everything it creates, so at most 36
   * letters, digits, '-' or '_' (ECS's startedBy rule and our name rule; checked at construction).
   */
  owner: string;
  /** Bundles and directories into tasks, cache layers out of them (presigned URLs). */
  blobs: BlobStore;
  /** Appends cache layers and registers their task definitions. */
  images: CacheImages;
  /** Optional warm pool: a create from a cache snapshot claims a ready task first; `maintain` keeps it at `warmPoolSize`. */
  warmPool?: WarmPool;
  /** Ready tasks kept per cache image by `maintain` (0: pools are drained). */
  warmPoolSize?: number;
  /** Local scratch for tars in transit (Lambda: under /tmp). */
  scratchDir?: string;
  /** How long a new task may take to be exec-ready. Default 10 min (large images pull slowly on Fargate). */
  readyTimeoutMs?: number;
  /** Readiness poll interval bounds in ms (backoff with jitter). Default 1000 → 5000. */
  readyPollMs?: { min: number; max: number };
  /** Presigned URL lifetime for transfers, seconds. Default 600. */
  transferTtlSeconds?: number;
  /** Part size of a cache layer's upload from the task (S3 multipart), bytes: 5 MiB..5 GiB, default 64 MiB. */
  layerPartBytes?: number;
  openTransport?: (streamUrl: string) => Promise<SsmTransport>;
  runnerCommand?: string;
  /**
   * What is left of the current invocation in ms (Lambda): exec sessions are connected, and requests
   * waited for, only within it (see exec-channel.ts). Default: no deadline.
   */
  remainingMs?: () => number | undefined;
  retry?: RetryPolicy;
  log?: Logger;
}

const TAG_VALUE = /[^A-Za-z0-9 +\-=._:/@]/g;
const DEFAULT_LAYER_PART_BYTES = 64 * 1024 * 1024;

/**
 * The Fargate backend (`mode: ecs`): one task per workspace, every operation inside it through ECS
 * Exec into the runner (see exec-channel.ts), bytes in and out through presigned S3 URLs, cache
 * snapshots as images with one appended layer (no Docker daemon anywhere), baselines as pristine
 * copies inside the task. Stateless: everything it needs is in the handles and in AWS.
 */
export class EcsBackend implements WorkspaceBackend {
  readonly kind = 'ecs';
  readonly warnings: string[] = [];
  readonly snapshots: SnapshotStore;
  private readonly tasks: EcsTasks;
  private readonly channels: ExecChannels;
  private readonly context: EcsContext;
  private readonly log: Logger;
  private readonly scratch: string;

  constructor(private readonly o: EcsBackendOptions) {
    this.log = (o.log ?? silentLogger).child({ backend: 'ecs' });
    checkName('owner', o.owner);
    this.tasks = new EcsTasks(o.ecs, {
      cluster: o.cluster,
      container: o.container,
      network: { subnets: o.subnets, securityGroups: o.securityGroups },
      startedBy: o.owner,
      ...(o.retry ? { retry: o.retry } : {}),
      ...(o.readyPollMs ? { pollMinMs: o.readyPollMs.min, pollMaxMs: o.readyPollMs.max } : {}),
    });
    this.channels = new ExecChannels(o.ecs, {
      cluster: o.cluster,
      container: o.container,
      ...(o.runnerCommand ? { command: o.runnerCommand } : {}),
      ...(o.openTransport ? { openTransport: o.openTransport } : {}),
      ...(o.retry ? { retry: o.retry } : {}),
      ...(o.remainingMs ? { remainingMs: o.remainingMs } : {}),
      log: this.log,
    });
    this.scratch = o.scratchDir ?? path.join(os.tmpdir(), 'wsp-ecs');
    this.context = {
      channels: this.channels,
      blobs: o.blobs,
      images: o.images,
      owner: o.owner,
      scratch: this.scratch,
      transferTtlSeconds: o.transferTtlSeconds ?? 600,
      // planParts throws BadRequestError for a part size S3 refuses.
      layerPartBytes: planParts(0, o.layerPartBytes ?? DEFAULT_LAYER_PART_BYTES).partBytes,
      carryStdin: (commandId, stdin) => this.carryStdin(commandId, stdin),
      carryOutput: (commandId, put) => this.carryOutput(commandId, put),
      dropBlobs: (commandId) => this.dropBlobs(commandId),
      log: this.log,
    };
    this.snapshots = {
      delete: (snapshot) => this.deleteSnapshot(snapshot),
      // async: a malformed ref rejects rather than throws.
      sizeBytes: async (snapshot) => {
        const snap = parseSnapshot(snapshot);
        return snap.kind === 'ecs-image' ? snap.bytes : 0;
      },
      scan: (snapshot, needles) => this.scanSnapshot(snapshot, needles),
      list: async () => (await o.images.list(o.owner)).map((s) => ({ ...s })),
    };
  }

  /** The base task definition's revision ARN: a new base image is a new revision (cdk deploy registers it). */
  baseIdentity(): Promise<string> {
    return this.o.images.baseIdentity();
  }

  open(ref: BackendRef, plan: WorkspacePlan): WorkspaceHandle {
    return openOrReject(ref, () => new EcsWorkspace(this.context, ref, plan));
  }

  /** Close the open exec sessions (a Lambda container keeps them between invocations otherwise). */
  close(): void {
    this.channels.closeAll();
  }

  async create(plan: WorkspacePlan, options: CreateOptions): Promise<BackendRef> {
    const workspaceId = checkName('workspace id', options.workspaceId);
    checkPlanShape(plan);
    if (plan.network !== 'host') {
      this.warnOnce(
        `network '${plan.network}' is not enforced on Fargate: egress follows the task's security group and subnets`,
      );
    }
    const from = options.from ? this.imageSnapshot(options.from) : undefined;
    const tags = this.tags({ ...options.labels, [TAG.workspace]: workspaceId, [TAG.kind]: 'workspace' });
    let taskArn = from ? await this.claimWarm(from.name, workspaceId, tags) : undefined;
    const claimed = taskArn !== undefined;
    if (!taskArn) taskArn = await this.tasks.run(from?.taskDefinitionArn ?? this.o.baseTaskDefinition, tags);
    const ref = ecsRef({ workspaceId, taskArn, uid: plan.user.uid, gid: plan.user.gid });
    try {
      if (!claimed) await this.tasks.waitReady(taskArn, this.o.readyTimeoutMs ?? 10 * 60_000);
      await this.channels.with(taskArn, 'preparing the workspace user', (rpc) => rpcRunner(rpc).init(plan));
      await this.channels.with(taskArn, 'preparing the transfer dir', (rpc) =>
        rpcRunner(rpc).call('preparing the transfer dir', ['mkdirs', '0755', '0:0', plan.transferDir, GUEST.tmp]),
      );
      // The pool forgets the task (and starts a new one at its next upkeep): the workspace holds it now.
      if (claimed && from)
        await this.o
          .warmPool!.release(from.name, taskArn)
          .catch((e: unknown) => this.log.warn('warm claim not released', { taskArn, error: (e as Error).message }));
      this.log.info('workspace created', { workspaceId, taskArn, fromSnapshot: from?.name ?? null, warm: claimed });
      return ref;
    } catch (error) {
      // Not awaited: the session leaves the map at once; its close waits for a pending connect, which the stop ends.
      void this.channels.forget(taskArn);
      await bestEffort(
        this.tasks.stop(taskArn, 'workspace creation failed'),
        this.log,
        'stopping the task of a failed create',
      );
      throw error;
    }
  }

  /**
   * A ready warm-pool task of `cacheKey`, or undefined (no pool, none ready, or the claimed one is no
   * longer running — the pool saw it ready at its last upkeep; Fargate may have retired it since: its
   * record is dropped and the caller runs a fresh task). The claimed task gets the workspace's tags at
   * once, so from here on a crash leaves a task listResources (the reconciler) finds.
   */
  private async claimWarm(
    cacheKey: string,
    workspaceId: string,
    tags: Record<string, string>,
  ): Promise<string | undefined> {
    const pool = this.o.warmPool;
    const taskArn = pool ? (await pool.claim(cacheKey, workspaceId))?.taskArn : undefined;
    if (!pool || !taskArn) return undefined;
    const giveBack = async (reason: string): Promise<void> => {
      await bestEffort(pool.release(cacheKey, taskArn), this.log, 'releasing a warm task given back');
      await bestEffort(this.tasks.stop(taskArn, reason), this.log, 'stopping a warm task given back');
    };
    try {
      // The pool saw it ready: MISSING now is ECS lagging, not a task gone (waited out for the grace period).
      this.tasks.expectVisible(taskArn);
      const view = await this.tasks.waitVisible(taskArn);
      if (view.phase !== 'ready') {
        this.log.warn('claimed warm task is not running; starting a new task', {
          cacheKey,
          taskArn,
          status: view.lastStatus,
        });
        await giveBack('warm task not ready when claimed');
        return undefined;
      }
      await this.tasks.tag(taskArn, tags);
      return taskArn;
    } catch (error) {
      // Neither the pool's nor a workspace's: stop it rather than leave an untagged task running.
      await giveBack('workspace creation failed');
      throw error;
    }
  }

  async destroy(ref: BackendRef): Promise<void> {
    const { taskArn, workspaceId } = parseRef(ref);
    // Not awaited: the session leaves the map at once; its close waits for a pending connect, which the stop ends.
    void this.channels.forget(taskArn);
    await this.tasks.stop(taskArn, 'workspace deleted');
    await this.o.blobs
      .deletePrefix(`${BLOB.transfer}${workspaceId}/`)
      .catch((e: unknown) => this.log.warn('transfer blobs not deleted', { workspaceId, error: (e as Error).message }));
    this.log.info('workspace destroyed', { workspaceId, taskArn });
  }

  private async deleteSnapshot(snapshot: SnapshotRef): Promise<void> {
    const snap = parseSnapshot(snapshot);
    if (snap.kind === 'ecs-pristine') {
      // The copy lives in the task: gone with it, else removed.
      await this.channels
        .with(snap.taskArn, 'deleting a baseline copy', (rpc) =>
          rpcRunner(rpc).call('deleting a baseline copy', ['remove', pristineDir(snap.name)]),
        )
        .then(() => undefined)
        .catch((e: unknown) => {
          if (!(e instanceof TaskGoneError)) throw e;
        });
      return;
    }
    await this.o.images.remove(snap);
    await this.o.blobs.delete(snap.layerKey);
  }

  /** The appended layer is what the workspace made: its tar (still in S3) is what is scanned. */
  private async scanSnapshot(snapshot: SnapshotRef, needles: readonly string[]): Promise<string[]> {
    const snap = parseSnapshot(snapshot);
    if (snap.kind !== 'ecs-image') throw new BadRequestError('only cache images are scanned', { field: 'snapshot' });
    return scanLayerTar(await this.o.blobs.getStream(snap.layerKey), needles, `layer ${snap.name}`);
  }

  /**
   * Janitor upkeep: every ready cache image gets its pool of `warmPoolSize` started tasks; pools of
   * images that are no longer ready are drained. A pool's key is its snapshot's name (the cache key).
   */
  async maintain(readyCacheSnapshots: SnapshotRef[]): Promise<void> {
    const pool = this.o.warmPool;
    if (!pool) return;
    const size = this.o.warmPoolSize ?? 0;
    const ready = readyCacheSnapshots.flatMap((s) => {
      try {
        const snap = parseSnapshot(s);
        return snap.kind === 'ecs-image' ? [snap] : [];
      } catch {
        return [];
      }
    });
    for (const snap of ready) {
      await pool
        .replenish(snap.name, snap.taskDefinitionArn, size)
        .catch((e: unknown) =>
          this.log.warn('warm pool not replenished', { snapshot: snap.name, error: (e as Error).message }),
        );
    }
    const keep = new Set(size > 0 ? ready.map((s) => s.name) : []);
    for (const key of await pool.cacheKeys()) {
      if (!keep.has(key))
        await pool
          .drain(key)
          .catch((e: unknown) =>
            this.log.warn('warm pool not drained', { cacheKey: key, error: (e as Error).message }),
          );
    }
  }

  async listResources(): Promise<BackendResource[]> {
    const out: BackendResource[] = [];
    for (const t of await this.tasks.listOwn()) {
      if (t.phase === 'stopped') continue;
      // Warm-pool tasks carry no workspace tag: the pool owns them until a claim (and replenish reaps them).
      const workspaceId = t.tags[TAG.workspace];
      if (!workspaceId) continue;
      out.push({ workspaceId, owner: this.o.owner, ref: ecsRef({ workspaceId, taskArn: t.taskArn }) });
    }
    return out;
  }

  private imageSnapshot(snapshot: SnapshotRef): ImageSnapshot {
    const snap = parseSnapshot(snapshot);
    if (snap.kind !== 'ecs-image')
      throw new BadRequestError('a workspace is created from a cache image snapshot', { field: 'from' });
    return snap;
  }

  /** A big stdin as a transfer object: its presigned URL for the runner, and the cleanup after the start. */
  private async carryStdin(commandId: string, stdin: Buffer): Promise<{ url: string; done: () => Promise<void> }> {
    const nonce = randomBytes(8).toString('hex');
    const key = `${commandBlobPrefix('stdin', commandId)}${nonce}`;
    await fsp.mkdir(this.scratch, { recursive: true, mode: 0o700 });
    const local = path.join(this.scratch, `stdin-${nonce}`);
    try {
      await fsp.writeFile(local, stdin, { mode: 0o600 });
      await this.o.blobs.putFile(key, local);
    } finally {
      await fsp.rm(local, { force: true });
    }
    return {
      url: await this.o.blobs.presignGet(key, this.o.transferTtlSeconds ?? 600),
      done: () => bestEffort(this.o.blobs.delete(key), this.log, 'deleting a stdin blob'),
    };
  }

  /** A command's output out of the task: PUT by the task to a presigned URL, read back here, removed. */
  private async carryOutput(commandId: string, put: (url: string) => Promise<void>): Promise<Buffer> {
    const nonce = randomBytes(8).toString('hex');
    const key = `${commandBlobPrefix('output', commandId)}${nonce}`;
    try {
      await put(await this.o.blobs.presignPut(key, this.o.transferTtlSeconds ?? 600));
      const chunks: Buffer[] = [];
      for await (const chunk of await this.o.blobs.getStream(key)) chunks.push(Buffer.from(chunk as Uint8Array));
      return Buffer.concat(chunks);
    } finally {
      await bestEffort(this.o.blobs.delete(key), this.log, 'deleting a command output blob');
    }
  }

  /**
   * Whatever the carriers left in S3 for the command (they delete their objects as they go, best
   * effort: this catches a delete that failed). Each command's objects sit under a prefix of their own
   * (`…/<id>/`), so no other command's objects share it.
   */
  private async dropBlobs(commandId: string): Promise<void> {
    for (const kind of ['stdin', 'output'] as const)
      await this.o.blobs.deletePrefix(commandBlobPrefix(kind, commandId));
  }

  private tags(labels: Record<string, string>): Record<string, string> {
    const out: Record<string, string> = { [TAG.owner]: this.o.owner };
    for (const [k, v] of Object.entries(labels))
      out[k.replace(TAG_VALUE, '_').slice(0, 128)] = v.replace(TAG_VALUE, '_').slice(0, 256);
    return out;
  }

  private warnOnce(message: string): void {
    if (this.warnings.includes(message)) return;
    this.warnings.push(message);
    this.log.warn(message);
  }
}

/** Where the carriers keep one command's objects: a prefix of its own, ending in '/'. */
const commandBlobPrefix = (kind: 'stdin' | 'output', commandId: string): string =>
  `${BLOB.transfer}${kind}/${checkName('command id', commandId)}/`;
