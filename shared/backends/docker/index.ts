import fs from 'node:fs/promises';
import path from 'node:path';
import type {
  BackendResource,
  CreateOptions,
  SnapshotStore,
  WorkspaceBackend,
  WorkspaceHandle,
} from '../../contract/backend.js';
import type { WorkspacePlan } from '../../contract/plan.js';
import type { BackendRef } from '../../contract/workspace.js';
import { BackendUnavailableError, BadRequestError, ConflictError, NotFoundError } from '../../contract/errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { openOrReject } from '../handle.js';
import { RunnerClient } from '../runner/client.js';
import { RunnerChannels } from './channel.js';
import { connectDocker, DEFAULT_DOCKER_SOCKET, pingDocker, type DockerClient } from './client.js';
import {
  ContainerNetworks,
  containerConfig,
  createAndStart,
  imageExists,
  imageId,
  removeContainer,
  workspaceLabels,
} from './container.js';
import * as images from './images.js';
import { checkName } from '../../lib/names.js';
import { containerName, DockerLayout, dockerRef, LABEL, refBelongsTo, refWorkspaceId } from './layout.js';
import { readMeta, writeMeta, type DockerWorkspaceMeta } from './workspace-meta.js';
import { type DockerContext, DockerWorkspace } from './workspace.js';
import { DockerFingerprints } from './fingerprint.js';
import { pruneFingerprints } from './fingerprint-cache.js';
import { installRunnerDir } from './runner-dir.js';
import { PristineContainers, runnerRequestKeepsFiles } from './pristine.js';
import { checkPlanShape } from '../plan-check.js';
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
  await installRunnerDir(layout);
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
  readonly snapshots: SnapshotStore;
  private readonly context: DockerContext;
  private readonly channels: RunnerChannels;
  private readonly networks: ContainerNetworks;
  private readonly fingerprintsDir: string;

  constructor(
    private readonly docker: DockerClient,
    private readonly layout: DockerLayout,
    private readonly owner: string,
    private readonly baseImage: string,
    private readonly log: Logger,
    readonly warnings: string[],
  ) {
    this.channels = new RunnerChannels(docker, log);
    this.fingerprintsDir = path.join(layout.base, 'fingerprints');
    this.networks = new ContainerNetworks(docker);
    const channels = this.channels;
    const pristine = new PristineContainers();
    this.context = {
      docker,
      layout,
      owner,
      channels,
      networks: this.networks,
      fingerprints: new DockerFingerprints(docker, this.fingerprintsDir),
      pristine,
      runner: (container) =>
        new RunnerClient({
          call: (what, argv) => {
            // Before the request is sent: it may write into the container (pristine.ts).
            if (!runnerRequestKeepsFiles(argv)) pristine.forget(container);
            return channels.run(container, what, argv);
          },
          request: (what, argv) => {
            if (!runnerRequestKeepsFiles(argv)) pristine.forget(container);
            return channels.request(container, what, argv);
          },
        }),
      log,
    };
    this.snapshots = {
      delete: (snapshot) => images.deleteSnapshot(docker, owner, snapshot, log),
      sizeBytes: (snapshot) => images.snapshotSize(docker, snapshot, owner, baseImage),
      scan: (snapshot, needles) => images.scanSnapshot(docker, snapshot, owner, needles),
      list: () => images.listSnapshots(docker, owner),
    };
  }

  /** The base image's id: a rebuilt image (same tag, new content) is a new base. */
  async baseIdentity(): Promise<string> {
    try {
      return `docker-image:${(await this.docker.getImage(this.baseImage).inspect()).Id}`;
    } catch (error) {
      throw new BackendUnavailableError(
        `docker base image '${this.baseImage}' cannot be inspected (it is never pulled): build it (.ci/docker.sh) or set docker.baseImage`,
        error,
      );
    }
  }

  /**
   * The janitor's minute: what the fingerprints keep for images that are gone (deleted snapshots,
   * pruned images) goes too — one image list, one readdir.
   */
  async maintain(): Promise<void> {
    const all = await this.docker.listImages({ all: true });
    const removed = await pruneFingerprints(
      this.fingerprintsDir,
      all.map((i) => i.Id),
    );
    if (removed > 0) this.log.info('fingerprint files of removed images pruned', { removed });
  }

  open(ref: BackendRef, plan: WorkspacePlan): WorkspaceHandle {
    return openOrReject(ref, () => new DockerWorkspace(this.context, ref, refWorkspaceId(ref), plan));
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
    const image = options.from ? images.refImage(options.from, this.owner).image : this.baseImage;
    const id0 = await imageId(this.docker, image);
    if (id0 === undefined) {
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
      await fs.mkdir(this.layout.commandsDir(id), { mode: 0o700 });
      await fs.mkdir(this.layout.transfer(id), { mode: 0o755 });
      await fs.chmod(this.layout.transfer(id), 0o755);
      this.noteNetwork(plan);
      // A snapshot by its id: the very image inspected above, even should its tag move meanwhile.
      await createAndStart(this.docker, containerConfig(this.layout, id, plan, options.from ? id0 : image, labels));
      // Also opens the runner channel, so the first command does not pay for it.
      await this.context.runner(containerName(id)).init(plan);
      // From a snapshot: the container is its image until something writes (pristine.ts).
      if (options.from) this.context.pristine.set(containerName(id), id0);
      this.log.info('workspace created', { workspaceId: id, image, fromSnapshot: options.from?.name ?? null });
      return dockerRef(id);
    } catch (error) {
      this.channels.forget(containerName(id));
      this.networks.forget(containerName(id));
      this.context.pristine.forget(containerName(id));
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
    this.context.pristine.forget(containerName(id));
    await removeContainer(this.docker, containerName(id));
    // And any other container of the workspace (one a restore renamed aside and was cut short removing).
    const others = await this.docker.listContainers({
      all: true,
      filters: JSON.stringify({ label: [`${LABEL.owner}=${this.owner}`, `${LABEL.workspace}=${id}`] }),
    });
    for (const c of others)
      for (const name of c.Names ?? []) await removeContainer(this.docker, name.replace(/^\//, ''));
    const existed = (await readMeta(this.layout, id)) !== undefined;
    await fs.rm(this.layout.workspaceDir(id), { recursive: true, force: true });
    this.log.info('workspace destroyed', { workspaceId: id, existed });
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
