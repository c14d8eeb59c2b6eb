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
import { FakeSsmAgent, type AgentProcess } from './fake-ssm-agent.js';

/**
 * ECS at the SDK boundary, with REAL tasks behind it: an ECSClient whose calls are answered by
 * aws-sdk-client-mock, where RunTask starts a Docker container from the task definition's image (the
 * "task"), DescribeTasks reports that container's state (RUNNING + ExecuteCommandAgent RUNNING once it
 * runs; STOPPED once it is gone), StopTask removes it, and ExecuteCommand opens a session on a loopback
 * fake SSM agent that runs the command in the container through `docker exec` with a TTY — so the
 * backend's SSM client, the PTY quirks and the runner are all real; only AWS's control plane is faked.
 *
 * Knobs for failure paths: `failRunTask`, `failTaskStart`, `agentNeverReady`, `startRounds`, `killTask` (a task dies).
 */

const FAKE_CLUSTER = 'arn:aws:ecs:us-east-1:123456789012:cluster/wsp-test';
const ACCOUNT_PREFIX = 'arn:aws:ecs:us-east-1:123456789012';

interface FakeTask {
  arn: string;
  container: string;
  taskDefinitionArn: string;
  tags: Record<string, string>;
  startedBy?: string;
  describeRounds: number;
  stopped?: string;
}

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
  /** DescribeTasks rounds a new task spends PROVISIONING/PENDING before RUNNING. */
  startRounds = 1;

  private constructor(
    private readonly opts: FakeEcsOptions,
    readonly agent: FakeSsmAgent,
  ) {
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
      const task = this.tasks.get(input.task);
      if (!task)
        throw Object.assign(new Error('The referenced task was not found.'), { name: 'InvalidParameterException' });
      await this.killTask(task.arn, `Task stopped by user${input.reason ? `: ${input.reason}` : ''}`);
      return { task: { taskArn: task.arn, lastStatus: 'STOPPED', desiredStatus: 'STOPPED' } };
    });
    this.mock
      .on(TagResourceCommand)
      .callsFake(async (input: { resourceArn: string; tags?: Array<{ key?: string; value?: string }> }) => {
        const task = this.tasks.get(input.resourceArn);
        if (!task)
          throw Object.assign(new Error('The specified resource could not be found.'), {
            name: 'InvalidParameterException',
          });
        for (const t of input.tags ?? []) if (t.key) task.tags[t.key] = t.value ?? '';
        return {};
      });
    this.mock.on(ListTasksCommand).callsFake(async (input: { startedBy?: string; desiredStatus?: string }) => ({
      taskArns: [...this.tasks.values()]
        .filter(
          (t) =>
            (!input.startedBy || t.startedBy === input.startedBy) &&
            ((input.desiredStatus ?? 'RUNNING') === 'STOPPED') === (t.stopped !== undefined),
        )
        .map((t) => t.arn),
    }));
    this.mock
      .on(ExecuteCommandCommand)
      .callsFake(async (input: { task: string; command: string; interactive: boolean }) => {
        const task = this.tasks.get(input.task);
        if (!input.interactive)
          throw Object.assign(new Error('Interactive is the only mode supported currently.'), {
            name: 'InvalidParameterException',
          });
        if (!task || task.stopped)
          throw Object.assign(new Error('The execute command failed because the task is stopped.'), {
            name: 'InvalidParameterException',
          });
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
    tags?: Array<{ key?: string; value?: string }>;
    startedBy?: string;
    enableExecuteCommand?: boolean;
  }): Promise<{ tasks: Task[]; failures: Array<{ reason: string }> }> {
    const planned = this.failRunTask.shift();
    if (planned === 'throttle')
      throw Object.assign(new Error('Rate exceeded'), {
        name: 'ThrottlingException',
        $metadata: { httpStatusCode: 400 },
      });
    if (planned !== undefined) return { tasks: [], failures: [{ reason: planned }] };
    const td = this.findTaskDefinition(input.taskDefinition);
    if (td?.status !== 'ACTIVE')
      throw Object.assign(new Error('TaskDefinition not found.'), { name: 'ClientException' });
    if (!input.enableExecuteCommand)
      throw new Error('the fake requires enableExecuteCommand (every workspace task needs it)');
    const id = randomBytes(16).toString('hex');
    const arn = `${ACCOUNT_PREFIX}:task/wsp-test/${id}`;
    const tags: Record<string, string> = {};
    for (const t of input.tags ?? []) if (t.key) tags[t.key] = t.value ?? '';
    const neverStarts = this.failTaskStart.shift();
    if (neverStarts !== undefined) {
      // Accepted, then stopped before any container ran (no container to inspect or remove).
      this.tasks.set(arn, {
        arn,
        container: '',
        taskDefinitionArn: td.taskDefinitionArn!,
        tags,
        ...(input.startedBy ? { startedBy: input.startedBy } : {}),
        describeRounds: 0,
        stopped: neverStarts,
      });
      return {
        tasks: [
          {
            taskArn: arn,
            lastStatus: 'PROVISIONING',
            desiredStatus: 'RUNNING',
            taskDefinitionArn: td.taskDefinitionArn,
          },
        ],
        failures: [],
      };
    }
    const image = td.containerDefinitions![0]!.image!;
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
    this.tasks.set(arn, {
      arn,
      container: container.id,
      taskDefinitionArn: td.taskDefinitionArn!,
      tags,
      ...(input.startedBy ? { startedBy: input.startedBy } : {}),
      describeRounds: 0,
    });
    return {
      tasks: [
        { taskArn: arn, lastStatus: 'PROVISIONING', desiredStatus: 'RUNNING', taskDefinitionArn: td.taskDefinitionArn },
      ],
      failures: [],
    };
  }

  private async describeTasks(
    arns: string[],
  ): Promise<{ tasks: Task[]; failures: Array<{ arn: string; reason: string }> }> {
    const tasks: Task[] = [];
    const failures: Array<{ arn: string; reason: string }> = [];
    for (const arn of arns) {
      const t = this.tasks.get(arn);
      if (!t) {
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
            () => undefined,
          );
        if (!state?.Running) t.stopped = 'Essential container in task exited';
        else running = true;
      }
      const starting = running && t.describeRounds <= this.startRounds;
      const lastStatus = t.stopped ? 'STOPPED' : starting ? 'PENDING' : 'RUNNING';
      const agent = t.stopped ? 'STOPPED' : !starting && !this.agentNeverReady ? 'RUNNING' : 'PENDING';
      tasks.push({
        taskArn: arn,
        lastStatus,
        desiredStatus: t.stopped ? 'STOPPED' : 'RUNNING',
        taskDefinitionArn: t.taskDefinitionArn,
        ...(t.stopped ? { stoppedReason: t.stopped } : {}),
        tags: Object.entries(t.tags).map(([key, value]) => ({ key, value })),
        containers: [
          { name: 'workspace', lastStatus, managedAgents: [{ name: 'ExecuteCommandAgent', lastStatus: agent }] },
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
