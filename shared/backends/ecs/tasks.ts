import {
  DescribeTasksCommand,
  ListTasksCommand,
  RunTaskCommand,
  StopTaskCommand,
  TagResourceCommand,
  type ECSClient,
  type Task,
} from '@aws-sdk/client-ecs';
import { BackendUnavailableError } from '../../contract/errors.js';
import { defaultRetryPolicy, isRetryable, withRetry, type RetryPolicy } from './retry.js';

/**
 * The Fargate task lifecycle at the ECS API: RunTask (private, exec-enabled, tagged), readiness
 * (task RUNNING and its ExecuteCommandAgent RUNNING — before that ExecuteCommand fails), StopTask,
 * and finding our tasks again (ListTasks by `startedBy` = this provider's owner id, then DescribeTasks).
 */

export interface TaskNetwork {
  subnets: string[];
  securityGroups: string[];
  /** Never true by default: workspaces are private (no public IP, reached only through ECS Exec). */
  assignPublicIp?: boolean;
}

export interface EcsTasksOptions {
  cluster: string;
  /** The workspace container's name in every task definition (ExecuteCommand targets it). */
  container: string;
  network: TaskNetwork;
  /** `startedBy` on every task: this provider's owner id (≤ 128 chars), used to list our tasks. */
  startedBy: string;
  retry?: RetryPolicy;
  /** Readiness: poll interval bounds in ms (backoff with jitter between them). Default 1000 → 5000. */
  pollMinMs?: number;
  pollMaxMs?: number;
  now?: () => number;
}

export type TaskPhase = 'starting' | 'ready' | 'stopped';

export interface TaskView {
  taskArn: string;
  phase: TaskPhase;
  lastStatus: string;
  agentStatus?: string;
  stoppedReason?: string;
  taskDefinitionArn?: string;
  tags: Record<string, string>;
}

/** RunTask failures that capacity or a moment fixes; anything else (bad definition, missing role) is final. */
const TRANSIENT_RUN_FAILURE = /capacity|RESOURCE|AGENT|throttl|try again|timeout/i;

export class EcsTasks {
  private readonly retry: RetryPolicy;
  constructor(
    private readonly ecs: ECSClient,
    readonly options: EcsTasksOptions,
  ) {
    this.retry = options.retry ?? defaultRetryPolicy;
  }

  /** Start one task; returns its ARN (the task is still starting). */
  async run(taskDefinition: string, tags: Record<string, string>): Promise<string> {
    const { cluster, container, network, startedBy } = this.options;
    class TransientRunFailure extends Error {}
    try {
      return await withRetry(
        async () => {
          const out = await this.ecs.send(
            new RunTaskCommand({
              cluster,
              taskDefinition,
              launchType: 'FARGATE',
              count: 1,
              startedBy,
              enableExecuteCommand: true,
              networkConfiguration: {
                awsvpcConfiguration: {
                  subnets: network.subnets,
                  securityGroups: network.securityGroups,
                  assignPublicIp: network.assignPublicIp ? 'ENABLED' : 'DISABLED',
                },
              },
              tags: Object.entries(tags).map(([key, value]) => ({ key, value })),
              overrides: { containerOverrides: [{ name: container }] },
            }),
          );
          const arn = out.tasks?.[0]?.taskArn;
          if (arn) return arn;
          const failure = out.failures?.[0];
          const why = `${failure?.reason ?? 'no task and no failure reason'}${failure?.detail ? ` (${failure.detail})` : ''}`;
          if (TRANSIENT_RUN_FAILURE.test(why)) throw new TransientRunFailure(why);
          throw new BackendUnavailableError(`RunTask refused: ${why}`);
        },
        this.retry,
        (e) => e instanceof TransientRunFailure || (!(e instanceof BackendUnavailableError) && isRetryable(e)),
      );
    } catch (error) {
      if (error instanceof BackendUnavailableError) throw error;
      throw new BackendUnavailableError(`RunTask failed: ${(error as Error).message}`, error);
    }
  }

  async describe(taskArns: string[]): Promise<TaskView[]> {
    if (taskArns.length === 0) return [];
    const out: TaskView[] = [];
    // DescribeTasks takes at most 100 tasks.
    for (let i = 0; i < taskArns.length; i += 100) {
      const page = await this.call('DescribeTasks', () =>
        this.ecs.send(
          new DescribeTasksCommand({
            cluster: this.options.cluster,
            tasks: taskArns.slice(i, i + 100),
            include: ['TAGS'],
          }),
        ),
      );
      const seen = new Set<string>();
      for (const task of page.tasks ?? []) {
        if (!task.taskArn) continue;
        seen.add(task.taskArn);
        out.push(this.view(task));
      }
      // A task ECS no longer knows (stopped long ago) is reported as a failure "MISSING": it is stopped.
      for (const f of page.failures ?? []) {
        if (f.arn && !seen.has(f.arn))
          out.push({
            taskArn: f.arn,
            phase: 'stopped',
            lastStatus: 'MISSING',
            stoppedReason: f.reason ?? 'MISSING',
            tags: {},
          });
      }
    }
    return out;
  }

