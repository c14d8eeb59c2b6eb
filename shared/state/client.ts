import { Agent } from 'node:http';
import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

export interface DynamoClientOptions {
  /** Endpoint override (embedded dynalite, DynamoDB Local, LocalStack). Unset → AWS (or AWS_ENDPOINT_URL_DYNAMODB). */
  endpoint?: string;
  /**
   * Unix socket to send every request through (the embedded store, see embedded.ts): `endpoint`
   * then only names the Host header and signing scope (a dummy `http://localhost`); no TCP is used.
   */
  socketPath?: string;
  region: string;
  /** Environment consulted for AWS credentials; default process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface DynamoClients {
  client: DynamoDBClient;
  doc: DynamoDBDocumentClient;
}

/**
 * Build the low-level client and the document client once (callers keep them at module scope or
 * in their service container). With an explicit endpoint and no AWS credentials in the
 * environment, dummy static credentials are used: embedded dynalite, DynamoDB Local and
 * LocalStack accept any. Without an endpoint the SDK's own chain (and its AWS_ENDPOINT_URL*
 * handling) applies untouched.
 */
export function createDynamoClients(options: DynamoClientOptions): DynamoClients {
  const env = options.env ?? process.env;
  const config: DynamoDBClientConfig = { region: options.region };
  if (options.socketPath !== undefined) {
    config.endpoint = options.endpoint ?? 'http://localhost';
    // The SDK builds its Node handler (@smithy/node-http-handler) from these options and uses a
    // given http.Agent as is (an "external agent": its pool, its connections); Node's Agent merges
    // its own options into every socket it creates, so `socketPath` replaces host:port. Same
    // keep-alive and pool size as the SDK's default agent.
    const agent = new Agent({
      keepAlive: true,
      maxSockets: 50,
      socketPath: options.socketPath,
    } as ConstructorParameters<typeof Agent>[0]);
    config.requestHandler = { httpAgent: agent };
  } else if (options.endpoint !== undefined) {
    config.endpoint = options.endpoint;
  }
  if (config.endpoint !== undefined && !hasAwsCredentials(env)) {
    // DynamoDB Local (1.23+) accepts only letters and digits in the access key id.
    config.credentials = { accessKeyId: 'wsplocal', secretAccessKey: 'wsplocal' };
  }
  const client = new DynamoDBClient(config);
  const doc = DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true },
  });
  return { client, doc };
}

function hasAwsCredentials(env: NodeJS.ProcessEnv): boolean {
  return Boolean(
    (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) ||
      env.AWS_PROFILE ||
      env.AWS_WEB_IDENTITY_TOKEN_FILE ||
      env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI ||
      env.AWS_CONTAINER_CREDENTIALS_FULL_URI,
  );
}
