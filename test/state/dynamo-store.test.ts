import { describe, expect, it } from 'vitest';
import { BackendUnavailableError } from '../../shared/contract/errors.js';
import { createDynamoClients } from '../../shared/state/client.js';
import { DynamoStateStore } from '../../shared/state/dynamo-store.js';
import { startEmbeddedDynamo } from '../../shared/state/embedded.js';
import { ensureTable } from '../../shared/state/table.js';
import { dynamoDbLocalStatus, startDynamoDbLocal } from '../support/dynamodb-local.js';
import { workspaceRecord } from './fixtures.js';
import { stateStoreContract } from './store-contract.js';

stateStoreContract('embedded dynalite', () => startEmbeddedDynamo(), { supportsTtl: false });

const local = dynamoDbLocalStatus();
if (local.state === 'skipped') {
  console.log(local.message);
  describe.skip('DynamoStateStore on DynamoDB Local', () => {
    it('skipped', () => undefined);
  });
} else if (local.state === 'missing') {
  describe('DynamoStateStore on DynamoDB Local', () => {
    it('needs DynamoDB Local', () => {
      throw new Error(local.message);
    });
  });
} else {
  stateStoreContract('DynamoDB Local', () => startDynamoDbLocal(), { supportsTtl: true });
}

describe('DynamoStateStore when the endpoint is down', () => {
  it('raises BackendUnavailableError, keeping the cause', async () => {
    const embedded = await startEmbeddedDynamo();
    const { client, doc } = createDynamoClients({
      endpoint: embedded.endpoint,
      socketPath: embedded.socketPath,
      region: 'us-east-1',
      env: {},
    });
    await ensureTable(client, 'wsp');
    const store = new DynamoStateStore(doc, 'wsp');
    await store.createWorkspace(workspaceRecord('ws-1'));
    await embedded.close();
    try {
      const err = await store.getWorkspace('ws-1').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BackendUnavailableError);
      expect((err as Error).message).toMatch(/^state store unavailable/);
      expect((err as Error).cause).toBeInstanceOf(Error);
      expect(await store.updateWorkspace('ws-1', 1, { status: 'ready' }).catch((e: unknown) => e)).toBeInstanceOf(
        BackendUnavailableError,
      );
      expect(await ensureTable(client, 'other').catch((e: unknown) => e)).toBeInstanceOf(BackendUnavailableError);
    } finally {
      client.destroy();
    }
  });
});
