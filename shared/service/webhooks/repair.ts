import type { CommandRecord, WorkspaceRecord } from '../../contract/workspace.js';
import type { WorkspaceService } from '../types.js';
import { WebhookEvents } from './events.js';

/** How far back the janitor looks for events a crash (or another writer) left unrecorded. */
const REPAIR_WINDOW_MS = 60 * 60_000;

/**
 * What makes delivery at-least-once across crashes and processes without a background (Lambda):
 * run by the janitor over this instance's workspaces. A status change whose event (`lastEvent`, written
 * with the status) is not recorded gets it now; a command of a workspace whose hooks want
 * `command.finished` that is still recorded running is looked at (an end observed is written, and so
 * reported); one that ended recently without its event gets it. Emitting is create-if-absent on a
 * deterministic id, so whatever was recorded already is not sent again.
 */
export async function repairWebhookEvents(
  service: Pick<WorkspaceService, 'getCommand'> & { webhooks: WebhookEvents },
  ws: WorkspaceRecord,
  commands: readonly CommandRecord[],
  now: Date,
): Promise<number> {
  let repaired = 0;
  const recent = (at: string | undefined) => at !== undefined && now.getTime() - Date.parse(at) <= REPAIR_WINDOW_MS;
  if (ws.lastEvent !== undefined && recent(ws.updatedAt) && !(await service.webhooks.exists(ws.id, ws.lastEvent.id))) {
    await service.webhooks.transitioned(ws);
    repaired++;
  }
  if (!service.webhooks.wantsCommandEnds(ws)) return repaired;
  for (const c of commands) {
    if (c.internal) continue;
    if (c.state === 'running') {
      if (ws.status === 'ready')
        await service
          .getCommand(ws.id, c.id, { stdoutOffset: 0, stderrOffset: 0, limit: 0, waitMs: 0 })
          .catch(() => undefined);
    } else if (
      recent(c.endedAt) &&
      !(await service.webhooks.exists(ws.id, WebhookEvents.id(ws.id, 'command.finished', c.id)))
    ) {
      await service.webhooks.commandFinished(ws, c);
      repaired++;
    }
  }
  return repaired;
}
