import {
  DescribeTasksCommand,
  ECSClient,
  ListTasksCommand,
  RunTaskCommand,
  StopTaskCommand,
  type Task,
} from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { BackendUnavailableError, BadRequestError } from '../../../shared/contract/errors.js';
import { backoffMs, withRetry, type RetryPolicy } from '../../../shared/backends/ecs/retry.js';
import { EcsTasks } from '../../../shared/backends/ecs/tasks.js';
import { EcsWarmLauncher } from '../../../shared/backends/ecs/warm-launcher.js';
import { newInstanceId } from '../../../shared/service/ids.js';

// The task lifecycle at the ECS SDK boundary: request shapes, retry with jitter, and every failure path.

const ecs = new ECSClient({
  region: 'us-east-1',
  credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
  maxAttempts: 1,
});
const mock = mockClient(ecs);
const TASK = 'arn:aws:ecs:us-east-1:1:task/c/abc';

function policy(): RetryPolicy & { waits: number[] } {
  const waits: number[] = [];
  return { attempts: 4, baseMs: 100, capMs: 1000, random: () => 0.5, sleep: async (ms) => void waits.push(ms), waits };
}

function tasks(retry = policy(), now?: () => number, startedBy = 'wsp-prod') {
  return new EcsTasks(ecs, {
    cluster: 'wsp',
    container: 'workspace',
    network: { subnets: ['subnet-1', 'subnet-2'], securityGroups: ['sg-1'] },
    startedBy,
    retry,
    pollMinMs: 10,
    pollMaxMs: 40,
    ...(now ? { now } : {}),
  });
}

/** A clock the test moves: sleeps advance it. */
function clock(): { now: () => number; sleep: (ms: number) => Promise<void>; advance: (ms: number) => void } {
  let t = 1_000_000;
  return {
    now: () => t,
    sleep: async (ms) => {
      t += ms;
    },
    advance: (ms) => {
      t += ms;
    },
  };
}

const MISSING = { tasks: [], failures: [{ arn: TASK, reason: 'MISSING' }] };

const describing = (lastStatus: string, agent?: string, extra: Record<string, unknown> = {}) => ({
  tasks: [
    {
      taskArn: TASK,
      lastStatus,
      containers: [
        { name: 'workspace', managedAgents: agent ? [{ name: 'ExecuteCommandAgent', lastStatus: agent }] : [] },
      ],
      ...extra,
    },
  ] as Task[],
});

beforeEach(() => mock.reset());

