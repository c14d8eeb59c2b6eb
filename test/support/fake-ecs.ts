import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import {
  DeregisterTaskDefinitionCommand,
  DescribeTaskDefinitionCommand,
  DescribeTasksCommand,
  ECSClient,
  ExecuteCommandCommand,
  ListTaskDefinitionsCommand,
  ListTasksCommand,
  RegisterTaskDefinitionCommand,
  RunTaskCommand,
  StopTaskCommand,
  TagResourceCommand,
  type Task,
  type TaskDefinition,
} from '@aws-sdk/client-ecs';
import { mockClient, type AwsClientStub } from 'aws-sdk-client-mock';
import type Docker from 'dockerode';
import { sleep } from '../../shared/lib/sleep.js';
import { fakeAwsProfile, type FakeAwsProfile } from './fake-aws-profile.js';
import { FakeSsmAgent, type AgentProcess } from './fake-ssm-agent.js';

/**
 * ECS at the SDK boundary, with REAL tasks behind it: an ECSClient whose calls are answered by
 * aws-sdk-client-mock, where RunTask starts a Docker container from the task definition's image (the
 * "task"), DescribeTasks reports that container's state (RUNNING + ExecuteCommandAgent RUNNING once it
 * runs; STOPPED once it is gone), StopTask removes it, and ExecuteCommand opens a session on a loopback
 * fake SSM agent that runs the command in the container through `docker exec` with a TTY — so the
 * backend's SSM client, the PTY quirks and the runner are all real; only AWS's control plane is faked.
 *
 * Like ECS, it refuses what ECS refuses: a `startedBy` ECS would not take, ListTasks with `startedBy` and
 * another filter, a RunTask `clientToken` reused with other parameters; and it honours `clientToken`
 * (the same token answers with the same task, never a second one).
 *
 * Knobs for failure paths: `failRunTask`, `failTaskStart`, `agentNeverReady`, `startRounds`, `missingRounds`
 * (ECS's read-after-write lag), `loseRunTaskResponses` (a RunTask whose answer never arrives), `killTask`
 * (a task dies).
 *
 * Profiles (fake-aws-profile.ts): `fast` answers at once and counts DescribeTasks rounds; `realistic`
 * runs on the clock as ECS does (REALISTIC below): a task is MISSING for a while after RunTask, then
 * PROVISIONING, PENDING while its image is pulled (time ∝ image size), RUNNING, and its exec agent
 * RUNNING later still; DescribeTasks reports the state of up to a second ago; RunTask, DescribeTasks
 * and ExecuteCommand are throttled in bursts; ExecuteCommand takes ~1 s; some RunTask answers are lost
 * after the task started.
 */

/** The realistic profile's ECS, true to life (every duration then scaled by the profile). */
const REALISTIC = {
  /** RunTask → the task is known to DescribeTasks, StopTask, TagResource, ListTasks, ExecuteCommand. */
  missingMs: [500, 3_000],
  /** PROVISIONING (Fargate capacity, the task's network interface) from RunTask on. */
  provisioningMs: [2_000, 8_000],
  /** PENDING while the image is pulled: ~400 MB in 57 s (../shared/docs/cloud.md). */
  pullBytesPerSecond: 7_000_000,
  /** From RUNNING to the exec agent RUNNING. */
  agentMs: [1_000, 4_000],
  /** DescribeTasks answers with the state as of this long ago. */
  describeLagMs: [0, 1_000],
  /** Each call of a throttled API starts a burst with this chance; every call in a burst is throttled. */
  throttleChance: 0.03,
  throttleBurstMs: [200, 800],
  /** ExecuteCommand's answer (ECS Exec's ~1 s floor). */
  execOpenMs: [800, 1_300],
  /** RunTask starts the task, then its answer is lost (connection reset), with this chance. */
  lostRunTaskChance: 0.1,
} as const;

/** ECS's rule for startedBy (RunTask, ListTasks). */
const STARTED_BY = /^[A-Za-z0-9/_-]{1,36}$/;