  /**
   * Poll until the task can be exec'd into. Throws BackendUnavailableError when it stops first (with
   * ECS's stoppedReason, e.g. CannotPullContainerError) or is not ready within `timeoutMs`.
   */
  async waitReady(
    taskArn: string,
    timeoutMs: number,
    sleep: (ms: number) => Promise<void> = this.retry.sleep,
  ): Promise<TaskView> {
    const now = this.options.now ?? Date.now;
    const deadline = now() + timeoutMs;
    const min = this.options.pollMinMs ?? 1_000;
    const max = this.options.pollMaxMs ?? 5_000;
    let last: TaskView | undefined;
    for (let round = 0; ; round++) {
      [last] = await this.describe([taskArn]);
      if (last?.phase === 'ready') return last;
      if (last === undefined || last.phase === 'stopped') {
        throw new BackendUnavailableError(
          `workspace task stopped before it was ready: ${last?.stoppedReason ?? 'unknown task'}`,
        );
      }
      if (now() >= deadline) {
        const what =
          last.lastStatus === 'RUNNING'
            ? `its exec agent is ${last.agentStatus ?? 'not reported'}`
            : `it is ${last.lastStatus}`;
        throw new BackendUnavailableError(`workspace task not ready after ${Math.round(timeoutMs / 1000)} s (${what})`);
      }
      const ceiling = Math.min(max, min * 1.5 ** round);
      await sleep(Math.min(Math.max(0, deadline - now()), min / 2 + this.retry.random() * (ceiling - min / 2)));
    }
  }

  /** Add tags to a running task (a warm-pool task claimed by a workspace gets the workspace's tags). */
  async tag(taskArn: string, tags: Record<string, string>): Promise<void> {
    await this.call('TagResource', () =>
      this.ecs.send(
        new TagResourceCommand({
          resourceArn: taskArn,
          tags: Object.entries(tags).map(([key, value]) => ({ key, value })),
        }),
      ),
    );
  }

  /** Idempotent: a task already stopped or unknown is fine. */
  async stop(taskArn: string, reason: string): Promise<void> {
    try {
      await this.call('StopTask', () =>
        this.ecs.send(
          new StopTaskCommand({ cluster: this.options.cluster, task: taskArn, reason: reason.slice(0, 255) }),
        ),
      );
    } catch (error) {
      const name = (error as { cause?: { name?: string } }).cause?.name;
      const message = String((error as { cause?: { message?: string } }).cause?.message ?? '');
      if (name === 'InvalidParameterException' && /not found|stopped/i.test(message)) return;
      throw error;
    }
  }

  /** Every task this provider started (any status ECS still reports), with tags. */
  async listOwn(): Promise<TaskView[]> {
    const arns: string[] = [];
    for (const desiredStatus of ['RUNNING', 'STOPPED'] as const) {
      let nextToken: string | undefined;
      do {
        const page = await this.call('ListTasks', () =>
          this.ecs.send(
            new ListTasksCommand({
              cluster: this.options.cluster,
              startedBy: this.options.startedBy,
              desiredStatus,
              ...(nextToken ? { nextToken } : {}),
            }),
          ),
        );
        arns.push(...(page.taskArns ?? []));
        nextToken = page.nextToken;
      } while (nextToken);
    }
    return this.describe([...new Set(arns)]);
  }

  private view(task: Task): TaskView {
    const container = task.containers?.find((c) => c.name === this.options.container) ?? task.containers?.[0];
    const agent = container?.managedAgents?.find((a) => a.name === 'ExecuteCommandAgent');
    const lastStatus = task.lastStatus ?? 'UNKNOWN';
    const stopping =
      ['DEACTIVATING', 'STOPPING', 'DEPROVISIONING', 'STOPPED', 'DELETED'].includes(lastStatus) ||
      task.desiredStatus === 'STOPPED';
    const phase: TaskPhase = stopping
      ? 'stopped'
      : lastStatus === 'RUNNING' && agent?.lastStatus === 'RUNNING'
        ? 'ready'
        : 'starting';
    const tags: Record<string, string> = {};
    for (const t of task.tags ?? []) if (t.key) tags[t.key] = t.value ?? '';
    return {
      taskArn: task.taskArn!,
      phase,
      lastStatus,
      ...(agent?.lastStatus ? { agentStatus: agent.lastStatus } : {}),
      ...(task.stoppedReason ? { stoppedReason: task.stoppedReason } : {}),
      ...(task.taskDefinitionArn ? { taskDefinitionArn: task.taskDefinitionArn } : {}),
      tags,
    };
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await withRetry(fn, this.retry);
    } catch (error) {
      throw new BackendUnavailableError(`${what} failed: ${(error as Error).message}`, error);
    }
  }
}
