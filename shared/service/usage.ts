import { ConflictError } from '../contract/errors.js';
import type { UsageView } from '../contract/views.js';
import type { ServiceDeps } from './deps.js';
import type { WorkspaceRecords } from './records.js';

/**
 * GET /workspaces/{id}/usage: what a ready workspace uses now, as its backend measures it (never from
 * anything inside the workspace: see WorkspaceHandle.usage). Read-only, so it needs no gate; a
 * workspace that is not ready has no compute to measure, or one being rewritten (409).
 */
export async function workspaceUsage(deps: ServiceDeps, records: WorkspaceRecords, id: string): Promise<UsageView> {
  const ws = await records.get(id);
  if (ws.status !== 'ready' || ws.backend === undefined)
    throw new ConflictError(`workspace '${id}' is ${ws.status}; its usage is measured once it is ready`, {
      details: { status: ws.status },
    });
  const at = (deps.now ?? (() => new Date()))().toISOString();
  const usage = await deps.backend.open(ws.backend, ws.plan).usage();
  return { workspaceId: ws.id, at, ...usage };
}
