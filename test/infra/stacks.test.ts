import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { HANDLER_ENTRIES, MAX_PROVIDER_CONFIG_CHARS } from '../../infra/stacks/stateless-stack.js';
import { createTableInput, TABLE_SHAPE } from '../../shared/state/table.js';
import { logicalId, resourcesOf, synthTemplates, type Json, type Templates } from './synth-fixture.js';

/** What the stacks contain and how they are wired, beyond the IAM boundaries. */

let t: Templates;
beforeAll(() => {
  t = synthTemplates({
    overrides: {
      gitSecrets: ['wsp/git/token'],
      provider: { repositories: [{ url: 'https://example.com/r.git', path: 'r' }] },
    },
  });
});

const resource = (id: string): Json => t.stateless.toJSON()['Resources'][id] as Json;
const envOf = (fnLogicalId: string): Json =>
  ((resource(fnLogicalId)['Properties'] as Json)['Environment'] as Json)['Variables'] as Json;

describe('stateful stack', () => {
  it('the table has exactly the shape shared/state/table.ts creates, plus TTL, PITR and RETAIN', () => {
    const input = createTableInput('ignored');
    t.stateful.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: Match.objectEquals({
        TableName: 'wsp-dev-state',
        BillingMode: TABLE_SHAPE.billingMode,
        KeySchema: input.KeySchema,
        AttributeDefinitions: Match.arrayWith(input.AttributeDefinitions!.map((a) => Match.objectEquals({ ...a }))),
        GlobalSecondaryIndexes: input.GlobalSecondaryIndexes,
        TimeToLiveSpecification: { AttributeName: TABLE_SHAPE.ttlAttribute, Enabled: true },
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        DeletionProtectionEnabled: true,
        Tags: Match.anyValue(),
      }),
    });
    const [[, table]] = resourcesOf(t.stateful, 'AWS::DynamoDB::Table') as [[string, Json]];
    expect(table['AttributeDefinitions']).toHaveLength(input.AttributeDefinitions!.length);
  });

  it('the data bucket is private, encrypted, SSL-only, logged, expires bundles and outputs, and is retained', () => {
    t.stateful.hasResource('AWS::S3::Bucket', {
      DeletionPolicy: 'Retain',
      Properties: Match.objectLike({
        BucketName: 'wsp-dev-data-111111111111-eu-west-1',
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        },
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
        },
        LoggingConfiguration: Match.objectLike({ LogFilePrefix: 'data-bucket/' }),
        LifecycleConfiguration: {
          Rules: Match.arrayWith([
            Match.objectLike({ Prefix: 'bundles/', ExpirationInDays: 1, Status: 'Enabled' }),
            Match.objectLike({ Prefix: 'outputs/', ExpirationInDays: 7, Status: 'Enabled' }),
          ]),
        },
      }),
    });
    const policies = resourcesOf(t.stateful, 'AWS::S3::BucketPolicy');
    expect(policies).toHaveLength(2);
    for (const [, p] of policies) {
      expect(JSON.stringify(p['PolicyDocument'])).toContain('"aws:SecureTransport":"false"');
    }
  });

  it('the image repository scans on push and its lifecycle rules expire nothing the provider may still serve', () => {
    const [[id, repo]] = resourcesOf(t.stateful, 'AWS::ECR::Repository') as [[string, Json]];
    expect((t.stateful.toJSON()['Resources'][id] as Json)['DeletionPolicy']).toBe('Retain');
    expect(repo['RepositoryName']).toBe('wsp-dev-workspaces');
    expect(repo['ImageScanningConfiguration']).toEqual({ ScanOnPush: true });
    const text = (repo['LifecyclePolicy'] as Json | undefined)?.['LifecyclePolicyText'] as string | undefined;
    const rules = ((text ? JSON.parse(text) : { rules: [] }) as { rules: { selection: Json }[] }).rules;
    // ECR's rules do not follow index references: the per-platform children of a multi-platform
    // `base` are untagged images, so an untagged (or "any") rule can delete them under a live tag.
    expect(rules.filter((r) => r.selection['tagStatus'] !== 'tagged')).toEqual([]);
    // The provider keeps cache entries by last use and deletes its own cache images on eviction;
    // an ECR count (by push time) could delete one it still serves. Nor may a rule select `base`.
    const selects = (r: { selection: Json }, tag: string): boolean =>
      [
        ...((r.selection['tagPrefixList'] as string[]) ?? []),
        ...((r.selection['tagPatternList'] as string[]) ?? []),
      ].some((p) => tag.startsWith(p.replace(/\*.*$/, '')));
    expect(rules.filter((r) => selects(r, 'cache-abc') || selects(r, 'base'))).toEqual([]);
  });

  it('the stacks are coupled by names, not CloudFormation exports', () => {
    expect(JSON.stringify(t.stateful.toJSON())).not.toContain('Export');
    expect(JSON.stringify(t.stateless.toJSON())).not.toMatch(/Fn::ImportValue|Fn::GetStackOutput/);
    expect(t.built.stateless.dependencies.map((s) => s.stackName)).toEqual(['wsp-dev-stateful']);
  });
});

