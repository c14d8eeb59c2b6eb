import { CfnOutput, CfnParameter, Duration, Stack, Token, Validations, type StackProps } from 'aws-cdk-lib';
import { Table } from 'aws-cdk-lib/aws-dynamodb';
import { Repository } from 'aws-cdk-lib/aws-ecr';
import { Rule, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import { Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { LayerVersion } from 'aws-cdk-lib/aws-lambda';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Bucket } from 'aws-cdk-lib/aws-s3';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { BadRequestError } from '../../shared/contract/errors.js';
import { GIT_LAYER_EXEC_PATH, type StageConfig } from '../config.js';
import { GitLayer } from '../constructs/git-layer.js';
import { stateNames } from '../names.js';
import { TABLE_SHAPE } from '../../shared/state/table.js';
import { WspHttpApi } from '../constructs/http-api.js';
import { workspaceVpc } from '../constructs/network.js';
import { PhaseWorkflow } from '../constructs/phase-workflow.js';
import { WorkspaceCompute } from '../constructs/workspace-compute.js';
import { WspFunction } from '../constructs/wsp-function.js';
import { BUCKET_PREFIXES } from './stateful-stack.js';

export interface StatelessStackProps extends StackProps {
  stage: StageConfig;
  /** References to the git secrets (StatefulStack.gitSecrets); only the provisioner may read them. */
  gitSecrets: ISecret[];
  /** References to the configured webhooks' signing secrets (StatefulStack.webhookSecrets). */
  webhookSecrets: ISecret[];
}

/** Handler entry files (owned by functions/lambda); referenced by path, never imported. */
export const HANDLER_ENTRIES = {
  api: 'functions/lambda/api.ts',
  worker: 'functions/lambda/worker.ts',
  taskEvents: 'functions/lambda/task-events.ts',
  janitor: 'functions/lambda/janitor.ts',
  authorizer: 'functions/lambda/authorizer.ts',
} as const;

/** Id of the synth warning given when the stage has no git layer for the provisioner. */

/** Share of the 4 KB Lambda environment the provider config (WSP_CONFIG_JSON) may take. */
export const MAX_PROVIDER_CONFIG_CHARS = 2800;

/** The worker function's timeout (Lambda's maximum); one phase is far shorter. */
const WORKER_TIMEOUT = Duration.minutes(15);
/** Longest a provisioning execution may run (setups are bounded by `setup.timeoutMs` well before). */
const PROVISIONING_TIMEOUT = Duration.hours(12);
/** Longest a fetch or reset execution may run (each of its phases is one worker invocation). */
const OPERATION_TIMEOUT = Duration.hours(6);

/**
 * Everything that can be replaced freely: the HTTP API, the five functions, the workspace compute
 * (VPC, cluster, task definition), the provisioner role, the event rule and the janitor schedule.
 */
export class StatelessStack extends Stack {
  readonly provisionerRole: Role;
  readonly functions: {
    api: WspFunction;
    worker: WspFunction;
    taskEvents: WspFunction;
    janitor: WspFunction;
    authorizer?: WspFunction;
  };
  readonly compute: WorkspaceCompute;
  readonly provisioning: PhaseWorkflow;
  readonly operations: PhaseWorkflow;
  readonly httpApi: WspHttpApi;

  constructor(scope: Construct, id: string, props: StatelessStackProps) {
    super(scope, id, props);
    const { stage } = props;
    const logRetention = stage.logRetentionDays as RetentionDays;
    // The stateful resources, by name (see names.ts): no CloudFormation exports between the stacks.
    const names = stateNames(this, stage.name);
    const table = Table.fromTableAttributes(this, 'StateTable', {
      tableName: names.table,
      globalIndexes: [TABLE_SHAPE.gsi1.indexName],
    });
    const bucket = Bucket.fromBucketName(this, 'DataBucket', names.bucket);
    const repository = Repository.fromRepositoryName(this, 'ImageRepository', names.repository);

    const vpc = workspaceVpc(this, stage.vpc, logRetention);
    this.compute = new WorkspaceCompute(this, 'Workspaces', { stage, vpc, repository, logRetention });

    const providerJson = JSON.stringify(stage.provider);
    // Lambda allows 4 KB of environment in total; a bigger config (a long setup script) needs another carrier.
    if (providerJson.length > MAX_PROVIDER_CONFIG_CHARS) {
      throw new Error(
        `provider config is ${providerJson.length} characters as JSON; at most ${MAX_PROVIDER_CONFIG_CHARS} fit in the Lambda environment`,
      );
    }
    const common: Record<string, string> = {
      WSP_MODE: 'ecs',
      // One owner id for every container of this deployment, so the janitor recognises them all.
      WSP_INSTANCE_ID: `wsp-${stage.name}`,
      WSP_CONFIG_JSON: providerJson,
      ...this.compute.environment(),
    };

    // Failed async invocations (worker jobs) and undeliverable task events end up here.
    const failures = new Queue(this, 'FailedInvocations', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    Validations.of(failures).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason: 'This queue is itself the dead-letter queue of the worker and the task-event rule.',
    });

    // The provisioner: the only principal that may read the git secrets, write git bundles and
    // push cache images. The worker function runs as this role.
    this.provisionerRole = new Role(this, 'ProvisionerRole', {
      assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
      description: 'Provisioner (worker function): git secrets, bundle writes, cache image pushes, RunTask',
    });
    for (const secret of props.gitSecrets) secret.grantRead(this.provisionerRole);

    // The Lambda runtime has no git; the provisioner runs it from a layer: the one this stack builds
    // (GitLayer, at deploy), or a prebuilt one given as provisioner.gitLayerArn.
    const gitLayerArn = stage.provisioner.gitLayerArn;
    // Lambda attaches layers of the function's own region only; say so at synth, not at deploy.
    const layerRegion = gitLayerArn?.split(':')[3];
    if (layerRegion !== undefined && !Token.isUnresolved(this.region) && layerRegion !== this.region) {
      throw new BadRequestError(
        `provisioner.gitLayerArn is in ${layerRegion}, the stack in ${this.region}: publish the git layer in ${this.region}`,
      );
    }
    const gitLayer =
      gitLayerArn === undefined
        ? new GitLayer(this, 'Git').layer
        : LayerVersion.fromLayerVersionArn(this, 'GitLayer', gitLayerArn);
    const worker = new WspFunction(this, 'Worker', {
      entry: HANDLER_ENTRIES.worker,
      description: 'Phases of provisioning and of fetch/reset operations, each run by its state machine',
      role: this.provisionerRole,
      memorySizeMiB: 2048,
      timeout: WORKER_TIMEOUT,
      ephemeralStorageMiB: 10240,
      logRetention,
      // git finds its helpers (git-remote-https, …) through GIT_EXEC_PATH; /opt/bin is already on
      // Lambda's PATH and /opt/lib on its LD_LIBRARY_PATH.
      environment: { ...common, GIT_EXEC_PATH: GIT_LAYER_EXEC_PATH },
      layers: [gitLayer],
      deadLetterQueue: failures,
    })
      .bindTable(table)
      // transfer/: bundles it writes for tasks (presigned GET); layers/: cache layers the tasks PUT
      // through URLs it presigns, which it then reads and deletes. Presigned URLs carry the signer's rights.
      .bindBucket(bucket, {
        read: [BUCKET_PREFIXES.bundles, BUCKET_PREFIXES.transfer, BUCKET_PREFIXES.layers],
        write: [BUCKET_PREFIXES.bundles, BUCKET_PREFIXES.outputs, BUCKET_PREFIXES.transfer, BUCKET_PREFIXES.layers],
        delete: [BUCKET_PREFIXES.transfer, BUCKET_PREFIXES.layers],
        list: [BUCKET_PREFIXES.transfer],
      });
    this.compute.grantRun(this.provisionerRole);

    const api = new WspFunction(this, 'Api', {
      entry: HANDLER_ENTRIES.api,
      description: 'Every HTTP route (API Gateway HTTP API, payload v2)',
      memorySizeMiB: 1024,
      // The HTTP API gives up after 30 s; command long-polls stop at 25 s.
      timeout: Duration.seconds(29),
      logRetention,
      environment: common,
      retryAttempts: 0,
    })
      .bindTable(table)
      // transfer/: directories copied into a workspace go up here and down through a presigned GET.
      .bindBucket(bucket, {
        read: [BUCKET_PREFIXES.outputs, BUCKET_PREFIXES.transfer],
        write: [BUCKET_PREFIXES.outputs, BUCKET_PREFIXES.transfer],
        delete: [BUCKET_PREFIXES.transfer],
        list: [BUCKET_PREFIXES.transfer],
      });
    this.compute.grantOperate(api.role, { exec: true });

    // Provisioning (per workspace) and each fetch or reset (per operation) are Step Functions
    // executions that run phase by phase in the worker, so no job is bounded by Lambda's 15 min: only
    // the api may start them, they may invoke only the worker, and the api never invokes it itself.
    this.provisioning = new PhaseWorkflow(this, 'Provisioning', {
      work: 'provision',
      worker,
      workerTimeout: WORKER_TIMEOUT,
      timeout: PROVISIONING_TIMEOUT,
      logRetention,
    });
    this.provisioning.stateMachine.grantStartExecution(api.role);
    api.addEnvironment('WSP_PROVISION_STATE_MACHINE', this.provisioning.stateMachine.stateMachineArn);
    this.operations = new PhaseWorkflow(this, 'Operations', {
      work: 'operation',
      worker,
      workerTimeout: WORKER_TIMEOUT,
      timeout: OPERATION_TIMEOUT,
      logRetention,
    });
    this.operations.stateMachine.grantStartExecution(api.role);
    api.addEnvironment('WSP_OPERATION_STATE_MACHINE', this.operations.stateMachine.stateMachineArn);

    const taskEvents = new WspFunction(this, 'TaskEvents', {
      entry: HANDLER_ENTRIES.taskEvents,
      description: 'ECS Task State Change events: keep the state table true',
      logRetention,
      environment: common,
    }).bindTable(table);

    const janitor = new WspFunction(this, 'Janitor', {
      entry: HANDLER_ENTRIES.janitor,
      description: 'Scheduled sweep: tear down expired and idle workspaces, apply cache limits',
      timeout: Duration.minutes(5),
      logRetention,
      environment: common,
    })
      .bindTable(table)
      // Tearing a workspace down deletes its transfer/ objects; evicting a cache entry deletes its layer tar.
      .bindBucket(bucket, {
        delete: [BUCKET_PREFIXES.transfer, BUCKET_PREFIXES.layers],
        list: [BUCKET_PREFIXES.transfer],
      });
    // Cache limits: evicting an entry deregisters its task-definition revision and deletes its image.
    this.compute.grantEvictCacheImages(janitor.role);
    // The janitor replenishes warm pools (RunTask); without a pool it only lists and stops tasks.
    if (stage.warmPool.size > 0) {
      this.compute.grantRunTasks(janitor.role, { exec: false });
      this.compute.grantClaimWarmTasks(this.provisionerRole);
    } else this.compute.grantOperate(janitor.role, { exec: false });

    let authorizer: WspFunction | undefined;
    if (stage.api.auth === 'bearer') {
      const hashes = new CfnParameter(this, 'ApiKeyHashes', {
        type: 'String',
        noEcho: true,
        default: '',
        description: 'Comma-separated hex SHA-256 hashes of the accepted bearer keys (never the keys)',
      });
      authorizer = new WspFunction(this, 'Authorizer', {
        entry: HANDLER_ENTRIES.authorizer,
        description: 'HTTP API Lambda authorizer: hashed bearer keys (simple responses)',
        memorySizeMiB: 256,
        timeout: Duration.seconds(5),
        logRetention,
        environment: { WSP_API_KEY_HASHES: hashes.valueAsString },
      });
      api.addEnvironment('WSP_API_KEY_HASHES', hashes.valueAsString);
    }

    this.httpApi = new WspHttpApi(this, 'Http', { stage, handler: api, authorizer, logRetention });

    new Rule(this, 'TaskStateChanges', {
      description: 'ECS Task State Change of the workspace cluster → task-events function',
      eventPattern: {
        source: ['aws.ecs'],
        detailType: ['ECS Task State Change'],
        detail: { clusterArn: [this.compute.cluster.clusterArn] },
      },
      targets: [
        new LambdaFunction(taskEvents, { deadLetterQueue: failures, retryAttempts: 8, maxEventAge: Duration.hours(2) }),
      ],
    });

    new Rule(this, 'JanitorSchedule', {
      description: 'Janitor sweep',
      schedule: Schedule.rate(Duration.minutes(stage.janitorRateMinutes)),
      targets: [new LambdaFunction(janitor, { retryAttempts: 0 })],
    });

    // Lifecycle webhooks (docs/webhooks.md) are delivered by the functions whose work emits events — the
    // api (first attempts of what a request causes), the worker (provisioning, reset) and the janitor
    // (retries, expiring, teardowns) — so exactly these read the configured hooks' signing secrets.
    // They run outside the VPC: Lambda's own network gives them internet egress to the receivers (docs/deploy.md).
    for (const secret of props.webhookSecrets)
      for (const role of [api.role, this.provisionerRole, janitor.role]) secret.grantRead(role);

    this.functions = { api, worker, taskEvents, janitor, ...(authorizer ? { authorizer } : {}) };
    new CfnOutput(this, 'ClusterName', { value: this.compute.cluster.clusterName });
    new CfnOutput(this, 'WorkspaceTaskFamily', { value: this.compute.taskDefinition.family });
  }
}