/** An error as the SDK raises ECS's. */
const ecsError = (name: string, message: string, status = 400): Error =>
  Object.assign(new Error(message), {
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status },
  });

const FAKE_CLUSTER = 'arn:aws:ecs:us-east-1:123456789012:cluster/wsp-test';
const ACCOUNT_PREFIX = 'arn:aws:ecs:us-east-1:123456789012';

interface FakeTask {
  arn: string;
  container: string;
  taskDefinitionArn: string;
  tags: Record<string, string>;
  startedBy?: string;
  describeRounds: number;
  /** Fast profile: DescribeTasks rounds left in which ECS does not show the task yet (MISSING). */
  hiddenRounds: number;
  /** Realistic profile: when (epoch ms) each status begins. */
  timeline?: { visibleAt: number; pendingAt: number; runningAt: number; agentAt: number };
  /** The truth: why it stopped (set at once); `stoppedAt` when (the realistic DescribeTasks lags it). */
  stopped?: string;
  stoppedAt?: number;
  /** The container's end as DescribeTasks reports it (containers[].exitCode / reason). */
  exit?: { code?: number; reason?: string };
}

type RunTaskAnswer = { tasks: Task[]; failures: Array<{ reason: string }> };

export interface FakeEcsOptions {
  docker: Docker;
  /** Host dir bind-mounted read-only at /opt/wsp (the runner a real base image carries). */
  runnerDir: string;
  /** Docker network of the task containers: 'none', or 'host' when tasks must reach a loopback server. */
  network: 'none' | 'host';
  /** Label on every container (cleanup finds them by it). */
  label: string;
  /** Make sure an image is on the daemon before a container is made from it (e.g. docker pull from the loopback registry). */
  ensureImage?: (image: string) => Promise<void>;
  /** An image's size in bytes (the realistic profile's pull time); 0 when not given. */
  imageBytes?: (image: string) => Promise<number>;
  /** Default: from WSP_FAKE_AWS (fake-aws-profile.ts). */
  profile?: FakeAwsProfile;
}

export class FakeEcs {
  readonly client = new ECSClient({
    region: 'us-east-1',
    credentials: { accessKeyId: 'AKIDFAKE', secretAccessKey: 'fake' },
    maxAttempts: 1,
  });
  readonly mock: AwsClientStub<ECSClient>;
  readonly tasks = new Map<string, FakeTask>();
  readonly taskDefinitions = new Map<string, TaskDefinition>();
  readonly taskDefinitionTags = new Map<string, Array<{ key?: string; value?: string }>>();
  /** Next RunTask answers: 'throttle' throws ThrottlingException, a string is a RunTask `failures[0].reason`. */
  failRunTask: string[] = [];
  /**
   * Next RunTasks succeed but their task never starts: no container, DescribeTasks reports it STOPPED
   * with this stoppedReason (e.g. 'CannotPullContainerError: …', what Fargate says for a bad image).
   */
  failTaskStart: string[] = [];
  /** DescribeTasks never reports the exec agent RUNNING. */
  agentNeverReady = false;
  /** DescribeTasks rounds a new task spends PROVISIONING/PENDING before RUNNING (fast profile). */
  startRounds = 1;
  /** New tasks are MISSING for this many DescribeTasks, and unknown to StopTask/TagResource meanwhile (fast profile). */
  missingRounds = 0;
  /** The next RunTasks start their task, then their answer is lost (ECONNRESET): the caller's retry decides. */
  loseRunTaskResponses = 0;
  /** What the profile made happen (realistic runs print it). */
  readonly stats = { throttled: 0, missingAnswers: 0, lostRunTaskAnswers: 0, tokenReplays: 0 };
  readonly profile: FakeAwsProfile;
  /** RunTask clientToken → the request it came with and its answer (ECS keeps them 24 h). */
  private readonly runTokens = new Map<string, { request: string; answer: RunTaskAnswer }>();
  private readonly throttledUntil = new Map<string, number>();