describe('stateless stack', () => {
  it('five handlers, each nodejs22.x on ARM64 with ESM bundles, its own log group with retention and its entry file', () => {
    const fns = t.built.stateless.functions;
    const ours = [fns.api, fns.worker, fns.taskEvents, fns.janitor];
    expect(fns.authorizer).toBeUndefined(); // IAM stage
    for (const fn of ours) {
      const props = resource(logicalId(fn))['Properties'] as Json;
      expect(props['Runtime']).toBe('nodejs22.x');
      expect(props['Architectures']).toEqual(['arm64']);
      expect(props['Handler']).toBe('index.handler');
      expect(JSON.stringify(props['LoggingConfig'])).toContain(logicalId(fn.functionLogs));
      expect(props['Timeout']).toBeLessThanOrEqual(900);
    }
    const retention = resourcesOf(t.stateless, 'AWS::Logs::LogGroup').map(([, p]) => p['RetentionInDays']);
    expect(retention.length).toBeGreaterThanOrEqual(ours.length);
    expect(retention.every((r) => r === 14)).toBe(true);
    expect(Object.values(HANDLER_ENTRIES)).toHaveLength(5);
  });

  it('the api function answers within the HTTP API limit; the worker may run 15 minutes', () => {
    expect((resource(logicalId(t.built.stateless.functions.api))['Properties'] as Json)['Timeout']).toBeLessThan(30);
    expect((resource(logicalId(t.built.stateless.functions.worker))['Properties'] as Json)['Timeout']).toBe(900);
  });

  it('every handler gets the table, mode, owner id and provider config; api and worker get the ECS settings', () => {
    const fns = t.built.stateless.functions;
    for (const fn of [fns.api, fns.worker, fns.taskEvents, fns.janitor]) {
      const env = envOf(logicalId(fn));
      expect(env['TABLE_NAME']).toBe('wsp-dev-state');
      expect(env['WSP_MODE']).toBe('ecs');
      expect(env['WSP_INSTANCE_ID']).toBe('wsp-dev');
      expect(JSON.parse(env['WSP_CONFIG_JSON'] as string)).toEqual({
        repositories: [{ url: 'https://example.com/r.git', path: 'r' }],
      });
    }
    for (const fn of [fns.api, fns.worker]) {
      const env = envOf(logicalId(fn));
      expect(env['WSP_ECS_CLUSTER']).toEqual({ Ref: expect.stringMatching(/Cluster/) });
      expect(env['WSP_ECS_SECURITY_GROUPS']).toBeDefined();
      expect(env['WSP_BUCKET']).toBe('wsp-dev-data-111111111111-eu-west-1');
    }
  });

  it('the worker is invoked asynchronously with retries and a dead-letter queue', () => {
    const worker = logicalId(t.built.stateless.functions.worker);
    t.stateless.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: worker },
      MaximumRetryAttempts: 2,
    });
    expect(JSON.stringify((resource(worker)['Properties'] as Json)['DeadLetterConfig'])).toContain('FailedInvocations');
  });

  it('ECS task state changes of the workspace cluster go to the task-events function', () => {
    const target = logicalId(t.built.stateless.functions.taskEvents);
    t.stateless.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.ecs'],
        'detail-type': ['ECS Task State Change'],
        detail: { clusterArn: [{ 'Fn::GetAtt': [logicalId(t.built.stateless.compute.cluster), 'Arn'] }] },
      },
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [target, 'Arn'] }, DeadLetterConfig: Match.anyValue() })],
    });
  });

  it('the janitor runs on a schedule', () => {
    const target = logicalId(t.built.stateless.functions.janitor);
    t.stateless.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(5 minutes)',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [target, 'Arn'] } })],
    });
  });

  it('the workspace task runs the base image cdk deploy builds from this checkout (an image asset), sized by the stage', () => {
    const [[, td]] = resourcesOf(t.stateless, 'AWS::ECS::TaskDefinition') as [[string, Json]];
    expect(td['Family']).toBe('wsp-dev-workspace');
    expect(td['Cpu']).toBe('1024');
    expect(td['Memory']).toBe('4096');
    expect(td['EphemeralStorage']).toEqual({ SizeInGiB: 40 });
    expect(JSON.stringify(td['ContainerDefinitions'])).toContain(
      'cdk-hnb659fds-container-assets-111111111111-eu-west-1',
    );
  });

  it('refuses a provider config too big for the Lambda environment, naming the limit', () => {
    const provider = { setup: { script: 'x'.repeat(MAX_PROVIDER_CONFIG_CHARS) } };
    expect(() => synthTemplates({ overrides: { provider } })).toThrow(/at most 2800 fit in the Lambda environment/);
  });
});
