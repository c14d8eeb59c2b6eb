import { beforeAll, describe, expect, it } from 'vitest';
import { SSM_MESSAGES_ACTIONS } from '../../infra/constructs/workspace-compute.js';
import {
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
 * The IAM boundaries of issue 4, asserted on the synthesized templates: who may read the git
 * secrets, what a workspace task can do, who may push images. Each "only X" test also checks that
 * X does have the right (a positive control), so the test cannot pass on an empty template.
 */

const SECRET_NAME = 'wsp/git/github-token';
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:wsp/git/gitlab-AbCdEf';
const ECR_PUSH_ACTIONS = ['ecr:PutImage', 'ecr:InitiateLayerUpload', 'ecr:UploadLayerPart', 'ecr:CompleteLayerUpload'];

let t: Templates;
let roles: Map<string, PolicyStatementJson[]>;
let ids: { provisioner: string; taskRole: string; executionRole: string; handlerRoles: Record<string, string> };

beforeAll(() => {
  t = synthTemplates({ overrides: { gitSecrets: [SECRET_NAME, SECRET_ARN], apiAuth: 'bearer' } });
  roles = statementsByRole(t.stateless);
  const s = t.built.stateless;
  const fnRole = (fn: Parameters<typeof logicalId>[0]) => functionRole(t.stateless, logicalId(fn));
  ids = {
    provisioner: logicalId(s.provisionerRole),
    taskRole: logicalId(s.compute.taskRole),
    executionRole: logicalId(s.compute.executionRole),
    handlerRoles: {
      api: fnRole(s.functions.api),
      taskEvents: fnRole(s.functions.taskEvents),
      janitor: fnRole(s.functions.janitor),
      authorizer: fnRole(s.functions.authorizer!),
    },
  };
});

const statementsOf = (role: string): PolicyStatementJson[] => roles.get(role) ?? [];

describe('git secrets', () => {
  it('only the provisioner role may read them, and it may read exactly the configured ones', () => {
    const readers = [...roles].filter(([, st]) => roleCan(st, 'secretsmanager:GetSecretValue')).map(([id]) => id);
    expect(readers).toEqual([ids.provisioner]);
    const resources = statementsOf(ids.provisioner)
      .filter((st) => actionsOf(st).includes('secretsmanager:GetSecretValue'))
      .flatMap((st) => (Array.isArray(st.Resource) ? st.Resource : [st.Resource]));
    const flat = JSON.stringify(resources);
    expect(flat).toContain(`secret:${SECRET_NAME}-??????`);
    expect(flat).toContain(SECRET_ARN);
    expect(resources).toHaveLength(2);
    expect(flat).not.toMatch(/secret:\*|"\*"/);
  });

  it('no template creates a secret (they are referenced by name/ARN only)', () => {
    expect(Object.keys(t.stateful.findResources('AWS::SecretsManager::Secret'))).toEqual([]);
    expect(Object.keys(t.stateless.findResources('AWS::SecretsManager::Secret'))).toEqual([]);
  });

  it("the provisioner role is the worker function's role and no other function's", () => {
    const s = t.built.stateless;
    expect(functionRole(t.stateless, logicalId(s.functions.worker))).toBe(ids.provisioner);
    expect(Object.values(ids.handlerRoles)).not.toContain(ids.provisioner);
  });
});

describe('webhook signing secrets', () => {
  const HOOK_NAME = 'wsp/hooks/controller';
  const HOOK_ARN = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:wsp/hooks/from-config-AbCdEf';
  let hooks: Templates;
  let byRole: Map<string, PolicyStatementJson[]>;
  let hookIds: Record<
    'api' | 'worker' | 'janitor' | 'taskEvents' | 'authorizer' | 'taskRole' | 'executionRole',
    string
  >;

  /** Roles that may GetSecretValue on a resource whose rendering contains `secret`. */
  const readersOf = (secret: string): string[] =>
    [...byRole]
      .filter(([, statements]) =>
        statements.some(
          (st) =>
            actionsOf(st).some((a) => a === 'secretsmanager:GetSecretValue' || a === '*' || a === 'secretsmanager:*') &&
            JSON.stringify(st.Resource).includes(secret),
        ),
      )
      .map(([id]) => id)
      .sort();

  beforeAll(() => {
    hooks = synthTemplates({
      overrides: {
        gitSecrets: [SECRET_NAME],
        webhookSecrets: [HOOK_NAME],
        apiAuth: 'bearer',
        // A config hook's secret by ARN: granted without being listed.
        provider: { webhooks: [{ url: 'https://hooks.example.com/wsp', secret: `secretsmanager:${HOOK_ARN}#key` }] },
      },
    });
    byRole = statementsByRole(hooks.stateless);
    const s = hooks.built.stateless;
    const fnRole = (fn: Parameters<typeof logicalId>[0]) => functionRole(hooks.stateless, logicalId(fn));
    hookIds = {
      api: fnRole(s.functions.api),
      worker: fnRole(s.functions.worker),
      janitor: fnRole(s.functions.janitor),
      taskEvents: fnRole(s.functions.taskEvents),
      authorizer: fnRole(s.functions.authorizer!),
      taskRole: logicalId(s.compute.taskRole),
      executionRole: logicalId(s.compute.executionRole),
    };
  });

  it('exactly the delivering functions (api, worker, janitor) may read them, by name and by ARN', () => {
    const delivering = [hookIds.api, hookIds.worker, hookIds.janitor].sort();
    expect(readersOf(`secret:${HOOK_NAME}-??????`)).toEqual(delivering);
    expect(readersOf(HOOK_ARN)).toEqual(delivering);
    for (const never of [hookIds.taskEvents, hookIds.authorizer, hookIds.taskRole, hookIds.executionRole])
      expect(readersOf('wsp/hooks/')).not.toContain(never);
    // Nobody reads secrets wholesale.
    const everyResource = [...byRole.values()]
      .flat()
      .filter((st) => actionsOf(st).includes('secretsmanager:GetSecretValue'))
      .map((st) => JSON.stringify(st.Resource));
    expect(everyResource.join(' ')).not.toMatch(/secret:\*|"\*"/);
  });

  it("the git secrets stay the provisioner's alone", () => {
    expect(readersOf(`secret:${SECRET_NAME}-??????`)).toEqual([hookIds.worker]);
  });

  it("the delivering functions run outside the VPC: Lambda's network is their egress to the receivers", () => {
    const s = hooks.built.stateless;
    for (const fn of [s.functions.api, s.functions.worker, s.functions.janitor]) {
      const props = (hooks.stateless.toJSON()['Resources'][logicalId(fn)] as Json)['Properties'] as Json;
      // Put into the VPC, they would need a NAT route to reach any receiver (docs/deploy.md, webhooks).
      expect(props['VpcConfig']).toBeUndefined();
    }
  });
});

describe('workspace task', () => {
  it('task role has exactly the four ssmmessages actions and no managed policy', () => {
    const statements = statementsOf(ids.taskRole);
    expect(statements.flatMap(actionsOf).sort()).toEqual([...SSM_MESSAGES_ACTIONS].sort());
    const [role] = resourcesOf(t.stateless, 'AWS::IAM::Role').filter(([id]) => id === ids.taskRole);
    expect(role?.[1]['ManagedPolicyArns']).toBeUndefined();
    expect(JSON.stringify(role?.[1]['AssumeRolePolicyDocument'])).toContain('ecs-tasks.amazonaws.com');
  });

  it('execution role can pull images and write logs, nothing else', () => {
    const actions = statementsOf(ids.executionRole).flatMap(actionsOf).sort();
    expect(actions).toEqual(
      [
        'ecr:BatchCheckLayerAvailability',
        'ecr:BatchGetImage',
        'ecr:GetAuthorizationToken',
        'ecr:GetDownloadUrlForLayer',
        'logs:CreateLogStream',
        'logs:PutLogEvents',
      ].sort(),
    );
  });

  it('task definition: Fargate, awsvpc, init process, no secrets and no environment', () => {
    const defs = resourcesOf(t.stateless, 'AWS::ECS::TaskDefinition');
    expect(defs).toHaveLength(1);
    const [, td] = defs[0]!;
    expect(td['RequiresCompatibilities']).toEqual(['FARGATE']);
    expect(td['NetworkMode']).toBe('awsvpc');
    expect(JSON.stringify(td['TaskRoleArn'])).toContain(ids.taskRole);
    const containers = td['ContainerDefinitions'] as Json[];
    expect(containers).toHaveLength(1);
    for (const c of containers) {
      expect(c['Secrets']).toBeUndefined();
      expect(c['Environment']).toBeUndefined();
      expect(c['EnvironmentFiles']).toBeUndefined();
      expect((c['LinuxParameters'] as Json)['InitProcessEnabled']).toBe(true);
      expect(c['PortMappings']).toBeUndefined();
    }
    expect(JSON.stringify(td)).not.toMatch(/secretsmanager|ssm:.*parameter/i);
  });

  it('cluster: ECS Exec without a KMS key, container insights on', () => {
    const [[, cluster]] = resourcesOf(t.stateless, 'AWS::ECS::Cluster') as [[string, Json]];
    const exec = (cluster['Configuration'] as Json)['ExecuteCommandConfiguration'] as Json;
    expect(exec['KmsKeyId']).toBeUndefined();
    expect(exec['Logging']).toBe('NONE');
    expect(JSON.stringify(cluster['ClusterSettings'])).toContain('containerInsights');
  });
});

describe('ECR push', () => {
  it('handler roles and the workspace roles cannot push; the provisioner can (control)', () => {
    const cannot = { ...ids.handlerRoles, taskRole: ids.taskRole, executionRole: ids.executionRole };
    for (const [name, role] of Object.entries(cannot)) {
      for (const action of ECR_PUSH_ACTIONS)
        expect(roleCan(statementsOf(role), action), `${name} ${action}`).toBe(false);
    }
    for (const action of ECR_PUSH_ACTIONS) expect(roleCan(statementsOf(ids.provisioner), action)).toBe(true);
  });

  it('no role anywhere has a wildcard action', () => {
    for (const [role, statements] of roles) {
      for (const action of statements.flatMap(actionsOf))
        expect(action.includes('*'), `${role}: ${action}`).toBe(false);
    }
  });

  it("no role of ours has an AWS managed policy (only CDK's default-SG restrictor, which runs once at deploy)", () => {
    for (const [role, statements] of roles) {
      const managed = statements.flatMap(actionsOf).filter((a) => a.startsWith('managed-policy:'));
      if (role.startsWith('CustomVpcRestrictDefaultSGCustomResourceProvider')) {
        expect(managed).toEqual([
          // biome-ignore lint/suspicious/noTemplateCurlyInString: a CloudFormation Fn::Sub placeholder, not a template
          'managed-policy:{"Fn::Sub":"arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}',
        ]);
      } else {
        expect(managed, role).toEqual([]);
      }
    }
  });
});

describe('handler roles', () => {
  it('only the two state machines may invoke the worker (the api never does), each the worker alone', () => {
    const invokers = [...roles].filter(([, st]) => roleCan(st, 'lambda:InvokeFunction')).map(([id]) => id);
    const machines = [t.built.stateless.provisioning, t.built.stateless.operations].map((w) => w.stateMachine);
    expect(invokers.sort()).toEqual(machines.map((m) => logicalId(m.role)).sort());
    const worker = logicalId(t.built.stateless.functions.worker);
    for (const machine of machines) {
      // The state machine may invoke the worker (and its versions) and nothing else.
      const invoked = statementsOf(logicalId(machine.role))
        .filter((st) => actionsOf(st).includes('lambda:InvokeFunction'))
        .flatMap((st) => (Array.isArray(st.Resource) ? st.Resource : [st.Resource]));
      expect(invoked).toEqual([
        { 'Fn::GetAtt': [worker, 'Arn'] },
        { 'Fn::Join': ['', [{ 'Fn::GetAtt': [worker, 'Arn'] }, ':*']] },
      ]);
    }
    const api = t.stateless.toJSON()['Resources'][logicalId(t.built.stateless.functions.api)] as Json;
    const env = ((api['Properties'] as Json)['Environment'] as Json)['Variables'] as Json;
    expect(env['WSP_WORKER_FUNCTION']).toBeUndefined();
  });

  it('only the api function may start executions, of those two state machines, and is told their ARNs', () => {
    const starters = [...roles].filter(([, st]) => roleCan(st, 'states:StartExecution')).map(([id]) => id);
    expect(starters).toEqual([ids.handlerRoles['api']]);
    const provisioning = logicalId(t.built.stateless.provisioning.stateMachine);
    const operations = logicalId(t.built.stateless.operations.stateMachine);
    const resources = statementsOf(ids.handlerRoles['api']!)
      .filter((st) => actionsOf(st).includes('states:StartExecution'))
      .flatMap((st) => (Array.isArray(st.Resource) ? st.Resource : [st.Resource]));
    expect(resources).toHaveLength(2);
    expect(resources).toEqual(expect.arrayContaining([{ Ref: provisioning }, { Ref: operations }]));
    const api = t.stateless.toJSON()['Resources'][logicalId(t.built.stateless.functions.api)] as Json;
    const env = ((api['Properties'] as Json)['Environment'] as Json)['Variables'] as Json;
    expect(env['WSP_PROVISION_STATE_MACHINE']).toEqual({ Ref: provisioning });
    expect(env['WSP_OPERATION_STATE_MACHINE']).toEqual({ Ref: operations });
  });

  it('only the provisioner may start tasks or pass the workspace roles', () => {
    for (const action of ['ecs:RunTask', 'iam:PassRole', 'ecs:RegisterTaskDefinition']) {
      const holders = [...roles].filter(([, st]) => roleCan(st, action)).map(([id]) => id);
      expect(holders, action).toEqual([ids.provisioner]);
    }
  });

  it('the janitor can stop tasks but not exec into them; the authorizer has nothing but its logs', () => {
    expect(roleCan(statementsOf(ids.handlerRoles['janitor']!), 'ecs:StopTask')).toBe(true);
    expect(roleCan(statementsOf(ids.handlerRoles['janitor']!), 'ecs:ExecuteCommand')).toBe(false);
    expect(statementsOf(ids.handlerRoles['authorizer']!).flatMap(actionsOf).sort()).toEqual([
      'logs:CreateLogStream',
      'logs:PutLogEvents',
    ]);
  });
});

describe('network', () => {
  it('no inbound rule anywhere, and the workspace security group has none', () => {
    expect(Object.keys(t.stateless.findResources('AWS::EC2::SecurityGroupIngress'))).toEqual([]);
    // The VPC's default security group allows traffic between its members; CDK strips its rules at deploy.
    expect(Object.keys(t.stateless.findResources('Custom::VpcRestrictDefaultSG'))).toHaveLength(1);
    const sgs = resourcesOf(t.stateless, 'AWS::EC2::SecurityGroup');
    expect(sgs.length).toBeGreaterThan(0);
    for (const [, sg] of sgs) expect(sg['SecurityGroupIngress']).toBeUndefined();
  });

  it('workspace subnets are private: no public IP on launch, default route via NAT not an internet gateway', () => {
    const fn = t.stateless.toJSON()['Resources'][logicalId(t.built.stateless.functions.worker)] as Json;
    const env = ((fn['Properties'] as Json)['Environment'] as Json)['Variables'] as Json;
    const subnetRefs = JSON.stringify(env['WSP_ECS_SUBNETS']).match(/"Ref":"([A-Za-z0-9]+)"/g) ?? [];
    expect(subnetRefs.length).toBeGreaterThanOrEqual(2);
    const resources = t.stateless.toJSON()['Resources'] as Record<string, Json>;
    for (const ref of subnetRefs) {
      const id = ref.replace(/^"Ref":"|"$/g, '');
      const subnet = resources[id]!;
      expect(subnet['Type']).toBe('AWS::EC2::Subnet');
      expect((subnet['Properties'] as Json)['MapPublicIpOnLaunch']).toBe(false);
      const association = Object.values(resources).find(
        (r) =>
          r['Type'] === 'AWS::EC2::SubnetRouteTableAssociation' &&
          JSON.stringify((r['Properties'] as Json)['SubnetId']) === JSON.stringify({ Ref: id }),
      );
      const routeTable = JSON.stringify((association?.['Properties'] as Json | undefined)?.['RouteTableId']);
      const routes = Object.values(resources).filter(
        (r) =>
          r['Type'] === 'AWS::EC2::Route' && JSON.stringify((r['Properties'] as Json)['RouteTableId']) === routeTable,
      );
      expect(routes.length, `routes of ${id}`).toBeGreaterThan(0);
      for (const route of routes) {
        expect((route['Properties'] as Json)['GatewayId']).toBeUndefined();
        expect((route['Properties'] as Json)['NatGatewayId']).toBeDefined();
      }
    }
  });
});

describe('HTTP API', () => {
  it('every route of the shared route table exists and needs the Lambda authorizer (bearer stage)', async () => {
    const { routes } = await import('../../shared/api/routes.js');
    const apiRoutes = resourcesOf(t.stateless, 'AWS::ApiGatewayV2::Route');
    expect(apiRoutes.map(([, r]) => r['RouteKey']).sort()).toEqual(routes.map((r) => `${r.method} ${r.path}`).sort());
    for (const [, r] of apiRoutes) {
      expect(r['AuthorizationType']).toBe('CUSTOM');
      expect(r['AuthorizerId']).toBeDefined();
    }
    const [[, authorizer]] = resourcesOf(t.stateless, 'AWS::ApiGatewayV2::Authorizer') as [[string, Json]];
    expect(authorizer['EnableSimpleResponses']).toBe(true);
    expect(authorizer['IdentitySource']).toEqual(['$request.header.Authorization']);
  });

  it('with IAM auth (the default) every route needs SigV4 and there is no authorizer function', () => {
    const iam = synthTemplates({ overrides: { gitSecrets: [SECRET_NAME] } });
    const apiRoutes = resourcesOf(iam.stateless, 'AWS::ApiGatewayV2::Route');
    expect(apiRoutes.length).toBeGreaterThan(10);
    for (const [, r] of apiRoutes) expect(r['AuthorizationType']).toBe('AWS_IAM');
    expect(apiRoutes.map(([, r]) => r['RouteKey'])).not.toContain('$default');
    expect(Object.keys(iam.stateless.findResources('AWS::ApiGatewayV2::Authorizer'))).toEqual([]);
    expect(iam.built.stateless.functions.authorizer).toBeUndefined();
  }, 240_000); // a second whole-app synth: slow on a busy machine

  it('the default stage logs access and is throttled', () => {
    const [[, stage]] = resourcesOf(t.stateless, 'AWS::ApiGatewayV2::Stage') as [[string, Json]];
    expect(stage['StageName']).toBe('$default');
    expect((stage['AccessLogSettings'] as Json)['DestinationArn']).toBeDefined();
    expect((stage['DefaultRouteSettings'] as Json)['ThrottlingRateLimit']).toBeGreaterThan(0);
  });
});
