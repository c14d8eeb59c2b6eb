import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { ECSClient } from '@aws-sdk/client-ecs';
import type {
  BackendResource,
  CommandSpec,
  CreateOptions,
  OutputStream,
  WorkspaceBackend,
} from '../../contract/backend.js';
import type { WorkspacePlan } from '../../contract/plan.js';
import type { BackendRef, SnapshotRef } from '../../contract/workspace.js';
import { BackendUnavailableError, BadRequestError, NotFoundError } from '../../contract/errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { checkPlanShape, homeDestination } from '../plan-check.js';
import { packTree } from '../tar/archive.js';
import { scanLayerTar } from '../tar/scan.js';
import type { RunnerRpc } from '../runner/rpc.js';
import type { BlobStore } from './blob-store.js';
import type { CacheImages } from './cache-images.js';
import { EcsCommands } from './commands.js';
import { ExecChannels, TaskGoneError } from './exec-channel.js';
import { checkName } from '../../lib/names.js';
import { ecsRef, GUEST, parseRef, parseSnapshot, pristineDir, TAG, type ImageSnapshot } from './guest.js';
import type { RetryPolicy } from './retry.js';
import type { SsmTransport } from './ssm/transport.js';
import { EcsTasks } from './tasks.js';
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
  /** This provider's owner id: `startedBy` and the owner tag of everything it creates. */
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
  openTransport?: (streamUrl: string) => Promise<SsmTransport>;
  runnerCommand?: string;
  retry?: RetryPolicy;
  log?: Logger;
}

const KILL_ALL_REASON = 'all workspace processes killed';
/** Requests that move or copy a whole tree: they may take minutes (the default request timeout is 2 min). */
const SLOW_OPS = new Set(['fetch-url', 'put-url', 'pack', 'unpack', 'pristine-save', 'pristine-restore']);
const SLOW_OP_TIMEOUT_MS = 30 * 60_000;
/** Key prefixes in the data bucket (infra: BUCKET_PREFIXES; each has its own expiry rule). */
const BLOB = { transfer: 'transfer/', layers: 'layers/' } as const;
const TAG_VALUE = /[^A-Za-z0-9 +\-=._:/@]/g;

/**
 * The Fargate backend (`mode: ecs`): one task per workspace, every operation inside it through ECS
 * Exec into the runner (see exec-channel.ts), bytes in and out through presigned S3 URLs, cache
 * snapshots as images with one appended layer (no Docker daemon anywhere), baselines as pristine
 * copies inside the task. Stateless: everything it needs is in the handles and in AWS.
 */
