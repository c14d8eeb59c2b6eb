import { errorFields } from '../log.js';
import { evictCache } from './cache-eviction.js';
import { enforceDiskLimits } from './disk-limit.js';
import { destroyOrphans } from './reconciler.js';
import { repairWebhookEvents } from './webhooks/repair.js';
import type { ServiceDeps } from './deps.js';
import type { DefaultWorkspaceService } from './workspace-service.js';

export interface SweepReport {
  expired: string[];
  idle: string[];
  cacheEvicted: number;
  /** Workspaces failed because the work on them (provisioning, a reset) stopped without an end. */
  abandoned: string[];
  /** Compute destroyed because no live workspace record holds it (with `orphans`). */
  orphansDestroyed: string[];
  /** Workspaces found over their disk limit in this sweep (processes killed, commands refused). */
  overDisk: string[];
  /** Fork points removed: every workspace of the fork made and settled (snapshots.ts sweep). */
  snapshotsRemoved: string[];
  /** Workspaces told `workspace.expiring` (their TTL or idle timeout is within webhookDelivery.expiringBeforeSeconds). */
  expiring: string[];
  /** Webhook events recorded late (a crash between a change and its event; a command end nobody observed). */
  webhookEventsRepaired: number;
  /** Events with a delivery due that this sweep attempted. */
  webhookEventsAttempted: number;
}

export interface SweepOptions {
  /**
   * Where work runs in processes with a hard time limit (a Lambda worker: 15 min), a workspace still
   * 'provisioning' or 'resetting' whose record has not changed for longer than this cannot have anyone
   * working on it any more (the process was killed: out of memory, a crash): it is failed and its
   * compute freed. Unset (the local server): never — its own reconciler handles its crashes on restart.
   */
  abandonedAfterMs?: number;
  /**
   * Destroy backend resources no live record holds (a worker killed between creating compute and its
   * teardown). The local server does this in its start-up reconcile; Lambda has no start-up, so its
   * janitor does it on every sweep.
   */
  orphans?: boolean;
}

/**
 * The periodic janitor: tears down this instance's workspaces whose TTL has passed (`expiresAt`) or
 * that have been idle (no command started, no change to the record) for longer than
 * `workspace.idleTimeoutSeconds`, and applies the cache limits. Only settled workspaces (ready or
 * failed) are touched; another instance's records never are.
 */
