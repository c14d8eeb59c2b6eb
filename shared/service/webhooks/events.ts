import { createHash } from 'node:crypto';
import type { WebhookEventView } from '../../contract/views.js';
import type { WebhookEventRecord, WebhookEventType } from '../../contract/webhooks.js';
import type { CommandRecord, WorkspaceRecord, WorkspaceStatus } from '../../contract/workspace.js';
import { errorFields } from '../../log.js';
import type { ServiceDeps } from '../deps.js';
import { workspaceView } from '../views.js';
import type { WebhookDeliverer } from './deliverer.js';
import { hooksOf, wants } from './hooks.js';

/**
 * Lifecycle events (docs/webhooks.md): recorded as items of their workspace, then handed to the
 * deliverer. An event's id is derived from what happened (workspace, type, occurrence), so recording
 * the same occurrence twice — a retried phase, the janitor repairing after a crash — is one event
 * (`createEvent` is create-if-absent), and a receiver de-duplicates attempts on that id.
 */
export class WebhookEvents {
  constructor(
    private readonly deps: ServiceDeps,
    private readonly deliverer: WebhookDeliverer,
  ) {}

  /** `evt-` + 32 hex of sha256(workspace, type, occurrence). */
  static id(workspaceId: string, type: WebhookEventType, occurrence: string): string {
    return `evt-${createHash('sha256').update(`${workspaceId}\n${type}\n${occurrence}`).digest('hex').slice(0, 32)}`;
  }

  /** The event a status change is, if any: ready after provisioning, ready after a reset, failed, deleted. */
  static forTransition(from: WorkspaceStatus, to: WorkspaceStatus): WebhookEventType | undefined {
    if (to === 'ready')
      return from === 'provisioning' ? 'workspace.ready' : from === 'resetting' ? 'workspace.reset' : undefined;
    if (to === 'failed') return 'workspace.failed';
    if (to === 'deleted') return 'workspace.deleted';
    return undefined;
  }

  /**
   * What a transition of `ws` to `to` (the write making it version `ws.version + 1`) owes: written on
   * the record in the same write (`lastEvent`), so the janitor can repair an event a crash lost.
   * Undefined when no hook of the workspace wants it.
   */
  owed(ws: WorkspaceRecord, to: WorkspaceStatus): WorkspaceRecord['lastEvent'] {
    const type = WebhookEvents.forTransition(ws.status, to);
    if (type === undefined || !wants(hooksOf(this.deps.config, this.deps.secrets, ws), type)) return undefined;
    return { id: WebhookEvents.id(ws.id, type, `v${ws.version + 1}`), type };
  }

  /** After a transition that owed `after.lastEvent`: record it (never throws: the transition stands). */
  async transitioned(after: WorkspaceRecord): Promise<void> {
    if (after.lastEvent === undefined) return;
    await this.emit(after, after.lastEvent.type, after.lastEvent.id, { workspace: workspaceView(after) });
  }

  /** True when a hook of `ws` wants `command.finished` (the local server then watches its commands end). */
  wantsCommandEnds(ws: WorkspaceRecord): boolean {
    return wants(hooksOf(this.deps.config, this.deps.secrets, ws), 'command.finished');
  }

  /** A command of `ws` ended (its end state just written): `command.finished`, if a hook wants it. */
  async commandFinished(ws: WorkspaceRecord, command: CommandRecord): Promise<void> {
    if (command.internal || !wants(hooksOf(this.deps.config, this.deps.secrets, ws), 'command.finished')) return;
    await this.emit(ws, 'command.finished', WebhookEvents.id(ws.id, 'command.finished', command.id), {
      command: {
        id: command.id,
        state: command.state,
        exitCode: command.exitCode,
        signal: command.signal,
        ...(command.reason !== undefined ? { reason: command.reason } : {}),
        startedAt: command.startedAt,
        ...(command.endedAt !== undefined ? { endedAt: command.endedAt } : {}),
        ...(command.durationMs !== undefined ? { durationMs: command.durationMs } : {}),
        stdoutBytes: command.stdout.bytes,
        stderrBytes: command.stderr.bytes,
      },
    });
  }

  /** The janitor will tear `ws` down at `deadline` (its TTL, or its idle timeout as things stand). */
  async expiring(ws: WorkspaceRecord, reason: 'ttl' | 'idle', deadline: Date): Promise<void> {
    if (!wants(hooksOf(this.deps.config, this.deps.secrets, ws), 'workspace.expiring')) return;
    const at = deadline.toISOString();
    await this.emit(ws, 'workspace.expiring', WebhookEvents.id(ws.id, 'workspace.expiring', `${reason}@${at}`), {
      workspace: workspaceView(ws),
      reason,
      at,
    });
  }

  /** True when the event is recorded (the janitor's repair asks before emitting again). */
  async exists(workspaceId: string, id: string): Promise<boolean> {
    return (await this.deps.events.getEvent(workspaceId, id)) !== undefined;
  }

  async list(workspaceId: string): Promise<WebhookEventView[]> {
    return (await this.deps.events.listEvents(workspaceId)).map(eventView);
  }

  /** Record the event (one delivery per hook that wants it) and hand it to the deliverer; failures are logged. */
  private async emit(
    ws: WorkspaceRecord,
    type: WebhookEventType,
    id: string,
    data: Record<string, unknown>,
  ): Promise<void> {
    const hooks = hooksOf(this.deps.config, this.deps.secrets, ws).filter((h) => h.events.includes(type));
    if (hooks.length === 0) return;
    const createdAt = this.now().toISOString();
    const record: WebhookEventRecord = {
      workspaceId: ws.id,
      id,
      version: 1,
      type,
      createdAt,
      body: JSON.stringify({ id, type, at: createdAt, workspaceId: ws.id, data }),
      deliveries: hooks.map((h) => ({
        hook: h.id,
        url: h.url,
        state: 'pending',
        attempts: [],
        nextAttemptAt: createdAt,
      })),
      dueAt: createdAt,
    };
    try {
      if (await this.deps.events.createEvent(record)) await this.deliverer.kick(record);
    } catch (error) {
      this.deps.log.error('webhook event not recorded', { workspaceId: ws.id, event: type, ...errorFields(error) });
    }
  }

  private now(): Date {
    return (this.deps.now ?? (() => new Date()))();
  }
}

function eventView(r: WebhookEventRecord): WebhookEventView {
  return {
    id: r.id,
    workspaceId: r.workspaceId,
    type: r.type,
    createdAt: r.createdAt,
    payload: JSON.parse(r.body) as Record<string, unknown>,
    deliveries: r.deliveries.map((d) => ({
      hook: d.hook,
      url: d.url,
      state: d.state,
      attempts: d.attempts,
      ...(d.nextAttemptAt !== undefined && d.state === 'pending' ? { nextAttemptAt: d.nextAttemptAt } : {}),
    })),
  };
}
