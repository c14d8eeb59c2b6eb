import { z } from 'zod';
import type { CommandEvent, OperationEvent, WebhookEventView, WorkspaceEvent } from '../contract/views.js';
import { WEBHOOK_EVENT_TYPES } from '../contract/webhooks.js';
import type { AllTrue, Equal } from './same-type.js';
import { commandView, operationView, sessionView, snapshotView, workspaceView } from './schemas.js';

/**
 * Response shapes the route table adds on top of shared/api/schemas.ts: list wrappers, the health
 * answer and the SSE event payloads (mirroring WorkspaceEvent / CommandEvent in
 * shared/contract/views.ts). Used for /openapi.json and as the client's types.
 */

export const workspaceList = z.object({ workspaces: z.array(workspaceView) });
export const commandList = z.object({ commands: z.array(commandView) });
export const operationList = z.object({ operations: z.array(operationView) });
export const snapshotList = z.object({ snapshots: z.array(snapshotView) });
export const sessionList = z.object({ sessions: z.array(sessionView) });
export const healthBody = z.object({ ok: z.literal(true) });

/** One lifecycle event of a workspace with its deliveries (GET /workspaces/{id}/events, Accept: application/json). */
const webhookEventView = z.object({
  id: z.string(),
  workspaceId: z.string(),
  type: z.enum(WEBHOOK_EVENT_TYPES),
  createdAt: z.string(),
  /** The body every attempt POSTs: `{id, type, at, workspaceId, data}`. */
  payload: z.record(z.string(), z.unknown()),
  deliveries: z.array(
    z.object({
      /** `config:<n>` (the n-th configured hook) or `workspace` (the one given at create). */
      hook: z.string(),
      url: z.string(),
      state: z.enum(['pending', 'delivered', 'failed']),
      attempts: z.array(
        z.object({
          at: z.string(),
          status: z.number().int().optional(),
          error: z.string().optional(),
          durationMs: z.number(),
        }),
      ),
      nextAttemptAt: z.string().optional(),
    }),
  ),
});
export const webhookEventList = z.object({ events: z.array(webhookEventView) });

/** SSE `event:` names are the `type` field; `data:` is the whole event as JSON. */
export const workspaceEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('status'), status: workspaceView.shape.status, workspace: workspaceView }),
  z.object({ type: z.literal('step'), at: z.string(), step: z.string(), message: z.string() }),
  z.object({
    type: z.literal('output'),
    commandId: z.string(),
    stream: z.enum(['stdout', 'stderr']),
    data: z.string(),
  }),
]);

export const commandEventSchema = z.discriminatedUnion('type', [
  /** `offset`: byte offset of `data` in its stream. */
  z.object({ type: z.literal('output'), stream: z.enum(['stdout', 'stderr']), data: z.string(), offset: z.number() }),
  z.object({ type: z.literal('end'), command: commandView }),
]);

export const operationEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('step'), at: z.string(), step: z.string(), message: z.string() }),
  z.object({ type: z.literal('end'), operation: operationView }),
]);

export type WorkspaceList = z.infer<typeof workspaceList>;
export type CommandList = z.infer<typeof commandList>;
export type SnapshotList = z.infer<typeof snapshotList>;
export type SessionList = z.infer<typeof sessionList>;
export type WebhookEventList = z.infer<typeof webhookEventList>;

// biome-ignore lint/correctness/noUnusedVariables: a compile-time check, never referenced
type EventSchemasMatchContract = AllTrue<
  [
    Equal<z.output<typeof workspaceEventSchema>, WorkspaceEvent>,
    Equal<z.output<typeof commandEventSchema>, CommandEvent>,
    Equal<z.output<typeof operationEventSchema>, OperationEvent>,
    Equal<z.output<typeof webhookEventView>, WebhookEventView>,
  ]
>;
