import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
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
import type { RunnerClient } from '../runner/client.js';
import { packTree } from '../tar/archive.js';
import type { RunnerChannels } from './channel.js';
import { type DockerClient, isNotFound } from './client.js';
import { DockerCommands } from './commands.js';
import { type ContainerNetworks, containerConfig, createAndStart, imageId, removeContainer } from './container.js';
import type { DockerFingerprints } from './fingerprint.js';
import * as images from './images.js';
import { containerName, type DockerLayout } from './layout.js';
import { requireMeta } from './workspace-meta.js';
import type { PristineContainers } from './pristine.js';
import { containerUsage } from './usage.js';

const KILL_ALL_REASON = 'all workspace processes killed';

/** What every handle of one Docker backend shares. */
export interface DockerContext {
  docker: DockerClient;
  layout: DockerLayout;
  owner: string;
  channels: RunnerChannels;
  networks: ContainerNetworks;
  fingerprints: DockerFingerprints;
  pristine: PristineContainers;
  runner(container: string): RunnerClient;
  log: Logger;
}

/**
 * One Docker workspace (container `wsp-<id>`): its commands through the runner, its files copied in
 * by the transfer dir (a bind mount) or put-archive, its snapshots as committed images.
 */
/**
 * Rename container `name` to a fresh name beside it: the new name, undefined when there is no such
 * container, false when it could not be renamed (the caller removes it in place instead).
 */
async function renameAside(docker: DockerClient, name: string): Promise<string | undefined | false> {
  const aside = `${name}-replaced-${randomBytes(4).toString('hex')}`;
  try {
    await docker.getContainer(name).rename({ name: aside });
    return aside;
  } catch (error) {
    if (isNotFound(error)) return undefined;
    return false;
  }
}

export class DockerWorkspace implements WorkspaceHandle, WorkspaceFiles, WorkspaceSnapshots {
  readonly commands: DockerCommands;
  /** The files and snapshots of this workspace are methods of the handle itself. */
  readonly files: WorkspaceFiles = this;
  readonly snapshots: WorkspaceSnapshots = this;
  private readonly container: string;

  constructor(
    private readonly c: DockerContext,
    readonly ref: BackendRef,
    private readonly workspaceId: string,
    private readonly plan: WorkspacePlan,
  ) {
    this.container = containerName(workspaceId);
    this.commands = new DockerCommands(
      c.runner(this.container),
      c.networks,
      c.layout,
      workspaceId,
      plan,
      KILL_ALL_REASON,
    );
  }

  /** A host file in the workspace's transfer dir, bind-mounted read-only at plan.transferDir. */
  async putTransferFile(name: string, hostPath: string): Promise<void> {
    await requireMeta(this.c.layout, this.workspaceId);
    const dest = path.join(this.c.layout.transfer(this.workspaceId), checkName('transfer file name', name));
    const tmp = `${dest}.${process.pid}.tmp`;
    await fs.copyFile(hostPath, tmp);
    await fs.chmod(tmp, 0o644);
    await fs.rename(tmp, dest);
  }

  async removeTransferFile(name: string): Promise<void> {
    await requireMeta(this.c.layout, this.workspaceId);
    await fs.rm(path.join(this.c.layout.transfer(this.workspaceId), checkName('transfer file name', name)), {
      force: true,
    });
  }

  /** put-archive of the host tree, every header owned by the plan user; missing parents made as the user. */
  async putDirectory(hostDir: string, guestPath: string): Promise<void> {
    const { plan } = this;
    await requireMeta(this.c.layout, this.workspaceId);
    const { rel, parents } = homeDestination(plan, guestPath);
    const st = await fs.stat(hostDir).catch(() => undefined);
    if (!st?.isDirectory()) throw new BadRequestError('source is not a directory', { field: 'hostDir' });
    const archive = packTree(hostDir, rel, parents, { uid: plan.user.uid, gid: plan.user.gid });
    this.c.pristine.forget(this.container);
    try {
      await this.c.docker.getContainer(this.container).putArchive(archive, { path: plan.home });
    } catch (error) {
      throw new BackendUnavailableError(`cannot copy ${hostDir} into the workspace`, error);
    }
  }

