import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { beforeEach, describe, expect, it } from 'vitest';
import { BadRequestError, ConflictError, NotFoundError } from '../../shared/contract/errors.js';
import type { WarmTaskRecord } from '../../shared/backends/ecs/warm-task-store.js';
import type { DynamoClients } from '../../shared/state/client.js';
import type { DynamoStateStore } from '../../shared/state/dynamo-store.js';
import { DynamoWarmTaskStore } from '../../shared/state/dynamo-warm-tasks.js';
import { startEmbeddedDynamo } from '../../shared/state/embedded.js';
import { dynamoDbLocalStatus, startDynamoDbLocal } from '../support/dynamodb-local.js';
import { cacheEntryRecord, workspaceRecord } from './fixtures.js';
import { useFreshTable, type Endpoint } from './fresh-table.js';

/** The warm-pool records (DynamoWarmTaskStore, the ECS backend's WarmTaskStore), against dynalite and DynamoDB Local. */
function warmTask(cacheKey: string, id: string, overrides: Partial<WarmTaskRecord> = {}): WarmTaskRecord {
  return {
    cacheKey,
    id,
    taskDefinitionArn: 'arn:aws:ecs:us-east-1:123456789012:task-definition/wsp-cache:1',
    status: 'starting',
    owner: 'stack-1',
    createdAt: '2025-01-01T00:00:00.000Z',
    updatedAt: '2025-01-01T00:00:00.000Z',
    version: 1,
    ...overrides,
  };
}