  private constructor(
    private readonly opts: FakeEcsOptions,
    readonly agent: FakeSsmAgent,
  ) {
    this.profile = opts.profile ?? fakeAwsProfile();
    this.mock = mockClient(this.client);
    this.mock
      .on(RegisterTaskDefinitionCommand)
      .callsFake(async (input: TaskDefinition & { tags?: Array<{ key?: string; value?: string }> }) => {
        const { tags, ...definition } = input;
        const td = this.register(definition);
        this.taskDefinitionTags.set(td.taskDefinitionArn!, tags ?? []);
        return { taskDefinition: td, tags: tags ?? [] };
      });
    this.mock
      .on(DescribeTaskDefinitionCommand)
      .callsFake(async (input: { taskDefinition: string; include?: string[] }) => {
        const td = this.findTaskDefinition(input.taskDefinition);
        if (!td) throw Object.assign(new Error('Unable to describe task definition.'), { name: 'ClientException' });
        return {
          taskDefinition: td,
          ...(input.include?.includes('TAGS')
            ? { tags: this.taskDefinitionTags.get(td.taskDefinitionArn!) ?? [] }
            : {}),
        };
      });
    this.mock.on(DeregisterTaskDefinitionCommand).callsFake(async (input: { taskDefinition: string }) => {
      const td = this.findTaskDefinition(input.taskDefinition);
      if (!td)
        throw Object.assign(new Error('The specified task definition does not exist.'), { name: 'ClientException' });
      td.status = 'INACTIVE';
      return { taskDefinition: td };
    });
    this.mock.on(ListTaskDefinitionsCommand).callsFake(async (input: { familyPrefix?: string; status?: string }) => ({
      taskDefinitionArns: [...this.taskDefinitions.values()]
        .filter(
          (td) =>
            (!input.familyPrefix || td.family === input.familyPrefix) &&
            (td.status ?? 'ACTIVE') === (input.status ?? 'ACTIVE'),
        )
        .map((td) => td.taskDefinitionArn!),
    }));
    this.mock.on(RunTaskCommand).callsFake(async (input) => this.runTask(input));
    this.mock.on(DescribeTasksCommand).callsFake(async (input: { tasks: string[] }) => this.describeTasks(input.tasks));
    this.mock.on(StopTaskCommand).callsFake(async (input: { task: string; reason?: string }) => {
      const task = this.visibleTask(input.task);
      if (!task)
        throw Object.assign(new Error('The referenced task was not found.'), { name: 'InvalidParameterException' });
      await this.killTask(task.arn, `Task stopped by user${input.reason ? `: ${input.reason}` : ''}`);
      return { task: { taskArn: task.arn, lastStatus: 'STOPPED', desiredStatus: 'STOPPED' } };
    });
    this.mock
      .on(TagResourceCommand)
      .callsFake(async (input: { resourceArn: string; tags?: Array<{ key?: string; value?: string }> }) => {
        const task = this.visibleTask(input.resourceArn);
        if (!task)
          throw Object.assign(new Error('The specified resource could not be found.'), {
            name: 'InvalidParameterException',
          });
        for (const t of input.tags ?? []) if (t.key) task.tags[t.key] = t.value ?? '';
        return {};
      });
    this.mock.on(ListTasksCommand).callsFake(async (input: Record<string, string | undefined>) => {
      // ListTasks docs: "When you specify startedBy as the filter, it must be the only filter that you use."
      const others = ['family', 'containerInstance', 'serviceName', 'desiredStatus', 'launchType'].filter(
        (k) => input[k] !== undefined,
      );
      if (input.startedBy !== undefined && others.length > 0)
        throw ecsError(
          'InvalidParameterException',
          `startedBy must be the only filter when it is given (also given: ${others.join(', ')})`,
        );
      if (input.startedBy !== undefined && !STARTED_BY.test(input.startedBy))
        throw ecsError('InvalidParameterException', 'Invalid startedBy.');
      return {
        taskArns: [...this.tasks.values()]
          .filter(
            (t) =>
              this.visible(t) &&
              (!input.startedBy || t.startedBy === input.startedBy) &&
              ((input.desiredStatus ?? 'RUNNING') === 'STOPPED') === (t.stopped !== undefined),
          )
          .map((t) => t.arn),
      };
    });
    this.mock
      .on(ExecuteCommandCommand)
      .callsFake(async (input: { task: string; command: string; interactive: boolean }) => {
        this.throttle('ExecuteCommand');
        const task = this.visibleTask(input.task);
        if (!input.interactive)
          throw Object.assign(new Error('Interactive is the only mode supported currently.'), {
            name: 'InvalidParameterException',
          });
        if (!task || task.stopped)
          throw Object.assign(new Error('The execute command failed because the task is stopped.'), {
            name: 'InvalidParameterException',
          });
        if (this.profile.name === 'realistic') {
          if (this.agentNeverReady || Date.now() < task.timeline!.agentAt)
            throw ecsError(
              'InvalidParameterException',
              "The execute command failed because execute command was not enabled when the task was run or the execute command agent isn't running. Wait and try again or run a new task with execute command enabled and try again.",
            );
          await sleep(this.profile.between(...REALISTIC.execOpenMs));
        }
        const session = this.agent.openSession(`${task.arn}\n${input.command}`);
        return { clusterArn: FAKE_CLUSTER, taskArn: task.arn, containerName: 'workspace', interactive: true, session };
      });
  }

