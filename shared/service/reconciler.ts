import { errorFields } from '../log.js';
import { ConflictError } from '../contract/errors.js';
import type { ServiceDeps } from './deps.js';
import { hasForeignRef } from './records.js';
import type { DefaultWorkspaceService } from './workspace-service.js';
import { bestEffort } from '../lib/best-effort.js';
import { snapshotRefsInUse } from './snapshots.js';

export interface ReconcileReport {
  /** Provisioning picked up at the phase its record names (the setup command, detached, may still run). */
  resumedProvisioning: string[];
  /** Resets finished in place (their workspace had no running reset operation to resume). */
  resumedResets: string[];
  /** Operations (fetch, reset) of this instance picked up at the phase their record names. */
  resumedOperations: { workspaceId: string; operationId: string }[];
  finishedDeletes: string[];
  commandsSettled: number;
  operationsFailed: string[];
  orphansDestroyed: string[];
  snapshotsRemoved: number;
  cacheEntriesReleased: string[];
}

/**
 * Start-up reconciliation (mission invariant 5). Only this instance's records are touched (owner), so
 * another provider sharing the state store is never reaped. After it: nothing of ours is left in a
 * transitional status, every backend resource has a live record, every running command either runs
 * or has its final state written, and every snapshot is referenced by a cache entry, a baseline or a
 * snapshot record (a fork point, a user snapshot).
 */
