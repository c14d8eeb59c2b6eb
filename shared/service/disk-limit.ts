import { ConflictError } from '../contract/errors.js';
import type { WorkspaceRecord } from '../contract/workspace.js';
import { errorFields } from '../log.js';
import type { ServiceDeps } from './deps.js';
import { hasForeignRef, type WorkspaceRecords } from './records.js';

/**
 * The disk limit of a workspace (plan.resources.diskMb), measured and acted on: the janitor asks the
 * backend how much the workspace's writable content uses (as the provider, so a directory the agent
 * made unreadable still counts); over the limit, every process of the workspace is killed (nothing
 * keeps writing) and commands are refused with 409 until a reset returns it to its baseline, or a
 * delete. Not a quota — between two sweeps a workspace can write past it — but a runaway writer is
 * stopped within one janitor interval instead of filling the host.
 */

const MIB = 1024 * 1024;

function diskWarning(exceeded: NonNullable<WorkspaceRecord['diskExceeded']>): string {
  return `disk limit exceeded: ${Math.ceil(exceeded.usedBytes / MIB)} MiB used of ${exceeded.limitBytes / MIB} MiB; processes killed, commands refused until a reset`;
}

/** Throws the 409 a command gets on a workspace over its disk limit. */
export function refuseIfOverDisk(ws: WorkspaceRecord): void {
  if (ws.diskExceeded === undefined) return;
  throw new ConflictError(
    `workspace '${ws.id}' is over its disk limit (${diskWarning(ws.diskExceeded)}); reset or delete it`,
    {
      details: { status: ws.status, diskExceeded: ws.diskExceeded },
    },
  );
}

/** The patch a successful reset applies: the limit no longer exceeded, its warning gone. */
export function clearDiskExceeded(ws: WorkspaceRecord): Partial<WorkspaceRecord> {
  if (ws.diskExceeded === undefined) return {};
  const gone = diskWarning(ws.diskExceeded);
  return { diskExceeded: undefined, warnings: ws.warnings.filter((w) => w !== gone) };
}

/** One janitor pass over this instance's ready workspaces; returns the ids newly found over their limit. */
export async function enforceDiskLimits(deps: ServiceDeps, records: WorkspaceRecords, now: Date): Promise<string[]> {
  const { backend } = deps;
  const over: string[] = [];
  const ready = await deps.state.listWorkspaces({ owner: deps.instanceId, status: ['ready'] });
  for (const ws of ready) {
    const limitMb = ws.plan.resources.diskMb;
    if (
      ws.status !== 'ready' ||
      ws.owner !== deps.instanceId ||
      ws.backend === undefined ||
      limitMb === undefined ||
      ws.diskExceeded
    )
      continue;
    if (hasForeignRef(backend, ws)) continue; // never measured or killed through another workspace's ref
    const { files, commands } = backend.open(ws.backend, ws.plan);
    if (!files.usageBytes) return over; // the backend cannot measure what a workspace uses
    try {
      const usedBytes = await files.usageBytes();
      const limitBytes = limitMb * MIB;
      if (usedBytes <= limitBytes) continue;
      await commands.killAll();
      const exceeded = { usedBytes, limitBytes, at: now.toISOString() };
      await records.update(ws.id, (r) => ({
        diskExceeded: exceeded,
        warnings: [...r.warnings, diskWarning(exceeded)],
      }));
      over.push(ws.id);
      deps.log.warn('workspace over its disk limit: processes killed, commands refused until a reset', {
        workspaceId: ws.id,
        usedBytes,
        limitBytes,
      });
    } catch (error) {
      deps.log.warn('disk usage of a workspace could not be measured', { workspaceId: ws.id, ...errorFields(error) });
    }
  }
  return over;
}
