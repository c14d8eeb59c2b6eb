import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { GIT_LAYER_EXEC_PATH } from '../../infra/config.js';
import { WORKSPACE_CONTAINER } from '../../infra/constructs/workspace-compute.js';
import { BUCKET_PREFIXES } from '../../infra/stacks/stateful-stack.js';
import {
  actionCovers,
  actionsOf,
  functionRole,
  logicalId,
  resourcesOf,
  roleCan,
  statementsByRole,
  synthTemplates,
  type Json,
  type PolicyStatementJson,
  type Templates,
} from './synth-fixture.js';

/**
 * What the Fargate backend (issue 5) needs from the stacks: cache-image task-definition revisions,
 * the transfer/ and layers/ prefixes, the warm pool, git for the provisioner, the workspace
 * container. Two synths: `full` (warm pool, git layer, bearer auth: every optional part present)
 * and `plain` (the dev defaults: no pool, no layer). Each "only X" test also checks X has it.
 */

const GIT_LAYER = 'arn:aws:lambda:eu-west-1:111111111111:layer:wsp-git:7';
const ECR_PUSH_ACTIONS = [
  'ecr:PutImage',
  'ecr:InitiateLayerUpload',
  'ecr:UploadLayerPart',
  'ecr:CompleteLayerUpload',
  'ecr:BatchCheckLayerAvailability',
];
const ECR_PULL_ACTIONS = ['ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer'];
const TASK_DEFINITION_ACTIONS = ['ecs:RegisterTaskDefinition', 'ecs:DescribeTaskDefinition'];
/** Eviction deregisters the revision and deletes the manifest through the registry API (login + BatchDeleteImage). */
const EVICT_ACTIONS = ['ecs:DeregisterTaskDefinition', 'ecr:BatchDeleteImage', 'ecr:GetAuthorizationToken'];

interface Roles {
  template: Templates;
  statements: Map<string, PolicyStatementJson[]>;
  provisioner: string;
  api: string;
  janitor: string;
  taskEvents: string;
  authorizer?: string;
  taskRole: string;
  executionRole: string;
}

function rolesOf(template: Templates): Roles {
  const s = template.built.stateless;
  const fnRole = (fn: Parameters<typeof logicalId>[0]) => functionRole(template.stateless, logicalId(fn));
  return {
    template,
    statements: statementsByRole(template.stateless),
    provisioner: logicalId(s.provisionerRole),
    api: fnRole(s.functions.api),
    janitor: fnRole(s.functions.janitor),
    taskEvents: fnRole(s.functions.taskEvents),
    ...(s.functions.authorizer ? { authorizer: fnRole(s.functions.authorizer) } : {}),
    taskRole: logicalId(s.compute.taskRole),
    executionRole: logicalId(s.compute.executionRole),
  };
}

let full: Roles;
let plain: Roles;

beforeAll(() => {
  full = rolesOf(
    synthTemplates({
      stage: 'dev',
      overrides: { apiAuth: 'bearer', warmPoolSize: 3, gitLayerArn: GIT_LAYER, ephemeralStorageGiB: 100 },
    }),
  );
  plain = rolesOf(synthTemplates({ stage: 'dev' }));
}, 240_000);

const of = (r: Roles, role: string): PolicyStatementJson[] => r.statements.get(role) ?? [];
const holders = (r: Roles, action: string): string[] =>
  [...r.statements]
    .filter(([, st]) => roleCan(st, action))
    .map(([id]) => id)
    .sort();
const statementsFor = (statements: PolicyStatementJson[], action: string) =>
  statements.filter((s) => actionsOf(s).some((a) => actionCovers(a, action)));
const resourcesFor = (statements: PolicyStatementJson[], action: string): unknown[] =>
  statementsFor(statements, action).flatMap((s) => (Array.isArray(s.Resource) ? s.Resource : [s.Resource]));
const fnProps = (r: Roles, fn: Parameters<typeof logicalId>[0]): Json =>
  (r.template.stateless.toJSON()['Resources'][logicalId(fn)] as Json)['Properties'] as Json;
const envOf = (r: Roles, fn: Parameters<typeof logicalId>[0]): Json =>
  (fnProps(r, fn)['Environment'] as Json)['Variables'] as Json;
/** `{ "Fn::GetAtt": [role, "Arn"] }` as the template writes a role ARN. */
const roleArn = (role: string) => ({ 'Fn::GetAtt': [role, 'Arn'] });

