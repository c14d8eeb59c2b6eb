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
import { BackendUnavailableError } from '../../../shared/contract/errors.js';
import { backoffMs, withRetry, type RetryPolicy } from '../../../shared/backends/ecs/retry.js';
import { EcsTasks } from '../../../shared/backends/ecs/tasks.js';

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

function tasks(retry = policy(), now?: () => number) {
  return new EcsTasks(ecs, {
    cluster: 'wsp',
    container: 'workspace',
    network: { subnets: ['subnet-1', 'subnet-2'], securityGroups: ['sg-1'] },
    startedBy: 'wsp-prod',
    retry,
    pollMinMs: 10,
    pollMaxMs: 40,
    ...(now ? { now } : {}),
  });
}

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

  it('an unknown task (DescribeTasks failure MISSING) reads as stopped', async () => {
    mock.on(DescribeTasksCommand).resolves({ tasks: [], failures: [{ arn: TASK, reason: 'MISSING' }] });
    expect(await tasks().describe([TASK])).toEqual([
      { taskArn: TASK, phase: 'stopped', lastStatus: 'MISSING', stoppedReason: 'MISSING', tags: {} },
    ]);
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

  it('lists its own tasks by startedBy, running and stopped, through every page', async () => {
    mock
      .on(ListTasksCommand, { desiredStatus: 'RUNNING' })
      .resolvesOnce({ taskArns: ['a'], nextToken: 'n' })
      .resolvesOnce({ taskArns: ['b'] });
    mock.on(ListTasksCommand, { desiredStatus: 'STOPPED' }).resolves({ taskArns: ['c'] });
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
    for (const call of mock.commandCalls(ListTasksCommand))
      expect(call.args[0].input).toMatchObject({ cluster: 'wsp', startedBy: 'wsp-prod' });
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
