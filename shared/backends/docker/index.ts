import fs from 'node:fs/promises';
import path from 'node:path';
import type {
  BackendResource,
  CommandSpec,
  CreateOptions,
  OutputStream,
  WorkspaceBackend,
} from '../../contract/backend.js';
import type { WorkspacePlan } from '../../contract/plan.js';
import type { BackendRef, SnapshotRef } from '../../contract/workspace.js';
import { BackendUnavailableError, BadRequestError, ConflictError, NotFoundError } from '../../contract/errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { packTree } from '../tar/archive.js';
import { RunnerChannels } from './channel.js';
import { connectDocker, DEFAULT_DOCKER_SOCKET, pingDocker, type DockerClient } from './client.js';
import { DockerCommands } from './commands.js';
import {
  ContainerNetworks,
  containerConfig,
  createAndStart,
  imageExists,
  removeContainer,
  workspaceLabels,
} from './container.js';
import * as images from './images.js';
import { checkName } from '../../lib/names.js';
import { containerName, DockerLayout, dockerRef, LABEL, refBelongsTo, refWorkspaceId } from './layout.js';
import { readMeta, requireMeta, writeMeta, type DockerWorkspaceMeta } from './workspace-meta.js';
import { DockerFingerprints } from './fingerprint.js';
import { checkPlanShape, homeDestination } from '../plan-check.js';
import { bestEffort } from '../../lib/best-effort.js';

export interface DockerBackendOptions {
  /** Provider data dir; the backend keeps its host files under `<dataDir>/docker/`. */
  dataDir: string;
  /** This provider instance: the `wsp.owner` label on everything it creates (and all it lists). */
  owner: string;
  log?: Logger;
  /** Docker socket (default: $WSP_DOCKER_SOCKET, else a unix:// $DOCKER_HOST, else /var/run/docker.sock). */
  socketPath?: string;
  /** Image of fresh workspaces (never pulled: it must exist on the daemon). */
  baseImage: string;
}

const KILL_ALL_REASON = 'all workspace processes killed';

/**
 * The Docker backend (`mode: docker`): one container per workspace (`wsp-<id>`), commands through
 * runner.sh with host-side command files, snapshots as committed images, restore = a new container
 * from the snapshot image (constant time). Throws BackendUnavailableError when the daemon does not answer.
 */
export async function createDockerBackend(options: DockerBackendOptions): Promise<WorkspaceBackend> {
  const log = (options.log ?? silentLogger).child({ backend: 'docker' });
  checkName('owner', options.owner);
  const dockerHost = process.env.DOCKER_HOST?.startsWith('unix://')
    ? process.env.DOCKER_HOST.slice('unix://'.length)
    : undefined;
  const socketPath = options.socketPath ?? process.env.WSP_DOCKER_SOCKET ?? dockerHost ?? DEFAULT_DOCKER_SOCKET;
  const docker = connectDocker(socketPath);
  await pingDocker(docker, socketPath);
  const layout = new DockerLayout(options.dataDir);
  await fs.mkdir(layout.workspacesDir, { recursive: true, mode: 0o700 });
  await fs.chmod(layout.base, 0o700);
  await fs.chmod(layout.workspacesDir, 0o700);
  const warnings: string[] = [];
  if (!(await imageExists(docker, options.baseImage))) {
    warnings.push(
      `docker base image '${options.baseImage}' is missing on the daemon (it is never pulled): build it (.ci/docker.sh) or set docker.baseImage`,
    );
  }
  for (const w of warnings) log.warn(w);
  return new DockerBackend(docker, layout, options.owner, options.baseImage, log, warnings);
}

class DockerBackend implements WorkspaceBackend {
  readonly kind = 'docker';
  private readonly commands: DockerCommands;
  private readonly channels: RunnerChannels;
  private readonly fingerprints: DockerFingerprints;
  private readonly networks: ContainerNetworks;

