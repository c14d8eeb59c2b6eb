import type { Patch } from './state.js';

/**
 * Lifecycle webhooks (shared/service/webhooks/): what the provider tells a controller without being
 * asked. Each event is a record of its workspace (`WS#<id>/EVT#<eid>`) holding the exact body sent and
 * one delivery per hook it goes to, with every attempt; delivered at least once, retried with backoff.
 */

export const WEBHOOK_EVENT_TYPES = [
  'workspace.ready',
  'workspace.failed',
  'workspace.reset',
  'workspace.deleted',
  'workspace.expiring',
  'command.finished',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** A hook given with `POST /workspaces {"webhook"}`: kept on the workspace record; the secret is never answered. */
export interface WorkspaceWebhook {
  url: string;
  events: WebhookEventType[];
  secret: string;
}

export interface DeliveryAttempt {
  at: string;
  /** The receiver's HTTP status, when it answered. 2xx = delivered. */
  status?: number;
  /** Why the attempt failed without an answer (refused, timed out, …) or with a non-2xx one. */
  error?: string;
  durationMs: number;
}

export interface WebhookDelivery {
  /** Which hook: `config:<n>` (the n-th configured one) or `workspace` (the record's own). */
  hook: string;
  url: string;
  state: 'pending' | 'delivered' | 'failed';
  attempts: DeliveryAttempt[];
  /** While pending: when the next attempt is due (or, while one runs, when its claim lapses). */
  nextAttemptAt?: string;
}

export interface WebhookEventRecord {
  workspaceId: string;
  /** Deterministic per occurrence (see webhooks/ids), so emitting the same occurrence twice is one event. */
  id: string;
  version: number;
  type: WebhookEventType;
  createdAt: string;
  /** The JSON body every attempt sends, byte for byte. */
  body: string;
  deliveries: WebhookDelivery[];
  /** The earliest `nextAttemptAt` of a pending delivery; absent once none is pending. */
  dueAt?: string;
}

/** The events' records, in the state store's table (shared/state/dynamo-events.ts). */
export interface WebhookEventStore {
  /** False when an event with this id exists already. */
  createEvent(record: WebhookEventRecord): Promise<boolean>;
  getEvent(workspaceId: string, id: string): Promise<WebhookEventRecord | undefined>;
  /** One workspace's events, oldest first. */
  listEvents(workspaceId: string): Promise<WebhookEventRecord[]>;
  /** Events of any workspace with a delivery due at or before `at`, most overdue first, at most `limit`. */
  listDueEvents(at: string, limit: number): Promise<WebhookEventRecord[]>;
  /** Conditional on the version (ConflictError otherwise); answers the new record. */
  updateEvent(
    workspaceId: string,
    id: string,
    expectedVersion: number,
    patch: Patch<WebhookEventRecord>,
  ): Promise<WebhookEventRecord>;
}
