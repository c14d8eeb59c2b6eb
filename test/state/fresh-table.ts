import { afterAll, beforeAll, beforeEach } from 'vitest';
import { createDynamoClients, type DynamoClients } from '../../shared/state/client.js';
import { DynamoStateStore } from '../../shared/state/dynamo-store.js';
import { DynamoWarmTaskStore } from '../../shared/state/dynamo-warm-tasks.js';
import { ensureTable } from '../../shared/state/table.js';

export interface Endpoint {
  endpoint: string;
  /** Set for the embedded store (a unix socket); unset for TCP endpoints such as DynamoDB Local. */
  socketPath?: string;
  close(): Promise<void>;
}

export interface FreshTable {
  clients: DynamoClients;
  tableName: string;
  store: DynamoStateStore;
  /** The warm pool's records, over the same table. */
  warmTasks: DynamoWarmTaskStore;
}

/**
 * Inside a describe: one DynamoDB-protocol endpoint for the block, and a new table (with its store)
 * for every test, so tests cannot see each other's items. Returns the current test's table.
 */
export function useFreshTable(startEndpoint: () => Promise<Endpoint>, prefix: string): () => FreshTable {
  let endpoint: Endpoint | undefined;
  let clients: DynamoClients | undefined;
  let current: FreshTable | undefined;
  let tableCount = 0;
  beforeAll(async () => {
    endpoint = await startEndpoint();
    clients = createDynamoClients({
      endpoint: endpoint.endpoint,
      ...(endpoint.socketPath !== undefined ? { socketPath: endpoint.socketPath } : {}),
      region: 'us-east-1',
      env: {},
    });
  });
  afterAll(async () => {
    clients?.client.destroy();
    await endpoint?.close();
  });
  beforeEach(async () => {
    const tableName = `${prefix}-${++tableCount}`;
    await ensureTable(clients!.client, tableName);
    current = {
      clients: clients!,
      tableName,
      store: new DynamoStateStore(clients!.doc, tableName),
      warmTasks: new DynamoWarmTaskStore(clients!.doc, tableName),
    };
  });
  return () => {
    if (!current) throw new Error('used outside a test');
    return current;
  };
}