  constructor(
    private readonly docker: DockerClient,
    private readonly layout: DockerLayout,
    private readonly owner: string,
    private readonly baseImage: string,
    private readonly log: Logger,
    readonly warnings: string[],
  ) {
    this.channels = new RunnerChannels(docker, log);
    this.commands = new DockerCommands(this.channels, layout);
    this.fingerprints = new DockerFingerprints(docker, path.join(layout.base, 'fingerprints'));
    this.networks = new ContainerNetworks(docker);
  }

  private warnOnce(message: string): void {
    if (this.warnings.includes(message)) return;
    this.warnings.push(message);
    this.log.warn(message);
  }

  private noteNetwork(plan: WorkspacePlan): void {
    const networks = new Set<string>([plan.network, plan.setupNetwork ?? plan.network]);
    if (networks.has('host'))
      this.warnOnce(
        "network 'host': workspaces share the Docker host's network namespace and can reach every service on its loopback (the provider's API included)",
      );
    if (networks.has('egress') || networks.has('bridge'))
      this.warnOnce(
        "network 'egress': the workspace's egress goes through Docker's default bridge (other containers on it are reachable; the host's loopback is not)",
      );
  }

  refBelongsTo(ref: BackendRef, workspaceId: string): boolean {
    return refBelongsTo(ref, workspaceId);
  }