function warmStoreSuite(name: string, startEndpoint: () => Promise<Endpoint>): void {
  describe(`warm-task records on ${name}`, () => {
    const table = useFreshTable(startEndpoint, 'wsp-warm');
    let clients: DynamoClients;
    let tableName: string;
    let store: DynamoStateStore;
    let warmTasks: DynamoWarmTaskStore;
    beforeEach(() => {
      ({ clients, tableName, store, warmTasks } = table());
    });

    it('puts once, reads back, and stores table keys in their own partition', async () => {
      const record = warmTask('k1', 'a');
      await warmTasks.putWarmTask(record);
      expect(await warmTasks.getWarmTask('k1', 'a')).toEqual(record);
      expect(await warmTasks.getWarmTask('k1', 'nope')).toBeUndefined();
      expect(await warmTasks.getWarmTask('k2', 'a')).toBeUndefined();

      const raw = await clients.doc.send(
        new GetCommand({ TableName: tableName, Key: { pk: 'WARM#k1', sk: 'TASK#a' } }),
      );
      expect(raw.Item).toMatchObject({ gsi1pk: 'WARM', gsi1sk: '2025-01-01T00:00:00.000Z#k1#a', status: 'starting' });

      const again = await warmTasks.putWarmTask(warmTask('k1', 'a', { status: 'ready' })).catch((e: unknown) => e);
      expect(again).toBeInstanceOf(ConflictError);
      expect(await warmTasks.getWarmTask('k1', 'a')).toEqual(record);
    });

    it('lists one pool oldest first, or every pool, and never mixes with workspaces or cache entries', async () => {
      await warmTasks.putWarmTask(warmTask('k1', 'z-old', { createdAt: '2025-01-01T00:00:01.000Z' }));
      await warmTasks.putWarmTask(
        warmTask('k1', 'a-new', { createdAt: '2025-01-01T00:00:02.000Z', taskArn: 'arn:task/1' }),
      );
      await warmTasks.putWarmTask(warmTask('k2', 'b', { createdAt: '2025-01-01T00:00:00.500Z' }));
      // Same sort-key shapes as other kinds: a cache entry and a workspace named like the pool.
      await store.createCacheEntry(cacheEntryRecord('k1'));
      await store.createWorkspace(workspaceRecord('k1'));

      expect((await warmTasks.listWarmTasks('k1')).map((r) => r.id)).toEqual(['z-old', 'a-new']);
      expect((await warmTasks.listWarmTasks('k2')).map((r) => r.id)).toEqual(['b']);
      expect(await warmTasks.listWarmTasks('k3')).toEqual([]);
      expect((await warmTasks.listWarmTasks()).map((r) => `${r.cacheKey}/${r.id}`)).toEqual([
        'k2/b',
        'k1/z-old',
        'k1/a-new',
      ]);
      expect((await store.listCacheEntries()).map((e) => e.key)).toEqual(['k1']);
      expect((await store.listWorkspaces()).map((w) => w.id)).toEqual(['k1']);
    });

    it('pages a pool listing', async () => {
      const paged = new DynamoWarmTaskStore(clients.doc, tableName, { pageSize: 2 });
      for (let i = 0; i < 5; i++)
        await paged.putWarmTask(warmTask('k1', `t${i}`, { createdAt: `2025-01-01T00:00:0${i}.000Z` }));
      expect((await paged.listWarmTasks('k1')).map((r) => r.id)).toEqual(['t0', 't1', 't2', 't3', 't4']);
      expect(await paged.listWarmTasks()).toHaveLength(5);
    });

    it('updates conditionally on version and status, and removes fields patched to undefined', async () => {
      await warmTasks.putWarmTask(warmTask('k1', 'a'));
      const withArn = await warmTasks.updateWarmTask(
        'k1',
        'a',
        1,
        { taskArn: 'arn:task/1', updatedAt: '2025-01-01T00:01:00.000Z' },
        ['starting'],
      );
      expect(withArn).toEqual(
        warmTask('k1', 'a', { taskArn: 'arn:task/1', updatedAt: '2025-01-01T00:01:00.000Z', version: 2 }),
      );

      const stale = await warmTasks.updateWarmTask('k1', 'a', 1, { status: 'ready' }).catch((e: unknown) => e);
      expect(stale).toBeInstanceOf(ConflictError);
      expect((stale as ConflictError).details).toMatchObject({ expectedVersion: 1, storedVersion: 2 });

      const wrongStatus = await warmTasks
        .updateWarmTask('k1', 'a', 2, { status: 'claimed' }, ['ready'])
        .catch((e: unknown) => e);
      expect(wrongStatus).toBeInstanceOf(ConflictError);
      expect((wrongStatus as Error).message).toMatch(/is 'starting', expected one of \[ready\]/);

      const claimed = await warmTasks.updateWarmTask('k1', 'a', 2, { status: 'claimed', claimedBy: 'ws-1' });
      expect(claimed).toMatchObject({ status: 'claimed', claimedBy: 'ws-1', version: 3 });
      const unclaimed = await warmTasks.updateWarmTask('k1', 'a', 3, { status: 'ready', claimedBy: undefined });
      expect(unclaimed).not.toHaveProperty('claimedBy');
      expect(await warmTasks.getWarmTask('k1', 'a')).toEqual(unclaimed);

      expect(await warmTasks.updateWarmTask('k1', 'a', 4, { id: 'b' }).catch((e: unknown) => e)).toBeInstanceOf(
        BadRequestError,
      );
      expect(await warmTasks.updateWarmTask('k1', 'a', 4, { cacheKey: 'k2' }).catch((e: unknown) => e)).toBeInstanceOf(
        BadRequestError,
      );
      expect(
        await warmTasks.updateWarmTask('k1', 'gone', 1, { status: 'ready' }).catch((e: unknown) => e),
      ).toBeInstanceOf(NotFoundError);
      expect(await warmTasks.getWarmTask('k1', 'gone')).toBeUndefined();
    });

    it('lets exactly one of 10 concurrent ready → claimed updates win', async () => {
      await warmTasks.putWarmTask(warmTask('k1', 'a', { status: 'ready', taskArn: 'arn:task/1' }));
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) =>
          warmTasks.updateWarmTask('k1', 'a', 1, { status: 'claimed', claimedBy: `ws-${i}` }, ['ready']),
        ),
      );
      const winners = results.filter((r) => r.status === 'fulfilled');
      expect(winners).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ConflictError);
      const stored = await warmTasks.getWarmTask('k1', 'a');
      expect(stored).toEqual((winners[0] as PromiseFulfilledResult<WarmTaskRecord>).value);
    });

    it('deletes at a version (Conflict if changed, NotFound if gone) or unconditionally and idempotently', async () => {
      await warmTasks.putWarmTask(warmTask('k1', 'a'));
      await warmTasks.updateWarmTask('k1', 'a', 1, { status: 'ready' });
      expect(await warmTasks.deleteWarmTask('k1', 'a', 1).catch((e: unknown) => e)).toBeInstanceOf(ConflictError);
      expect(await warmTasks.getWarmTask('k1', 'a')).toBeDefined();
      await warmTasks.deleteWarmTask('k1', 'a', 2);
      expect(await warmTasks.getWarmTask('k1', 'a')).toBeUndefined();
      expect(await warmTasks.deleteWarmTask('k1', 'a', 2).catch((e: unknown) => e)).toBeInstanceOf(NotFoundError);

      await warmTasks.putWarmTask(warmTask('k1', 'b'));
      await warmTasks.deleteWarmTask('k1', 'b');
      await warmTasks.deleteWarmTask('k1', 'b');
      expect(await warmTasks.listWarmTasks('k1')).toEqual([]);
    });
  });
}

warmStoreSuite('embedded dynalite', () => startEmbeddedDynamo());

const local = dynamoDbLocalStatus();
if (local.state === 'present') {
  warmStoreSuite('DynamoDB Local', () => startDynamoDbLocal());
} else if (local.state === 'missing') {
  describe('warm-task records on DynamoDB Local', () => {
    it('needs DynamoDB Local', () => {
      throw new Error(local.message);
    });
  });
} else {
  console.log(local.message);
}
