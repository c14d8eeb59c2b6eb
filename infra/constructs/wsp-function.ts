import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy, Size, Validations } from 'aws-cdk-lib';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import { PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Architecture, LoggingFormat, Runtime, type ILayerVersion } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { acknowledgeWildcardResource } from '../nag.js';

/** The repository root: handler entries and the lockfile are resolved against it. */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * esbuild settings shared by every handler (and mirrored by test/lambda's bundle test): one ESM
 * file for Node 22; CommonJS dependencies get a `require` through createRequire. The pinned
 * AWS SDK v3 is bundled rather than taken from the runtime, so what was tested is what runs.
 */
const BUNDLING = {
  format: OutputFormat.ESM,
  target: 'node22',
  mainFields: ['module', 'main'],
  banner:
    "import { createRequire as __wspCreateRequire } from 'node:module'; const require = __wspCreateRequire(import.meta.url);",
  externalModules: [] as string[],
  minify: true,
  keepNames: true,
  sourceMap: true,
} as const;

export interface WspFunctionProps {
  /** Handler file relative to the project root, e.g. `functions/lambda/api.ts` (export `handler`). */
  entry: string;
  description: string;
  /** MiB. Default 512. */
  memorySizeMiB?: number;
  /** Default 30 s. */
  timeout?: Duration;
  /** /tmp size in MiB (git mirrors live there). Default 512. */
  ephemeralStorageMiB?: number;
  logRetention: RetentionDays;
  /** A role made elsewhere (the provisioner's); default a fresh role with no managed policies. */
  role?: Role;
  environment?: Record<string, string>;
  /** Async invocations that fail after their retries land here. */
  deadLetterQueue?: IQueue;
  /** Async retries (0–2). Default 2: every job and event handler is idempotent. */
  retryAttempts?: number;
  /** Lambda layers (extracted under /opt), e.g. the provisioner's git. Default none. */
  layers?: ILayerVersion[];
}

/**
 * The one Lambda construct of the project: NodejsFunction on nodejs22.x / ARM64, bundled by the
 * locally installed esbuild, its own log group with retention, its own role with no AWS managed
 * policy (only the `bind*` grants below), JSON logs and source maps. Not in the VPC, on purpose: Lambda's
 * own network is their egress to AWS APIs and to webhook receivers (docs/deploy.md 3f); inside it they
 * would need a NAT route for both.
 */
export class WspFunction extends NodejsFunction {
  override readonly role: Role;
  /** The function's own log group (retention from the stage). */
  readonly functionLogs: LogGroup;

  constructor(scope: Construct, id: string, props: WspFunctionProps) {
    const role =
      props.role ??
      new Role(scope, `${id}Role`, {
        assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
        description: `Execution role of the ${id} function (grants via WspFunction.bind*)`,
      });
    const logGroup = new LogGroup(scope, `${id}Logs`, {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    super(scope, id, {
      entry: path.join(PROJECT_ROOT, props.entry),
      handler: 'handler',
      projectRoot: PROJECT_ROOT,
      depsLockFilePath: path.join(PROJECT_ROOT, 'package-lock.json'),
      description: props.description,
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      memorySize: props.memorySizeMiB ?? 512,
      timeout: props.timeout ?? Duration.seconds(30),
      ephemeralStorageSize: Size.mebibytes(props.ephemeralStorageMiB ?? 512),
      role,
      logGroup,
      loggingFormat: LoggingFormat.JSON,
      deadLetterQueue: props.deadLetterQueue,
      ...(props.layers?.length ? { layers: props.layers } : {}),
      retryAttempts: props.retryAttempts ?? 2,
      environment: { NODE_OPTIONS: '--enable-source-maps', ...props.environment },
      bundling: { ...BUNDLING, externalModules: [...BUNDLING.externalModules], mainFields: [...BUNDLING.mainFields] },
    });
    this.role = role;
    this.functionLogs = logGroup;
    logGroup.grantWrite(role);
    Validations.of(this).acknowledge({
      id: 'AwsSolutions-L1',
      reason:
        'The design card fixes nodejs22.x (the bundles are built and tested for Node 22); moving to a newer runtime is a deliberate upgrade, not a default.',
    });
  }

  /** Read/write items of the state table (no table management); sets TABLE_NAME. */
  bindTable(table: ITable): this {
    table.grantReadWriteData(this.role);
    acknowledgeWildcardResource(
      this.role,
      `${table.tableArn}/index/*`,
      "Queries use the table's global secondary indexes (listing by kind); no other table is reachable.",
    );
    this.addEnvironment('TABLE_NAME', table.tableName);
    return this;
  }

  /**
   * Object access under key prefixes only (`transfer/`, `layers/`, …); sets WSP_BUCKET. `read`:
   * GetObject; `write`: PutObject + AbortMultipartUpload (multipart uploads need only these);
   * `delete`: DeleteObject (also what DeleteObjects checks per key); `list`: ListBucket with an
   * `s3:prefix` under those prefixes (deleting a workspace's prefix lists it first). A presigned URL
   * this function makes works only for what it may do itself.
   */
  bindBucket(bucket: IBucket, access: { read?: string[]; write?: string[]; delete?: string[]; list?: string[] }): this {
    const arns = (prefixes: string[]) => prefixes.map((p) => bucket.arnForObjects(`${p}*`));
    if (access.list?.length) {
      this.role.addToPrincipalPolicy(
        new PolicyStatement({
          actions: ['s3:ListBucket'],
          resources: [bucket.bucketArn],
          conditions: { StringLike: { 's3:prefix': access.list.map((p) => `${p}*`) } },
        }),
      );
    }
    if (access.read?.length)
      this.role.addToPrincipalPolicy(new PolicyStatement({ actions: ['s3:GetObject'], resources: arns(access.read) }));
    if (access.write?.length) {
      this.role.addToPrincipalPolicy(
        new PolicyStatement({ actions: ['s3:PutObject', 's3:AbortMultipartUpload'], resources: arns(access.write) }),
      );
    }
    if (access.delete?.length)
      this.role.addToPrincipalPolicy(
        new PolicyStatement({ actions: ['s3:DeleteObject'], resources: arns(access.delete) }),
      );
    for (const p of new Set([...(access.read ?? []), ...(access.write ?? []), ...(access.delete ?? [])])) {
      acknowledgeWildcardResource(
        this.role,
        bucket.arnForObjects(`${p}*`),
        `Objects are named by workspace and content hash at run time; access is limited to the '${p}' prefix.`,
      );
    }
    this.addEnvironment('WSP_BUCKET', bucket.bucketName);
    return this;
  }
}
