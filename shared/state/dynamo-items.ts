import type { SessionRecord } from '../contract/session.js';
import type { WarmTaskRecord } from '../backends/ecs/warm-task-store.js';
import type {
  CacheEntryRecord,
  CommandRecord,
  OperationRecord,
  SnapshotRecord,
  WorkspaceRecord,
} from '../contract/workspace.js';
import type { WebhookEventRecord } from '../contract/webhooks.js';
import { TABLE_SHAPE } from './table.js';

/**
 * Item layout of the single table. Records are stored as plain attributes (not a JSON string)
 * next to the key attributes below, so DynamoDB can index and expire them.
 *
 *   workspace    pk=WS#<id>      sk=META        gsi1pk=WS     gsi1sk=<createdAt>#<id>  ttl=expiresAt
 *   command      pk=WS#<id>      sk=CMD#<cid>
 *   operation    pk=WS#<id>      sk=OP#<oid>
 *   session      pk=WS#<id>      sk=SESS#<sid>
 *   webhook event pk=WS#<id>     sk=EVT#<eid>   gsi1pk=HOOK (only while a delivery is pending)  gsi1sk=<dueAt>#<id>#<eid>
 *   idempotency  pk=IDEM#<key>   sk=IDEM        workspaceId, createdAt
 *   cache entry  pk=CACHE#<key>  sk=META        gsi1pk=CACHE  gsi1sk=<createdAt>#<key>
 *   warm task    pk=WARM#<key>   sk=TASK#<id>   gsi1pk=WARM   gsi1sk=<createdAt>#<key>#<id>
 *   snapshot     pk=SNAP#<id>    sk=META        gsi1pk=SNAP   gsi1sk=<createdAt>#<id>
 *
 * Listings query gsi1 by kind (WS, CACHE, WARM, SNAP, HOOK), so no listing sees another kind's items.
 * HOOK is sparse: an event leaves it once no delivery is pending, so the deliverer's query reads only
 * what is due.
 */
export type Key = { pk: string; sk: string };
export type Item = Record<string, unknown>;

export const GSI_WORKSPACES = 'WS';
export const GSI_CACHE = 'CACHE';
export const GSI_WARM = 'WARM';
export const GSI_SNAPSHOTS = 'SNAP';
export const COMMAND_SK_PREFIX = 'CMD#';
export const OPERATION_SK_PREFIX = 'OP#';
export const SESSION_SK_PREFIX = 'SESS#';
export const EVENT_SK_PREFIX = 'EVT#';
export const GSI_PENDING_EVENTS = 'HOOK';
export const WARM_TASK_SK_PREFIX = 'TASK#';

export const workspaceKey = (id: string): Key => ({ pk: `WS#${id}`, sk: 'META' });
export const commandKey = (workspaceId: string, commandId: string): Key => ({
  pk: `WS#${workspaceId}`,
  sk: `${COMMAND_SK_PREFIX}${commandId}`,
});
export const operationKey = (workspaceId: string, operationId: string): Key => ({
  pk: `WS#${workspaceId}`,
  sk: `${OPERATION_SK_PREFIX}${operationId}`,
});
export const sessionKey = (workspaceId: string, sessionId: string): Key => ({
  pk: `WS#${workspaceId}`,
  sk: `${SESSION_SK_PREFIX}${sessionId}`,
});
export const eventKey = (workspaceId: string, eventId: string): Key => ({
  pk: `WS#${workspaceId}`,
  sk: `${EVENT_SK_PREFIX}${eventId}`,
});
export const pendingEventSortKey = (dueAt: string, workspaceId: string, eventId: string): string =>
  `${dueAt}#${workspaceId}#${eventId}`;
export const idempotencyKey = (key: string): Key => ({ pk: `IDEM#${key}`, sk: 'IDEM' });
export const cacheEntryKey = (key: string): Key => ({ pk: `CACHE#${key}`, sk: 'META' });
export const snapshotKey = (id: string): Key => ({ pk: `SNAP#${id}`, sk: 'META' });
export const warmPoolPartition = (cacheKey: string): string => `WARM#${cacheKey}`;
export const warmTaskKey = (cacheKey: string, id: string): Key => ({
  pk: warmPoolPartition(cacheKey),
  sk: `${WARM_TASK_SK_PREFIX}${id}`,
});

/** Attributes the table adds to a record; stripped again when reading. */
const TABLE_ATTRIBUTES = [
  TABLE_SHAPE.partitionKey,
  TABLE_SHAPE.sortKey,
  TABLE_SHAPE.gsi1.partitionKey,
  TABLE_SHAPE.gsi1.sortKey,
  TABLE_SHAPE.ttlAttribute,
] as const;

export const listSortKey = (createdAt: string, id: string): string => `${createdAt}#${id}`;

export function workspaceToItem(record: WorkspaceRecord): Item {
  return {
    ...record,
    ...workspaceKey(record.id),
    [TABLE_SHAPE.gsi1.partitionKey]: GSI_WORKSPACES,
    [TABLE_SHAPE.gsi1.sortKey]: listSortKey(record.createdAt, record.id),
    [TABLE_SHAPE.ttlAttribute]: record.expiresAt,
  };
}

export function commandToItem(record: CommandRecord): Item {
  return { ...record, ...commandKey(record.workspaceId, record.id) };
}

export function operationToItem(record: OperationRecord): Item {
  return { ...record, ...operationKey(record.workspaceId, record.id) };
}

export function sessionToItem(record: SessionRecord): Item {
  return { ...record, ...sessionKey(record.workspaceId, record.id) };
}

export function eventToItem(record: WebhookEventRecord): Item {
  return {
    ...record,
    ...eventKey(record.workspaceId, record.id),
    ...(record.dueAt !== undefined
      ? {
          [TABLE_SHAPE.gsi1.partitionKey]: GSI_PENDING_EVENTS,
          [TABLE_SHAPE.gsi1.sortKey]: pendingEventSortKey(record.dueAt, record.workspaceId, record.id),
        }
      : {}),
  };
}

export function cacheEntryToItem(record: CacheEntryRecord): Item {
  return {
    ...record,
    ...cacheEntryKey(record.key),
    [TABLE_SHAPE.gsi1.partitionKey]: GSI_CACHE,
    [TABLE_SHAPE.gsi1.sortKey]: listSortKey(record.createdAt, record.key),
  };
}

export function snapshotToItem(record: SnapshotRecord): Item {
  return {
    ...record,
    ...snapshotKey(record.id),
    [TABLE_SHAPE.gsi1.partitionKey]: GSI_SNAPSHOTS,
    [TABLE_SHAPE.gsi1.sortKey]: listSortKey(record.createdAt, record.id),
  };
}

export function warmTaskToItem(record: WarmTaskRecord): Item {
  return {
    ...record,
    ...warmTaskKey(record.cacheKey, record.id),
    [TABLE_SHAPE.gsi1.partitionKey]: GSI_WARM,
    [TABLE_SHAPE.gsi1.sortKey]: listSortKey(record.createdAt, `${record.cacheKey}#${record.id}`),
  };
}

/** The stored record without the table's own attributes. */
export function itemToRecord<T>(item: Item): T {
  const record: Item = { ...item };
  for (const name of TABLE_ATTRIBUTES) delete record[name];
  return record as T;
}
