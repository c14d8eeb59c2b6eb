import { DeleteCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { ConflictError } from '../contract/errors.js';
import type { SessionRecord } from '../contract/session.js';
import type { Patch, StateStore, WorkspaceQuery } from '../contract/state.js';
import type {
  CacheEntryRecord,
  CommandRecord,
  OperationRecord,
  SnapshotRecord,
  WorkspaceRecord,
} from '../contract/workspace.js';
import { isConditionFailed, storeUnavailable } from './dynamo-errors.js';
import {
  COMMAND_SK_PREFIX,
  EVENT_SK_PREFIX,
  GSI_CACHE,
  GSI_SNAPSHOTS,
  GSI_WORKSPACES,
  cacheEntryKey,
  cacheEntryToItem,
  snapshotKey,
  snapshotToItem,
  commandKey,
  commandToItem,
  idempotencyKey,
  itemToRecord,
  OPERATION_SK_PREFIX,
  SESSION_SK_PREFIX,
  sessionKey,
  sessionToItem,
  operationKey,
  operationToItem,
  listSortKey,
  workspaceKey,
  workspaceToItem,
  type Item,
  type Key,
} from './dynamo-items.js';
import { DynamoTable, type DynamoTableOptions } from './dynamo-table.js';
import { TABLE_SHAPE } from './table.js';
import { ExpressionBuilder } from './update-expression.js';

const CHILD_KINDS: Record<string, string> = {
  [COMMAND_SK_PREFIX]: 'commands',
  [OPERATION_SK_PREFIX]: 'operations',
  [SESSION_SK_PREFIX]: 'sessions',
  [EVENT_SK_PREFIX]: 'webhook events',
};

export interface DynamoStateStoreOptions extends DynamoTableOptions {
  /** Parallel DeleteItem calls when removing a workspace's commands. Default 16. */
  deleteConcurrency?: number;
}

/**
 * StateStore on the DynamoDB protocol (AWS, LocalStack, DynamoDB Local, embedded dynalite).
 * Every write is conditional (no transactions: dynalite has none). A lost condition becomes
 * ConflictError (or NotFoundError when the item is gone) right here; every other SDK or network
 * failure becomes BackendUnavailableError. Reads of single items are strongly consistent; lists
 * of workspaces and cache entries go through gsi1 and are eventually consistent on AWS. The
 * building blocks are DynamoTable's; the warm pool's records are DynamoWarmTaskStore's (same table).
 */
export class DynamoStateStore extends DynamoTable implements StateStore {
  private readonly deleteConcurrency: number;

  constructor(doc: DynamoDBDocumentClient, tableName: string, options: DynamoStateStoreOptions = {}) {
    super(doc, tableName, options);
    this.deleteConcurrency = options.deleteConcurrency ?? 16;
  }

  // ---- workspaces -------------------------------------------------------------------------

  async createWorkspace(record: WorkspaceRecord): Promise<void> {
    await this.putNew(workspaceToItem(record), `workspace '${record.id}'`);
  }

  async getWorkspace(id: string): Promise<WorkspaceRecord | undefined> {
    return this.getRecord<WorkspaceRecord>(workspaceKey(id), `workspace '${id}'`);
  }

  async listWorkspaces(query: WorkspaceQuery = {}): Promise<WorkspaceRecord[]> {
    const b = new ExpressionBuilder();
    const filters: string[] = [];
    if (query.owner !== undefined) filters.push(`${b.name('owner')} = ${b.value(query.owner)}`);
    if (query.status !== undefined) {
      if (query.status.length === 0) return [];
      filters.push(`${b.name('status')} IN (${query.status.map((s) => b.value(s)).join(', ')})`);
    }
    const items = await this.queryAll(
      {
        IndexName: TABLE_SHAPE.gsi1.indexName,
        KeyConditionExpression: `${b.name(TABLE_SHAPE.gsi1.partitionKey)} = ${b.value(GSI_WORKSPACES)}`,
        ...(filters.length ? { FilterExpression: filters.join(' AND ') } : {}),
        ExpressionAttributeNames: b.names,
        ExpressionAttributeValues: b.values,
      },
      'list workspaces',
    );
    return items.map((item) => itemToRecord<WorkspaceRecord>(item));
  }

  async updateWorkspace(
    id: string,
    expectedVersion: number,
    patch: Patch<WorkspaceRecord>,
    expectedStatus?: WorkspaceRecord['status'][],
  ): Promise<WorkspaceRecord> {
    return this.conditionalUpdate<WorkspaceRecord>(patch, {
      kind: 'workspace',
      label: id,
      key: workspaceKey(id),
      identity: { id },
      expectedVersion,
      ...(expectedStatus !== undefined ? { expectedStatus } : {}),
      derive: (plan) => {
        if ('expiresAt' in plan.set) plan.set[TABLE_SHAPE.ttlAttribute] = plan.set.expiresAt;
        if (plan.remove.includes('expiresAt')) plan.remove.push(TABLE_SHAPE.ttlAttribute);
        if (typeof plan.set.createdAt === 'string')
          plan.set[TABLE_SHAPE.gsi1.sortKey] = listSortKey(plan.set.createdAt, id);
      },
    });
  }

  /**
   * Remove a workspace record that has reached 'deleted', with its commands and its idempotency
   * key (if that still points here). Idempotent: an unknown id only sweeps stray commands.
   * ConflictError if the record is in any other status — a stale reconciler must not drop a live
   * workspace. Commands go first and META last, so an interrupted delete leaves a record a retry
   * finds; a final sweep catches commands written meanwhile.
   */
  async deleteWorkspace(id: string): Promise<void> {
    const record = await this.getWorkspace(id);
    if (record !== undefined && record.status !== 'deleted') {
      throw new ConflictError(
        `workspace '${id}' is '${record.status}'; only a 'deleted' workspace record can be removed`,
        {
          details: { storedStatus: record.status, storedVersion: record.version },
        },
      );
    }
    await this.deleteCommandsOf(id);
    if (record === undefined) return;
    try {
      await this.doc.send(
        new DeleteCommand({
          TableName: this.tableName,
          Key: workspaceKey(id),
          ConditionExpression: '#status = :deleted',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: { ':deleted': 'deleted' },
        }),
      );
    } catch (err) {
      // Gone already (a concurrent delete) is fine; anything else lost the condition after our read.
      if (!isConditionFailed(err)) throw storeUnavailable(`delete workspace '${id}'`, err);
      const now = await this.getWorkspace(id);
      if (now !== undefined)
        throw new ConflictError(`workspace '${id}' changed to '${now.status}' while being removed`, { cause: err });
    }
    if (record.idempotencyKey !== undefined) {
      await this.deleteIdempotencyKeyIfHeld(record.idempotencyKey, id);
    }
    await this.deleteCommandsOf(id);
  }

  // ---- commands ---------------------------------------------------------------------------

  async createCommand(record: CommandRecord): Promise<void> {
    await this.putNew(commandToItem(record), `command '${record.workspaceId}/${record.id}'`);
  }

  async getCommand(workspaceId: string, commandId: string): Promise<CommandRecord | undefined> {
    return this.getRecord<CommandRecord>(commandKey(workspaceId, commandId), `command '${workspaceId}/${commandId}'`);
  }

  /** Commands of one workspace in command-id order (ids that sort by time list by time). */
  async listCommands(workspaceId: string): Promise<CommandRecord[]> {
    const items = await this.queryCommandItems(workspaceId);
    return items.map((item) => itemToRecord<CommandRecord>(item));
  }

  async updateCommand(
    workspaceId: string,
    commandId: string,
    expectedVersion: number,
    patch: Patch<CommandRecord>,
  ): Promise<CommandRecord> {
    return this.conditionalUpdate<CommandRecord>(patch, {
      kind: 'command',
      label: `${workspaceId}/${commandId}`,
      key: commandKey(workspaceId, commandId),
      identity: { workspaceId, id: commandId },
      expectedVersion,
    });
  }

  // ---- operations -------------------------------------------------------------------------

  async createOperation(record: OperationRecord): Promise<void> {
    await this.putNew(operationToItem(record), `operation '${record.workspaceId}/${record.id}'`);
  }

  async getOperation(workspaceId: string, operationId: string): Promise<OperationRecord | undefined> {
    return this.getRecord<OperationRecord>(
      operationKey(workspaceId, operationId),
      `operation '${workspaceId}/${operationId}'`,
    );
  }

  async listOperations(workspaceId: string): Promise<OperationRecord[]> {
    const items = await this.queryChildItems(workspaceId, OPERATION_SK_PREFIX);
    return items.map((item) => itemToRecord<OperationRecord>(item));
  }

  async updateOperation(
    workspaceId: string,
    operationId: string,
    expectedVersion: number,
    patch: Patch<OperationRecord>,
  ): Promise<OperationRecord> {
    return this.conditionalUpdate<OperationRecord>(patch, {
      kind: 'operation',
      label: `${workspaceId}/${operationId}`,
      key: operationKey(workspaceId, operationId),
      identity: { workspaceId, id: operationId },
      expectedVersion,
    });
  }

  // ---- idempotency ------------------------------------------------------------------------

  /**
   * First claimer wins; everyone gets the winner's workspace id. The key lives until its
   * workspace is deleted (deleteWorkspace removes it).
   */
  async claimIdempotencyKey(key: string, workspaceId: string): Promise<string> {
    const itemKey = idempotencyKey(key);
    // The holder may be deleted between our failed put and our read; then claim again.
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await this.doc.send(
          new PutCommand({
            TableName: this.tableName,
            Item: { ...itemKey, workspaceId, createdAt: new Date().toISOString() },
            ConditionExpression: 'attribute_not_exists(#pk)',
            ExpressionAttributeNames: { '#pk': TABLE_SHAPE.partitionKey },
          }),
        );
        return workspaceId;
      } catch (err) {
        if (!isConditionFailed(err)) throw storeUnavailable(`claim idempotency key`, err);
      }
      const holder = await this.getItem(itemKey, 'read idempotency key');
      if (typeof holder?.workspaceId === 'string') return holder.workspaceId;
    }
    throw new ConflictError('idempotency key is being claimed and released concurrently; retry');
  }

  // ---- cache entries ----------------------------------------------------------------------

  async createCacheEntry(record: CacheEntryRecord): Promise<void> {
    await this.putNew(cacheEntryToItem(record), `cache entry '${record.key}'`);
  }

  async getCacheEntry(key: string): Promise<CacheEntryRecord | undefined> {
    return this.getRecord<CacheEntryRecord>(cacheEntryKey(key), `cache entry '${key}'`);
  }

  async listCacheEntries(): Promise<CacheEntryRecord[]> {
    const b = new ExpressionBuilder();
    const items = await this.queryAll(
      {
        IndexName: TABLE_SHAPE.gsi1.indexName,
        KeyConditionExpression: `${b.name(TABLE_SHAPE.gsi1.partitionKey)} = ${b.value(GSI_CACHE)}`,
        ExpressionAttributeNames: b.names,
        ExpressionAttributeValues: b.values,
      },
      'list cache entries',
    );
    return items.map((item) => itemToRecord<CacheEntryRecord>(item));
  }

  async updateCacheEntry(
    key: string,
    expectedVersion: number,
    patch: Patch<CacheEntryRecord>,
  ): Promise<CacheEntryRecord> {
    return this.conditionalUpdate<CacheEntryRecord>(patch, {
      kind: 'cache entry',
      label: key,
      key: cacheEntryKey(key),
      identity: { key },
      expectedVersion,
      derive: (plan) => {
        if (typeof plan.set.createdAt === 'string')
          plan.set[TABLE_SHAPE.gsi1.sortKey] = listSortKey(plan.set.createdAt, key);
      },
    });
  }

  /** Delete iff the stored version is `expectedVersion`. NotFoundError if gone, ConflictError if changed. */
  async deleteCacheEntry(key: string, expectedVersion: number): Promise<void> {
    await this.deleteAtVersion({
      kind: 'cache entry',
      label: key,
      key: cacheEntryKey(key),
      identity: { key },
      expectedVersion,
    });
  }

  // ---- snapshots (fork points, user snapshots) ----------------------------------------------

  async createSnapshot(record: SnapshotRecord): Promise<void> {
    await this.putNew(snapshotToItem(record), `snapshot '${record.id}'`);
  }

  async getSnapshot(id: string): Promise<SnapshotRecord | undefined> {
    return this.getRecord<SnapshotRecord>(snapshotKey(id), `snapshot '${id}'`);
  }

  async listSnapshots(): Promise<SnapshotRecord[]> {
    const b = new ExpressionBuilder();
    const items = await this.queryAll(
      {
        IndexName: TABLE_SHAPE.gsi1.indexName,
        KeyConditionExpression: `${b.name(TABLE_SHAPE.gsi1.partitionKey)} = ${b.value(GSI_SNAPSHOTS)}`,
        ExpressionAttributeNames: b.names,
        ExpressionAttributeValues: b.values,
      },
      'list snapshots',
    );
    return items.map((item) => itemToRecord<SnapshotRecord>(item));
  }

  async updateSnapshot(id: string, expectedVersion: number, patch: Patch<SnapshotRecord>): Promise<SnapshotRecord> {
    return this.conditionalUpdate<SnapshotRecord>(patch, {
      kind: 'snapshot',
      label: id,
      key: snapshotKey(id),
      identity: { id },
      expectedVersion,
      derive: (plan) => {
        if (typeof plan.set.createdAt === 'string')
          plan.set[TABLE_SHAPE.gsi1.sortKey] = listSortKey(plan.set.createdAt, id);
      },
    });
  }

  async deleteSnapshot(id: string, expectedVersion: number): Promise<void> {
    await this.deleteAtVersion({
      kind: 'snapshot',
      label: id,
      key: snapshotKey(id),
      identity: { id },
      expectedVersion,
    });
  }

  // ---- shell sessions -----------------------------------------------------------------------

  async createSession(record: SessionRecord): Promise<void> {
    await this.putNew(sessionToItem(record), `session '${record.workspaceId}/${record.id}'`);
  }

  async getSession(workspaceId: string, sessionId: string): Promise<SessionRecord | undefined> {
    return this.getRecord<SessionRecord>(sessionKey(workspaceId, sessionId), `session '${workspaceId}/${sessionId}'`);
  }

  async listSessions(workspaceId: string): Promise<SessionRecord[]> {
    const items = await this.queryChildItems(workspaceId, SESSION_SK_PREFIX);
    return items.map((item) => itemToRecord<SessionRecord>(item));
  }

  async updateSession(
    workspaceId: string,
    sessionId: string,
    expectedVersion: number,
    patch: Patch<SessionRecord>,
  ): Promise<SessionRecord> {
    return this.conditionalUpdate<SessionRecord>(patch, {
      kind: 'session',
      label: `${workspaceId}/${sessionId}`,
      key: sessionKey(workspaceId, sessionId),
      identity: { workspaceId, id: sessionId },
      expectedVersion,
    });
  }

  async deleteSession(workspaceId: string, sessionId: string, expectedVersion: number): Promise<void> {
    await this.deleteAtVersion({
      kind: 'session',
      label: `${workspaceId}/${sessionId}`,
      key: sessionKey(workspaceId, sessionId),
      identity: { workspaceId, id: sessionId },
      expectedVersion,
    });
  }

  // ---- helpers --------------------------------------------------------------------------

  private queryCommandItems(workspaceId: string, keysOnly = false): Promise<Item[]> {
    return this.queryChildItems(workspaceId, COMMAND_SK_PREFIX, keysOnly);
  }

  /** Items of one workspace's partition whose sort key starts with `prefix` (commands, operations). */
  private queryChildItems(workspaceId: string, prefix: string, keysOnly = false): Promise<Item[]> {
    const b = new ExpressionBuilder();
    const { pk } = workspaceKey(workspaceId);
    return this.queryAll(
      {
        KeyConditionExpression: `${b.name(TABLE_SHAPE.partitionKey)} = ${b.value(pk)} AND begins_with(${b.name(TABLE_SHAPE.sortKey)}, ${b.value(prefix)})`,
        ...(keysOnly
          ? { ProjectionExpression: `${b.name(TABLE_SHAPE.partitionKey)}, ${b.name(TABLE_SHAPE.sortKey)}` }
          : {}),
        ExpressionAttributeNames: b.names,
        ExpressionAttributeValues: b.values,
        ConsistentRead: true,
      },
      `list ${CHILD_KINDS[prefix] ?? 'items'} of workspace '${workspaceId}'`,
    );
  }

  /** The workspace's commands, operations, sessions and webhook events (every item of its partition but META). */
  private async deleteCommandsOf(workspaceId: string): Promise<void> {
    const keys = [
      ...(await this.queryCommandItems(workspaceId, true)),
      ...(await this.queryChildItems(workspaceId, OPERATION_SK_PREFIX, true)),
      ...(await this.queryChildItems(workspaceId, SESSION_SK_PREFIX, true)),
      ...(await this.queryChildItems(workspaceId, EVENT_SK_PREFIX, true)),
    ];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < keys.length) {
        const item = keys[next++] as Key;
        await this.deleteItem({ pk: item.pk, sk: item.sk }, `delete commands of workspace '${workspaceId}'`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.deleteConcurrency, keys.length) }, worker));
  }

  private async deleteIdempotencyKeyIfHeld(key: string, workspaceId: string): Promise<void> {
    try {
      await this.doc.send(
        new DeleteCommand({
          TableName: this.tableName,
          Key: idempotencyKey(key),
          ConditionExpression: '#ws = :ws',
          ExpressionAttributeNames: { '#ws': 'workspaceId' },
          ExpressionAttributeValues: { ':ws': workspaceId },
        }),
      );
    } catch (err) {
      // Held by another workspace (or already gone): not ours to remove.
      if (!isConditionFailed(err)) throw storeUnavailable('delete idempotency key', err);
    }
  }
}
