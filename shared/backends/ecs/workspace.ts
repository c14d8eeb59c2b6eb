import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type {
  SnapshotPurpose,
  WorkspaceFiles,
  WorkspaceHandle,
  WorkspaceSnapshots,
  WorkspaceUsage,
} from '../../contract/backend.js';
import { BackendUnavailableError, BadRequestError, NotFoundError } from '../../contract/errors.js';
import type { WorkspacePlan } from '../../contract/plan.js';
import type { BackendRef, SnapshotRef } from '../../contract/workspace.js';
import { bestEffort } from '../../lib/best-effort.js';
import { checkName } from '../../lib/names.js';
import type { Logger } from '../../log.js';
import { homeDestination } from '../plan-check.js';
import { packTree } from '../tar/archive.js';
import type { BlobStore } from './blob-store.js';
import type { CacheImages } from './cache-images.js';
import { EcsCommands, type OutputCarrier, rpcOk, rpcRunner, type StdinCarrier } from './commands.js';
import { type ExecChannels, TaskGoneError } from './exec-channel.js';
import { GUEST, parseRef, parseSnapshot, pristineDir } from './guest.js';
import { uploadFromTask } from './layer-upload.js';
import { SLOW_OP_TIMEOUT_MS } from '../runner/client.js';
import { parseRunnerUsage, usageArgv } from '../runner/usage.js';

const KILL_ALL_REASON = 'all workspace processes killed';
/** Key prefixes in the data bucket (infra: BUCKET_PREFIXES; each has its own expiry rule). */
export const BLOB = { transfer: 'transfer/', layers: 'layers/' } as const;

/** What every handle of one Fargate backend shares. */
export interface EcsContext {
  channels: ExecChannels;
  blobs: BlobStore;
  images: CacheImages;
  owner: string;
  /** Local scratch for tars in transit (Lambda: under /tmp). */
  scratch: string;
  /** Presigned URL lifetime for transfers, seconds. */
  transferTtlSeconds: number;
  /** Part size of a cache layer's multipart upload from the task, bytes (5 MiB..5 GiB). */
  layerPartBytes: number;
  carryStdin: StdinCarrier;
  carryOutput: OutputCarrier;
  /** Removes whatever the carriers left in the blob store for a command (forget). */
  dropBlobs: (commandId: string) => Promise<void>;
  log: Logger;
}

/**
 * One Fargate workspace (its task): commands and every other operation through the runner over ECS
 * Exec, bytes in and out through presigned S3 URLs, baselines as pristine copies inside the task,
 * cache snapshots as images with the home appended as one layer.
 */
export class EcsWorkspace implements WorkspaceHandle, WorkspaceFiles, WorkspaceSnapshots {
  readonly commands: EcsCommands;
  /** The files and snapshots of this workspace are methods of the handle itself. */
  readonly files: WorkspaceFiles = this;
  readonly snapshots: WorkspaceSnapshots = this;
  private readonly taskArn: string;
  private readonly workspaceId: string;

  constructor(
    private readonly c: EcsContext,
    readonly ref: BackendRef,
    private readonly plan: WorkspacePlan,
  ) {
    const r = parseRef(ref);
    this.taskArn = r.taskArn;
    this.workspaceId = r.workspaceId;
    const user = r.uid === undefined ? undefined : { uid: r.uid, gid: r.gid ?? r.uid };
    this.commands = new EcsCommands(
      c.channels,
      { taskArn: r.taskArn, workspaceId: r.workspaceId, plan, user },
      KILL_ALL_REASON,
      c.carryStdin,
      c.carryOutput,
      c.dropBlobs,
    );
  }

  /** The file goes to S3 and the task fetches it through a presigned URL (no credentials in the task). */
  async putTransferFile(name: string, hostPath: string): Promise<void> {
    checkName('transfer file name', name);
    await this.fetchInto(hostPath, `${this.plan.transferDir}/${name}`, '0644', '0:0');
  }

  async removeTransferFile(name: string): Promise<void> {
    await this.call('removing a transfer file', [
      'remove',
      `${this.plan.transferDir}/${checkName('transfer file name', name)}`,
    ]);
  }

  async putDirectory(hostDir: string, guestPath: string): Promise<void> {
    const { plan, c } = this;
    const { rel, parents } = homeDestination(plan, guestPath);
    const st = await fsp.stat(hostDir).catch(() => undefined);
    if (!st?.isDirectory()) throw new BadRequestError('source is not a directory', { field: 'hostDir' });
    await fsp.mkdir(c.scratch, { recursive: true, mode: 0o700 });
    const local = path.join(c.scratch, `dir-${randomBytes(8).toString('hex')}.tar`);
    const guestTar = `${GUEST.tmp}/dir-${randomBytes(8).toString('hex')}.tar`;
    try {
      await pipeline(
        packTree(hostDir, rel, parents, { uid: plan.user.uid, gid: plan.user.gid }),
        fs.createWriteStream(local, { mode: 0o600 }),
      );
      await this.fetchInto(local, guestTar, '0600', '0:0');
      await this.call('unpacking a directory', ['unpack', guestTar, plan.home, `${plan.user.uid}:${plan.user.gid}`]);
    } finally {
      await fsp.rm(local, { force: true });
      await bestEffort(
        this.call('removing a tar in transit', ['remove', guestTar]),
        c.log,
        'removing a tar in transit',
      );
    }
  }

  async take(purpose: SnapshotPurpose, name: string): Promise<SnapshotRef> {
    checkName('snapshot name', name);
    if (purpose === 'baseline') {
      await this.call('taking the baseline copy', ['pristine-save', this.plan.home, pristineDir(name)]);
      this.c.log.info('snapshot taken', { workspaceId: this.workspaceId, snapshot: name, purpose });
      return { kind: 'ecs-pristine', name, taskArn: this.taskArn };
    }
    // A fork point or user snapshot outlives the task like a cache entry: the same layer append.
    return this.cacheSnapshot(name, purpose);
  }