  static async start(opts: FakeEcsOptions): Promise<FakeEcs> {
    let self: FakeEcs | undefined;
    const agent = await FakeSsmAgent.start({
      spawn: async ({ command }) => {
        const nl = command.indexOf('\n');
        return self!.exec(command.slice(0, nl), command.slice(nl + 1));
      },
    });
    self = new FakeEcs(opts, agent);
    return self;
  }

  /** A task definition for `image` (what the infra registers for the base image). */
  registerBase(family: string, image: string): string {
    return this.register({
      family,
      containerDefinitions: [
        {
          name: 'workspace',
          image,
          essential: true,
          command: ['sleep', 'infinity'],
          linuxParameters: { initProcessEnabled: true },
        },
      ],
      requiresCompatibilities: ['FARGATE'],
      networkMode: 'awsvpc',
      cpu: '1024',
      memory: '2048',
    } as TaskDefinition).taskDefinitionArn!;
  }

  imageOf(taskDefinitionArn: string): string | undefined {
    return this.findTaskDefinition(taskDefinitionArn)?.containerDefinitions?.[0]?.image;
  }

  /** The task dies (as if Fargate stopped it): its container is removed, sessions end. */
  async killTask(taskArn: string, reason = 'Essential container in task exited'): Promise<void> {
    const task = this.tasks.get(taskArn);
    if (!task || task.stopped) return;
    task.stopped = reason;
    task.stoppedAt = Date.now();
    await this.opts.docker
      .getContainer(task.container)
      .remove({ force: true })
      .catch(() => undefined);
  }

  async stop(): Promise<void> {
    for (const t of this.tasks.values()) await this.killTask(t.arn, 'test cleanup');
    await this.agent.stop();
    this.mock.restore();
  }

  private register(input: TaskDefinition): TaskDefinition {
    const family = input.family ?? 'wsp-workspace';
    const revision = [...this.taskDefinitions.values()].filter((t) => t.family === family).length + 1;
    const arn = `${ACCOUNT_PREFIX}:task-definition/${family}:${revision}`;
    const td: TaskDefinition = {
      ...structuredClone(input),
      family,
      revision,
      taskDefinitionArn: arn,
      status: 'ACTIVE',
    };
    this.taskDefinitions.set(arn, td);
    return td;
  }

