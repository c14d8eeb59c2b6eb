import type Docker from 'dockerode';
import { DEFAULT_WORKSPACE_PIDS } from '../../contract/limits.js';
import type { NetworkPolicy, WorkspacePlan } from '../../contract/plan.js';
import { BackendUnavailableError, BadRequestError, ConflictError } from '../../contract/errors.js';
import { dockerStatus, isNotFound, type DockerClient } from './client.js';
import { containerName, GUEST_CMD_ROOT, GUEST_RUNNER_DIR, LABEL, type DockerLayout } from './layout.js';

/**
 * One workspace container: how it is configured, created, started and removed. PID 1 is docker's
 * init (reaps the runner's orphans) running `sleep infinity` as root, so the workspace user cannot end
 * its own container (its processes are killed with `kill -1` as that user); commands run as the plan
 * user through runner.sh.
 */

/**
 * Root inside (only ever runner.sh) needs only these: make and chown homes inside the user's 0700 home
 * (DAC_OVERRIDE), drop to the user (chroot --userspec), kill its processes. The user gets none
 * (non-root, no-new-privileges).
 */
const CAPABILITIES = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'SETUID', 'SETGID', 'KILL', 'SYS_CHROOT'];
const PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export function containerConfig(
  layout: DockerLayout,
  workspaceId: string,
  plan: WorkspacePlan,
  image: string,
  labels: Record<string, string>,
): Docker.ContainerCreateOptions {
  const r = plan.resources;
  return {
    name: containerName(workspaceId),
    Image: image,
    Entrypoint: ['sleep', 'infinity'],
    Cmd: [],
    User: '0:0',
    WorkingDir: plan.workdir,
    // Nothing of the workspace's env: commands get theirs from a file (never in Config.Env or argv).
    Env: [PATH],
    Labels: labels,
    HostConfig: {
      Init: true,
      // Back after a daemon restart (its commands then read 'lost': their supervisors are gone).
      RestartPolicy: { Name: 'unless-stopped' },
      NetworkMode: dockerNetwork(plan.network),
      Binds: [
        // The runner, read-only (runner-dir.ts); the workspace's command dirs mount inside it.
        `${layout.runnerDir}:${GUEST_RUNNER_DIR}:ro`,
        `${layout.commandsDir(workspaceId)}:${GUEST_CMD_ROOT}`,
        `${layout.transfer(workspaceId)}:${plan.transferDir}:ro`,
      ],
      // /tmp in memory: empty in every new container (restore) and never part of a committed image.
      // A tmpfs is memory: without a size the agent could fill the host's RAM through /tmp.
      Tmpfs: { '/tmp': `rw,exec,nosuid,nodev,mode=1777${r.diskMb !== undefined ? `,size=${r.diskMb}m` : ''}` },
      CapDrop: ['ALL'],
      CapAdd: CAPABILITIES,
      SecurityOpt: ['no-new-privileges'],
      ...(r.cpus !== undefined ? { NanoCpus: Math.round(r.cpus * 1e9) } : {}),
      ...(r.memoryMb !== undefined ? { Memory: r.memoryMb * 1024 * 1024 } : {}),
      // Always a pids limit: a plan without one gets the default (a fork bomb must not take the host).
      PidsLimit: r.pids ?? DEFAULT_WORKSPACE_PIDS,
    },
  };
}

export function workspaceLabels(
  workspaceId: string,
  owner: string,
  labels: Record<string, string>,
): Record<string, string> {
  return { ...labels, [LABEL.workspace]: workspaceId, [LABEL.owner]: owner, [LABEL.kind]: 'workspace' };
}

/** Create + start (the runner is a bind: runner-dir.ts). Throws ConflictError when the name is taken, BackendUnavailableError otherwise. */
export async function createAndStart(docker: DockerClient, config: Docker.ContainerCreateOptions): Promise<void> {
  let container: Docker.Container;
  try {
    container = await docker.createContainer(config);
  } catch (error) {
    if (dockerStatus(error) === 409)
      throw new ConflictError(`container ${config.name} already exists`, { cause: error });
    throw new BackendUnavailableError(`cannot create container ${config.name} from ${config.Image}`, error);
  }
  try {
    await container.start();
  } catch (error) {
    await container.remove({ force: true }).catch(() => undefined);
    throw new BackendUnavailableError(`cannot start container ${config.name}`, error);
  }
}

