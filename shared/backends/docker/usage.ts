import type { WorkspaceUsage } from '../../contract/backend.js';
import { BackendUnavailableError, NotFoundError } from '../../contract/errors.js';
import type { WorkspacePlan } from '../../contract/plan.js';
import { type DockerClient, isNotFound } from './client.js';

/** The parts of the Engine API's stats answer read here (cgroup v1 and v2 alike). */
interface Stats {
  cpu_stats?: { cpu_usage?: { total_usage?: number } };
  memory_stats?: { usage?: number };
  pids_stats?: { current?: number; limit?: number };
}

/**
 * CPU, memory and pids of a workspace's container from Docker's stats (`one-shot`: one read of its
 * cgroup, no second sample to wait for). Memory is the cgroup's charge as the daemon reports it
 * (page cache and the /tmp tmpfs included). Limits are the container's, as made from the plan:
 * memory_stats.limit reports the host's memory when there is none.
 */
export async function containerUsage(
  docker: DockerClient,
  container: string,
  plan: WorkspacePlan,
): Promise<Omit<WorkspaceUsage, 'disk'>> {
  let stats: Stats;
  try {
    // `one-shot` is a query option of the Engine API (1.41+) that @types/dockerode does not list.
    const options = { stream: false, 'one-shot': true } as { stream: false };
    stats = (await docker.getContainer(container).stats(options)) as Stats;
  } catch (error) {
    if (isNotFound(error)) throw new NotFoundError('workspace', container);
    throw new BackendUnavailableError('cannot read the stats of the workspace container', error);
  }
  const ns = stats.cpu_stats?.cpu_usage?.total_usage;
  const memoryMb = plan.resources.memoryMb;
  const pidsLimit = stats.pids_stats?.limit;
  return {
    source: 'docker stats',
    cpu: { usageSeconds: typeof ns === 'number' ? ns / 1e9 : null },
    memory: {
      currentBytes: stats.memory_stats?.usage ?? null,
      limitBytes: memoryMb === undefined ? null : memoryMb * 1024 * 1024,
    },
    pids: {
      current: stats.pids_stats?.current ?? null,
      // 0 or absent: none (and "max" as 2^64-1 on some daemons).
      limit: typeof pidsLimit === 'number' && pidsLimit > 0 && pidsLimit < 2 ** 53 ? pidsLimit : null,
    },
  };
}