export async function reconcile(deps: ServiceDeps, service: DefaultWorkspaceService): Promise<ReconcileReport> {
  const { state, backend, log, instanceId } = deps;
  const report: ReconcileReport = {
    resumedProvisioning: [],
    resumedResets: [],
    resumedOperations: [],
    finishedDeletes: [],
    commandsSettled: 0,
    operationsFailed: [],
    orphansDestroyed: [],
    snapshotsRemoved: 0,
    cacheEntriesReleased: [],
  };
  const mine = (await state.listWorkspaces({ owner: instanceId })).filter((r) => r.owner === instanceId);

  for (const r of mine) {
    try {
      // Listed records did not pass records.get: a ref naming another workspace is not used here either.
      if (hasForeignRef(backend, r))
        throw new ConflictError(
          `workspace '${r.id}': its stored backend ref does not belong to it; refusing to use it`,
        );
      if (r.status === 'provisioning') {
        // Its phases are on the record, each idempotent (Provisioner.runPhase): handed off again after
        // the rest is reconciled, provisioning goes on where it was — a setup still running (its wrapper
        // outlives the provider) is awaited, not started again.
        report.resumedProvisioning.push(r.id);
      } else if (r.status === 'resetting') {
        const op = r.resetBy ? await state.getOperation(r.id, r.resetBy) : undefined;
        // Its reset's phases are on the operation's record, each idempotent: resumed below.
        if (op?.status === 'running' && op.owner === instanceId) continue;
        // No operation to go on with: restore is idempotent, so finish it and hand the workspace back.
        if (r.backend && r.baseline) await backend.open(r.backend, r.plan).snapshots.restore(r.baseline);
        await service.records.transition(r.id, ['resetting'], 'ready');
        report.resumedResets.push(r.id);
      } else if (r.status === 'deleting') {
        await service.teardown(r);
        await service.records.transition(r.id, ['deleting'], 'deleted');
        report.finishedDeletes.push(r.id);
      }
    } catch (error) {
      log.error('reconcile: workspace not resolved', { workspaceId: r.id, status: r.status, ...errorFields(error) });
    }
  }

  // Commands: read each running one once; ended ones get their result written, vanished ones 'lost'.
  for (const r of await state.listWorkspaces({ owner: instanceId })) {
    if (r.owner !== instanceId) continue;
    for (const c of await state.listCommands(r.id)) {
      if (c.state !== 'running') continue;
      await service.getCommand(r.id, c.id, { stdoutOffset: 0, stderrOffset: 0, limit: 0, waitMs: 0 }).then(
        (v) => {
          if (v.state !== 'running') report.commandsSettled++;
        },
        async () => {
          const lost = await bestEffort(
            state.updateCommand(r.id, c.id, c.version, {
              state: 'lost',
              reason: 'provider restarted',
              endedAt: new Date().toISOString(),
            }),
            log,
            'marking a command lost after a restart',
          );
          if (lost && !c.internal) deps.metrics?.count('commandsFinished', 'lost');
          report.commandsSettled++;
        },
      );
    }
  }

  // Operations (fetch, reset) this instance was running go on at their recorded phase (each phase is
  // idempotent) where their workspace still allows it: ready, or resetting by that very reset. The
  // rest say they were interrupted (their workspace was reconciled above).
  for (const id of mine.map((r) => r.id)) {
    const ws = await state.getWorkspace(id);
    if (ws?.status !== 'ready' && ws?.status !== 'resetting') continue;
    for (const op of await state.listOperations(id)) {
      if (op.status !== 'running' || op.owner !== instanceId) continue;
      if (ws.status === 'ready' || ws.resetBy === op.id)
        report.resumedOperations.push({ workspaceId: id, operationId: op.id });
    }
  }
  report.operationsFailed = await service.operations.failAbandoned(
    mine.map((r) => r.id),
    'provider restarted while the operation ran; the workspace was reconciled (GET it for its state)',
    undefined,
    new Set(report.resumedOperations.map((o) => o.operationId)),
  );

  report.orphansDestroyed = await destroyOrphans(deps);
  const live = new Map((await state.listWorkspaces({ owner: instanceId })).map((r) => [r.id, r] as const));

  // Cache entries this instance was building when it died → failed (the next setup rebuilds) — but
  // not those a resumed provisioning goes on building.
  const resumed = new Set(report.resumedProvisioning);
  for (const e of await state.listCacheEntries()) {
    if (e.status === 'building' && e.lease?.owner === instanceId && !(e.builder && resumed.has(e.builder))) {
      await bestEffort(
        state.updateCacheEntry(e.key, e.version, { status: 'failed' }),
        log,
        'releasing a cache entry this instance was building',
      );
      report.cacheEntriesReleased.push(e.key);
    }
  }

  // Snapshots referenced by nothing → delete.
  const referenced = new Set<string>();
  for (const e of await state.listCacheEntries()) if (e.snapshot) referenced.add(JSON.stringify(e.snapshot));
  // Fork points and user snapshots (whoever's: their records say what they hold).
  for (const ref of await snapshotRefsInUse(deps)) referenced.add(ref);
  for (const r of live.values())
    if (r.baseline && r.status !== 'deleted' && r.status !== 'failed') referenced.add(JSON.stringify(r.baseline));
  for (const snap of await backend.snapshots.list()) {
    if (referenced.has(JSON.stringify(snap))) continue;
    await bestEffort(backend.snapshots.delete(snap), log, 'deleting an unreferenced snapshot');
    report.snapshotsRemoved++;
  }
  for (const id of report.resumedProvisioning)
    await bestEffort(service.resumeProvisioning(id), log, 'handing a resumed provisioning off again');
  for (const { workspaceId, operationId } of report.resumedOperations)
    await bestEffort(service.operations.resume(workspaceId, operationId), log, 'handing a resumed operation off again');
  // Webhook deliveries still pending (the receiver was down, or this process died mid-attempt) go on.
  await bestEffort(service.deliverer.resume(), log, 'resuming pending webhook deliveries');
  log.info('reconciled', {
    ...report,
    resumedProvisioning: report.resumedProvisioning.length,
    resumedOperations: report.resumedOperations.length,
    orphansDestroyed: report.orphansDestroyed.length,
  });
  return report;
}

/**
 * Backend resources of this instance without a live record (none, or deleted/failed) → destroyed.
 * Safe while other processes work for the same instance (Lambda): a workspace's record is written
 * before its compute is created, so a resource being set up always has a live record.
 */
export async function destroyOrphans(deps: ServiceDeps): Promise<string[]> {
  const { state, backend, log, instanceId } = deps;
  const out: string[] = [];
  const live = new Map((await state.listWorkspaces({ owner: instanceId })).map((r) => [r.id, r] as const));
  for (const res of await backend.listResources()) {
    if (res.owner !== instanceId) continue;
    const r = live.get(res.workspaceId);
    if (!r || r.status === 'deleted' || r.status === 'failed') {
      await backend
        .destroy(res.ref)
        .catch((e) => log.warn('orphan not destroyed', { workspaceId: res.workspaceId, ...errorFields(e) }));
      out.push(res.workspaceId);
    }
  }
  return out;
}