  /**
   * The home as one image layer: the runner tars it and uploads it as the parts of a multipart upload
   * (presigned part URLs; one PUT would cap a layer at 5 GiB); the provider streams it from S3 and
   * appends it onto the base image through the registry API, then registers a task definition for
   * the new image. The layer object stays (for the secret scan) until deleted.
   */
  private async cacheSnapshot(name: string, purpose: 'cache' | 'snapshot'): Promise<SnapshotRef> {
    const { c } = this;
    const nonce = randomBytes(6).toString('hex');
    const layerKey = `${BLOB.layers}${name}-${nonce}.tar`;
    const guestTar = `${GUEST.tmp}/layer-${nonce}.tar`;
    try {
      const packed = (await this.callOut('packing the home', ['pack', this.plan.home, guestTar])).toString().trim();
      if (!/^\d+$/.test(packed))
        throw new BackendUnavailableError(
          'packing the home: the runner in the base image printed no tar size; it is older than this provider — re-push the base image with shared/backends/runner/runner.sh (docs/deploy.md 3c)',
        );
      await uploadFromTask({
        blobs: c.blobs,
        key: layerKey,
        guestFile: guestTar,
        sizeBytes: Number(packed),
        partBytes: c.layerPartBytes,
        ttlSeconds: c.transferTtlSeconds,
        runner: (argv) => this.callOut('uploading the cache layer', argv),
        log: c.log,
      });
      // Streamed from S3 through gzip into the registry: no copy in the provider's scratch space.
      const snap = await c.images.build({
        name,
        layerTar: async () => Readable.from(await c.blobs.getStream(layerKey)),
        layerKey,
        owner: c.owner,
        kind: purpose,
      });
      c.log.info('snapshot taken', {
        workspaceId: this.workspaceId,
        snapshot: name,
        purpose,
        image: snap.image,
        bytes: snap.bytes,
      });
      return { ...snap };
    } catch (error) {
      await bestEffort(c.blobs.delete(layerKey), c.log, 'deleting the layer blob of a failed snapshot');
      throw error;
    } finally {
      await bestEffort(this.call('removing the layer tar', ['remove', guestTar]), c.log, 'removing the layer tar');
    }
  }

  /**
   * The task's container measured from inside by the runner, as root: its cgroup files and du of the
   * home and /tmp (runner.sh `usage`). The cgroup is the container's, so the runner and the ECS Exec
   * agent count too. No disk limit: the janitor does not measure Fargate homes (no usageBytes).
   * (ECS's task metadata endpoint, `${ECS_CONTAINER_METADATA_URI_V4}/task/stats`, reads the same cgroup.)
   */
  async usage(): Promise<WorkspaceUsage> {
    const what = 'measuring the workspace usage';
    try {
      const { status, payload } = await this.c.channels.with(this.taskArn, what, (rpc) =>
        rpc.call(usageArgv(this.plan.home)),
      );
      if (status === 0) return parseRunnerUsage(payload.toString('utf8'));
      const message = payload.toString('utf8');
      throw new BackendUnavailableError(
        message.startsWith('usage: runner.sh')
          ? 'the runner in the base image has no usage request; it is older than this provider — re-push the base image with shared/backends/runner/runner.sh (docs/deploy.md 3c)'
          : `${what} failed in the workspace task (runner status ${status}): ${message.slice(0, 300)}`,
      );
    } catch (error) {
      if (error instanceof TaskGoneError) throw new NotFoundError('workspace', this.workspaceId);
      throw error;
    }
  }

  /** Processes killed (their commands recorded killed), then only what changed since the copy is rewritten. */
  async restore(snapshot: SnapshotRef): Promise<void> {
    const { plan } = this;
    const snap = parseSnapshot(snapshot);
    if (snap.kind !== 'ecs-pristine')
      throw new BadRequestError(
        'an ecs workspace restores from its baseline copy; a cache image makes a new workspace',
        { field: 'snapshot' },
      );
    if (snap.taskArn !== this.taskArn) throw new NotFoundError('snapshot', snap.name);
    await this.commands.killAll();
    await this.call('restoring the baseline', [
      'pristine-restore',
      plan.home,
      pristineDir(snap.name),
      String(plan.user.uid),
      String(plan.user.gid),
    ]);
    await this.call('emptying /tmp', ['clean-tmp']);
    this.c.log.info('workspace restored', { workspaceId: this.workspaceId, snapshot: snap.name });
  }

  private async fetchInto(hostPath: string, dest: string, mode: string, owner: string): Promise<void> {
    const { c } = this;
    const key = `${BLOB.transfer}${this.workspaceId}/${randomBytes(8).toString('hex')}`;
    await c.blobs.putFile(key, hostPath);
    try {
      const url = await c.blobs.presignGet(key, c.transferTtlSeconds);
      await this.call('fetching a file into the workspace', ['fetch-url', url, dest, mode, owner]);
    } finally {
      await bestEffort(c.blobs.delete(key), c.log, 'deleting a transfer blob');
    }
  }

  private call(what: string, argv: string[]): Promise<void> {
    return this.c.channels.with(this.taskArn, what, (rpc) => rpcRunner(rpc).call(what, argv));
  }

  /** A tree-sized runner request whose answer is wanted (its stdout). */
  private callOut(what: string, argv: string[]): Promise<Buffer> {
    return this.c.channels.with(this.taskArn, what, (rpc) => rpcOk(rpc, what, argv, SLOW_OP_TIMEOUT_MS));
  }
}
