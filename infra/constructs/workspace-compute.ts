import { ArnFormat, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import { Peer, Port, SecurityGroup, SubnetType, type IVpc } from 'aws-cdk-lib/aws-ec2';
import type { IRepository } from 'aws-cdk-lib/aws-ecr';
import {
  Cluster,
  ContainerImage,
  ContainerInsights,
  CpuArchitecture,
  ExecuteCommandLogging,
  FargateTaskDefinition,
  LinuxParameters,
  LogDrivers,
  OperatingSystemFamily,
} from 'aws-cdk-lib/aws-ecs';
import { PolicyStatement, Role, ServicePrincipal, type IRole } from 'aws-cdk-lib/aws-iam';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { StageConfig } from '../config.js';
import { acknowledgeWildcardResource } from '../nag.js';
import { WorkspaceImage } from './workspace-image.js';

/**
 * The four actions ECS Exec needs inside the task, and nothing else: a command in a workspace
 * holds these credentials, so the workspace task role is exactly this.
 */
export const SSM_MESSAGES_ACTIONS = [
  'ssmmessages:CreateControlChannel',
  'ssmmessages:CreateDataChannel',
  'ssmmessages:OpenControlChannel',
  'ssmmessages:OpenDataChannel',
] as const;

/** Name of the one container in a workspace task. */
export const WORKSPACE_CONTAINER = 'workspace';

export interface WorkspaceComputeProps {
  stage: StageConfig;
  vpc: IVpc;
  /** Holds the cache images (the base image is an asset of this stack: WorkspaceImage). */
  repository: IRepository;
  logRetention: RetentionDays;
}

/**
 * Where workspaces run: an ECS cluster (Exec without a KMS key), the Fargate task definition of a
 * workspace, the private subnets and a security group with no inbound rule. The `grant*` methods
 * are the only way another role gets ECS rights on these tasks.
 */
export class WorkspaceCompute extends Construct {
  readonly cluster: Cluster;
  readonly taskDefinition: FargateTaskDefinition;
  readonly securityGroup: SecurityGroup;
  readonly taskRole: Role;
  readonly executionRole: Role;
  readonly subnetIds: string[];
  readonly repository: IRepository;
  /** The base image fresh workspaces start from, built from this checkout by `cdk deploy`. */
  readonly image: WorkspaceImage;
  private readonly stage: StageConfig;
  private readonly passRoleGranted = new Set<IRole>();
  private readonly evictGranted = new Set<IRole>();

  constructor(scope: Construct, id: string, props: WorkspaceComputeProps) {
    super(scope, id);
    const { stage, vpc } = props;
    this.stage = stage;
    this.repository = props.repository;

    this.cluster = new Cluster(this, 'Cluster', {
      vpc,
      containerInsightsV2: ContainerInsights.ENABLED,
      // No KMS key (it adds a handshake step to every session). No session logging either: it
      // would copy command output into CloudWatch and needs logs rights in the task role.
      executeCommandConfiguration: { logging: ExecuteCommandLogging.NONE },
    });

    this.securityGroup = new SecurityGroup(this, 'WorkspaceSg', {
      vpc,
      description: 'Workspace tasks: no inbound rule (commands arrive through ECS Exec); egress per stage config',
      allowAllOutbound: stage.workspace.egress === 'all',
    });
    if (stage.workspace.egress === 'https')
      this.securityGroup.addEgressRule(Peer.anyIpv4(), Port.tcp(443), 'HTTPS only');

    this.subnetIds = vpc.selectSubnets({ subnetType: SubnetType.PRIVATE_WITH_EGRESS }).subnetIds;

    this.taskRole = new Role(this, 'TaskRole', {
      assumedBy: new ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'Workspace task role: ECS Exec channels only',
    });
    this.taskRole.addToPrincipalPolicy(new PolicyStatement({ actions: [...SSM_MESSAGES_ACTIONS], resources: ['*'] }));
    Validations.of(this.taskRole).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'ssmmessages actions support no resource-level permissions; these four are what ECS Exec requires in the task.',
    });

    this.executionRole = new Role(this, 'ExecutionRole', {
      assumedBy: new ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'Workspace execution role: pull the workspace image, write the container log',
    });

    this.taskDefinition = new FargateTaskDefinition(this, 'WorkspaceTask', {
      family: `wsp-${stage.name}-workspace`,
      cpu: stage.workspace.cpu,
      memoryLimitMiB: stage.workspace.memoryMiB,
      ephemeralStorageGiB: stage.workspace.ephemeralStorageGiB,
      runtimePlatform: {
        cpuArchitecture: stage.workspace.architecture === 'ARM64' ? CpuArchitecture.ARM64 : CpuArchitecture.X86_64,
        operatingSystemFamily: OperatingSystemFamily.LINUX,
      },
      taskRole: this.taskRole,
      executionRole: this.executionRole,
    });
    const logGroup = new LogGroup(this, 'WorkspaceLogs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // Deliberately no `secrets` and no environment: anything here is visible to every command.
    this.image = new WorkspaceImage(this, 'BaseImage', { stage });
    // The cache-image revisions name images in the cache repository (new tags): the execution role
    // pulls the whole repository (ECR permissions are per repository, not per tag) as well as the base.
    props.repository.grantPull(this.executionRole);
    this.taskDefinition.addContainer(WORKSPACE_CONTAINER, {
      // Grants the execution role pull on the asset's repository.
      image: ContainerImage.fromDockerImageAsset(this.image.asset),
      essential: true,
      // The runner writes its state under /var/lib/wsp and the workspace user's home is written too.
      readonlyRootFilesystem: false,
      // Commands arrive through ECS Exec; the main process only keeps the task alive. The init
      // process (tini) reaps orphans and passes StopTask's SIGTERM on to it.
      command: ['sleep', 'infinity'],
      linuxParameters: new LinuxParameters(this, 'Linux', { initProcessEnabled: true }),
      logging: LogDrivers.awsLogs({ streamPrefix: 'workspace', logGroup }),
    });
    Validations.of(this.executionRole).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'ecr:GetAuthorizationToken has no resource-level permissions; image pulls themselves are limited to the cache repository.',
    });
  }

  /** ARN pattern of this cluster's tasks (task ids are generated at RunTask). */
  private taskArnPattern(): string {
    return Stack.of(this).formatArn({
      service: 'ecs',
      resource: 'task',
      resourceName: `${this.cluster.clusterName}/*`,
      arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
    });
  }

  /** The family's revisions (each cache image gets its own revision). */
  private taskDefinitionArnPattern(): string {
    return Stack.of(this).formatArn({
      service: 'ecs',
      resource: 'task-definition',
      resourceName: `${this.taskDefinition.family}:*`,
      arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
    });
  }

  /**
   * List, describe and stop this cluster's tasks (janitor); with `exec`, also ECS Exec into them
   * (api: commands run through the runner inside the task).
   */
  grantOperate(role: IRole, options: { exec: boolean }): void {
    const actions = ['ecs:DescribeTasks', 'ecs:StopTask', ...(options.exec ? ['ecs:ExecuteCommand'] : [])];
    role.addToPrincipalPolicy(
      new PolicyStatement({ actions, resources: [this.cluster.clusterArn, this.taskArnPattern()] }),
    );
    role.addToPrincipalPolicy(
      new PolicyStatement({
        actions: ['ecs:ListTasks'],
        resources: ['*'],
        conditions: { ArnEquals: { 'ecs:cluster': this.cluster.clusterArn } },
      }),
    );
    this.acknowledgeTaskWildcards(role);
  }

  /**
   * Start workspace tasks (provisioner; the janitor when it keeps a warm pool): grantOperate,
   * RunTask on any revision of the workspace family in this cluster only, tag-on-create (the tags
   * are given in the RunTask request) and iam:PassRole of the two workspace roles.
   */
  grantRunTasks(role: IRole, options: { exec: boolean }): void {
    this.grantOperate(role, options);
    role.addToPrincipalPolicy(
      new PolicyStatement({
        actions: ['ecs:RunTask'],
        resources: [this.taskDefinitionArnPattern()],
        conditions: { ArnEquals: { 'ecs:cluster': this.cluster.clusterArn } },
      }),
    );
    // Tags (workspace id, owner, cache key) are set at RunTask; the reconciler finds tasks by them.
    // RunTask with tags also needs ecs:TagResource; CreateAction keeps it from tagging anything later.
    role.addToPrincipalPolicy(
      new PolicyStatement({
        actions: ['ecs:TagResource'],
        resources: [this.taskArnPattern()],
        conditions: { StringEquals: { 'ecs:CreateAction': 'RunTask' } },
      }),
    );
    this.grantPassWorkspaceRoles(role);
    acknowledgeWildcardResource(
      role,
      this.taskDefinitionArnPattern(),
      'RunTask on any revision of the workspace family: each cache image registers a new revision.',
    );
  }

  /**
   * A setup that claims a warm-pool task tags it with the workspace's tags after the fact (the
   * reconciler finds workspaces by them): only tasks that are pool tasks already (wsp:kind = warm).
   */
  grantClaimWarmTasks(role: IRole): void {
    role.addToPrincipalPolicy(
      new PolicyStatement({
        actions: ['ecs:TagResource'],
        resources: [this.taskArnPattern()],
        conditions: { StringEquals: { 'aws:ResourceTag/wsp:kind': 'warm' } },
      }),
    );
  }

  /**
   * Cache images (provisioner only): push and pull the image repository (layer upload, PutImage,
   * ecr:GetAuthorizationToken for the registry login), and register/describe task-definition
   * revisions — one per cache image, copied from the family's base revision with the same two
   * roles (hence iam:PassRole of exactly those) and its tags (hence tag-on-create for
   * RegisterTaskDefinition on the family's revisions). Includes grantEvictCacheImages (a cache
   * image whose layer fails the secret scan is removed at once).
   */
  grantCacheImages(role: IRole): void {
    this.repository.grantPullPush(role);
    // The base image's layers are read (mounted, else copied) from the asset repository.
    this.image.asset.repository.grantPull(role);
    role.addToPrincipalPolicy(
      new PolicyStatement({ actions: ['ecs:RegisterTaskDefinition', 'ecs:DescribeTaskDefinition'], resources: ['*'] }),
    );
    role.addToPrincipalPolicy(
      new PolicyStatement({
        actions: ['ecs:TagResource'],
        resources: [this.taskDefinitionArnPattern()],
        conditions: { StringEquals: { 'ecs:CreateAction': 'RegisterTaskDefinition' } },
      }),
    );
    this.grantPassWorkspaceRoles(role);
    this.grantEvictCacheImages(role);
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'ecr:GetAuthorizationToken and ecs:Register/Describe/DeregisterTaskDefinition accept no resource ARN; iam:PassRole limits a registered revision to the two workspace roles.',
    });
  }

  /**
   * Cache eviction (janitor; provisioner through grantCacheImages): deregister a cache image's
   * task-definition revision and delete its manifest from the workspace repository — through the
   * registry API (DELETE /v2/…/manifests/<digest>, authorized as ecr:BatchDeleteImage), hence the
   * registry login (ecr:GetAuthorizationToken). No push, no pull.
   */
  grantEvictCacheImages(role: IRole): void {
    if (this.evictGranted.has(role)) return;
    this.evictGranted.add(role);
    role.addToPrincipalPolicy(
      new PolicyStatement({ actions: ['ecs:DeregisterTaskDefinition', 'ecr:GetAuthorizationToken'], resources: ['*'] }),
    );
    role.addToPrincipalPolicy(
      new PolicyStatement({ actions: ['ecr:BatchDeleteImage'], resources: [this.repository.repositoryArn] }),
    );
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'ecs:DeregisterTaskDefinition and ecr:GetAuthorizationToken accept no resource ARN; image deletes are limited to the workspace repository.',
    });
  }

  /**
   * Start workspace tasks and register task-definition revisions for cache images (provisioner):
   * grantRunTasks with ECS Exec, plus grantCacheImages.
   */
  grantRun(role: IRole): void {
    this.grantRunTasks(role, { exec: true });
    this.grantCacheImages(role);
  }

  /** iam:PassRole of the workspace task and execution roles, to ECS tasks only (once per role). */
  private grantPassWorkspaceRoles(role: IRole): void {
    if (this.passRoleGranted.has(role)) return;
    this.passRoleGranted.add(role);
    role.addToPrincipalPolicy(
      new PolicyStatement({
        actions: ['iam:PassRole'],
        resources: [this.taskRole.roleArn, this.executionRole.roleArn],
        conditions: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
      }),
    );
  }

  /**
   * Env for handlers that talk to ECS (read by the ECS backend):
   * - `WSP_ECS_CLUSTER`, `WSP_ECS_TASK_FAMILY`, `WSP_ECS_TASK_DEFINITION` (the base revision's ARN),
   *   `WSP_ECS_CONTAINER`, `WSP_ECS_SUBNETS` (comma-separated), `WSP_ECS_SECURITY_GROUPS`;
   * - `WSP_ECR_REPOSITORY_URI`: `<account>.dkr.ecr.<region>.<suffix>/<name>`, the cache images (`cache-…`);
   * - `WSP_ECS_BASE_IMAGE`: the base image (the asset: `<registry>/<asset repository>:<hash>`), which
   *   cache layers are appended onto;
   * - `WSP_ECS_WARM_POOL_SIZE`: tasks kept started per cache image (decimal; `0` = no pool).
   */
  environment(): Record<string, string> {
    return {
      WSP_ECS_CLUSTER: this.cluster.clusterName,
      WSP_ECS_TASK_FAMILY: this.taskDefinition.family,
      WSP_ECS_TASK_DEFINITION: this.taskDefinition.taskDefinitionArn,
      WSP_ECS_CONTAINER: WORKSPACE_CONTAINER,
      WSP_ECS_SUBNETS: this.subnetIds.join(','),
      WSP_ECS_SECURITY_GROUPS: this.securityGroup.securityGroupId,
      WSP_ECR_REPOSITORY_URI: this.repository.repositoryUri,
      WSP_ECS_BASE_IMAGE: this.image.asset.imageUri,
      WSP_ECS_WARM_POOL_SIZE: String(this.stage.warmPool.size),
    };
  }

  private acknowledgeTaskWildcards(role: IRole): void {
    acknowledgeWildcardResource(
      role,
      this.taskArnPattern(),
      'Task ids are generated at RunTask; access is limited to the tasks of the workspace cluster.',
    );
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'ecs:ListTasks has no resource-level permissions; it is conditioned on the workspace cluster (ecs:cluster).',
    });
  }
}
