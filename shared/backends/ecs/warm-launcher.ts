import type { WarmLauncher } from './warm-pool.js';
import { TAG } from './guest.js';
import type { EcsTasks } from './tasks.js';

/** Tags of pool tasks: no workspace tag until a claim (listResources leaves them to the pool). */
const WARM_TAG = { cacheKey: 'wsp:warm-cache-key', id: 'wsp:warm-id' } as const;

/**
 * The warm pool's way to ECS: RunTask of the cache image's task definition tagged with the pool's
 * record id (a reaper can find a task whose ARN was never recorded), readiness probes by DescribeTasks,
 * StopTask. Same task settings as workspace tasks (private subnets, exec enabled) — a claimed task
 * becomes a workspace as it is.
 */
export class EcsWarmLauncher implements WarmLauncher {
  constructor(
    private readonly tasks: EcsTasks,
    private readonly owner: string,
  ) {}

  launch(cacheKey: string, taskDefinitionArn: string, warmTaskId: string): Promise<string> {
    return this.tasks.run(taskDefinitionArn, {
      [TAG.owner]: this.owner,
      [TAG.kind]: 'warm',
      [WARM_TAG.cacheKey]: cacheKey.slice(0, 256),
      [WARM_TAG.id]: warmTaskId,
    });
  }

  /** A task ECS does not show yet (MISSING) within the grace period after `knownAt` is neither ready nor gone. */
  async probe(tasks: ReadonlyArray<{ taskArn: string; knownAt: Date }>): Promise<{ ready: string[]; gone: string[] }> {
    for (const t of tasks) this.tasks.expectVisible(t.taskArn, t.knownAt.getTime());
    const views = await this.tasks.describe(tasks.map((t) => t.taskArn));
    return {
      ready: views.filter((v) => v.phase === 'ready').map((v) => v.taskArn),
      gone: views.filter((v) => v.phase === 'stopped').map((v) => v.taskArn),
    };
  }

  stop(taskArn: string, reason: string): Promise<void> {
    return this.tasks.stop(taskArn, reason);
  }
}
