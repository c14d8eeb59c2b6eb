import { DescribeTimeToLiveCommand } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, GetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConflictError, NotFoundError, type WspError } from '../../shared/contract/errors.js';
import type { WorkspaceRecord } from '../../shared/contract/workspace.js';
import type { DynamoClients } from '../../shared/state/client.js';
import { DynamoStateStore } from '../../shared/state/dynamo-store.js';
import { ensureTable } from '../../shared/state/table.js';
import { useFreshTable, type Endpoint } from './fresh-table.js';
import { cacheEntryRecord, commandRecord, snapshotRecord, workspaceRecord } from './fixtures.js';

export type { Endpoint } from './fresh-table.js';

/**
 * The StateStore contract, run against any DynamoDB-protocol endpoint. Each test gets its own
 * table, so tests cannot see each other's items.
 */
export interface EndpointTraits {
  /** The endpoint implements UpdateTimeToLive (DynamoDB Local, AWS; not dynalite). */
  supportsTtl: boolean;
}

export function stateStoreContract(name: string, startEndpoint: () => Promise<Endpoint>, traits: EndpointTraits): void {
  describe(`DynamoStateStore on ${name}`, () => {
    const table = useFreshTable(startEndpoint, 'wsp-test');
    let clients: DynamoClients;
    let tableName: string;
    let store: DynamoStateStore;
    afterEach(() => {
      vi.restoreAllMocks();
    });
    beforeEach(() => {
      ({ clients, tableName, store } = table());
    });

    it('ensureTable is idempotent', async () => {
      await ensureTable(clients.client, tableName);
      await store.createWorkspace(workspaceRecord('ws-1'));
      await ensureTable(clients.client, tableName);
      expect(await store.getWorkspace('ws-1')).toBeDefined();
    });

    it(`ensureTable ${traits.supportsTtl ? 'enables' : 'leaves (unsupported)'} TTL on the ttl attribute`, async () => {
      const ttl = await clients.client.send(new DescribeTimeToLiveCommand({ TableName: tableName }));
      if (traits.supportsTtl) {
        expect(ttl.TimeToLiveDescription).toMatchObject({ TimeToLiveStatus: 'ENABLED', AttributeName: 'ttl' });
      } else {
        expect(ttl.TimeToLiveDescription?.TimeToLiveStatus).toBe('DISABLED');
      }
    });

    it('round-trips a workspace through create, get, list and update', async () => {
      const record = workspaceRecord('ws-1', {
        expiresAt: 1_900_000_000,
        lease: { owner: 'instance-1', expiresAt: 1_800_000_000 },
      });
      await store.createWorkspace(record);
      expect(await store.getWorkspace('ws-1')).toEqual(record);
      expect(await store.getWorkspace('nope')).toBeUndefined();
      expect(await store.listWorkspaces()).toEqual([record]);

      const updated = await store.updateWorkspace(
        'ws-1',
        1,
        {
          status: 'ready',
          repos: [{ name: 'app', path: 'app', commit: 'b'.repeat(40) }],
          lease: undefined,
          updatedAt: '2025-01-01T00:01:00.000Z',
        },
        ['provisioning'],
      );
      const { lease: _dropped, ...withoutLease } = record;
      const expected: WorkspaceRecord = {
        ...withoutLease,
        status: 'ready',
        version: 2,
        repos: [{ name: 'app', path: 'app', commit: 'b'.repeat(40) }],
        updatedAt: '2025-01-01T00:01:00.000Z',
      };
      expect(updated).toEqual(expected);
      expect(await store.getWorkspace('ws-1')).toEqual(expected);
    });

    it('stores the record as attributes with table keys and ttl from expiresAt', async () => {
      await store.createWorkspace(workspaceRecord('ws-1', { expiresAt: 1_900_000_000 }));
      const raw = await clients.doc.send(new GetCommand({ TableName: tableName, Key: { pk: 'WS#ws-1', sk: 'META' } }));
      expect(raw.Item).toMatchObject({
        gsi1pk: 'WS',
        gsi1sk: '2025-01-01T00:00:00.000Z#ws-1',
        ttl: 1_900_000_000,
        status: 'provisioning',
      });
      expect(typeof raw.Item?.plan).toBe('object');

      await store.updateWorkspace('ws-1', 1, { expiresAt: 2_000_000_000 });
      const after = await clients.doc.send(
        new GetCommand({ TableName: tableName, Key: { pk: 'WS#ws-1', sk: 'META' } }),
      );
      expect(after.Item?.ttl).toBe(2_000_000_000);
      await store.updateWorkspace('ws-1', 2, { expiresAt: undefined });
      const cleared = await clients.doc.send(
        new GetCommand({ TableName: tableName, Key: { pk: 'WS#ws-1', sk: 'META' } }),
      );
      expect(cleared.Item).not.toHaveProperty('ttl');
      expect(cleared.Item).not.toHaveProperty('expiresAt');
    });

    it('refuses to create a workspace id twice', async () => {
      await store.createWorkspace(workspaceRecord('ws-1'));
      const err = await store.createWorkspace(workspaceRecord('ws-1', { owner: 'other' })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConflictError);
      expect((await store.getWorkspace('ws-1'))?.owner).toBe('instance-1');
    });

    it('turns a stale version into ConflictError naming the item and versions', async () => {
      await store.createWorkspace(workspaceRecord('ws-1'));
      await store.updateWorkspace('ws-1', 1, { status: 'ready' });
      const err = await store.updateWorkspace('ws-1', 1, { status: 'failed' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConflictError);
      expect((err as Error).message).toContain("workspace 'ws-1'");
      expect((err as Error).message).toContain('expected version 1');
      expect((err as ConflictError).details).toMatchObject({ expectedVersion: 1, storedVersion: 2 });
      expect((err as Error).cause).toBeDefined();
      const stored = await store.getWorkspace('ws-1');
      expect(stored).toMatchObject({ status: 'ready', version: 2 });
    });

    it('turns a status outside expectedStatus into ConflictError and writes nothing', async () => {
      await store.createWorkspace(workspaceRecord('ws-1'));
      const err = await store
        .updateWorkspace('ws-1', 1, { status: 'ready' }, ['resetting', 'ready'])
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConflictError);
      expect((err as Error).message).toContain("is 'provisioning'");
      expect(await store.getWorkspace('ws-1')).toMatchObject({ status: 'provisioning', version: 1 });
      const none = await store.updateWorkspace('ws-1', 1, { status: 'ready' }, []).catch((e: unknown) => e);
      expect(none).toBeInstanceOf(ConflictError);
    });

    it('update of an unknown id is NotFoundError and creates nothing', async () => {
      const err = await store.updateWorkspace('ghost', 1, { status: 'ready' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NotFoundError);
      expect(await store.getWorkspace('ghost')).toBeUndefined();
      expect(await store.updateCommand('ghost', 'c1', 1, { state: 'exited' }).catch((e: unknown) => e)).toBeInstanceOf(
        NotFoundError,
      );
      expect(await store.updateCacheEntry('ghost', 1, { status: 'ready' }).catch((e: unknown) => e)).toBeInstanceOf(
        NotFoundError,
      );
    });

    it('refuses to change a record identity through a patch', async () => {
      await store.createWorkspace(workspaceRecord('ws-1'));
      const err = await store.updateWorkspace('ws-1', 1, { id: 'ws-2' }).catch((e: unknown) => e);
      expect((err as WspError).code).toBe('bad_request');
      expect(await store.getWorkspace('ws-2')).toBeUndefined();
    });

    it('lets exactly one of 10 concurrent updates at the same version win', async () => {
      await store.createWorkspace(workspaceRecord('ws-1'));
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) => store.updateWorkspace('ws-1', 1, { labels: { writer: String(i) } })),
      );
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(9);
      for (const r of lost) expect(r.reason).toBeInstanceOf(ConflictError);
      const stored = await store.getWorkspace('ws-1');
      expect(stored?.version).toBe(2);
      expect(stored?.labels).toEqual((won[0] as PromiseFulfilledResult<WorkspaceRecord>).value.labels);
    });

    it('filters and pages workspace lists', async () => {
      const paged = new DynamoStateStore(clients.doc, tableName, { pageSize: 2 });
      for (let i = 0; i < 7; i++) {
        await paged.createWorkspace(
          workspaceRecord(`ws-${i}`, {
            createdAt: `2025-01-01T00:00:0${i}.000Z`,
            owner: i % 2 === 0 ? 'even' : 'odd',
            status: i < 3 ? 'ready' : 'provisioning',
          }),
        );
      }
      const send = vi.spyOn(clients.doc, 'send');
      expect((await paged.listWorkspaces()).map((w) => w.id)).toEqual([
        'ws-0',
        'ws-1',
        'ws-2',
        'ws-3',
        'ws-4',
        'ws-5',
        'ws-6',
      ]);
      // 7 items at 2 per page: the list really followed LastEvaluatedKey.
      expect(send.mock.calls.filter(([command]) => command instanceof QueryCommand).length).toBeGreaterThanOrEqual(4);
      send.mockRestore();
      expect((await paged.listWorkspaces({ owner: 'even' })).map((w) => w.id)).toEqual([
        'ws-0',
        'ws-2',
        'ws-4',
        'ws-6',
      ]);
      expect((await paged.listWorkspaces({ owner: 'odd', status: ['ready'] })).map((w) => w.id)).toEqual(['ws-1']);
      expect(await paged.listWorkspaces({ status: [] })).toEqual([]);
      // Commands and cache entries never show up as workspaces.
      await paged.createCommand(commandRecord('ws-0', 'c1'));
      await paged.createCacheEntry(cacheEntryRecord('k1'));
      expect(await paged.listWorkspaces()).toHaveLength(7);
    });

    it('creates, lists, updates commands and keeps them per workspace', async () => {
      const paged = new DynamoStateStore(clients.doc, tableName, { pageSize: 2 });
      await paged.createWorkspace(workspaceRecord('ws-1'));
      for (const id of ['c1', 'c2', 'c3', 'c4', 'c5']) await paged.createCommand(commandRecord('ws-1', id));
      await paged.createCommand(commandRecord('ws-2', 'c1'));
      expect(await paged.createCommand(commandRecord('ws-1', 'c1')).catch((e: unknown) => e)).toBeInstanceOf(
        ConflictError,
      );

      expect((await paged.listCommands('ws-1')).map((c) => c.id)).toEqual(['c1', 'c2', 'c3', 'c4', 'c5']);
      const done = await paged.updateCommand('ws-1', 'c2', 1, {
        state: 'exited',
        exitCode: 0,
        stdout: { bytes: 3, truncated: false },
        endedAt: '2025-01-01T00:00:02.000Z',
        durationMs: 1000,
      });
      expect(done).toEqual({
        ...commandRecord('ws-1', 'c2'),
        version: 2,
        state: 'exited',
        exitCode: 0,
        stdout: { bytes: 3, truncated: false },
        endedAt: '2025-01-01T00:00:02.000Z',
        durationMs: 1000,
      });
      expect(await paged.getCommand('ws-1', 'c2')).toEqual(done);
      expect(await paged.getCommand('ws-1', 'nope')).toBeUndefined();
      expect(await paged.updateCommand('ws-1', 'c2', 1, { state: 'lost' }).catch((e: unknown) => e)).toBeInstanceOf(
        ConflictError,
      );
    });

    it('deleteWorkspace removes the record, every command and its idempotency key', async () => {
      const paged = new DynamoStateStore(clients.doc, tableName, { pageSize: 2 });
      await paged.createWorkspace(workspaceRecord('ws-1', { idempotencyKey: 'idem-1' }));
      await paged.createWorkspace(workspaceRecord('ws-2'));
      expect(await paged.claimIdempotencyKey('idem-1', 'ws-1')).toBe('ws-1');
      for (let i = 0; i < 5; i++) await paged.createCommand(commandRecord('ws-1', `c${i}`));
      await paged.createCommand(commandRecord('ws-2', 'c0'));

      // Only a record that reached 'deleted' may be removed.
      expect(await paged.deleteWorkspace('ws-1').catch((e: unknown) => e)).toBeInstanceOf(ConflictError);
      expect(await paged.listCommands('ws-1')).toHaveLength(5);

      await paged.updateWorkspace('ws-1', 1, { status: 'deleted' });
      await paged.deleteWorkspace('ws-1');
      expect(await paged.getWorkspace('ws-1')).toBeUndefined();
      expect(await paged.listCommands('ws-1')).toEqual([]);
      expect(await paged.listCommands('ws-2')).toHaveLength(1);
      expect((await paged.listWorkspaces()).map((w) => w.id)).toEqual(['ws-2']);
      // The key is free again.
      expect(await paged.claimIdempotencyKey('idem-1', 'ws-9')).toBe('ws-9');
      // Idempotent.
      await paged.deleteWorkspace('ws-1');
    });

    it('claims an idempotency key once and returns the first id to everyone', async () => {
      expect(await store.claimIdempotencyKey('key-a', 'ws-1')).toBe('ws-1');
      expect(await store.claimIdempotencyKey('key-a', 'ws-2')).toBe('ws-1');
      const racers = await Promise.all(
        Array.from({ length: 5 }, (_, i) => store.claimIdempotencyKey('key-b', `ws-${i}`)),
      );
      expect(new Set(racers).size).toBe(1);
    });

    it('keeps an idempotency key that another workspace holds when deleting', async () => {
      await store.createWorkspace(workspaceRecord('ws-1', { idempotencyKey: 'shared', status: 'deleted' }));
      expect(await store.claimIdempotencyKey('shared', 'ws-other')).toBe('ws-other');
      await store.deleteWorkspace('ws-1');
      expect(await store.claimIdempotencyKey('shared', 'ws-3')).toBe('ws-other');
    });

    it('manages cache entries: create once, update, list, delete by version', async () => {
      const entry = cacheEntryRecord('key-1');
      await store.createCacheEntry(entry);
      const again = await store
        .createCacheEntry(cacheEntryRecord('key-1', { backendKind: 'docker' }))
        .catch((e: unknown) => e);
      expect(again).toBeInstanceOf(ConflictError);
      expect(await store.getCacheEntry('key-1')).toEqual(entry);

      const ready = await store.updateCacheEntry('key-1', 1, {
        status: 'ready',
        snapshot: { kind: 'local', dir: '/data/cache/key-1' },
        lease: undefined,
        sizeBytes: 1234,
      });
      const { lease: _l, ...rest } = entry;
      expect(ready).toEqual({
        ...rest,
        status: 'ready',
        version: 2,
        snapshot: { kind: 'local', dir: '/data/cache/key-1' },
        sizeBytes: 1234,
      });
      await store.createCacheEntry(cacheEntryRecord('key-2', { createdAt: '2025-01-02T00:00:00.000Z' }));
      await store.createWorkspace(workspaceRecord('ws-1'));
      expect((await store.listCacheEntries()).map((e) => e.key)).toEqual(['key-1', 'key-2']);

      expect(await store.deleteCacheEntry('key-1', 1).catch((e: unknown) => e)).toBeInstanceOf(ConflictError);
      expect(await store.getCacheEntry('key-1')).toBeDefined();
      await store.deleteCacheEntry('key-1', 2);
      expect(await store.getCacheEntry('key-1')).toBeUndefined();
      expect(await store.deleteCacheEntry('key-1', 2).catch((e: unknown) => e)).toBeInstanceOf(NotFoundError);
    });

    it('manages snapshot records: create once, conditional update, list apart from workspaces, delete by version', async () => {
      const snap = snapshotRecord('snap-1');
      await store.createSnapshot(snap);
      expect(await store.createSnapshot(snapshotRecord('snap-1')).catch((e: unknown) => e)).toBeInstanceOf(
        ConflictError,
      );
      expect(await store.getSnapshot('snap-1')).toEqual(snap);
      const ready = await store.updateSnapshot('snap-1', 1, {
        status: 'ready',
        snapshot: { kind: 'local', name: 'snap-1', dir: '/data/snapshots/snap-1' },
        sizeBytes: 99,
      });
      expect(ready).toMatchObject({ status: 'ready', version: 2, sizeBytes: 99 });
      expect(await store.updateSnapshot('snap-1', 1, { status: 'failed' }).catch((e: unknown) => e)).toBeInstanceOf(
        ConflictError,
      );
      await store.createSnapshot(snapshotRecord('snap-2', { createdAt: '2025-01-02T00:00:00.000Z' }));
      await store.createWorkspace(workspaceRecord('ws-1'));
      await store.createCacheEntry(cacheEntryRecord('key-1'));
      expect((await store.listSnapshots()).map((x) => x.id)).toEqual(['snap-1', 'snap-2']);
      expect((await store.listWorkspaces()).map((w) => w.id)).toEqual(['ws-1']);
      expect((await store.listCacheEntries()).map((e) => e.key)).toEqual(['key-1']);
      expect(await store.deleteSnapshot('snap-1', 1).catch((e: unknown) => e)).toBeInstanceOf(ConflictError);
      await store.deleteSnapshot('snap-1', 2);
      expect(await store.getSnapshot('snap-1')).toBeUndefined();
      expect(await store.deleteSnapshot('snap-1', 2).catch((e: unknown) => e)).toBeInstanceOf(NotFoundError);
    });

    it('reports an item deleted under a writer as NotFoundError', async () => {
      await store.createWorkspace(workspaceRecord('ws-1'));
      await clients.doc.send(new DeleteCommand({ TableName: tableName, Key: { pk: 'WS#ws-1', sk: 'META' } }));
      expect(await store.updateWorkspace('ws-1', 1, { status: 'ready' }).catch((e: unknown) => e)).toBeInstanceOf(
        NotFoundError,
      );
    });
  });
}
