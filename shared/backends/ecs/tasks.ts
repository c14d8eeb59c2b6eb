import { randomUUID } from 'node:crypto';
import {
  DescribeTasksCommand,
  ListTasksCommand,
  RunTaskCommand,
  StopTaskCommand,
  TagResourceCommand,
  type Container,
  type ECSClient,
  type Task,
} from '@aws-sdk/client-ecs';
import { BackendUnavailableError, BadRequestError } from '../../contract/errors.js';
import { defaultRetryPolicy, isRetryable, withRetry, type RetryPolicy } from './retry.js';

/**
 * The Fargate task lifecycle at the ECS API: RunTask (private, exec-enabled, tagged, idempotent by
 * clientToken), readiness (task RUNNING and its ExecuteCommandAgent RUNNING — before that
 * ExecuteCommand fails), StopTask, and finding our tasks again (ListTasks by `startedBy` = this
 * provider's owner id, then DescribeTasks).
 *
 * ECS is eventually consistent: DescribeTasks (and StopTask) may not know a task for a second or more
 * after RunTask returned it (`failures: [{reason: 'MISSING'}]`). A task this instance started — or was
 * told about (`expectVisible`) — less than `missingGraceMs` ago is therefore "not visible yet" when
 * MISSING; any other MISSING task is gone (ECS keeps stopped tasks visible for at least an hour).
 */

/** ECS's rule for `startedBy` (RunTask, ListTasks): up to 36 letters, digits, hyphens, underscores and slashes. */
const STARTED_BY = /^[A-Za-z0-9/_-]{1,36}$/;

/** Returns `value` if ECS accepts it as `startedBy`; else BadRequestError saying why (at construction, not at the first RunTask). */
function checkStartedBy(value: string): string {
  if (!STARTED_BY.test(value)) {
    throw new BadRequestError(
      `owner id '${value.slice(0, 64)}' cannot be the ECS startedBy of its tasks: ECS takes 1-36 letters, digits, '-', '_' or '/' (an instance id is 'wsp-' + 16 hex digits)`,
      { field: 'owner' },
    );
  }
  return value;
}

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
  /** `startedBy` on every task: this provider's owner id (see checkStartedBy), the ListTasks filter for our tasks. */
  startedBy: string;
  retry?: RetryPolicy;
  /** Readiness: poll interval bounds in ms (backoff with jitter between them). Default 1000 → 5000. */
  pollMinMs?: number;
  pollMaxMs?: number;
  /**
   * How long after we started (or last knew of) a task DescribeTasks' MISSING means "not visible yet"
   * rather than "gone". Default 60 000 (the RunTask docs ask to back off for up to minutes; the lag
   * seen in practice is seconds).
   */
  missingGraceMs?: number;
  now?: () => number;
}

export type TaskPhase = 'starting' | 'ready' | 'stopped';

export interface TaskView {
  taskArn: string;
  /** A task ECS does not show yet (MISSING within the grace period) is 'starting' with lastStatus 'MISSING'. */
  phase: TaskPhase;
  lastStatus: string;
  agentStatus?: string;
  stoppedReason?: string;
  /** The workspace container's end as ECS reports it ("exit code 137", "OutOfMemoryError: …"): why a task stopped. */
  containerEnd?: string;
  taskDefinitionArn?: string;
  tags: Record<string, string>;
}

/** RunTask failures that capacity or a moment fixes; anything else (bad definition, missing role) is final. */
const TRANSIENT_RUN_FAILURE = /capacity|RESOURCE|AGENT|throttl|try again|timeout/i;

export class EcsTasks {
  private readonly retry: RetryPolicy;
  private readonly now: () => number;
  private readonly missingGraceMs: number;
  /** Task ARN → when we last knew it existed (RunTask answered, or a caller said so), ms. */
  private readonly known = new Map<string, number>();

  constructor(
    private readonly ecs: ECSClient,
    readonly options: EcsTasksOptions,
  ) {
    checkStartedBy(options.startedBy);
    this.retry = options.retry ?? defaultRetryPolicy;
    this.now = options.now ?? Date.now;
    this.missingGraceMs = options.missingGraceMs ?? 60_000;
  }