describe('EcsTasks', () => {
  it('RunTask: private, exec-enabled Fargate task, tagged, startedBy the owner', async () => {
    mock.on(RunTaskCommand).resolves({ tasks: [{ taskArn: TASK }] });
    expect(await tasks().run('wsp-ws:3', { 'wsp:workspace': 'w1', 'wsp:owner': 'wsp-prod' })).toBe(TASK);
    const input = mock.commandCalls(RunTaskCommand)[0]!.args[0].input;
    expect(input).toMatchObject({
      clientToken: expect.stringMatching(/^[!-~]{1,64}$/),
      cluster: 'wsp',
      taskDefinition: 'wsp-ws:3',
      launchType: 'FARGATE',
      count: 1,
      startedBy: 'wsp-prod',
      enableExecuteCommand: true,
      networkConfiguration: {
        awsvpcConfiguration: {
          subnets: ['subnet-1', 'subnet-2'],
          securityGroups: ['sg-1'],
          assignPublicIp: 'DISABLED',
        },
      },
      tags: [
        { key: 'wsp:workspace', value: 'w1' },
        { key: 'wsp:owner', value: 'wsp-prod' },
      ],
    });
  });

  it('retries throttling and capacity failures with jittered backoff, then succeeds', async () => {
    const retry = policy();
    mock
      .on(RunTaskCommand)
      .rejectsOnce(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }))
      .resolvesOnce({
        tasks: [],
        failures: [{ reason: 'Capacity is unavailable at this time. Please try again later.' }],
      })
      .resolves({ tasks: [{ taskArn: TASK }] });
    expect(await tasks(retry).run('td', {})).toBe(TASK);
    expect(mock.commandCalls(RunTaskCommand)).toHaveLength(3);
    // random() = 0.5 → half of the ceiling: 100·2^0, 100·2^1.
    expect(retry.waits).toEqual([50, 100]);
  });

  it('every retry of one start carries the same clientToken (a lost answer cannot start a second task); the next start a new one', async () => {
    mock
      .on(RunTaskCommand)
      .rejectsOnce(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }))
      .rejectsOnce(Object.assign(new Error('Service Unavailable'), { $metadata: { httpStatusCode: 503 } }))
      .resolves({ tasks: [{ taskArn: TASK }] });
    const t = tasks();
    expect(await t.run('td', {})).toBe(TASK);
    const tokens = mock.commandCalls(RunTaskCommand).map((c) => c.args[0].input.clientToken);
    expect(tokens).toHaveLength(3);
    expect(tokens[0]).toMatch(/^[!-~]{1,64}$/);
    expect(new Set(tokens).size).toBe(1);
    await t.run('td', {});
    expect(mock.commandCalls(RunTaskCommand)[3]!.args[0].input.clientToken).not.toBe(tokens[0]);
  });

  it('throttling backs off from throttleBaseMs (other transient errors from baseMs)', async () => {
    const retry = { ...policy(), throttleBaseMs: 400 };
    mock
      .on(RunTaskCommand)
      .rejectsOnce(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }))
      .rejectsOnce(Object.assign(new Error('boom'), { name: 'ServerException' }))
      .resolves({ tasks: [{ taskArn: TASK }] });
    await tasks(retry).run('td', {});
    expect(retry.waits).toEqual([200, 100]);
  });

  it('a final RunTask failure is not retried and names the reason', async () => {
    mock.on(RunTaskCommand).resolves({ tasks: [], failures: [{ reason: 'MISSING', detail: 'subnet-1 not found' }] });
    await expect(tasks().run('td', {})).rejects.toThrow(/RunTask refused: MISSING \(subnet-1 not found\)/);
    expect(mock.commandCalls(RunTaskCommand)).toHaveLength(1);
  });

  it('gives up after the attempt limit with a BackendUnavailableError', async () => {
    mock.on(RunTaskCommand).rejects(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }));
    await expect(tasks().run('td', {})).rejects.toBeInstanceOf(BackendUnavailableError);
    expect(mock.commandCalls(RunTaskCommand)).toHaveLength(4);
  });

  it('readiness waits for RUNNING and the exec agent RUNNING', async () => {
    mock
      .on(DescribeTasksCommand)
      .resolvesOnce(describing('PROVISIONING'))
      .resolvesOnce(describing('RUNNING', 'PENDING'))
      .resolves(describing('RUNNING', 'RUNNING'));
    const view = await tasks().waitReady(TASK, 60_000, async () => undefined);
    expect(view.phase).toBe('ready');
    expect(mock.commandCalls(DescribeTasksCommand)).toHaveLength(3);
    expect(mock.commandCalls(DescribeTasksCommand)[0]!.args[0].input).toEqual({
      cluster: 'wsp',
      tasks: [TASK],
      include: ['TAGS'],
    });
  });

  it('a task that never starts fails with ECS’s stoppedReason', async () => {
    mock
      .on(DescribeTasksCommand)
      .resolves(describing('STOPPED', undefined, { stoppedReason: 'CannotPullContainerError: pull access denied' }));
    await expect(tasks().waitReady(TASK, 60_000, async () => undefined)).rejects.toThrow(
      /stopped before it was ready: CannotPullContainerError/,
    );
  });

  it('a task whose container ended says how (ECS’s container reason and exit code)', async () => {
    mock.on(DescribeTasksCommand).resolves(
      describing('STOPPED', undefined, {
        stoppedReason: 'Essential container in task exited',
        containers: [
          {
            name: 'workspace',
            exitCode: 137,
            reason: 'OutOfMemoryError: Container killed due to memory usage',
            managedAgents: [],
          },
        ],
      }),
    );
    await expect(tasks().waitReady(TASK, 60_000, async () => undefined)).rejects.toThrow(
      'workspace task stopped before it was ready: Essential container in task exited (container: OutOfMemoryError: Container killed due to memory usage, exit code 137)',
    );
  });

  it('an agent that never becomes ready times out, saying so', async () => {
    let t = 0;
    mock.on(DescribeTasksCommand).resolves(describing('RUNNING', 'PENDING'));
    const sleep = async (ms: number) => {
      t += ms;
    };
    await expect(tasks(policy(), () => t).waitReady(TASK, 1_000, sleep)).rejects.toThrow(
      /not ready after 1 s \(its exec agent is PENDING\)/,
    );
  });

  it('a task this instance did not start (DescribeTasks failure MISSING) reads as stopped', async () => {
    mock.on(DescribeTasksCommand).resolves(MISSING);
    expect(await tasks().describe([TASK])).toEqual([
      { taskArn: TASK, phase: 'stopped', lastStatus: 'MISSING', stoppedReason: 'MISSING', tags: {} },
    ]);
  });

  it('MISSING right after RunTask is "not visible yet": readiness polls on until ECS shows the task', async () => {
    mock.on(RunTaskCommand).resolves({ tasks: [{ taskArn: TASK }] });
    mock
      .on(DescribeTasksCommand)
      .resolvesOnce(MISSING)
      .resolvesOnce(MISSING)
      .resolvesOnce(describing('PENDING'))
      .resolves(describing('RUNNING', 'RUNNING'));
    const t = tasks();
    const arn = await t.run('td', {});
    expect(await t.describe([arn])).toEqual([{ taskArn: TASK, phase: 'starting', lastStatus: 'MISSING', tags: {} }]);
    await expect(t.waitReady(arn, 60_000, async () => undefined)).resolves.toMatchObject({ phase: 'ready' });
    expect(mock.commandCalls(DescribeTasksCommand)).toHaveLength(4);
  });

  it('MISSING past the grace period is gone, and readiness fails saying so', async () => {
    const c = clock();
    mock.on(RunTaskCommand).resolves({ tasks: [{ taskArn: TASK }] });
    mock.on(DescribeTasksCommand).resolves(MISSING);
    const t = tasks(policy(), c.now);
    await t.run('td', {});
    c.advance(59_000);
    expect((await t.describe([TASK]))[0]).toMatchObject({ phase: 'starting', lastStatus: 'MISSING' });
    c.advance(2_000);
    expect((await t.describe([TASK]))[0]).toMatchObject({ phase: 'stopped', stoppedReason: 'MISSING' });
    const t2 = tasks(policy(), c.now);
    await t2.run('td', {});
    await expect(t2.waitReady(TASK, 600_000, c.sleep)).rejects.toThrow(/stopped before it was ready: MISSING/);
  });

  it('readiness times out on a task ECS never shows, saying so', async () => {
    const c = clock();
    mock.on(RunTaskCommand).resolves({ tasks: [{ taskArn: TASK }] });
    mock.on(DescribeTasksCommand).resolves(MISSING);
    const t = tasks(policy(), c.now);
    await t.run('td', {});
    await expect(t.waitReady(TASK, 5_000, c.sleep)).rejects.toThrow(/not ready after 5 s \(ECS does not show it yet/);
  });

  it('readiness waits out DescribeTasks throttled beyond the retry policy', async () => {
    const throttled = Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
    mock
      .on(DescribeTasksCommand)
      .rejectsOnce(throttled)
      .rejectsOnce(throttled)
      .rejectsOnce(throttled)
      .rejectsOnce(throttled)
      .rejectsOnce(throttled)
      .resolves(describing('RUNNING', 'RUNNING'));
    await expect(tasks().waitReady(TASK, 60_000, async () => undefined)).resolves.toMatchObject({ phase: 'ready' });
    // Access denied is not waited out.
    mock.reset();
    mock.on(DescribeTasksCommand).rejects(Object.assign(new Error('no'), { name: 'AccessDeniedException' }));
    await expect(tasks().waitReady(TASK, 60_000, async () => undefined)).rejects.toThrow(/DescribeTasks failed: no/);
  });

  it('a task we know exists (a claimed warm task): waitVisible waits out MISSING', async () => {
    mock.on(DescribeTasksCommand).resolvesOnce(MISSING).resolves(describing('RUNNING', 'RUNNING'));
    const t = tasks();
    t.expectVisible(TASK);
    await expect(t.waitVisible(TASK, async () => undefined)).resolves.toMatchObject({ phase: 'ready' });
    // One it does not know: MISSING is the answer at once.
    mock.reset();
    mock.on(DescribeTasksCommand).resolves(MISSING);
    await expect(tasks().waitVisible(TASK, async () => undefined)).resolves.toMatchObject({ phase: 'stopped' });
    expect(mock.commandCalls(DescribeTasksCommand)).toHaveLength(1);
  });

  it('warm probe: a pool task MISSING shortly after the pool recorded it is neither ready nor gone; long after, gone', async () => {
    const c = clock();
    mock.on(DescribeTasksCommand).resolves(MISSING);
    const launcher = new EcsWarmLauncher(tasks(policy(), c.now), 'wsp-prod');
    expect(await launcher.probe([{ taskArn: TASK, knownAt: new Date(c.now() - 5_000) }])).toEqual({
      ready: [],
      gone: [],
    });
    const later = new EcsWarmLauncher(tasks(policy(), c.now), 'wsp-prod');
    expect(await later.probe([{ taskArn: TASK, knownAt: new Date(c.now() - 120_000) }])).toEqual({
      ready: [],
      gone: [TASK],
    });
  });

  it('StopTask of a task started moments ago that ECS does not show yet is retried, not taken as done', async () => {
    const notFound = Object.assign(new Error('The referenced task was not found.'), {
      name: 'InvalidParameterException',
    });
    mock.on(RunTaskCommand).resolves({ tasks: [{ taskArn: TASK }] });
    mock.on(StopTaskCommand).rejectsOnce(notFound).rejectsOnce(notFound).resolves({});
    const t = tasks();
    await t.run('td', {});
    await t.stop(TASK, 'workspace creation failed', async () => undefined);
    expect(mock.commandCalls(StopTaskCommand)).toHaveLength(3);
  });

  it('StopTask is idempotent for a task ECS no longer has', async () => {
    mock
      .on(StopTaskCommand)
      .rejects(Object.assign(new Error('The referenced task was not found.'), { name: 'InvalidParameterException' }));
    await expect(tasks().stop(TASK, 'workspace deleted')).resolves.toBeUndefined();
    expect(mock.commandCalls(StopTaskCommand)[0]!.args[0].input).toEqual({
      cluster: 'wsp',
      task: TASK,
      reason: 'workspace deleted',
    });
  });

  it('lists its own tasks by startedBy as the only filter (ECS refuses it with another), through every page', async () => {
    mock
      .on(ListTasksCommand)
      .resolvesOnce({ taskArns: ['a', 'b'], nextToken: 'n' })
      .resolvesOnce({ taskArns: ['c'] });
    mock.on(DescribeTasksCommand).resolves({
      tasks: ['a', 'b', 'c'].map((taskArn) => ({
        taskArn,
        lastStatus: 'RUNNING',
        tags: [{ key: 'wsp:workspace', value: taskArn }],
      })),
    });
    const views = await tasks().listOwn();
    expect(views.map((v) => [v.taskArn, v.tags['wsp:workspace']])).toEqual([
      ['a', 'a'],
      ['b', 'b'],
      ['c', 'c'],
    ]);
    const inputs = mock.commandCalls(ListTasksCommand).map((c) => c.args[0].input);
    expect(inputs).toEqual([
      { cluster: 'wsp', startedBy: 'wsp-prod' },
      { cluster: 'wsp', startedBy: 'wsp-prod', nextToken: 'n' },
    ]);
  });

  it('startedBy (the owner id) is checked at construction against ECS’s rule: ≤ 36 of [A-Za-z0-9/_-]', () => {
    for (const ok of [newInstanceId(), 'wsp-prod', 'wsp-lambda', 'a'.repeat(36), 'team/a_b-1'])
      expect(() => tasks(policy(), undefined, ok)).not.toThrow();
    for (const bad of ['', 'a'.repeat(37), 'wsp.prod', 'wsp prod', `wsp-${'0'.repeat(60)}`]) {
      expect(() => tasks(policy(), undefined, bad)).toThrow(BadRequestError);
      expect(() => tasks(policy(), undefined, bad)).toThrow(/ECS takes 1-36 letters, digits/);
    }
  });
});

describe('retry policy', () => {
  it('full jitter stays within the capped exponential ceiling', () => {
    const p = { baseMs: 100, capMs: 1000, random: () => 0.999 };
    expect([1, 2, 3, 4, 5, 6].map((a) => backoffMs(a, p))).toEqual([99, 199, 399, 799, 999, 999]);
    expect(backoffMs(3, { ...p, random: () => 0 })).toBe(0);
  });

  it('does not retry what is not transient', async () => {
    let calls = 0;
    const p = policy();
    await expect(
      withRetry(async () => {
        calls++;
        throw Object.assign(new Error('denied'), { name: 'AccessDeniedException' });
      }, p),
    ).rejects.toThrow('denied');
    expect(calls).toBe(1);
  });
});