export class EcsBackend implements WorkspaceBackend {
  readonly kind = 'ecs';
  readonly warnings: string[] = [];
  private readonly tasks: EcsTasks;
  private readonly channels: ExecChannels;
  private readonly commands: EcsCommands;
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
      log: this.log,
    });
    this.commands = new EcsCommands(this.channels, (commandId, stdin) => this.carryStdin(commandId, stdin));
    this.scratch = o.scratchDir ?? path.join(os.tmpdir(), 'wsp-ecs');
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
      const { user } = plan;
      await this.call(ref, 'preparing the workspace user', [
        'init',
        String(user.uid),
        String(user.gid),
        user.name,
        plan.home,
        plan.root,
      ]);
      await this.call(ref, 'preparing the transfer dir', ['mkdirs', '0755', '0:0', plan.transferDir, GUEST.tmp]);
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
      const [view] = await this.tasks.describe([taskArn]);
      if (view?.phase !== 'ready') {
        this.log.warn('claimed warm task is not running; starting a new task', {
          cacheKey,
          taskArn,
          status: view?.lastStatus ?? 'unknown',
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

  /** The file goes to S3 and the task fetches it through a presigned URL (no credentials in the task). */
  async putTransferFile(ref: BackendRef, plan: WorkspacePlan, name: string, hostPath: string): Promise<void> {
    const r = parseRef(ref);
    checkName('transfer file name', name);
    await this.fetchInto(ref, r.workspaceId, hostPath, `${plan.transferDir}/${name}`, '0644', '0:0');
  }

  async removeTransferFile(ref: BackendRef, plan: WorkspacePlan, name: string): Promise<void> {
    await this.call(ref, 'removing a transfer file', [
      'remove',
      `${plan.transferDir}/${checkName('transfer file name', name)}`,
    ]);
  }

  async putDirectory(ref: BackendRef, plan: WorkspacePlan, hostDir: string, guestPath: string): Promise<void> {
    const r = parseRef(ref);
    const { rel, parents } = homeDestination(plan, guestPath);
    const st = await fsp.stat(hostDir).catch(() => undefined);
    if (!st?.isDirectory()) throw new BadRequestError('source is not a directory', { field: 'hostDir' });
    await fsp.mkdir(this.scratch, { recursive: true, mode: 0o700 });
    const local = path.join(this.scratch, `dir-${randomBytes(8).toString('hex')}.tar`);
    const guestTar = `${GUEST.tmp}/dir-${randomBytes(8).toString('hex')}.tar`;
    try {
      await pipeline(
        packTree(hostDir, rel, parents, { uid: plan.user.uid, gid: plan.user.gid }),
        fs.createWriteStream(local, { mode: 0o600 }),
      );
      await this.fetchInto(ref, r.workspaceId, local, guestTar, '0600', '0:0');
      await this.call(ref, 'unpacking a directory', [
        'unpack',
        guestTar,
        plan.home,
        `${plan.user.uid}:${plan.user.gid}`,
      ]);
    } finally {
      await fsp.rm(local, { force: true });
      await bestEffort(
        this.call(ref, 'removing a tar in transit', ['remove', guestTar]),
        this.log,
        'removing a tar in transit',
      );
    }
  }

  async startCommand(ref: BackendRef, plan: WorkspacePlan, spec: CommandSpec): Promise<void> {
    const r = parseRef(ref);
    try {
      await this.commands.start(r.taskArn, plan, spec);
    } catch (error) {
      // Nothing starts on a task that is gone: the workspace's compute no longer exists.
      if (error instanceof TaskGoneError) throw new NotFoundError('workspace', r.workspaceId);
      throw error;
    }
  }

  // async (also below): a malformed ref must reject, not throw before a promise exists (callers `.catch()`).
  async commandStatus(ref: BackendRef, commandId: string) {
    return this.commands.status(parseRef(ref).taskArn, commandId);
  }

  async waitCommand(ref: BackendRef, commandId: string, waitMs: number) {
    return this.commands.wait(parseRef(ref).taskArn, commandId, waitMs);
  }

  async readOutput(ref: BackendRef, commandId: string, stream: OutputStream, offset: number, limit: number) {
    return this.commands.read(parseRef(ref).taskArn, commandId, stream, offset, limit);
  }

  async killCommand(ref: BackendRef, commandId: string, reason: string): Promise<void> {
    return this.commands.kill(parseRef(ref).taskArn, commandId, reason);
  }

  async killAll(ref: BackendRef): Promise<void> {
    const r = parseRef(ref);
    if (r.uid === undefined) throw new BadRequestError('ecs ref without the workspace user', { field: 'ref' });
    await this.commands.killAll(r.taskArn, { uid: r.uid, gid: r.gid ?? r.uid }, KILL_ALL_REASON);
  }

  async snapshot(
    ref: BackendRef,
    plan: WorkspacePlan,
    purpose: 'cache' | 'baseline',
    name: string,
  ): Promise<SnapshotRef> {
    const r = parseRef(ref);
    checkName('snapshot name', name);
    if (purpose === 'baseline') {
      await this.call(ref, 'taking the baseline copy', ['pristine-save', plan.home, pristineDir(name)]);
      this.log.info('snapshot taken', { workspaceId: r.workspaceId, snapshot: name, purpose });
      return { kind: 'ecs-pristine', name, taskArn: r.taskArn };
    }
    return this.cacheSnapshot(ref, plan, name);
  }

  /**
   * The home as one image layer: the runner tars it and PUTs it to a presigned URL; the provider
   * streams it from S3 and appends it onto the base image through the registry API, then registers a
   * task definition for the new image. The layer object stays (for the secret scan) until deleted.
   */
  private async cacheSnapshot(ref: BackendRef, plan: WorkspacePlan, name: string): Promise<SnapshotRef> {
    const r = parseRef(ref);
    const nonce = randomBytes(6).toString('hex');
    const layerKey = `${BLOB.layers}${name}-${nonce}.tar`;
    const guestTar = `${GUEST.tmp}/layer-${nonce}.tar`;
    await fsp.mkdir(this.scratch, { recursive: true, mode: 0o700 });
    const local = path.join(this.scratch, `layer-${nonce}.tar`);
    try {
      await this.call(ref, 'packing the home', ['pack', plan.home, guestTar]);
      const url = await this.o.blobs.presignPut(layerKey, this.o.transferTtlSeconds ?? 600);
      await this.call(ref, 'uploading the cache layer', ['put-url', guestTar, url]);
      await this.o.blobs.getToFile(layerKey, local);
      const snap = await this.o.images.build({ name, layerTarPath: local, layerKey, owner: this.o.owner });
      this.log.info('snapshot taken', {
        workspaceId: r.workspaceId,
        snapshot: name,
        purpose: 'cache',
        image: snap.image,
        bytes: snap.bytes,
      });
      return { ...snap };
    } catch (error) {
      await bestEffort(this.o.blobs.delete(layerKey), this.log, 'deleting the layer blob of a failed snapshot');
      throw error;
    } finally {
      await fsp.rm(local, { force: true });
      await bestEffort(
        this.call(ref, 'removing the layer tar', ['remove', guestTar]),
        this.log,
        'removing the layer tar',
      );
    }
  }

  /** Processes killed (their commands recorded killed), then only what changed since the copy is rewritten. */
  async restore(ref: BackendRef, plan: WorkspacePlan, snapshot: SnapshotRef): Promise<void> {
    const r = parseRef(ref);
    const snap = parseSnapshot(snapshot);
    if (snap.kind !== 'ecs-pristine')
      throw new BadRequestError(
        'an ecs workspace restores from its baseline copy; a cache image makes a new workspace',
        { field: 'snapshot' },
      );
    if (snap.taskArn !== r.taskArn) throw new NotFoundError('snapshot', snap.name);
    await this.killAll(ref);
    await this.call(ref, 'restoring the baseline', [
      'pristine-restore',
      plan.home,
      pristineDir(snap.name),
      String(plan.user.uid),
      String(plan.user.gid),
    ]);
    await this.call(ref, 'emptying /tmp', ['clean-tmp']);
    this.log.info('workspace restored', { workspaceId: r.workspaceId, snapshot: snap.name });
  }

  async deleteSnapshot(snapshot: SnapshotRef): Promise<void> {
    const snap = parseSnapshot(snapshot);
    if (snap.kind === 'ecs-pristine') {
      // The copy lives in the task: gone with it, else removed.
      await this.channels
        .with(snap.taskArn, 'deleting a baseline copy', (rpc) =>
          rpcOk(rpc, 'deleting a baseline copy', ['remove', pristineDir(snap.name)]),
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

  async snapshotSizeBytes(snapshot: SnapshotRef): Promise<number> {
    const snap = parseSnapshot(snapshot);
    return snap.kind === 'ecs-image' ? snap.bytes : 0;
  }

  /** The appended layer is what the workspace made: its tar (still in S3) is what is scanned. */
  async scanSnapshot(snapshot: SnapshotRef, needles: readonly string[]): Promise<string[]> {
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

  async listSnapshots(): Promise<SnapshotRef[]> {
    return (await this.o.images.list(this.o.owner)).map((s) => ({ ...s }));
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
    const key = `${BLOB.transfer}stdin/${checkName('command id', commandId)}-${nonce}`;
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

  private async fetchInto(
    ref: BackendRef,
    workspaceId: string,
    hostPath: string,
    dest: string,
    mode: string,
    owner: string,
  ): Promise<void> {
    const key = `${BLOB.transfer}${workspaceId}/${randomBytes(8).toString('hex')}`;
    await this.o.blobs.putFile(key, hostPath);
    try {
      const url = await this.o.blobs.presignGet(key, this.o.transferTtlSeconds ?? 600);
      await this.call(ref, 'fetching a file into the workspace', ['fetch-url', url, dest, mode, owner]);
    } finally {
      await bestEffort(this.o.blobs.delete(key), this.log, 'deleting a transfer blob');
    }
  }

  private async call(ref: BackendRef, what: string, argv: string[]): Promise<void> {
    await this.channels.with(parseRef(ref).taskArn, what, (rpc) =>
      rpcOk(rpc, what, argv, SLOW_OPS.has(argv[0]!) ? SLOW_OP_TIMEOUT_MS : undefined),
    );
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

/** A runner request that must succeed; its stderr-free failure is reported by what it was for. */
export async function rpcOk(rpc: RunnerRpc, what: string, argv: string[], timeoutMs?: number): Promise<Buffer> {
  const { status, payload } = await rpc.call(argv, timeoutMs !== undefined ? { timeoutMs } : {});
  if (status !== 0)
    throw new BackendUnavailableError(
      `${what} failed in the workspace task (runner status ${status}): ${payload.toString('utf8').slice(0, 300)}`,
    );
  return payload;
}