  private findTaskDefinition(ref: string): TaskDefinition | undefined {
    const direct = this.taskDefinitions.get(ref);
    if (direct) return direct;
    // "family" (latest ACTIVE) or "family:revision".
    const [family, revision] = ref.split(':');
    const matches = [...this.taskDefinitions.values()].filter(
      (t) => t.family === family && (revision === undefined || String(t.revision) === revision),
    );
    return matches.filter((t) => t.status === 'ACTIVE').at(-1) ?? matches.at(-1);
  }

  private async runTask(input: {
    taskDefinition: string;
    cluster?: string;
    clientToken?: string;
    tags?: Array<{ key?: string; value?: string }>;
    startedBy?: string;
    enableExecuteCommand?: boolean;
  }): Promise<RunTaskAnswer> {
    this.throttle('RunTask');
    const planned = this.failRunTask.shift();
    if (planned === 'throttle') throw ecsError('ThrottlingException', 'Rate exceeded');
    if (planned !== undefined) return { tasks: [], failures: [{ reason: planned }] };
    if (input.startedBy !== undefined && !STARTED_BY.test(input.startedBy))
      throw ecsError(
        'InvalidParameterException',
        'startedBy: up to 36 letters (uppercase and lowercase), numbers, hyphens, forward slashes and underscores are allowed.',
      );
    // Idempotency (ECS_Idempotency.html): the same token in the same cluster with the same parameters
    // answers the original result; with other parameters it is a ConflictException.
    const { clientToken, ...request } = input;
    const tokenKey = clientToken === undefined ? undefined : `${input.cluster ?? 'default'}\n${clientToken}`;
    const previous = tokenKey === undefined ? undefined : this.runTokens.get(tokenKey);
    if (previous) {
      if (previous.request !== JSON.stringify(request))
        throw ecsError(
          'ConflictException',
          'The RunTask request could not be processed due to conflicts. The provided clientToken is already in use with a different RunTask request.',
        );
      this.stats.tokenReplays++;
      return structuredClone(previous.answer);
    }
    const answer = await this.startTask(input);
    if (tokenKey !== undefined) this.runTokens.set(tokenKey, { request: JSON.stringify(request), answer });
    if (
      this.loseRunTaskResponses > 0 ||
      (this.profile.name === 'realistic' && this.profile.chance(REALISTIC.lostRunTaskChance))
    ) {
      if (this.loseRunTaskResponses > 0) this.loseRunTaskResponses--;
      this.stats.lostRunTaskAnswers++;
      throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    }
    return structuredClone(answer);
  }

  /** RunTask proper: a container (unless the task is to fail before starting), a record, the answer. */
  private async startTask(input: {
    taskDefinition: string;
    tags?: Array<{ key?: string; value?: string }>;
    startedBy?: string;
    enableExecuteCommand?: boolean;
  }): Promise<RunTaskAnswer> {
    const td = this.findTaskDefinition(input.taskDefinition);
    if (td?.status !== 'ACTIVE')
      throw Object.assign(new Error('TaskDefinition not found.'), { name: 'ClientException' });
    if (!input.enableExecuteCommand)
      throw new Error('the fake requires enableExecuteCommand (every workspace task needs it)');
    const id = randomBytes(16).toString('hex');
    const arn = `${ACCOUNT_PREFIX}:task/wsp-test/${id}`;
    const tags: Record<string, string> = {};
    for (const t of input.tags ?? []) if (t.key) tags[t.key] = t.value ?? '';
    const image = td.containerDefinitions![0]!.image!;
    const record = (container: string): FakeTask => ({
      arn,
      container,
      taskDefinitionArn: td.taskDefinitionArn!,
      tags,
      ...(input.startedBy ? { startedBy: input.startedBy } : {}),
      describeRounds: 0,
      hiddenRounds: this.missingRounds,
    });
    const answer: RunTaskAnswer = {
      tasks: [
        { taskArn: arn, lastStatus: 'PROVISIONING', desiredStatus: 'RUNNING', taskDefinitionArn: td.taskDefinitionArn },
      ],
      failures: [],
    };
    const neverStarts = this.failTaskStart.shift();
    if (neverStarts !== undefined) {
      // Accepted, then stopped before any container ran (no container to inspect or remove).
      const task = { ...record(''), stopped: neverStarts };
      this.tasks.set(arn, task);
      if (this.profile.name === 'realistic') {
        task.timeline = await this.timeline(image);
        task.stoppedAt = task.timeline.pendingAt;
      }
      return answer;
    }
    await this.opts.ensureImage?.(image);
    const container = await this.opts.docker.createContainer({
      Image: image,
      name: `wsp-fake-task-${id}`,
      Cmd: td.containerDefinitions![0]!.command ?? ['sleep', 'infinity'],
      Labels: { 'wsp.fake-ecs': this.opts.label },
      HostConfig: {
        NetworkMode: this.opts.network,
        Init: true,
        Binds: [`${this.opts.runnerDir}:/opt/wsp:ro`],
      },
    });
    await container.start();
    const task = record(container.id);
    if (this.profile.name === 'realistic') task.timeline = await this.timeline(image);
    this.tasks.set(arn, task);
    return answer;
  }

