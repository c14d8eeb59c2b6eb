import type { QueryCommandInput } from '@aws-sdk/lib-dynamodb';
import type { WarmTaskRecord, WarmTaskStore } from '../backends/ecs/warm-task-store.js';
import type { Patch } from '../contract/state.js';
import {
  GSI_WARM,
  WARM_TASK_SK_PREFIX,
  itemToRecord,
  listSortKey,
  warmPoolPartition,
  warmTaskKey,
  warmTaskToItem,
} from './dynamo-items.js';
import { DynamoTable } from './dynamo-table.js';
import { TABLE_SHAPE } from './table.js';
import { ExpressionBuilder } from './update-expression.js';

/**
 * The Fargate warm pool's records (the port shared/backends/ecs/warm-task-store.ts) in the same
 * DynamoDB table as the core StateStore: pk=WARM#<cacheKey>, sk=TASK#<id>, gsi1 `WARM` (see
 * dynamo-items.ts). Conditional writes only, like every store over the table.
 */
export class DynamoWarmTaskStore extends DynamoTable implements WarmTaskStore {
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
}
