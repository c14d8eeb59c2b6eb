import {
  DeleteCommand,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
  type QueryCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { ConflictError, NotFoundError } from '../contract/errors.js';
import type { Patch, StateStore, WorkspaceQuery } from '../contract/state.js';
import type { CacheEntryRecord, CommandRecord, WarmTaskRecord, WorkspaceRecord } from '../contract/workspace.js';
import { isConditionFailed, storeUnavailable } from './dynamo-errors.js';
import {
  COMMAND_SK_PREFIX,
  GSI_CACHE,
  GSI_WARM,
  GSI_WORKSPACES,
  WARM_TASK_SK_PREFIX,
  cacheEntryKey,
  cacheEntryToItem,
  commandKey,
  commandToItem,
  idempotencyKey,
  itemToRecord,
  listSortKey,
  warmPoolPartition,
  warmTaskKey,
  warmTaskToItem,
  workspaceKey,
  workspaceToItem,
  type Item,
  type Key,
} from './dynamo-items.js';
import { TABLE_SHAPE } from './table.js';
import { ExpressionBuilder, planPatch, updateExpression, type PatchPlan } from './update-expression.js';

export interface DynamoStateStoreOptions {
  /** `Limit` per Query page (tests use a small one to prove paging). Default: none (1 MB pages). */
  pageSize?: number;
  /** Parallel DeleteItem calls when removing a workspace's commands. Default 16. */
  deleteConcurrency?: number;
}

/** What a conditional update targets; used to build the write and to explain a lost condition. */
interface UpdateTarget {
  kind: 'workspace' | 'command' | 'cache entry' | 'warm task';
  label: string;
  key: Key;
  /** Fields that name the record and may not change. */
  identity: Record<string, string>;
  expectedVersion: number;
  expectedStatus?: readonly string[];
  /** Attributes the table derives from record fields (ttl, gsi1sk), kept in step with the patch. */
  derive?: (plan: PatchPlan) => void;
}

/**
 * StateStore on the DynamoDB protocol (AWS, LocalStack, DynamoDB Local, embedded dynalite).
 * Every write is conditional (no transactions: dynalite has none). A lost condition becomes
 * ConflictError (or NotFoundError when the item is gone) right here; every other SDK or network
 * failure becomes BackendUnavailableError. Reads of single items are strongly consistent; lists
 * of workspaces and cache entries go through gsi1 and are eventually consistent on AWS.
 */
export class DynamoStateStore implements StateStore {
  private readonly pageSize: number | undefined;
  private readonly deleteConcurrency: number;

  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly tableName: string,
    options: DynamoStateStoreOptions = {},
  ) {
    this.pageSize = options.pageSize;
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

  // ---- warm-pool tasks --------------------------------------------------------------------

  async putWarmTask(record: WarmTaskRecord): Promise<void> {
    await this.putNew(warmTaskToItem(record), `warm task '${record.cacheKey}/${record.id}'`);
  }

  async getWarmTask(cacheKey: string, id: string): Promise<WarmTaskRecord | undefined> {
    return this.getRecord<WarmTaskRecord>(warmTaskKey(cacheKey, id), `warm task '${cacheKey}/${id}'`);
  }

  /** One pool: a strongly consistent Query of its partition. All pools: gsi1 `WARM`. Oldest first. */
  async listWarmTasks(cacheKey?: string): Promise<WarmTaskRecord[]> {
    const b = new ExpressionBuilder();
    const input: Omit<QueryCommandInput, 'TableName'> =
      cacheKey === undefined
        ? {
            IndexName: TABLE_SHAPE.gsi1.indexName,
            KeyConditionExpression: `${b.name(TABLE_SHAPE.gsi1.partitionKey)} = ${b.value(GSI_WARM)}`,
          }
        : {
            KeyConditionExpression: `${b.name(TABLE_SHAPE.partitionKey)} = ${b.value(warmPoolPartition(cacheKey))} AND begins_with(${b.name(TABLE_SHAPE.sortKey)}, ${b.value(WARM_TASK_SK_PREFIX)})`,
            ConsistentRead: true,
          };
    const items = await this.queryAll(
      { ...input, ExpressionAttributeNames: b.names, ExpressionAttributeValues: b.values },
      cacheKey === undefined ? 'list warm tasks' : `list warm tasks of '${cacheKey}'`,
    );
    // The partition sorts by id (random); callers want launch order.
    return items
      .map((item) => itemToRecord<WarmTaskRecord>(item))
      .sort(
        (a, b) =>
          a.createdAt.localeCompare(b.createdAt) || a.cacheKey.localeCompare(b.cacheKey) || a.id.localeCompare(b.id),
      );
  }

  async updateWarmTask(
    cacheKey: string,
    id: string,
    expectedVersion: number,
    patch: Patch<WarmTaskRecord>,
    expectedStatus?: WarmTaskRecord['status'][],
  ): Promise<WarmTaskRecord> {
    return this.conditionalUpdate<WarmTaskRecord>(patch, {
      kind: 'warm task',
      label: `${cacheKey}/${id}`,
      key: warmTaskKey(cacheKey, id),
      identity: { cacheKey, id },
      expectedVersion,
      ...(expectedStatus !== undefined ? { expectedStatus } : {}),
      derive: (plan) => {
        if (typeof plan.set.createdAt === 'string')
          plan.set[TABLE_SHAPE.gsi1.sortKey] = listSortKey(plan.set.createdAt, `${cacheKey}#${id}`);
      },
    });
  }

  async deleteWarmTask(cacheKey: string, id: string, expectedVersion?: number): Promise<void> {
    const label = `${cacheKey}/${id}`;
    if (expectedVersion === undefined) {
      await this.deleteItem(warmTaskKey(cacheKey, id), `delete warm task '${label}'`);
      return;
    }
    await this.deleteAtVersion({
      kind: 'warm task',
      label,
      key: warmTaskKey(cacheKey, id),
      identity: { cacheKey, id },
      expectedVersion,
    });
  }

  // ---- building blocks --------------------------------------------------------------------

  /** Put that must not overwrite: ConflictError when the item exists. */
  private async putNew(item: Item, what: string): Promise<void> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: item,
          ConditionExpression: 'attribute_not_exists(#pk)',
          ExpressionAttributeNames: { '#pk': TABLE_SHAPE.partitionKey },
        }),
      );
    } catch (err) {
      if (isConditionFailed(err)) throw new ConflictError(`${what} already exists`, { cause: err });
      throw storeUnavailable(`create ${what}`, err);
    }
  }

  /** DeleteItem iff the item exists at `expectedVersion`: NotFoundError if gone, ConflictError if changed. */
  private async deleteAtVersion(target: UpdateTarget): Promise<void> {
    try {
      await this.doc.send(
        new DeleteCommand({
          TableName: this.tableName,
          Key: target.key,
          ConditionExpression: 'attribute_exists(#pk) AND #version = :expected',
          ExpressionAttributeNames: { '#pk': TABLE_SHAPE.partitionKey, '#version': 'version' },
          ExpressionAttributeValues: { ':expected': target.expectedVersion },
        }),
      );
    } catch (err) {
      if (!isConditionFailed(err)) throw storeUnavailable(`delete ${target.kind} '${target.label}'`, err);
      throw await this.explainLostCondition(target, err);
    }
  }

  /**
   * UpdateItem conditioned on existence, `version = expectedVersion` and (optionally) the status.
   * Sets version to expectedVersion + 1 and returns the whole new record.
   */
  private async conditionalUpdate<T>(patch: object, target: UpdateTarget): Promise<T> {
    const plan = planPatch(patch, target.identity);
    target.derive?.(plan);
    plan.set.version = target.expectedVersion + 1;

    const b = new ExpressionBuilder();
    const update = updateExpression(b, plan);
    const conditions = [
      `attribute_exists(${b.name(TABLE_SHAPE.partitionKey)})`,
      `${b.name('version')} = ${b.value(target.expectedVersion)}`,
    ];
    if (target.expectedStatus !== undefined) {
      // No allowed status can never match (and `IN ()` is not valid syntax): explain without writing.
      if (target.expectedStatus.length === 0) throw await this.explainLostCondition(target, undefined);
      conditions.push(`${b.name('status')} IN (${target.expectedStatus.map((s) => b.value(s)).join(', ')})`);
    }
    try {
      const out = await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: target.key,
          UpdateExpression: update,
          ConditionExpression: conditions.join(' AND '),
          ExpressionAttributeNames: b.names,
          ExpressionAttributeValues: b.values,
          ReturnValues: 'ALL_NEW',
        }),
      );
      return itemToRecord<T>(out.Attributes ?? {});
    } catch (err) {
      if (!isConditionFailed(err)) throw storeUnavailable(`update ${target.kind} '${target.label}'`, err);
      throw await this.explainLostCondition(target, err);
    }
  }

  /**
   * dynalite does not return the item with a failed condition, so read it to tell the caller
   * whether it is gone (NotFoundError) or was changed by someone else (ConflictError).
   */
  private async explainLostCondition(target: UpdateTarget, cause: unknown): Promise<Error> {
    const current = await this.getItem(target.key, `read ${target.kind} '${target.label}'`);
    if (current === undefined) return new NotFoundError(target.kind, target.label);
    const storedVersion = current.version;
    const storedStatus = current.status;
    const details = {
      expectedVersion: target.expectedVersion,
      storedVersion,
      ...(target.expectedStatus !== undefined ? { expectedStatus: target.expectedStatus, storedStatus } : {}),
    };
    const statusLost =
      target.expectedStatus !== undefined &&
      storedVersion === target.expectedVersion &&
      !target.expectedStatus.includes(String(storedStatus));
    const message = statusLost
      ? `${target.kind} '${target.label}' is '${String(storedStatus)}', expected one of [${target.expectedStatus?.join(', ')}] (version ${target.expectedVersion})`
      : `${target.kind} '${target.label}' was changed: expected version ${target.expectedVersion}, stored version ${String(storedVersion)}`;
    return new ConflictError(message, { cause, details });
  }

  private async getRecord<T>(key: Key, what: string): Promise<T | undefined> {
    const item = await this.getItem(key, `read ${what}`);
    return item === undefined ? undefined : itemToRecord<T>(item);
  }

  private async getItem(key: Key, operation: string): Promise<Item | undefined> {
    try {
      const out = await this.doc.send(new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }));
      return out.Item;
    } catch (err) {
      throw storeUnavailable(operation, err);
    }
  }

  /** Every page of a Query (follows LastEvaluatedKey). */
  private async queryAll(input: Omit<QueryCommandInput, 'TableName'>, operation: string): Promise<Item[]> {
    const items: Item[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      try {
        const out = await this.doc.send(
          new QueryCommand({
            ...input,
            TableName: this.tableName,
            ...(this.pageSize !== undefined ? { Limit: this.pageSize } : {}),
            ...(startKey !== undefined ? { ExclusiveStartKey: startKey } : {}),
          }),
        );
        items.push(...(out.Items ?? []));
        startKey = out.LastEvaluatedKey;
      } catch (err) {
        throw storeUnavailable(operation, err);
      }
    } while (startKey !== undefined);
    return items;
  }

  private queryCommandItems(workspaceId: string, keysOnly = false): Promise<Item[]> {
    const b = new ExpressionBuilder();
    const { pk } = workspaceKey(workspaceId);
    return this.queryAll(
      {
        KeyConditionExpression: `${b.name(TABLE_SHAPE.partitionKey)} = ${b.value(pk)} AND begins_with(${b.name(TABLE_SHAPE.sortKey)}, ${b.value(COMMAND_SK_PREFIX)})`,
        ...(keysOnly
          ? { ProjectionExpression: `${b.name(TABLE_SHAPE.partitionKey)}, ${b.name(TABLE_SHAPE.sortKey)}` }
          : {}),
        ExpressionAttributeNames: b.names,
        ExpressionAttributeValues: b.values,
        ConsistentRead: true,
      },
      `list commands of workspace '${workspaceId}'`,
    );
  }

  private async deleteCommandsOf(workspaceId: string): Promise<void> {
    const keys = await this.queryCommandItems(workspaceId, true);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < keys.length) {
        const item = keys[next++] as Key;
        await this.deleteItem({ pk: item.pk, sk: item.sk }, `delete commands of workspace '${workspaceId}'`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.deleteConcurrency, keys.length) }, worker));
  }

  /** Unconditional DeleteItem: used only for removals where a missing item is already the goal. */
  private async deleteItem(key: Key, operation: string): Promise<void> {
    try {
      await this.doc.send(new DeleteCommand({ TableName: this.tableName, Key: key }));
    } catch (err) {
      throw storeUnavailable(operation, err);
    }
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