  /**
   * Start one task; returns its ARN (the task is still starting). Every retry of this one start carries
   * the same `clientToken`, so a retry after a lost answer gets the task already started rather than a
   * second, billed one (ECS keeps a RunTask token for up to 24 h; at most 64 ASCII characters).
   */
  async run(taskDefinition: string, tags: Record<string, string>): Promise<string> {
    const { cluster, container, network, startedBy } = this.options;
    const clientToken = randomUUID();
    class TransientRunFailure extends Error {}
    try {
      const arn = await withRetry(
        async () => {
          const out = await this.ecs.send(
            new RunTaskCommand({
              clientToken,
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
      this.expectVisible(arn);
      return arn;
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
      // MISSING: not visible yet (a task we started moments ago), or gone (ECS forgot it: stopped long ago).
      for (const f of page.failures ?? []) {
        if (!f.arn || seen.has(f.arn)) continue;
        const reason = f.reason ?? 'MISSING';
        out.push(
          reason === 'MISSING' && this.withinGrace(f.arn)
            ? { taskArn: f.arn, phase: 'starting', lastStatus: 'MISSING', tags: {} }
            : { taskArn: f.arn, phase: 'stopped', lastStatus: 'MISSING', stoppedReason: reason, tags: {} },
        );
      }
    }
    return out;
  }

  /**
   * We know `taskArn` existed at `atMs` (default now): for `missingGraceMs` from then, MISSING means
   * "not visible yet". RunTask records its own tasks; the warm pool and a claim tell about theirs.
   */
  expectVisible(taskArn: string, atMs: number = this.now()): void {
    const now = this.now();
    for (const [arn, at] of this.known) if (now - at > this.missingGraceMs) this.known.delete(arn);
    if (now - atMs > this.missingGraceMs) return;
    this.known.set(taskArn, Math.max(atMs, this.known.get(taskArn) ?? atMs));
  }

  /**
   * The task's view once ECS shows it (or, past the grace period, reports it gone): polls while it
   * is MISSING within the grace period. For a task we know exists, e.g. a claimed warm task.
   */
  async waitVisible(taskArn: string, sleep: (ms: number) => Promise<void> = this.retry.sleep): Promise<TaskView> {
    for (let round = 0; ; round++) {
      const [view] = await this.describe([taskArn]);
      if (!view) throw new BackendUnavailableError(`DescribeTasks said nothing about ${taskArn}`);
      if (!notVisibleYet(view) || !this.withinGrace(taskArn)) return view;
      await sleep(this.pollDelay(round, Number.POSITIVE_INFINITY));
    }
  }

  private withinGrace(taskArn: string): boolean {
    const at = this.known.get(taskArn);
    return at !== undefined && this.now() - at <= this.missingGraceMs;
  }

  /**
   * Poll until the task can be exec'd into. Throws BackendUnavailableError when it stops first (with
   * ECS's stoppedReason, e.g. CannotPullContainerError) or is not ready within `timeoutMs`. MISSING
   * within the grace period, and DescribeTasks failing transiently (throttled beyond the retry
   * policy), are waited out like PENDING.
   */
  async waitReady(
    taskArn: string,
    timeoutMs: number,
    sleep: (ms: number) => Promise<void> = this.retry.sleep,
  ): Promise<TaskView> {
    const deadline = this.now() + timeoutMs;
    let last: TaskView | undefined;
    for (let round = 0; ; round++) {
      try {
        [last] = await this.describe([taskArn]);
      } catch (error) {
        if (!isRetryable((error as Error).cause) || this.now() >= deadline) throw error;
        await sleep(this.pollDelay(round, deadline - this.now()));
        continue;
      }
      if (last?.phase === 'ready') return last;
      if (last === undefined || last.phase === 'stopped') {
        throw new BackendUnavailableError(
          `workspace task stopped before it was ready: ${last?.stoppedReason ?? 'unknown task'}${last?.containerEnd ? ` (${last.containerEnd})` : ''}`,
        );
      }
      if (this.now() >= deadline) {
        const what = notVisibleYet(last)
          ? 'ECS does not show it yet (MISSING)'
          : last.lastStatus === 'RUNNING'
            ? `its exec agent is ${last.agentStatus ?? 'not reported'}`
            : `it is ${last.lastStatus}`;
        throw new BackendUnavailableError(`workspace task not ready after ${Math.round(timeoutMs / 1000)} s (${what})`);
      }
      await sleep(this.pollDelay(round, deadline - this.now()));
    }
  }

  /** Readiness polls: jittered, growing from pollMinMs to pollMaxMs, never past `leftMs`. */
  private pollDelay(round: number, leftMs: number): number {
    const min = this.options.pollMinMs ?? 1_000;
    const max = this.options.pollMaxMs ?? 5_000;
    const ceiling = Math.min(max, min * 1.5 ** round);
    return Math.min(Math.max(0, leftMs), min / 2 + this.retry.random() * (ceiling - min / 2));
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

  /**
   * Idempotent: a task already stopped or unknown is fine — except one we started within the grace
   * period, which StopTask may not see yet either: that is retried until it is stopped or the grace
   * period ends (else a task whose create failed at once would run on, billed).
   */
  async stop(taskArn: string, reason: string, sleep: (ms: number) => Promise<void> = this.retry.sleep): Promise<void> {
    for (let round = 0; ; round++) {
      try {
        await this.call('StopTask', () =>
          this.ecs.send(
            new StopTaskCommand({ cluster: this.options.cluster, task: taskArn, reason: reason.slice(0, 255) }),
          ),
        );
        return;
      } catch (error) {
        const name = (error as { cause?: { name?: string } }).cause?.name;
        const message = String((error as { cause?: { message?: string } }).cause?.message ?? '');
        if (name !== 'InvalidParameterException' || !/not found|stopped/i.test(message)) throw error;
        if (/stopped/i.test(message) || !this.withinGrace(taskArn)) return;
        await sleep(this.pollDelay(round, Number.POSITIVE_INFINITY));
      }
    }
  }

  /**
   * Every task this provider started that ECS still has desired RUNNING, with tags. ListTasks takes
   * `startedBy` only as its sole filter (with another, e.g. desiredStatus, it is an
   * InvalidParameterException), and then applies its default desiredStatus RUNNING: tasks already
   * told to stop are not listed — nothing is left to reap in them.
   */
  async listOwn(): Promise<TaskView[]> {
    const arns: string[] = [];
    let nextToken: string | undefined;
    do {
      const page = await this.call('ListTasks', () =>
        this.ecs.send(
          new ListTasksCommand({
            cluster: this.options.cluster,
            startedBy: this.options.startedBy,
            ...(nextToken ? { nextToken } : {}),
          }),
        ),
      );
      arns.push(...(page.taskArns ?? []));
      nextToken = page.nextToken;
    } while (nextToken);
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
    const ended = container ? containerEnd(container) : undefined;
    return {
      taskArn: task.taskArn!,
      phase,
      lastStatus,
      ...(agent?.lastStatus ? { agentStatus: agent.lastStatus } : {}),
      ...(task.stoppedReason ? { stoppedReason: task.stoppedReason } : {}),
      ...(ended ? { containerEnd: ended } : {}),
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

/** MISSING within the grace period: ECS does not show the task yet. */
/** ECS's account of the container's end: its reason (OutOfMemoryError, CannotPullContainerError…) and exit code. */
function containerEnd(container: Container): string | undefined {
  const parts = [
    ...(container.reason ? [container.reason] : []),
    ...(container.exitCode !== undefined ? [`exit code ${container.exitCode}`] : []),
  ];
  return parts.length > 0 ? `container: ${parts.join(', ')}` : undefined;
}

function notVisibleYet(view: TaskView): boolean {
  return view.phase === 'starting' && view.lastStatus === 'MISSING';
}