describe('cache images: the provisioner registers a task-definition revision per image', () => {
  it('only the provisioner may register or describe task definitions (even with a warm pool)', () => {
    for (const r of [full, plain]) {
      for (const action of TASK_DEFINITION_ACTIONS) expect(holders(r, action), action).toEqual([r.provisioner]);
    }
  });

  it('cache eviction: the provisioner (failed secret scan) and the janitor (cache limits) deregister revisions and delete images of the workspace repository only', () => {
    for (const r of [full, plain]) {
      for (const action of EVICT_ACTIONS) {
        // The execution role logs in to pull images; nothing else of it is about eviction.
        const expected =
          action === 'ecr:GetAuthorizationToken'
            ? [r.provisioner, r.janitor, r.executionRole]
            : [r.provisioner, r.janitor];
        expect(holders(r, action), action).toEqual(expected.sort());
      }
      for (const role of [r.provisioner, r.janitor]) {
        const resources = resourcesFor(of(r, role), 'ecr:BatchDeleteImage');
        expect(resources, role).toHaveLength(1);
        expect(JSON.stringify(resources[0]), role).toMatch(
          /:ecr:eu-west-1:111111111111:repository\/wsp-dev-workspaces"$/,
        );
      }
    }
  });

  it('iam:PassRole names exactly the workspace task and execution roles, only towards ECS tasks, for every holder', () => {
    expect(holders(full, 'iam:PassRole')).toEqual([full.provisioner, full.janitor].sort());
    expect(holders(plain, 'iam:PassRole')).toEqual([plain.provisioner]);
    for (const r of [full, plain]) {
      for (const [role, statements] of r.statements) {
        for (const st of statementsFor(statements, 'iam:PassRole')) {
          expect(actionsOf(st), role).toEqual(['iam:PassRole']);
          expect(st.Resource, role).toEqual(expect.arrayContaining([roleArn(r.taskRole), roleArn(r.executionRole)]));
          expect(st.Resource, role).toHaveLength(2);
          expect(st.Condition, role).toEqual({ StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } });
        }
      }
    }
  });

  it('the provisioner pushes to the workspace repository only, pulls it and the base image asset, and may log in to the registry', () => {
    const statements = of(full, full.provisioner);
    const workspaceRepo = /:ecr:eu-west-1:111111111111:repository\/wsp-dev-workspaces"/;
    const assetRepo = /:repository\/cdk-hnb659fds-container-assets-111111111111-eu-west-1"/;
    for (const action of ECR_PUSH_ACTIONS.filter((a) => a !== 'ecr:BatchCheckLayerAvailability')) {
      const resources = resourcesFor(statements, action);
      expect(resources, action).toHaveLength(1);
      expect(JSON.stringify(resources[0]), action).toMatch(workspaceRepo);
    }
    for (const action of [...ECR_PULL_ACTIONS, 'ecr:BatchCheckLayerAvailability']) {
      const flat = resourcesFor(statements, action).map((r) => JSON.stringify(r));
      expect(flat, action).toHaveLength(2);
      expect(flat.some((r) => workspaceRepo.test(r)) && flat.some((r) => assetRepo.test(r)), action).toBe(true);
      for (const r of flat) expect(r, action).not.toContain('*');
    }
    expect(resourcesFor(statements, 'ecr:GetAuthorizationToken')).toEqual(['*']);
    // Nobody else pushes (the janitor keeping a pool included).
    for (const action of ECR_PUSH_ACTIONS.filter((a) => a !== 'ecr:BatchCheckLayerAvailability')) {
      expect(holders(full, action), action).toEqual([full.provisioner]);
    }
  });

  it('RunTask is limited to revisions of the workspace family in the workspace cluster', () => {
    for (const role of [full.provisioner, full.janitor]) {
      const [st, ...more] = statementsFor(of(full, role), 'ecs:RunTask');
      expect(more).toEqual([]);
      expect(actionsOf(st!)).toEqual(['ecs:RunTask']);
      expect(JSON.stringify(st!.Resource)).toMatch(/:task-definition\/wsp-dev-workspace:\*"/);
      expect(st!.Condition).toEqual({
        ArnEquals: {
          'ecs:cluster': { 'Fn::GetAtt': [logicalId(full.template.built.stateless.compute.cluster), 'Arn'] },
        },
      });
    }
  });

  it('tags at creation (RunTask, the provisioner’s RegisterTaskDefinition) and, with a warm pool, only pool tasks a setup claims', () => {
    const runners = holders(full, 'ecs:RunTask');
    expect(runners).toEqual([full.provisioner, full.janitor].sort());
    expect(holders(full, 'ecs:TagResource')).toEqual(runners);
    const cluster = logicalId(full.template.built.stateless.compute.cluster);
    for (const role of runners) {
      const tagging = statementsFor(of(full, role), 'ecs:TagResource');
      for (const st of tagging) expect(actionsOf(st), role).toEqual(['ecs:TagResource']);
      // The cluster's tasks only (arn:…:task/<cluster>/*), and only as part of RunTask.
      expect(tagging, role).toContainEqual(
        expect.objectContaining({
          Condition: { StringEquals: { 'ecs:CreateAction': 'RunTask' } },
          Resource: { 'Fn::Join': ['', ['arn:aws:ecs:eu-west-1:111111111111:task/', { Ref: cluster }, '/*']] },
        }),
      );
      const conditions = tagging.map((st) => JSON.stringify(st.Condition)).sort();
      const expected = [JSON.stringify({ StringEquals: { 'ecs:CreateAction': 'RunTask' } })];
      if (role === full.provisioner) {
        expected.push(JSON.stringify({ StringEquals: { 'ecs:CreateAction': 'RegisterTaskDefinition' } }));
        // With a warm pool, a setup claiming a pool task tags it — pool tasks only.
        expected.push(JSON.stringify({ StringEquals: { 'aws:ResourceTag/wsp:kind': 'warm' } }));
      }
      expect(conditions, role).toEqual(expected.sort());
    }
    const [onRegister] = statementsFor(of(full, full.provisioner), 'ecs:TagResource').filter((st) =>
      JSON.stringify(st.Condition).includes('RegisterTaskDefinition'),
    );
    expect(onRegister!.Resource).toBe('arn:aws:ecs:eu-west-1:111111111111:task-definition/wsp-dev-workspace:*');
  });

  it('the workspace execution role pulls any tag of the workspace repository (cache images are new tags) and the base image asset, nothing else', () => {
    const statements = of(full, full.executionRole);
    for (const action of [...ECR_PULL_ACTIONS, 'ecr:BatchCheckLayerAvailability']) {
      const flat = resourcesFor(statements, action).map((r) => JSON.stringify(r));
      // A repository ARN has no tag part: one grant covers every cache tag; the base is the asset's.
      expect(flat.sort(), action).toEqual([
        expect.stringMatching(
          /:ecr:eu-west-1:111111111111:repository\/cdk-hnb659fds-container-assets-111111111111-eu-west-1"$/,
        ),
        expect.stringMatching(/:ecr:eu-west-1:111111111111:repository\/wsp-dev-workspaces"$/),
      ]);
    }
    for (const action of ECR_PUSH_ACTIONS.filter((a) => a !== 'ecr:BatchCheckLayerAvailability'))
      expect(roleCan(statements, action), action).toBe(false);
  });
});

describe('data bucket: transfer/ and layers/', () => {
  it('the prefixes are exported, and each expires after a day and aborts incomplete multipart uploads after a day', () => {
    expect(BUCKET_PREFIXES).toMatchObject({
      transfer: 'transfer/',
      layers: 'layers/',
      bundles: 'bundles/',
      outputs: 'outputs/',
    });
    full.template.stateful.hasResourceProperties('AWS::S3::Bucket', {
      BucketName: 'wsp-dev-data-111111111111-eu-west-1',
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({
            Prefix: 'transfer/',
            ExpirationInDays: 1,
            AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
            Status: 'Enabled',
          }),
          Match.objectLike({
            Prefix: 'layers/',
            ExpirationInDays: 1,
            AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
            Status: 'Enabled',
          }),
        ]),
      },
    });
  });

  /**
   * Roles that may do `action` on an object under `prefix`: any resource pattern (glob) that covers
   * a sample key there — so a whole-bucket `…/*` or `*` grant counts too. S3 resources are literal
   * strings in these templates (the bucket is referenced by name); a token would fail the check.
   */
  const s3Holders = (r: Roles, action: string, prefix: string): string[] => {
    const sample = `arn:aws:s3:::wsp-dev-data-111111111111-eu-west-1/${prefix}ws-1/abc.tar`;
    return [...r.statements]
      .filter(([, st]) =>
        resourcesFor(st, action).some((res) => {
          expect(typeof res, JSON.stringify(res)).toBe('string');
          return actionCovers(res as string, sample);
        }),
      )
      .map(([id]) => id)
      .sort();
  };

  it('transfer/: the worker and the api function write and read (presigned GET); they and the janitor delete (teardown)', () => {
    for (const action of ['s3:PutObject', 's3:GetObject']) {
      expect(s3Holders(full, action, BUCKET_PREFIXES.transfer), action).toEqual([full.provisioner, full.api].sort());
    }
    expect(s3Holders(full, 's3:DeleteObject', BUCKET_PREFIXES.transfer)).toEqual(
      [full.provisioner, full.api, full.janitor].sort(),
    );
  });

  it('layers/: only the worker signs the PUT and reads the layer; it and the janitor (eviction) delete it', () => {
    for (const action of ['s3:PutObject', 's3:GetObject']) {
      expect(s3Holders(full, action, BUCKET_PREFIXES.layers), action).toEqual([full.provisioner]);
    }
    expect(s3Holders(full, 's3:DeleteObject', BUCKET_PREFIXES.layers)).toEqual([full.provisioner, full.janitor].sort());
  });

  it("listing is limited to keys under transfer/ (deleting a workspace's transfer objects), for exactly those that delete them", () => {
    expect(holders(full, 's3:ListBucket')).toEqual([full.provisioner, full.api, full.janitor].sort());
    for (const role of holders(full, 's3:ListBucket')) {
      const statements = statementsFor(of(full, role), 's3:ListBucket');
      expect(statements, role).toEqual([
        {
          Effect: 'Allow',
          Action: 's3:ListBucket',
          Resource: 'arn:aws:s3:::wsp-dev-data-111111111111-eu-west-1',
          Condition: { StringLike: { 's3:prefix': ['transfer/*'] } },
        },
      ]);
    }
  });

  it('no role may delete outside transfer/ and layers/, and the workspace roles have no S3 right at all', () => {
    for (const [role, statements] of full.statements) {
      for (const res of resourcesFor(statements, 's3:DeleteObject'))
        expect(JSON.stringify(res), role).toMatch(/\/(transfer|layers)\/\*"/);
    }
    for (const role of [full.taskRole, full.executionRole]) {
      expect(
        of(full, role)
          .flatMap(actionsOf)
          .filter((a) => a.startsWith('s3:')),
        role,
      ).toEqual([]);
    }
  });
});

