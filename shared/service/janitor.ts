import { errorFields } from '../log.js';
import { evictCache } from './cache-eviction.js';
import type { ServiceDeps } from './deps.js';
import type { DefaultWorkspaceService } from './workspace-service.js';

export interface SweepReport {
  expired: string[];
  idle: string[];
  cacheEvicted: number;
}

/**
 * The periodic janitor: tears down this instance's workspaces whose TTL has passed (`expiresAt`) or
 * that have been idle (no command started, no change to the record) for longer than
 * `workspace.idleTimeoutSeconds`, and applies the cache limits. Only settled workspaces (ready or
 * failed) are touched; another instance's records never are.
 */
export async function sweep(deps: ServiceDeps, service: DefaultWorkspaceService, now = new Date()): Promise<SweepReport> {
  const report: SweepReport = { expired: [], idle: [], cacheEvicted: 0 };
  const idleMs = deps.config.workspace.idleTimeoutSeconds * 1000;
  const mine = await deps.state.listWorkspaces({ owner: deps.instanceId, status: ['ready', 'failed'] });
  for (const ws of mine) {
    if (ws.owner !== deps.instanceId || (ws.status !== 'ready' && ws.status !== 'failed')) continue;
    let why: 'expired' | 'idle' | undefined;
    if (ws.expiresAt !== undefined && ws.expiresAt * 1000 <= now.getTime()) why = 'expired';
    else {
      const commands = await deps.state.listCommands(ws.id);
      const last = Math.max(Date.parse(ws.updatedAt), ...commands.map((c) => Date.parse(c.endedAt ?? c.startedAt)), ...commands.filter((c) => c.state === 'running').map(() => now.getTime()));
      if (now.getTime() - last > idleMs) why = 'idle';
    }
    if (!why) continue;
    try {
      await service.deleteWorkspace(ws.id);
      report[why].push(ws.id);
      deps.log.info(`workspace torn down: ${why}`, { workspaceId: ws.id });
    } catch (error) {
      deps.log.warn('janitor could not tear down a workspace', { workspaceId: ws.id, ...errorFields(error) });
    }
  }
  report.cacheEvicted = (await evictCache(deps, now)).evicted.length;
  if (deps.backend.maintain) {
    const ready = (await deps.state.listCacheEntries()).flatMap((e) => (e.status === 'ready' && e.snapshot && e.backendKind === deps.backend.kind ? [e.snapshot] : []));
    await deps.backend.maintain(ready).catch((error: unknown) => deps.log.warn('backend upkeep failed', errorFields(error)));
  }
  return report;
}
