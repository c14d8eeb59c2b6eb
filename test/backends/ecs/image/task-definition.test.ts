import {
  DeleteTaskDefinitionsCommand,
  DeregisterTaskDefinitionCommand,
  DescribeTaskDefinitionCommand,
  ECSClient,
  RegisterTaskDefinitionCommand,
  type TaskDefinition,
} from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  deregisterCacheTaskDefinition,
  registerCacheTaskDefinition,
} from '../../../../shared/backends/ecs/image/task-definition.js';
import { BackendUnavailableError, BadRequestError } from '../../../../shared/contract/errors.js';

const ecsMock = mockClient(ECSClient);
const ecs = new ECSClient({ region: 'us-east-1' });
const BASE_ARN = 'arn:aws:ecs:us-east-1:123456789012:task-definition/wsp-workspace:7';
const IMAGE = `123456789012.dkr.ecr.us-east-1.amazonaws.com/wsp/cache@sha256:${'a'.repeat(64)}`;

/** What DescribeTaskDefinition returns: registerable fields plus the ones Register rejects. */
const described = (): TaskDefinition => ({
  taskDefinitionArn: BASE_ARN,
  family: 'wsp-workspace',
  revision: 7,
  status: 'ACTIVE',
  taskRoleArn: 'arn:aws:iam::123456789012:role/wsp-task',
  executionRoleArn: 'arn:aws:iam::123456789012:role/wsp-exec',
  networkMode: 'awsvpc',
  containerDefinitions: [
    {
      name: 'workspace',
      image: '123456789012.dkr.ecr.us-east-1.amazonaws.com/wsp/base:bookworm',
      essential: true,
      linuxParameters: { initProcessEnabled: true },
      logConfiguration: { logDriver: 'awslogs', options: { 'awslogs-group': '/wsp/workspaces' } },
    },
    { name: 'sidecar', image: 'public.ecr.aws/x/sidecar:1', essential: false },
  ],
  volumes: [],
  placementConstraints: [],
  requiresCompatibilities: ['FARGATE'],
  compatibilities: ['EC2', 'FARGATE'],
  requiresAttributes: [{ name: 'com.amazonaws.ecs.capability.task-iam-role' }],
  cpu: '1024',
  memory: '4096',
  ephemeralStorage: { sizeInGiB: 40 },
  runtimePlatform: { cpuArchitecture: 'X86_64', operatingSystemFamily: 'LINUX' },
  registeredAt: new Date('2026-01-01T00:00:00Z'),
  registeredBy: 'arn:aws:sts::123456789012:assumed-role/deployer',
});