describe('handler environment', () => {
  it('api, worker and janitor know the bucket; every ECS handler knows the repository URI, base image and warm pool size', () => {
    const fns = full.template.built.stateless.functions;
    for (const fn of [fns.api, fns.worker, fns.janitor])
      expect(envOf(full, fn)['WSP_BUCKET']).toBe('wsp-dev-data-111111111111-eu-west-1');
    for (const fn of [fns.api, fns.worker, fns.janitor, fns.taskEvents]) {
      const env = envOf(full, fn);
      expect(JSON.stringify(env['WSP_ECR_REPOSITORY_URI'])).toMatch(
        /^"111111111111\.dkr\.ecr\.eu-west-1\.|"111111111111\.dkr\.ecr\.eu-west-1\."/,
      );
      expect(JSON.stringify(env['WSP_ECR_REPOSITORY_URI'])).toContain('/wsp-dev-workspaces');
      // The base image is the stack's image asset (built and pushed by cdk deploy), not a hand-pushed tag.
      expect(JSON.stringify(env['WSP_ECS_BASE_IMAGE'])).toContain('cdk-hnb659fds-container-assets-');
      expect(env['WSP_ECS_BASE_IMAGE_TAG']).toBeUndefined();
      expect(env['WSP_ECS_WARM_POOL_SIZE']).toBe('3');
      expect(env['WSP_ECS_TASK_FAMILY']).toBe('wsp-dev-workspace');
    }
    expect(envOf(plain, plain.template.built.stateless.functions.janitor)['WSP_ECS_WARM_POOL_SIZE']).toBe('0');
  });
});