  /**
   * What the container wrote (its writable layer, SizeRw: the home and everything else outside the
   * image). /tmp is a tmpfs, capped by its own size option (container.ts), so it is not counted here.
   */
  async usageBytes(): Promise<number> {
    await requireMeta(this.c.layout, this.workspaceId);
    // `size=true` is a query option of the Engine API that @types/dockerode does not list.
    const options = { size: true } as unknown as Parameters<ReturnType<DockerClient['getContainer']>['inspect']>[0];
    const info = (await this.c.docker.getContainer(this.container).inspect(options)) as { SizeRw?: number };
    return info.SizeRw ?? 0;
  }

  /** Docker's stats of the container (its cgroup, read by the daemon) and its writable layer's size. */
  async usage(): Promise<WorkspaceUsage> {
    await requireMeta(this.c.layout, this.workspaceId);
    const [measured, usedBytes] = await Promise.all([
      containerUsage(this.c.docker, this.container, this.plan),
      this.usageBytes(),
    ]);
    const diskMb = this.plan.resources.diskMb;
    return { ...measured, disk: { usedBytes, limitBytes: diskMb === undefined ? null : diskMb * 1024 * 1024 } };
  }

  /** O(changes since the container's image) when the home is untouched — see fingerprint.ts. */
  async fingerprintHome(): Promise<string> {
    await requireMeta(this.c.layout, this.workspaceId);
    return this.c.fingerprints.home(this.container, this.plan, () => this.c.pristine.imageOf(this.container));
  }

  /**
   * A committed image of the container; a baseline of a container that is still its snapshot image
   * (pristine.ts: a warm start whose repositories needed nothing) is that image, tagged — same files.
   */
  async take(purpose: SnapshotPurpose, name: string): Promise<SnapshotRef> {
    await requireMeta(this.c.layout, this.workspaceId);
    const same = purpose === 'baseline' ? this.c.pristine.imageOf(this.container) : undefined;
    const snap = same
      ? await images.tagSnapshot(this.c.docker, same, purpose, name, this.c.owner)
      : await images.commitSnapshot(this.c.docker, this.container, purpose, name, this.c.owner);
    this.c.log.info('snapshot taken', { workspaceId: this.workspaceId, snapshot: name, purpose, tagged: !!same });
    return snap;
  }

  /**
   * Constant time: running commands are killed (and recorded so), the container is removed and a new
   * one with the same name is made from the snapshot image. The host command dir is kept.
   */
  async restore(snapshot: SnapshotRef): Promise<void> {
    const { c, workspaceId: id } = this;
    const meta = await requireMeta(c.layout, id);
    const { image } = images.refImage(snapshot, c.owner);
    const id0 = await imageId(c.docker, image);
    if (id0 === undefined) throw new NotFoundError('snapshot', String(snapshot.name));
    await this.commands.killAll().catch((e: unknown) => {
      // A container that is gone or stopped has no processes left to kill; its commands read 'lost'.
      c.log.warn('restore: killAll before replacing the container failed', {
        workspaceId: id,
        error: (e as Error).message,
      });
    });
    c.channels.forget(this.container);
    c.networks.forget(this.container);
    c.pristine.forget(this.container);
    // The replacement is created while the old container is removed: the old one is renamed aside
    // first (its workspace processes were killed above, and its root file system is its own), so the
    // name is free at once; the restore ends when both are done.
    const aside = await renameAside(c.docker, this.container);
    if (aside === false) await removeContainer(c.docker, this.container);
    const removal = typeof aside === 'string' ? removeContainer(c.docker, aside) : Promise.resolve();
    try {
      // By id: the image inspected above (pristine.ts), even should its tag move meanwhile.
      await createAndStart(c.docker, containerConfig(c.layout, id, this.plan, id0, meta.labels));
    } finally {
      await bestEffort(removal, c.log, 'removing the replaced container');
    }
    c.pristine.set(this.container, id0);
    c.log.info('workspace restored', { workspaceId: id, snapshot: snapshot.name });
  }
}