describe('cache task-definition revisions', () => {
  beforeEach(() => ecsMock.reset());

  it('registers a copy of the base with only registerable fields, the workspace image replaced and tags merged', async () => {
    ecsMock.on(DescribeTaskDefinitionCommand).resolves({
      taskDefinition: described(),
      tags: [
        { key: 'wsp:owner', value: 'stack-a' },
        { key: 'wsp:role', value: 'base' },
      ],
    });
    ecsMock.on(RegisterTaskDefinitionCommand).resolves({
      taskDefinition: { taskDefinitionArn: 'arn:aws:ecs:us-east-1:123456789012:task-definition/wsp-cache:1' },
    });

    const arn = await registerCacheTaskDefinition(ecs, {
      baseTaskDefinition: BASE_ARN,
      image: IMAGE,
      family: 'wsp-cache',
      tags: { 'wsp:cache-key': 'k1', 'wsp:role': 'cache' },
    });
    expect(arn).toBe('arn:aws:ecs:us-east-1:123456789012:task-definition/wsp-cache:1');

    expect(ecsMock.commandCalls(DescribeTaskDefinitionCommand)[0]!.args[0].input).toEqual({
      taskDefinition: BASE_ARN,
      include: ['TAGS'],
    });
    const input = ecsMock.commandCalls(RegisterTaskDefinitionCommand)[0]!.args[0].input;
    const base = described();
    expect(input).toEqual({
      family: 'wsp-cache',
      taskRoleArn: base.taskRoleArn,
      executionRoleArn: base.executionRoleArn,
      networkMode: 'awsvpc',
      containerDefinitions: [{ ...base.containerDefinitions![0], image: IMAGE }, base.containerDefinitions![1]],
      volumes: [],
      placementConstraints: [],
      requiresCompatibilities: ['FARGATE'],
      cpu: '1024',
      memory: '4096',
      ephemeralStorage: { sizeInGiB: 40 },
      runtimePlatform: { cpuArchitecture: 'X86_64', operatingSystemFamily: 'LINUX' },
      tags: [
        { key: 'wsp:owner', value: 'stack-a' },
        { key: 'wsp:role', value: 'cache' },
        { key: 'wsp:cache-key', value: 'k1' },
      ],
    });
    for (const dropped of [
      'taskDefinitionArn',
      'revision',
      'status',
      'requiresAttributes',
      'compatibilities',
      'registeredAt',
      'registeredBy',
      'deregisteredAt',
    ]) {
      expect(input).not.toHaveProperty(dropped);
    }
  });

  it('defaults: the base family; the only container, else the one named workspace; a named container must exist', async () => {
    const single = { ...described(), containerDefinitions: [{ name: 'main', image: 'base:1' }] };
    ecsMock
      .on(DescribeTaskDefinitionCommand)
      .resolvesOnce({ taskDefinition: single })
      .resolves({ taskDefinition: described() });
    ecsMock.on(RegisterTaskDefinitionCommand).resolves({ taskDefinition: { taskDefinitionArn: 'arn:new' } });

    await registerCacheTaskDefinition(ecs, { baseTaskDefinition: 'wsp-workspace', image: IMAGE });
    const first = ecsMock.commandCalls(RegisterTaskDefinitionCommand)[0]!.args[0].input;
    expect(first.family).toBe('wsp-workspace');
    expect(first.containerDefinitions).toEqual([{ name: 'main', image: IMAGE }]);
    expect(first.tags).toBeUndefined();

    await registerCacheTaskDefinition(ecs, { baseTaskDefinition: 'wsp-workspace', image: IMAGE });
    expect(
      ecsMock.commandCalls(RegisterTaskDefinitionCommand)[1]!.args[0].input.containerDefinitions!.map((c) => c.image),
    ).toEqual([IMAGE, 'public.ecr.aws/x/sidecar:1']);

    await expect(
      registerCacheTaskDefinition(ecs, { baseTaskDefinition: 'wsp-workspace', image: IMAGE, containerName: 'nope' }),
    ).rejects.toThrow("task definition wsp-workspace has no container 'nope' (it has: workspace, sidecar)");
    await expect(
      registerCacheTaskDefinition(ecs, { baseTaskDefinition: 'wsp-workspace', image: IMAGE, family: 'bad family!' }),
    ).rejects.toBeInstanceOf(BadRequestError);
    expect(ecsMock.commandCalls(RegisterTaskDefinitionCommand)).toHaveLength(2);
  });

  it('ECS failures become BackendUnavailableError keeping the cause', async () => {
    const throttled = Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
    ecsMock.on(DescribeTaskDefinitionCommand).rejectsOnce(throttled).resolves({ taskDefinition: described() });
    ecsMock
      .on(RegisterTaskDefinitionCommand)
      .rejects(Object.assign(new Error('Too many revisions'), { name: 'ClientException' }));
    const e1 = (await registerCacheTaskDefinition(ecs, { baseTaskDefinition: BASE_ARN, image: IMAGE }).catch(
      (e: unknown) => e,
    )) as BackendUnavailableError;
    expect(e1).toBeInstanceOf(BackendUnavailableError);
    expect(e1.message).toContain('DescribeTaskDefinition');
    expect(e1.cause).toBe(throttled);
    await expect(registerCacheTaskDefinition(ecs, { baseTaskDefinition: BASE_ARN, image: IMAGE })).rejects.toThrow(
      'ECS RegisterTaskDefinition wsp-workspace failed: ClientException: Too many revisions',
    );
  });

  it('deregister (and optionally delete) for eviction; idempotent for a revision that is gone', async () => {
    const arn = 'arn:aws:ecs:us-east-1:123456789012:task-definition/wsp-cache:3';
    ecsMock.on(DeregisterTaskDefinitionCommand).resolves({});
    ecsMock.on(DeleteTaskDefinitionsCommand).resolves({ taskDefinitions: [{ taskDefinitionArn: arn }], failures: [] });
    await deregisterCacheTaskDefinition(ecs, arn);
    expect(ecsMock.commandCalls(DeleteTaskDefinitionsCommand)).toHaveLength(0);
    await deregisterCacheTaskDefinition(ecs, arn, { delete: true });
    expect(ecsMock.commandCalls(DeregisterTaskDefinitionCommand).map((c) => c.args[0].input)).toEqual([
      { taskDefinition: arn },
      { taskDefinition: arn },
    ]);
    expect(ecsMock.commandCalls(DeleteTaskDefinitionsCommand)[0]!.args[0].input).toEqual({ taskDefinitions: [arn] });

    ecsMock.reset();
    ecsMock
      .on(DeregisterTaskDefinitionCommand)
      .rejects(Object.assign(new Error('The specified task definition does not exist.'), { name: 'ClientException' }));
    await expect(deregisterCacheTaskDefinition(ecs, arn)).resolves.toBeUndefined();
    ecsMock
      .on(DeregisterTaskDefinitionCommand)
      .rejects(Object.assign(new Error('Access denied'), { name: 'AccessDeniedException' }));
    await expect(deregisterCacheTaskDefinition(ecs, arn)).rejects.toBeInstanceOf(BackendUnavailableError);
    ecsMock.on(DeregisterTaskDefinitionCommand).resolves({});
    ecsMock.on(DeleteTaskDefinitionsCommand).resolves({ failures: [{ arn, reason: 'TASK_DEFINITION_IN_USE' }] });
    await expect(deregisterCacheTaskDefinition(ecs, arn, { delete: true })).rejects.toThrow('TASK_DEFINITION_IN_USE');
  });
});
