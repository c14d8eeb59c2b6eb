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
import { isConditionFailed, storeUnavailable } from './dynamo-errors.js';
import { itemToRecord, type Item, type Key } from './dynamo-items.js';
import { TABLE_SHAPE } from './table.js';
import { ExpressionBuilder, planPatch, updateExpression, type PatchPlan } from './update-expression.js';

export interface DynamoTableOptions {
  /** `Limit` per Query page (tests use a small one to prove paging). Default: none (1 MB pages). */
  pageSize?: number;
}

/** What a conditional update targets; used to build the write and to explain a lost condition. */
export interface UpdateTarget {
  kind: 'workspace' | 'command' | 'operation' | 'cache entry' | 'warm task' | 'snapshot' | 'session' | 'webhook event';
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
 * The single table's building blocks, shared by the stores over it (DynamoStateStore: the core
 * StateStore; DynamoWarmTaskStore: the Fargate warm pool's records). A lost condition becomes
 * ConflictError (or NotFoundError when the item is gone) right here; every other SDK or network
 * failure becomes BackendUnavailableError. Single-item reads are strongly consistent.
 */
export abstract class DynamoTable {
  private readonly pageSize: number | undefined;

  constructor(
    protected readonly doc: DynamoDBDocumentClient,
    protected readonly tableName: string,
    options: DynamoTableOptions = {},
  ) {
    this.pageSize = options.pageSize;
  }

  /** Put that must not overwrite: ConflictError when the item exists. */
  protected async putNew(item: Item, what: string): Promise<void> {
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
  protected async deleteAtVersion(target: UpdateTarget): Promise<void> {
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
  protected async conditionalUpdate<T>(patch: object, target: UpdateTarget): Promise<T> {
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

  protected async getRecord<T>(key: Key, what: string): Promise<T | undefined> {
    const item = await this.getItem(key, `read ${what}`);
    return item === undefined ? undefined : itemToRecord<T>(item);
  }

  protected async getItem(key: Key, operation: string): Promise<Item | undefined> {
    try {
      const out = await this.doc.send(new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }));
      return out.Item;
    } catch (err) {
      throw storeUnavailable(operation, err);
    }
  }

  /** Every page of a Query (follows LastEvaluatedKey). */
  protected async queryAll(input: Omit<QueryCommandInput, 'TableName'>, operation: string): Promise<Item[]> {
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

  /** Unconditional DeleteItem: used only for removals where a missing item is already the goal. */
  protected async deleteItem(key: Key, operation: string): Promise<void> {
    try {
      await this.doc.send(new DeleteCommand({ TableName: this.tableName, Key: key }));
    } catch (err) {
      throw storeUnavailable(operation, err);
    }
  }
}
