import { ConflictError } from '../contract/errors.js';
import type { Patch } from '../contract/state.js';
import type { WebhookEventRecord, WebhookEventStore } from '../contract/webhooks.js';
import {
  EVENT_SK_PREFIX,
  GSI_PENDING_EVENTS,
  eventKey,
  eventToItem,
  itemToRecord,
  pendingEventSortKey,
  workspaceKey,
} from './dynamo-items.js';
import { DynamoTable } from './dynamo-table.js';
import { TABLE_SHAPE } from './table.js';
import { ExpressionBuilder } from './update-expression.js';

/**
 * Webhook events (the port shared/contract/webhooks.ts) in the state store's table: items of their
 * workspace's partition (`WS#<id>/EVT#<eid>`), and in gsi1 `HOOK` — sorted by when they are due —
 * only while a delivery is pending, so finding due work never reads delivered events.
 */
export class DynamoEventStore extends DynamoTable implements WebhookEventStore {
  async createEvent(record: WebhookEventRecord): Promise<boolean> {
    try {
      await this.putNew(eventToItem(record), `webhook event '${record.workspaceId}/${record.id}'`);
      return true;
    } catch (error) {
      if (error instanceof ConflictError) return false;
      throw error;
    }
  }

  async getEvent(workspaceId: string, id: string): Promise<WebhookEventRecord | undefined> {
    return this.getRecord<WebhookEventRecord>(eventKey(workspaceId, id), `webhook event '${workspaceId}/${id}'`);
  }

  async listEvents(workspaceId: string): Promise<WebhookEventRecord[]> {
    const b = new ExpressionBuilder();
    const items = await this.queryAll(
      {
        KeyConditionExpression: `${b.name(TABLE_SHAPE.partitionKey)} = ${b.value(workspaceKey(workspaceId).pk)} AND begins_with(${b.name(TABLE_SHAPE.sortKey)}, ${b.value(EVENT_SK_PREFIX)})`,
        ExpressionAttributeNames: b.names,
        ExpressionAttributeValues: b.values,
        ConsistentRead: true,
      },
      `list webhook events of workspace '${workspaceId}'`,
    );
    // The partition sorts by id (a hash); callers want the order they happened in.
    return items
      .map((item) => itemToRecord<WebhookEventRecord>(item))
      .sort((x, y) => x.createdAt.localeCompare(y.createdAt) || x.id.localeCompare(y.id));
  }

  async listDueEvents(at: string, limit: number): Promise<WebhookEventRecord[]> {
    const b = new ExpressionBuilder();
    const out: WebhookEventRecord[] = [];
    // gsi1 is eventually consistent on AWS: a listed event is re-read (and claimed) before any attempt.
    const items = await this.queryAll(
      {
        IndexName: TABLE_SHAPE.gsi1.indexName,
        // '~' sorts after every character of an id: every event due at `at` itself is included.
        KeyConditionExpression: `${b.name(TABLE_SHAPE.gsi1.partitionKey)} = ${b.value(GSI_PENDING_EVENTS)} AND ${b.name(TABLE_SHAPE.gsi1.sortKey)} <= ${b.value(`${at}#~`)}`,
        ExpressionAttributeNames: b.names,
        ExpressionAttributeValues: b.values,
      },
      'list due webhook events',
    );
    for (const item of items.slice(0, limit)) out.push(itemToRecord<WebhookEventRecord>(item));
    return out;
  }

  async updateEvent(
    workspaceId: string,
    id: string,
    expectedVersion: number,
    patch: Patch<WebhookEventRecord>,
  ): Promise<WebhookEventRecord> {
    return this.conditionalUpdate<WebhookEventRecord>(patch, {
      kind: 'webhook event',
      label: `${workspaceId}/${id}`,
      key: eventKey(workspaceId, id),
      identity: { workspaceId, id },
      expectedVersion,
      // The pending index follows dueAt: set, it moves the event; removed, the event leaves the index.
      derive: (plan) => {
        if (typeof plan.set.dueAt === 'string') {
          plan.set[TABLE_SHAPE.gsi1.partitionKey] = GSI_PENDING_EVENTS;
          plan.set[TABLE_SHAPE.gsi1.sortKey] = pendingEventSortKey(plan.set.dueAt, workspaceId, id);
        }
        if (plan.remove.includes('dueAt')) plan.remove.push(TABLE_SHAPE.gsi1.partitionKey, TABLE_SHAPE.gsi1.sortKey);
      },
    });
  }
}