  /** Realistic: when a task started now becomes visible, PENDING (pulling), RUNNING, exec-ready. */
  private async timeline(image: string): Promise<NonNullable<FakeTask['timeline']>> {
    const now = Date.now();
    const bytes = (await this.opts.imageBytes?.(image)) ?? 0;
    const pendingAt = now + this.profile.between(...REALISTIC.provisioningMs);
    const runningAt = pendingAt + (bytes / REALISTIC.pullBytesPerSecond) * 1000 * this.profile.scale;
    return {
      visibleAt: now + this.profile.between(...REALISTIC.missingMs),
      pendingAt,
      runningAt,
      agentAt: runningAt + this.profile.between(...REALISTIC.agentMs),
    };
  }

  /** Does ECS show the task yet (DescribeTasks' MISSING lag after RunTask)? */
  private visible(task: FakeTask): boolean {
    return this.profile.name === 'realistic' ? Date.now() >= task.timeline!.visibleAt : task.hiddenRounds === 0;
  }

  private visibleTask(arn: string): FakeTask | undefined {
    const task = this.tasks.get(arn);
    return task && this.visible(task) ? task : undefined;
  }

  /** Realistic: a call of `api` during one of its throttling bursts (or starting one) is throttled. */
  private throttle(api: 'RunTask' | 'DescribeTasks' | 'ExecuteCommand'): void {
    if (this.profile.name !== 'realistic') return;
    const now = Date.now();
    if ((this.throttledUntil.get(api) ?? 0) <= now) {
      if (!this.profile.chance(REALISTIC.throttleChance)) return;
      this.throttledUntil.set(api, now + this.profile.between(...REALISTIC.throttleBurstMs));
    }
    this.stats.throttled++;
    throw ecsError('ThrottlingException', 'Rate exceeded');
  }

