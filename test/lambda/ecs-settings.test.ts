import { describe, expect, it } from 'vitest';
import { readLambdaSettings } from '../../functions/lambda/settings.js';
import { createEcsBackendFromConfig } from '../../shared/backends/ecs/factory.js';
import { BadRequestError } from '../../shared/contract/errors.js';
import { silentLogger } from '../../shared/log.js';

// What the stack's WSP_ECS_* environment becomes (infra/constructs/workspace-compute.ts sets it), and
// the Fargate backend built from it.
const STACK_ENV = {
  AWS_REGION: 'eu-west-1',
  WSP_ECS_CLUSTER: 'wsp-dev-workspaces',
  WSP_ECS_TASK_DEFINITION: 'arn:aws:ecs:eu-west-1:111111111111:task-definition/wsp-dev-workspace:3',
  WSP_ECS_CONTAINER: 'workspace',
  WSP_ECS_SUBNETS: 'subnet-0123456789abcdef0, subnet-0fedcba9876543210',
  WSP_ECS_SECURITY_GROUPS: 'sg-0123456789abcdef0',
  WSP_BUCKET: 'wsp-dev-data-111111111111',
  WSP_ECR_REPOSITORY_URI: '111111111111.dkr.ecr.eu-west-1.amazonaws.com/wsp-dev-workspaces',
  WSP_ECS_BASE_IMAGE: `111111111111.dkr.ecr.eu-west-1.amazonaws.com/cdk-hnb659fds-container-assets-111111111111-eu-west-1:${'a'.repeat(64)}`,
  WSP_ECS_WARM_POOL_SIZE: '2',
};

describe('Fargate settings from the stack environment', () => {
  it('fill the ecs section', () => {
    const { config } = readLambdaSettings(STACK_ENV);
    expect(config.mode).toBe('ecs');
    expect(config.ecs).toEqual({
      region: 'eu-west-1',
      cluster: 'wsp-dev-workspaces',
      taskDefinition: STACK_ENV.WSP_ECS_TASK_DEFINITION,
      container: 'workspace',
      subnets: ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'],
      securityGroups: ['sg-0123456789abcdef0'],
      bucket: 'wsp-dev-data-111111111111',
      repositoryUri: STACK_ENV.WSP_ECR_REPOSITORY_URI,
      baseImage: STACK_ENV.WSP_ECS_BASE_IMAGE,
      baseImageTag: 'base',
      warmPoolSize: 2,
      readyTimeoutSeconds: 600,
      layerPartMb: 64,
    });
  });

  it.each([
    ['WSP_ECS_SUBNETS', 'subnet-1;rm -rf /', 'ecs.subnets[0]'],
    ['WSP_ECS_SECURITY_GROUPS', 'default', 'ecs.securityGroups[0]'],
    ['WSP_ECS_WARM_POOL_SIZE', 'many', 'ecs.warmPoolSize'],
    ['WSP_ECS_WARM_POOL_SIZE', '21', 'ecs.warmPoolSize'],
    ['WSP_BUCKET', 'Not_A_Bucket', 'ecs.bucket'],
    ['WSP_ECR_REPOSITORY_URI', 'https://registry/x', 'ecs.repositoryUri'],
    ['WSP_ECS_BASE_IMAGE', 'debian:bookworm', 'ecs.baseImage'],
  ])('a bad %s (%s) is refused, naming %s', (name, value, field) => {
    try {
      readLambdaSettings({ ...STACK_ENV, [name]: value });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(BadRequestError);
      expect(((error as BadRequestError).details as Array<{ path: string }>).map((d) => d.path)).toContain(field);
    }
  });

  it('build the Fargate backend; an incomplete section names every missing field', () => {
    const ctx = { owner: 'wsp-dev', dataDir: '/tmp/wsp', log: silentLogger };
    expect(createEcsBackendFromConfig(readLambdaSettings(STACK_ENV).config, ctx).kind).toBe('ecs');
    // The base image (the stack's image asset) must be in the cache repository's registry.
    const elsewhere = readLambdaSettings({
      ...STACK_ENV,
      WSP_ECS_BASE_IMAGE: '222222222222.dkr.ecr.eu-west-1.amazonaws.com/other:base',
    }).config;
    expect(() => createEcsBackendFromConfig(elsewhere, ctx)).toThrow(/ecs.baseImage must be in the registry/);
    const partial = readLambdaSettings({ AWS_REGION: 'eu-west-1', WSP_ECS_CLUSTER: 'c' }).config;
    try {
      createEcsBackendFromConfig(partial, ctx);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(BadRequestError);
      expect(((error as BadRequestError).details as Array<{ path: string }>).map((d) => d.path).sort()).toEqual([
        'ecs.bucket',
        'ecs.repositoryUri',
        'ecs.securityGroups',
        'ecs.subnets',
        'ecs.taskDefinition',
      ]);
    }
  });
});
