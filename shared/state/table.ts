import {
  CreateTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  UpdateTimeToLiveCommand,
  type CreateTableCommandInput,
  type DynamoDBClient,
  type TableDescription,
} from '@aws-sdk/client-dynamodb';
import { BackendUnavailableError } from '../contract/errors.js';

/**
 * The one table the provider uses (single-table design). The CDK stack creates the same shape from
 * this constant, so the key names live here and nowhere else.
 *
 * Items: workspace `WS#<id>/META` (gsi1 `WS`), command `WS#<id>/CMD#<cid>`, idempotency key
 * `IDEM#<key>/IDEM`, cache entry `CACHE#<key>/META` (gsi1 `CACHE`), warm-pool task
 * `WARM#<key>/TASK#<id>` (gsi1 `WARM`). See dynamo-items.ts.
 */
export const TABLE_SHAPE = {
  partitionKey: 'pk',
  sortKey: 'sk',
  /** Listing index: partition = item kind (`WS`, `CACHE`, `WARM`), sort = `<createdAt>#<id>`. */
  gsi1: { indexName: 'gsi1', partitionKey: 'gsi1pk', sortKey: 'gsi1sk' },
  /** Epoch seconds; DynamoDB deletes the item some time after it passes (not dynalite). */
  ttlAttribute: 'ttl',
  billingMode: 'PAY_PER_REQUEST',
} as const;

export function createTableInput(tableName: string): CreateTableCommandInput {
  const { partitionKey, sortKey, gsi1 } = TABLE_SHAPE;
  return {
    TableName: tableName,
    BillingMode: TABLE_SHAPE.billingMode,
    AttributeDefinitions: [
      { AttributeName: partitionKey, AttributeType: 'S' },
      { AttributeName: sortKey, AttributeType: 'S' },
      { AttributeName: gsi1.partitionKey, AttributeType: 'S' },
      { AttributeName: gsi1.sortKey, AttributeType: 'S' },
    ],
    KeySchema: [
      { AttributeName: partitionKey, KeyType: 'HASH' },
      { AttributeName: sortKey, KeyType: 'RANGE' },
    ],
    GlobalSecondaryIndexes: [
      {
        IndexName: gsi1.indexName,
        KeySchema: [
          { AttributeName: gsi1.partitionKey, KeyType: 'HASH' },
          { AttributeName: gsi1.sortKey, KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'ALL' },
      },
    ],
  };
}

export interface EnsureTableOptions {
  /** How long to wait for the table (and its index) to become ACTIVE. Default 60 000 ms. */
  timeoutMs?: number;
  /** Pause between DescribeTable polls. Default 200 ms. */
  pollMs?: number;
}

/**
 * Create the table if it is missing, wait until it and gsi1 are ACTIVE, and enable TTL on `ttl`
 * where the endpoint supports it (dynalite does not; that is ignored). Idempotent and safe to
 * race: a concurrent creator's ResourceInUseException counts as success.
 * Throws BackendUnavailableError when the endpoint fails or the table does not become ACTIVE.
 */
export async function ensureTable(
  client: DynamoDBClient,
  tableName: string,
  options: EnsureTableOptions = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const pollMs = options.pollMs ?? 200;
  try {
    let table = await describe(client, tableName);
    if (!table) {
      try {
        await client.send(new CreateTableCommand(createTableInput(tableName)));
      } catch (err) {
        if (errorName(err) !== 'ResourceInUseException') throw err;
      }
    }
    const deadline = Date.now() + timeoutMs;
    table = await describe(client, tableName);
    while (!isActive(table)) {
      if (Date.now() > deadline) {
        throw new BackendUnavailableError(
          `state store table '${tableName}' not ACTIVE after ${timeoutMs} ms (status ${table?.TableStatus ?? 'missing'})`,
        );
      }
      await new Promise((r) => setTimeout(r, pollMs));
      table = await describe(client, tableName);
    }
    await enableTtl(client, tableName);
  } catch (err) {
    if (err instanceof BackendUnavailableError) throw err;
    throw new BackendUnavailableError(
      `state store unavailable: cannot ensure table '${tableName}' (${errorName(err)})`,
      err,
    );
  }
}

async function describe(client: DynamoDBClient, tableName: string): Promise<TableDescription | undefined> {
  try {
    const out = await client.send(new DescribeTableCommand({ TableName: tableName }));
    return out.Table;
  } catch (err) {
    if (errorName(err) === 'ResourceNotFoundException') return undefined;
    throw err;
  }
}

function isActive(table: TableDescription | undefined): boolean {
  if (table?.TableStatus !== 'ACTIVE') return false;
  return (table.GlobalSecondaryIndexes ?? []).every((i) => i.IndexStatus === undefined || i.IndexStatus === 'ACTIVE');
}

async function enableTtl(client: DynamoDBClient, tableName: string): Promise<void> {
  try {
    const current = await client.send(new DescribeTimeToLiveCommand({ TableName: tableName }));
    const status = current.TimeToLiveDescription?.TimeToLiveStatus;
    if (status === 'ENABLED' || status === 'ENABLING') return;
    await client.send(
      new UpdateTimeToLiveCommand({
        TableName: tableName,
        TimeToLiveSpecification: { AttributeName: TABLE_SHAPE.ttlAttribute, Enabled: true },
      }),
    );
  } catch (err) {
    // dynalite has no UpdateTimeToLive; expiry is then only the reaper's job.
    if (errorName(err) === 'UnknownOperationException') return;
    throw err;
  }
}

function errorName(err: unknown): string {
  return err instanceof Error ? err.name : 'unknown error';
}