  private async describeTasks(
    arns: string[],
  ): Promise<{ tasks: Task[]; failures: Array<{ arn: string; reason: string }> }> {
    this.throttle('DescribeTasks');
    const realistic = this.profile.name === 'realistic';
    // Realistic: the answer is the state as of a moment ago.
    const at = realistic ? Date.now() - this.profile.between(...REALISTIC.describeLagMs) : Date.now();
    const tasks: Task[] = [];
    const failures: Array<{ arn: string; reason: string }> = [];
    for (const arn of arns) {
      const t = this.tasks.get(arn);
      const hidden = t !== undefined && (realistic ? at < t.timeline!.visibleAt : t.hiddenRounds > 0);
      if (!t || hidden) {
        if (t && !realistic) t.hiddenRounds--;
        if (t) this.stats.missingAnswers++;
        failures.push({ arn, reason: 'MISSING' });
        continue;
      }
      t.describeRounds++;
      let running = false;
      if (!t.stopped) {
        const state = await this.opts.docker
          .getContainer(t.container)
          .inspect()
          .then(
            (i) => i.State,
            (error: { statusCode?: number }) => {
              // Gone (404) is an ended task; any other engine error is ours, not the task's: ECS's
              // own fault answer (retryable), never a made-up "container exited".
              if (error.statusCode === 404) return undefined;
              throw ecsError(
                'ServerException',
                `the fake could not inspect the task's container: ${String(error)}`,
                500,
              );
            },
          );
        if (!state?.Running) {
          t.stopped = 'Essential container in task exited';
          t.stoppedAt = Date.now();
          t.exit = {
            ...(state ? { code: state.ExitCode } : {}),
            ...(state?.OOMKilled
              ? { reason: 'OutOfMemoryError: Container killed due to memory usage' }
              : state?.Error
                ? { reason: state.Error }
                : {}),
          };
        } else running = true;
      }
      let lastStatus: string;
      let agent: string;
      const stopped = t.stopped !== undefined && (!realistic || at >= (t.stoppedAt ?? 0));
      if (realistic) {
        const tl = t.timeline!;
        lastStatus = stopped
          ? 'STOPPED'
          : at < tl.pendingAt
            ? 'PROVISIONING'
            : at < tl.runningAt
              ? 'PENDING'
              : 'RUNNING';
        agent = stopped
          ? 'STOPPED'
          : lastStatus === 'RUNNING' && at >= tl.agentAt && !this.agentNeverReady
            ? 'RUNNING'
            : 'PENDING';
      } else {
        const starting = running && t.describeRounds <= this.startRounds;
        lastStatus = stopped ? 'STOPPED' : starting ? 'PENDING' : 'RUNNING';
        agent = stopped ? 'STOPPED' : !starting && !this.agentNeverReady ? 'RUNNING' : 'PENDING';
      }
      tasks.push({
        taskArn: arn,
        lastStatus,
        desiredStatus: stopped ? 'STOPPED' : 'RUNNING',
        taskDefinitionArn: t.taskDefinitionArn,
        ...(stopped ? { stoppedReason: t.stopped } : {}),
        tags: Object.entries(t.tags).map(([key, value]) => ({ key, value })),
        containers: [
          {
            name: 'workspace',
            lastStatus,
            ...(stopped && t.exit?.code !== undefined ? { exitCode: t.exit.code } : {}),
            ...(stopped && t.exit?.reason ? { reason: t.exit.reason } : {}),
            managedAgents: [{ name: 'ExecuteCommandAgent', lastStatus: agent }],
          },
        ],
      });
    }
    return { tasks, failures };
  }

  /** `docker exec -t` of `sh -c command` in the task's container, as the agent would run it (root, PTY). */
  private async exec(taskArn: string, command: string): Promise<AgentProcess> {
    const task = this.tasks.get(taskArn);
    if (!task || task.stopped) throw new Error('task is stopped');
    const exec = await this.opts.docker.getContainer(task.container).exec({
      Cmd: ['sh', '-c', command],
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      Tty: true,
    });
    const stream = (await exec.start({ hijack: true, stdin: true, Tty: true })) as unknown as Duplex;
    const dataHandlers: Array<(b: Buffer) => void> = [];
    const exitHandlers: Array<(code: number | null) => void> = [];
    let ended = false;
    stream.on('data', (b: Buffer) =>
      dataHandlers.forEach((h) => {
        h(b);
      }),
    );
    const finish = async (): Promise<void> => {
      if (ended) return;
      ended = true;
      const code = await exec.inspect().then(
        (i) => i.ExitCode ?? null,
        () => null,
      );
      exitHandlers.forEach((h) => {
        h(code);
      });
    };
    stream.on('end', () => void finish());
    stream.on('close', () => void finish());
    stream.on('error', () => void finish());
    return {
      write: (data) => {
        if (!ended) stream.write(data);
      },
      onData: (cb) => dataHandlers.push(cb),
      onExit: (cb) => exitHandlers.push(cb),
      kill: () => stream.destroy(),
    };
  }
}