describe('warm pool', () => {
  it('with a pool the janitor runs, describes and stops tasks, but cannot exec, read secrets, push images or register revisions', () => {
    const janitor = of(full, full.janitor);
    for (const action of [
      'ecs:RunTask',
      'ecs:DescribeTasks',
      'ecs:StopTask',
      'ecs:ListTasks',
      'iam:PassRole',
      'ecs:TagResource',
    ]) {
      expect(roleCan(janitor, action), action).toBe(true);
    }
    for (const action of [
      'ecs:ExecuteCommand',
      'secretsmanager:GetSecretValue',
      'ecr:PutImage',
      'ecr:InitiateLayerUpload',
      'ecr:BatchGetImage',
      ...TASK_DEFINITION_ACTIONS,
    ]) {
      expect(roleCan(janitor, action), action).toBe(false);
    }
  });

  it('without a pool (the default) the janitor cannot start tasks or pass roles, and still stops them', () => {
    const janitor = of(plain, plain.janitor);
    expect(roleCan(janitor, 'ecs:StopTask')).toBe(true);
    for (const action of ['ecs:RunTask', 'iam:PassRole', 'ecs:TagResource'])
      expect(roleCan(janitor, action), action).toBe(false);
  });
});

describe('git for the provisioner', () => {
  it('the layer is attached to the worker only, with GIT_EXEC_PATH, and the synth does not warn', () => {
    const fns = full.template.built.stateless.functions;
    expect(fnProps(full, fns.worker)['Layers']).toEqual([GIT_LAYER]);
    expect(envOf(full, fns.worker)['GIT_EXEC_PATH']).toBe(GIT_LAYER_EXEC_PATH);
    expect(GIT_LAYER_EXEC_PATH).toBe('/opt/libexec/git-core');
    for (const fn of [fns.api, fns.janitor, fns.taskEvents, fns.authorizer!]) {
      expect(fnProps(full, fn)['Layers'], fn.node.id).toBeUndefined();
      expect(envOf(full, fn)['GIT_EXEC_PATH'], fn.node.id).toBeUndefined();
    }
    expect(Annotations.fromStack(full.template.built.stateless).findWarning('*', Match.anyValue())).toEqual([]);
  });

  it('a layer from another region is refused at synth (Lambda attaches same-region layers only)', () => {
    expect(() =>
      synthTemplates({ overrides: { gitLayerArn: 'arn:aws:lambda:us-east-1:111111111111:layer:wsp-git:7' } }),
    ).toThrow(/gitLayerArn is in us-east-1, the stack in eu-west-1/);
  });

  it('without a prebuilt layer the stack builds its own (arm64, nodejs22.x) for the worker only, and does not warn', () => {
    const fns = plain.template.built.stateless.functions;
    const layers = resourcesOf(plain.template.stateless, 'AWS::Lambda::LayerVersion');
    expect(layers).toHaveLength(1);
    const [layerId, layer] = layers[0]!;
    expect(layer).toMatchObject({ CompatibleArchitectures: ['arm64'], CompatibleRuntimes: ['nodejs22.x'] });
    expect(fnProps(plain, fns.worker)['Layers']).toEqual([{ Ref: layerId }]);
    expect(envOf(plain, fns.worker)['GIT_EXEC_PATH']).toBe(GIT_LAYER_EXEC_PATH);
    for (const fn of [fns.api, fns.janitor, fns.taskEvents]) expect(fnProps(plain, fn)['Layers']).toBeUndefined();
    expect(Annotations.fromStack(plain.template.built.stateless).findWarning('*', Match.anyValue())).toEqual([]);
  });
});