  async create(plan: WorkspacePlan, options: CreateOptions): Promise<BackendRef> {
    const id = checkName('workspace id', options.workspaceId);
    checkPlan(plan);
    const image = options.from ? images.refImage(options.from).image : this.baseImage;
    if (!(await imageExists(this.docker, image))) {
      if (options.from) throw new NotFoundError('snapshot', String(options.from.name));
      throw new BackendUnavailableError(
        `docker base image '${image}' is missing on the daemon (it is never pulled): build it (.ci/docker.sh) or set docker.baseImage`,
      );
    }
    const wsDir = this.layout.workspaceDir(id);
    try {
      await fs.mkdir(wsDir, { mode: 0o700 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST')
        throw new ConflictError(`docker workspace '${id}' already exists`, { cause: error });
      throw error;
    }
    const labels = workspaceLabels(id, this.owner, options.labels);
    const meta: DockerWorkspaceMeta = {
      workspaceId: id,
      owner: this.owner,
      labels,
      user: { uid: plan.user.uid, gid: plan.user.gid },
      createdAt: new Date().toISOString(),
    };
    try {
      // meta.json first: from here on a crash leaves a resource listResources finds.
      await writeMeta(this.layout, meta);
      await fs.mkdir(this.layout.cmdRoot(id), { mode: 0o700 });
      await fs.mkdir(this.layout.transfer(id), { mode: 0o755 });
      await fs.chmod(this.layout.transfer(id), 0o755);
      this.noteNetwork(plan);
      await createAndStart(this.docker, containerConfig(this.layout, id, plan, image, labels));
      const { user } = plan;
      // Also opens the runner channel, so the first command does not pay for it.
      await this.channels.run(containerName(id), 'preparing the workspace user', [
        'init',
        String(user.uid),
        String(user.gid),
        user.name,
        plan.home,
        plan.root,
      ]);
      this.log.info('workspace created', { workspaceId: id, image, fromSnapshot: options.from?.name ?? null });
      return dockerRef(id);
    } catch (error) {
      this.channels.forget(containerName(id));
      this.networks.forget(containerName(id));
      await bestEffort(
        removeContainer(this.docker, containerName(id)),
        this.log,
        'removing the container of a failed create',
      );
      await bestEffort(
        fs.rm(wsDir, { recursive: true, force: true }),
        this.log,
        'removing the workspace dir of a failed create',
      );
      throw error;
    }
  }

  async destroy(ref: BackendRef): Promise<void> {
    const id = refWorkspaceId(ref);
    this.channels.forget(containerName(id));
    this.networks.forget(containerName(id));
    await removeContainer(this.docker, containerName(id));
    const existed = (await readMeta(this.layout, id)) !== undefined;
    await fs.rm(this.layout.workspaceDir(id), { recursive: true, force: true });
    this.log.info('workspace destroyed', { workspaceId: id, existed });
  }

  /** A host file in the workspace's transfer dir, bind-mounted read-only at plan.transferDir. */
  async putTransferFile(ref: BackendRef, _plan: WorkspacePlan, name: string, hostPath: string): Promise<void> {
    const meta = await requireMeta(this.layout, ref);
    const dest = path.join(this.layout.transfer(meta.workspaceId), checkName('transfer file name', name));
    const tmp = `${dest}.${process.pid}.tmp`;
    await fs.copyFile(hostPath, tmp);
    await fs.chmod(tmp, 0o644);
    await fs.rename(tmp, dest);
  }

  async removeTransferFile(ref: BackendRef, _plan: WorkspacePlan, name: string): Promise<void> {
    const meta = await requireMeta(this.layout, ref);
    await fs.rm(path.join(this.layout.transfer(meta.workspaceId), checkName('transfer file name', name)), {
      force: true,
    });
  }

  /** put-archive of the host tree, every header owned by the plan user; missing parents made as the user. */
  async putDirectory(ref: BackendRef, plan: WorkspacePlan, hostDir: string, guestPath: string): Promise<void> {
    const meta = await requireMeta(this.layout, ref);
    const { rel, parents } = homeDestination(plan, guestPath);
    const st = await fs.stat(hostDir).catch(() => undefined);
    if (!st?.isDirectory()) throw new BadRequestError('source is not a directory', { field: 'hostDir' });
    const archive = packTree(hostDir, rel, parents, { uid: plan.user.uid, gid: plan.user.gid });
    try {
      await this.docker.getContainer(containerName(meta.workspaceId)).putArchive(archive, { path: plan.home });
    } catch (error) {
      throw new BackendUnavailableError(`cannot copy ${hostDir} into the workspace`, error);
    }
  }

  async startCommand(ref: BackendRef, plan: WorkspacePlan, spec: CommandSpec): Promise<void> {
    const meta = await requireMeta(this.layout, ref);
    // Setup may have a network of its own (spec.network); every other command runs on plan.network.
    await this.networks.ensure(containerName(meta.workspaceId), spec.network ?? plan.network);
    await this.commands.start(meta.workspaceId, plan, spec);
  }

  commandStatus(ref: BackendRef, commandId: string) {
    return this.commands.status(refWorkspaceId(ref), commandId);
  }

  waitCommand(ref: BackendRef, commandId: string, waitMs: number) {
    return this.commands.wait(refWorkspaceId(ref), commandId, waitMs);
  }

  readOutput(ref: BackendRef, commandId: string, stream: OutputStream, offset: number, limit: number) {
    return this.commands.read(refWorkspaceId(ref), commandId, stream, offset, limit);
  }

  killCommand(ref: BackendRef, commandId: string, reason: string): Promise<void> {
    return this.commands.kill(refWorkspaceId(ref), commandId, reason);
  }

  /**
   * What the container wrote (its writable layer, SizeRw: the home and everything else outside the
   * image). /tmp is a tmpfs, capped by its own size option (container.ts), so it is not counted here.
   */
  async usageBytes(ref: BackendRef): Promise<number> {
    const meta = await requireMeta(this.layout, ref);
    // `size=true` is a query option of the Engine API that @types/dockerode does not list.
    const options = { size: true } as unknown as Parameters<ReturnType<DockerClient['getContainer']>['inspect']>[0];
    const info = (await this.docker.getContainer(containerName(meta.workspaceId)).inspect(options)) as {
      SizeRw?: number;
    };
    return info.SizeRw ?? 0;
  }

  async killAll(ref: BackendRef): Promise<void> {
    const meta = await requireMeta(this.layout, ref);
    await this.commands.killAll(meta.workspaceId, meta.user, KILL_ALL_REASON);
  }

  async snapshot(
    ref: BackendRef,
    _plan: WorkspacePlan,
    purpose: 'cache' | 'baseline',
    name: string,
  ): Promise<SnapshotRef> {
    const meta = await requireMeta(this.layout, ref);
    const snap = await images.commitSnapshot(this.docker, containerName(meta.workspaceId), purpose, name, this.owner);
    this.log.info('snapshot taken', { workspaceId: meta.workspaceId, snapshot: name, purpose });
    return snap;
  }

  /**
   * Constant time: running commands are killed (and recorded so), the container is removed and a new
   * one with the same name is made from the snapshot image. The host command dir is kept.
   */
  async restore(ref: BackendRef, plan: WorkspacePlan, snapshot: SnapshotRef): Promise<void> {
    const meta = await requireMeta(this.layout, ref);
    const { image } = images.refImage(snapshot);
    if (!(await imageExists(this.docker, image))) throw new NotFoundError('snapshot', String(snapshot.name));
    const id = meta.workspaceId;
    await this.commands.killAll(id, meta.user, KILL_ALL_REASON).catch((e: unknown) => {
      // A container that is gone or stopped has no processes left to kill; its commands read 'lost'.
      this.log.warn('restore: killAll before replacing the container failed', {
        workspaceId: id,
        error: (e as Error).message,
      });
    });
    this.channels.forget(containerName(id));
    this.networks.forget(containerName(id));
    await removeContainer(this.docker, containerName(id));
    await createAndStart(this.docker, containerConfig(this.layout, id, plan, image, meta.labels));
    this.log.info('workspace restored', { workspaceId: id, snapshot: snapshot.name });
  }

  /** O(changes since the container's image) when the home is untouched — see fingerprint.ts. */
  async fingerprintHome(ref: BackendRef, plan: WorkspacePlan): Promise<string> {
    const meta = await requireMeta(this.layout, ref);
    return this.fingerprints.home(containerName(meta.workspaceId), plan);
  }

  deleteSnapshot(snapshot: SnapshotRef): Promise<void> {
    return images.deleteSnapshot(this.docker, this.owner, snapshot, this.log);
  }

  snapshotSizeBytes(snapshot: SnapshotRef): Promise<number> {
    return images.snapshotSize(this.docker, snapshot, this.baseImage);
  }

  scanSnapshot(snapshot: SnapshotRef, needles: readonly string[]): Promise<string[]> {
    return images.scanSnapshot(this.docker, snapshot, needles);
  }

  /**
   * This owner's workspace containers (by label; images are told apart by `wsp.kind`), plus host dirs
   * left without a container by a crash during create.
   */
  async listResources(): Promise<BackendResource[]> {
    const containers = await this.docker.listContainers({
      all: true,
      filters: JSON.stringify({ label: [`${LABEL.owner}=${this.owner}`, `${LABEL.kind}=workspace`] }),
    });
    const ids = new Set<string>();
    for (const c of containers) {
      const id = c.Labels?.[LABEL.workspace];
      if (id !== undefined) ids.add(id);
    }
    for (const name of await fs.readdir(this.layout.workspacesDir).catch(() => [] as string[])) ids.add(name);
    const out: BackendResource[] = [];
    for (const id of [...ids].sort()) {
      try {
        checkName('workspace id', id);
      } catch {
        continue;
      }
      out.push({ workspaceId: id, owner: this.owner, ref: dockerRef(id) });
    }
    return out;
  }

  listSnapshots(): Promise<SnapshotRef[]> {
    return images.listSnapshots(this.docker, this.owner);
  }
}

function checkPlan(plan: WorkspacePlan): void {
  checkPlanShape(plan);
  for (const network of [plan.network, plan.setupNetwork ?? plan.network]) {
    if (!['none', 'egress', 'host', 'bridge'].includes(network))
      throw new BadRequestError('invalid plan network', { field: 'plan.network' });
  }
  // A container never enters or leaves the host's network namespace (see ContainerNetworks).
  if ((plan.network === 'host') !== ((plan.setupNetwork ?? plan.network) === 'host')) {
    throw new BadRequestError("on Docker, setup.network and workspace.network must both be 'host' or neither", {
      field: 'plan.network',
    });
  }
}
