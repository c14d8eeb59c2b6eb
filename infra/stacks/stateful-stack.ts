import { CfnOutput, Duration, RemovalPolicy, Stack, Validations, type StackProps } from 'aws-cdk-lib';
import { AttributeType, BillingMode, ProjectionType, Table } from 'aws-cdk-lib/aws-dynamodb';
import { Repository } from 'aws-cdk-lib/aws-ecr';
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectOwnership } from 'aws-cdk-lib/aws-s3';
import { Secret, type ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { TABLE_SHAPE } from '../../shared/state/table.js';
import { isSecretArn, type StageConfig } from '../config.js';
import { stateNames } from '../names.js';

/**
 * Key prefixes in the data bucket; each has its own lifecycle rule and its own grants.
 * - `bundles/`: git bundles (provisioner).
 * - `outputs/`: command output and setup logs.
 * - `transfer/`: bundles and directories going INTO workspace tasks (the worker and the api
 *   function write them and presign the GET the task's curl uses).
 * - `layers/`: cache-layer tars the tasks PUT through a URL the worker presigns; the worker reads
 *   them (append to the base image) and deletes them.
 */
export const BUCKET_PREFIXES = {
  bundles: 'bundles/',
  outputs: 'outputs/',
  transfer: 'transfer/',
  layers: 'layers/',
} as const;

export interface StatefulStackProps extends StackProps {
  stage: StageConfig;
}

/**
 * What must survive a redeploy: the state table, the data bucket, the image repository (all
 * RETAIN), and references to the git secrets (never created here, never holding a value).
 */
export class StatefulStack extends Stack {
  readonly table: Table;
  readonly bucket: Bucket;
  readonly repository: Repository;
  readonly gitSecrets: ISecret[];
  /** References to the configured webhooks' signing secrets (read by the functions that deliver events). */
  readonly webhookSecrets: ISecret[];

  constructor(scope: Construct, id: string, props: StatefulStackProps) {
    super(scope, id, props);
    const { stage } = props;
    const names = stateNames(this, stage.name);

    this.table = new Table(this, 'StateTable', {
      tableName: names.table,
      partitionKey: { name: TABLE_SHAPE.partitionKey, type: AttributeType.STRING },
      sortKey: { name: TABLE_SHAPE.sortKey, type: AttributeType.STRING },
      billingMode: BillingMode[TABLE_SHAPE.billingMode],
      timeToLiveAttribute: TABLE_SHAPE.ttlAttribute,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: TABLE_SHAPE.gsi1.indexName,
      partitionKey: { name: TABLE_SHAPE.gsi1.partitionKey, type: AttributeType.STRING },
      sortKey: { name: TABLE_SHAPE.gsi1.sortKey, type: AttributeType.STRING },
      projectionType: ProjectionType.ALL,
    });

    const accessLogs = new Bucket(this, 'AccessLogsBucket', {
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [{ id: 'expire-access-logs', expiration: Duration.days(90) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(accessLogs).acknowledge({
      id: 'AwsSolutions-S1',
      reason: 'This is the server access log bucket of the data bucket; logging it into itself would loop.',
    });

    this.bucket = new Bucket(this, 'DataBucket', {
      bucketName: names.bucket,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'data-bucket/',
      lifecycleRules: [
        {
          id: 'expire-bundles',
          prefix: BUCKET_PREFIXES.bundles,
          expiration: Duration.days(stage.bucket.bundleExpiryDays),
        },
        {
          id: 'expire-outputs',
          prefix: BUCKET_PREFIXES.outputs,
          expiration: Duration.days(stage.bucket.outputExpiryDays),
        },
        // Transfer objects and layer tars are single-use; a failed or abandoned step leaves them behind.
        {
          id: 'expire-transfer',
          prefix: BUCKET_PREFIXES.transfer,
          expiration: Duration.days(stage.bucket.transferExpiryDays),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
        {
          id: 'expire-layers',
          prefix: BUCKET_PREFIXES.layers,
          expiration: Duration.days(stage.bucket.layerExpiryDays),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
        { id: 'abort-incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // No lifecycle rules. ECR's rules do not follow index references (aws/containers-roadmap#1466):
    // the per-platform children of a multi-platform `base` are untagged images, so expiring untagged
    // images can break `base` under its live tag. And a count of `cache-*` images by push time can
    // delete an image the provider still serves (it keeps entries by last use): the provider deletes
    // its own cache images when it evicts their entries. Replaced bases are deleted by hand (deploy.md 3c).
    this.repository = new Repository(this, 'ImageRepository', {
      repositoryName: names.repository,
      imageScanOnPush: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const reference = (id: string, ref: string): ISecret =>
      isSecretArn(ref) ? Secret.fromSecretCompleteArn(this, id, ref) : Secret.fromSecretNameV2(this, id, ref);
    this.gitSecrets = stage.gitSecrets.map((ref, i) => reference(`GitSecret${i}`, ref));
    this.webhookSecrets = stage.webhookSecrets.map((ref, i) => reference(`WebhookSecret${i}`, ref));

    new CfnOutput(this, 'TableName', { value: this.table.tableName });
    new CfnOutput(this, 'BucketName', { value: this.bucket.bucketName });
    new CfnOutput(this, 'RepositoryUri', {
      value: this.repository.repositoryUri,
      description: 'Cache images (cache-…); the base image is built and pushed by cdk deploy as an image asset',
    });
  }
}