describe('workspace container', () => {
  it('init process, writable root filesystem, storage from the stage, no secrets or environment', () => {
    const [[, td]] = resourcesOf(full.template.stateless, 'AWS::ECS::TaskDefinition') as [[string, Json]];
    expect(td['EphemeralStorage']).toEqual({ SizeInGiB: 100 });
    const [container, ...others] = td['ContainerDefinitions'] as Json[];
    expect(others).toEqual([]);
    expect(container!['Name']).toBe(WORKSPACE_CONTAINER);
    expect((container!['LinuxParameters'] as Json)['InitProcessEnabled']).toBe(true);
    expect(container!['ReadonlyRootFilesystem']).toBe(false);
    expect(container!['Secrets']).toBeUndefined();
    expect(container!['Environment']).toBeUndefined();
    const [[, plainTd]] = resourcesOf(plain.template.stateless, 'AWS::ECS::TaskDefinition') as [[string, Json]];
    expect(plainTd['EphemeralStorage']).toEqual({ SizeInGiB: 40 });
  });

  it('the cluster enables ECS Exec without a KMS key', () => {
    const [[, cluster]] = resourcesOf(full.template.stateless, 'AWS::ECS::Cluster') as [[string, Json]];
    const exec = (cluster['Configuration'] as Json)['ExecuteCommandConfiguration'] as Json;
    expect(exec).toEqual({ Logging: 'NONE' });
    expect(JSON.stringify(cluster)).not.toMatch(/kms/i);
  });
});