/** Remove the container and everything running in it; idempotent. */
export async function removeContainer(docker: DockerClient, name: string): Promise<void> {
  try {
    await docker.getContainer(name).remove({ force: true, v: true });
  } catch (error) {
    if (isNotFound(error)) return;
    // 409 "removal already in progress": wait for it.
    if (dockerStatus(error) === 409) {
      for (let i = 0; i < 100; i++) {
        try {
          await docker.getContainer(name).inspect();
        } catch (e) {
          if (isNotFound(e)) return;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    throw new BackendUnavailableError(`cannot remove container ${name}`, error);
  }
}

/** Does the image exist on the daemon? */
export async function imageExists(docker: DockerClient, image: string): Promise<boolean> {
  return (await imageId(docker, image)) !== undefined;
}

/** The image's id (content address), undefined when there is no such image. */
export async function imageId(docker: DockerClient, image: string): Promise<string | undefined> {
  try {
    return (await docker.getImage(image).inspect()).Id;
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw new BackendUnavailableError(`cannot inspect image ${image}`, error);
  }
}

/**
 * The Docker network of a workspace network policy. 'egress' is Docker's default bridge: the
 * container gets its own network namespace with a route out through the host's NAT, and the host's
 * loopback is NOT reachable from it (127.0.0.1 inside is the container's own lo; the host's
 * loopback services are not published on the bridge). The provider's own endpoints are loopback
 * (the API, by default) or unix sockets (the embedded state store): a bridge reaches neither.
 * 'host' shares the host's namespace, loopback included: the warned opt-in. 'bridge' is the old
 * name of 'egress' (plans stored before it); anything unknown is 'none'.
 */
function dockerNetwork(network: NetworkPolicy | string): 'none' | 'bridge' | 'host' {
  if (network === 'egress' || network === 'bridge') return 'bridge';
  return network === 'host' ? 'host' : 'none';
}

/**
 * The network a container's commands run on: plan.network, or a command's own (setup's
 * setup.network). A container's network namespace is made once, so a switch is a Docker network
 * disconnect + connect on the running container (Engine API POST /networks/{id}/disconnect and
 * /connect): a container in 'none' cannot be connected to a second network, so 'none' is
 * disconnected first, and the bridge is swapped back for 'none' when commands resume. 'host' cannot
 * be entered or left at all: setup and commands must then both be 'host' (or neither).
 * What each container is on is remembered; the first use after a provider start inspects it.
 */
export class ContainerNetworks {
  private readonly current = new Map<string, 'none' | 'bridge' | 'host'>();

  constructor(private readonly docker: DockerClient) {}

  /** Put container `name` on `network` before a command starts. */
  async ensure(name: string, network: NetworkPolicy): Promise<void> {
    const want = dockerNetwork(network);
    let now = this.current.get(name);
    if (now === want) return;
    const info = await this.inspect(name);
    const mode = String(info.HostConfig?.NetworkMode ?? '');
    const attached = Object.keys(info.NetworkSettings?.Networks ?? {});
    if ((mode === 'host') !== (want === 'host')) {
      throw new BadRequestError(
        `a Docker container cannot be moved ${want === 'host' ? 'into' : 'out of'} the host's network: set setup.network and workspace.network both to 'host', or neither`,
        { field: 'network' },
      );
    }
    // 'none' is reached by leaving every network (only the container's own loopback remains), never
    // by connecting 'none' again: dockerd (20.10) then keeps a stale endpoint named after the
    // container in 'none', and the next container of that name (a reset's) cannot start.
    const isNone = (list: string[]): boolean => list.length === 0 || (list.length === 1 && list[0] === 'none');
    now =
      want === 'host'
        ? 'host'
        : want === 'none'
          ? isNone(attached)
            ? 'none'
            : undefined
          : attached.length === 1 && attached[0] === want
            ? want
            : undefined;
    if (now !== want) {
      try {
        const leave = want === 'none' ? attached.filter((n) => n !== 'none') : attached.filter((n) => n !== want);
        for (const other of leave) await this.docker.getNetwork(other).disconnect({ Container: name, Force: true });
        if (want !== 'none' && !attached.includes(want))
          await this.docker.getNetwork(want).connect({ Container: name });
      } catch (error) {
        this.current.delete(name);
        throw new BackendUnavailableError(`cannot put container ${name} on network '${want}'`, error);
      }
    }
    this.current.set(name, want);
  }

  forget(name: string): void {
    this.current.delete(name);
  }

  private async inspect(name: string): Promise<Docker.ContainerInspectInfo> {
    try {
      return await this.docker.getContainer(name).inspect();
    } catch (error) {
      throw new BackendUnavailableError(`cannot inspect container ${name}`, error);
    }
  }
}