export async function sweep(
  deps: ServiceDeps,
  service: DefaultWorkspaceService,
  now = new Date(),
  options: SweepOptions = {},
): Promise<SweepReport> {
  const report: SweepReport = {
    expired: [],
    idle: [],
    cacheEvicted: 0,
    abandoned: [],
    orphansDestroyed: [],
    overDisk: [],
    snapshotsRemoved: [],
    expiring: [],
    webhookEventsRepaired: 0,
    webhookEventsAttempted: 0,
  };
  if (options.abandonedAfterMs !== undefined) {
    report.abandoned = await failAbandoned(deps, service, now, options.abandonedAfterMs);
    // Operations (fetch, reset) whose worker was killed hard: nothing will ever end them.
    const live = await deps.state.listWorkspaces({ owner: deps.instanceId });
    const ops = await service.operations.failAbandoned(
      live.filter((w) => w.owner === deps.instanceId && w.status !== 'deleted').map((w) => w.id),
      `no progress for ${Math.round(options.abandonedAfterMs / 60_000)} min: the process running it was lost`,
      options.abandonedAfterMs,
    );
    report.abandoned.push(...ops);
  }
  if (options.orphans) {
    report.orphansDestroyed = await destroyOrphans(deps).catch((error: unknown) => {
      deps.log.warn('orphan sweep failed', errorFields(error));
      return [];
    });
  }
  const idleMs = deps.config.workspace.idleTimeoutSeconds * 1000;
  const warnMs = deps.config.webhookDelivery.expiringBeforeSeconds * 1000;
  const mine = await deps.state.listWorkspaces({ owner: deps.instanceId, status: ['ready', 'failed'] });
  for (const ws of mine) {
    if (ws.owner !== deps.instanceId || (ws.status !== 'ready' && ws.status !== 'failed')) continue;
    const commands = await deps.state.listCommands(ws.id);
    const last = Math.max(
      Date.parse(ws.updatedAt),
      ...commands.map((c) => Date.parse(c.endedAt ?? c.startedAt)),
      ...commands.filter((c) => c.state === 'running').map(() => now.getTime()),
    );
    const ttlAt = ws.expiresAt !== undefined ? ws.expiresAt * 1000 : Number.POSITIVE_INFINITY;
    let why: 'expired' | 'idle' | undefined;
    if (ttlAt <= now.getTime()) why = 'expired';
    else if (now.getTime() - last > idleMs) why = 'idle';
    if (!why) {
      report.webhookEventsRepaired += await repairWebhookEvents(service, ws, commands, now).catch((error: unknown) => {
        deps.log.warn('webhook repair failed', { workspaceId: ws.id, ...errorFields(error) });
        return 0;
      });
      // Whichever comes first tears it down; `workspace.expiring` once per deadline (its id names it).
      const [reason, at] = ttlAt <= last + idleMs ? (['ttl', ttlAt] as const) : (['idle', last + idleMs] as const);
      if (at - now.getTime() <= warnMs) {
        await service.webhooks.expiring(ws, reason, new Date(at));
        report.expiring.push(ws.id);
      }
      continue;
    }
    try {
      await service.deleteWorkspace(ws.id);
      report[why].push(ws.id);
      deps.log.info(`workspace torn down: ${why}`, { workspaceId: ws.id });
    } catch (error) {
      deps.log.warn('janitor could not tear down a workspace', { workspaceId: ws.id, ...errorFields(error) });
    }
  }
  // Status changes of workspaces that are no longer ready or failed (deleted ones) whose event a crash lost.
  for (const ws of await deps.state.listWorkspaces({ owner: deps.instanceId, status: ['deleted'] }))
    if (ws.owner === deps.instanceId)
      report.webhookEventsRepaired += await repairWebhookEvents(service, ws, [], now).catch(() => 0);
  report.overDisk = await enforceDiskLimits(deps, service.records, now);
  report.cacheEvicted = (await evictCache(deps, now)).evicted.length;
  // Webhook deliveries due (on Lambda the only retry path; locally a backstop to the retry timers).
  report.webhookEventsAttempted = await service.deliverer.deliverDue().catch((error: unknown) => {
    deps.log.warn('webhook delivery sweep failed', errorFields(error));
    return 0;
  });
  report.snapshotsRemoved = await service.snapshots.sweep(now).catch((error: unknown) => {
    deps.log.warn('snapshot sweep failed', errorFields(error));
    return [];
  });
  if (deps.backend.maintain) {
    const ready = (await deps.state.listCacheEntries()).flatMap((e) =>
      e.status === 'ready' && e.snapshot && e.backendKind === deps.backend.kind ? [e.snapshot] : [],
    );
    await deps.backend
      .maintain(ready)
      .catch((error: unknown) => deps.log.warn('backend upkeep failed', errorFields(error)));
  }
  return report;
}

async function failAbandoned(
  deps: ServiceDeps,
  service: DefaultWorkspaceService,
  now: Date,
  afterMs: number,
): Promise<string[]> {
  const out: string[] = [];
  const busy = await deps.state.listWorkspaces({ owner: deps.instanceId, status: ['provisioning', 'resetting'] });
  for (const ws of busy) {
    if (ws.owner !== deps.instanceId || (ws.status !== 'provisioning' && ws.status !== 'resetting')) continue;
    if (now.getTime() - Date.parse(ws.updatedAt) <= afterMs) continue;
    try {
      // Conditional on the status: a worker that was alive after all and finished wins the race.
      const failed = await service.records.transition(ws.id, [ws.status], 'failed', {
        failure: {
          step: ws.status === 'provisioning' ? 'provision' : 'reset',
          message: `no progress for ${Math.round(afterMs / 60_000)} min: the process doing it was lost`,
        },
      });
      await service.teardown(failed);
      out.push(ws.id);
      deps.log.warn('abandoned workspace failed', { workspaceId: ws.id, was: ws.status });
    } catch (error) {
      deps.log.warn('janitor could not fail an abandoned workspace', { workspaceId: ws.id, ...errorFields(error) });
    }
  }
  return out;
}
