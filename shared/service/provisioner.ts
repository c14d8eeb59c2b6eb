import fs from 'node:fs/promises';
import path from 'node:path';
import { BadRequestError, ConflictError, NotFoundError, StepFailedError } from '../contract/errors.js';
import type { WorkspacePlan } from '../contract/plan.js';
import type {
  BackendRef,
  CacheEntryRecord,
  CacheInfo,
  ProvisionPhase,
  ProvisionProgress,
  RepoState,
  ResolvedRef,
  SnapshotRef,
  WorkspaceRecord,
} from '../contract/workspace.js';
import type { MirrorHandle } from '../git/mirror.js';
import { refsDigest } from '../git/refs.js';
import { normalizeRepoPath } from '../config/schema.js';
import { errorFields } from '../log.js';
import { fingerprintArgv, parseFingerprint } from '../workspace/fingerprint.js';
import { computeCacheKey, computeRestoreKey } from './cache-key.js';
import { evictCache } from './cache-eviction.js';
import { hostDirs, type ServiceDeps } from './deps.js';
import { publicError } from './public-error.js';
import { newSystemCommandId } from './ids.js';
import type { WorkspaceRecords } from './records.js';
import { byDepth, gitRepos, type RepoSync } from './repo-sync.js';
import { runStep, stepResult } from './steps.js';
import { sleep } from '../lib/sleep.js';
import type { CommandStatus } from '../contract/backend.js';
import { bestEffort } from '../lib/best-effort.js';
import { snapshotUnusable } from './snapshots.js';

interface ResolvedRepo extends ResolvedRef {
  mirror: MirrorHandle;
}

/** How long a cache builder's lease lasts before another instance may take the key over (renewed while setup runs). */
const CACHE_LEASE_MS = 10 * 60_000;
/** How long one `await-setup` run waits on the setup command (well inside any worker's time limit). */
const SETUP_POLL_MS = 20_000;
/** Pause between two looks at a setup that is still running. */
const SETUP_RECHECK_SECONDS = 5;
/** How long one `start` run waits for a cache entry another workspace builds before it is re-run. */
const CACHE_WAIT_IN_PHASE_MS = 2 * 60_000;

/** What comes after a phase: nothing (the workspace is settled: ready or failed), or a phase after a pause. */
export type PhaseOutcome = { done: true } | { done: false; next: ProvisionPhase; waitSeconds: number };

const DONE: PhaseOutcome = { done: true };
const next = (phase: ProvisionPhase, waitSeconds = 0): PhaseOutcome => ({ done: false, next: phase, waitSeconds });

/**
 * Provisioning: resolve refs in the mirrors, compute the cache key, then either start from a ready
 * cache entry and fetch + check out (warm), or clone + run setup and keep the result as the entry
 * (cold). Ends with a baseline snapshot and its fingerprint, and the workspace 'ready'.
 *
 * It runs in phases (ProvisionPhase), each idempotent against the state store and bounded in time, so
 * no process has to live as long as a setup: `start` (everything up to the setup command STARTED, or
 * the whole warm path), `await-setup` (one bounded look at the setup command; its own timeout is
 * `setup.timeoutMs`), `finish` (cache entry, overrides, baseline, ready). What a phase needs from an
 * earlier one is on the workspace record (`provisioning`, `backend`, `setupCommandId`). A phase that
 * fails records the failure on the workspace (compute freed) and answers done.
 */
export class Provisioner {
  constructor(
    private readonly deps: ServiceDeps,
    private readonly records: WorkspaceRecords,
    private readonly repoSync: RepoSync,
  ) {}

  /** The in-process runner: every phase in sequence, pausing in between as each asks. */
  async provision(id: string): Promise<void> {
    let phase: ProvisionPhase = 'start';
    for (;;) {
      const outcome = await this.runPhase(id, phase);
      if (outcome.done) return;
      if (outcome.waitSeconds > 0) await sleep(outcome.waitSeconds * 1000);
      phase = outcome.next;
    }
  }

  /**
   * Run one phase. A phase the record is not at (re-delivered, or already done by an earlier run)
   * does nothing and answers the phase the record is at; a settled workspace answers done.
   * `waitMs`: how long `await-setup` may wait on the setup command in this run.
   */
  async runPhase(id: string, phase: ProvisionPhase, options: { waitMs?: number } = {}): Promise<PhaseOutcome> {
    const log = this.deps.log.child({ workspaceId: id, phase });
    try {
      const record = await this.records.get(id);
      if (record.status !== 'provisioning') return DONE;
      const at = record.provisioning?.phase ?? 'start';
      if (at !== phase) return next(at);
      switch (phase) {
        case 'start':
          return record.fromSnapshot !== undefined ? await this.startFromSnapshot(record) : await this.start(record);
        case 'await-setup':
          return await this.awaitSetup(record, options.waitMs ?? SETUP_POLL_MS);
        case 'finish':
          return await this.finish(record);
      }
    } catch (error) {
      log.error('provisioning failed', errorFields(error));
      await this.failProvisioning(id, error);
      return DONE;
    }
  }

  /**
   * Fail a workspace still provisioning (the workflow running its phases gave up, or a phase threw):
   * its cache entry released, its compute freed, the failure recorded with its step.
   */
  async failProvisioning(id: string, error: unknown): Promise<void> {
    const current = await this.deps.state.getWorkspace(id).catch(() => undefined);
    if (current && current.status !== 'provisioning') return;
    await this.releaseCacheEntry(id, current?.provisioning?.buildingKey);
    await this.fail(id, error, current?.backend);
  }

  /** Resolve, decide, create the compute, put the repositories in, start setup (or do the warm path). */
  private async start(record: WorkspaceRecord, attempt = 0): Promise<PhaseOutcome> {
    const { id, plan } = record;
    const resumed = record.provisioning !== undefined; // a re-run: earlier work is in the record
    const mirrors = new Map<string, MirrorHandle>();
    let progress = record.provisioning;
    if (!progress) {
      await this.step(
        id,
        'resolve',
        `resolving ${plan.repos.length} repositor${plan.repos.length === 1 ? 'y' : 'ies'}`,
      );
      const resolved = await this.resolveRepos(plan);
      for (const r of resolved) mirrors.set(r.name, r.mirror);
      // The entry is keyed and built from the CONFIGURED refs only: a request for other refs must
      // never put its branch's setup side effects into everybody's cache (configuredRepos says which).
      const configured = await this.configuredRepos(plan, resolved);
      const overridden = configured ? overriddenRepos(resolved, configured) : resolved.map((r) => r.name);
      const { key, restoreKey } = await this.cacheKey(plan, configured ?? resolved);
      const deadline = Date.parse(record.createdAt) + this.deps.config.setup.timeoutMs;
      const decision = await this.decideCache(id, key, restoreKey, configured !== undefined, deadline);
      if (decision === 'wait') {
        await this.records.update(id, () => ({})); // progress for the janitor: someone is waiting
        return next('start', SETUP_RECHECK_SECONDS);
      }
      const restore = decision.building ? await this.restoreEntry(key, restoreKey) : undefined;
      if (restore) decision.info = restoredInfo(decision.info, restore);
      const plannedStart = startPlan(decision, resolved, configured, overridden, this.deps.config.cache.enabled);
      const info: CacheInfo = { ...decision.info, reason: plannedStart.reason };
      progress = {
        phase: 'start',
        resolved: resolved.map(plainRef),
        setupAt: plannedStart.setupAt.map(plainRef),
        synced: [],
        ...(decision.entry?.snapshot ? { from: decision.entry.snapshot } : {}),
        ...(restore ? { from: restore.snapshot, restoredFrom: restore.key } : {}),
        ...(decision.building ? { buildingKey: key } : {}),
      };
      const written = progress;
      await this.records.update(id, () => ({ cache: info, provisioning: written }));
      // Counted once the decision is on the record: a re-run of this phase finds it there and skips this.
      this.deps.metrics?.count(info.hit ? 'cacheHits' : 'cacheMisses');
      await this.step(id, 'cache', `${info.hit ? 'hit' : 'miss'}: ${info.reason}`);
    }
    const key = (await this.records.get(id)).cache?.key ?? '';
    let ref = record.backend; // a re-run reuses the compute an earlier run created
    if (!ref) {
      // Only a re-run can find compute an earlier run created but did not record: a first run wrote
      // its progress before any create (listing every resource is O(workspaces) on each backend).
      if (resumed) await this.destroyStrays(id);
      const labels = { 'wsp.workspace': id, 'wsp.owner': this.deps.instanceId, 'wsp.cache-key': key };
      try {
        ref = await this.deps.backend.create(plan, {
          workspaceId: id,
          labels,
          ...(progress.from ? { from: progress.from } : {}),
        });
      } catch (error) {
        // A ready entry whose snapshot is gone (pruned by hand, lost with a disk): a miss, not a
        // failure. The entry is marked failed and the decision made again, so it is rebuilt (once).
        if (!(error instanceof NotFoundError) || !progress.from || attempt > 0) throw error;
        await this.markEntryFailed(progress.restoredFrom ?? key, 'marking a cache entry whose snapshot is gone failed');
        await this.step(id, 'cache', "the entry's snapshot is gone: rebuilding the entry");
        return this.start(await this.records.update(id, () => ({ provisioning: undefined })), attempt + 1);
      }
      const created = ref;
      await this.records.update(id, () => ({ backend: created }));
    }

    if (progress.from && !progress.restoredFrom) {
      const entry = await this.deps.state.getCacheEntry(key);
      const resolved = await this.withMirrors(plan, progress.resolved, mirrors);
      await this.warmStart(id, ref, plan, resolved, entry?.repos ?? []);
      await this.setProgress(id, { phase: 'finish' });
      return next('finish');
    }
    if (progress.restoredFrom) {
      // Restored: the older entry's home, its repositories moved to `setupAt`; setup re-runs on top
      // (an incremental install), and the result becomes this key's entry.
      const older = await this.deps.state.getCacheEntry(progress.restoredFrom);
      const setupAt = await this.withMirrors(plan, progress.setupAt, mirrors);
      const refsDigests = await this.warmStart(id, ref, plan, setupAt, older?.repos ?? []);
      await this.setProgress(id, { refsDigests });
    } else {
      // Cold: setup runs at `setupAt` (the configured refs whenever the cache is in play).
      await this.syncRepos(id, ref, plan, progress, mirrors, resumed);
    }
    if (this.deps.config.setup.script.trim() === '') {
      await this.setProgress(id, { phase: 'finish' });
      return next('finish');
    }
    if (progress.buildingKey && !(await this.renewLease(id, progress.buildingKey)))
      await this.lostLease(id, progress.buildingKey);
    await this.startSetup(id, ref, plan);
    await this.setProgress(id, { phase: 'await-setup' });
    return next('await-setup');
  }

  /**
   * A workspace made from a snapshot (a fork, `fromSnapshot`): once the snapshot is ready, the compute
   * is created from it — the source's files and git state at that moment, nothing running — and its own
   * baseline taken, so a reset returns here. No clone, no setup: the snapshot holds their result, and
   * the token-less fetch path needs nothing of the source (origin is the token-free URL; objects come
   * as bundles into this workspace's own transfer dir). One phase; a re-run reuses recorded compute.
   */
  private async startFromSnapshot(record: WorkspaceRecord): Promise<PhaseOutcome> {
    const { id, plan } = record;
    const sid = record.fromSnapshot!;
    const snap = await this.deps.state.getSnapshot(sid);
    if (snap?.status === 'creating') {
      if (Date.now() - Date.parse(record.createdAt) > this.deps.config.setup.timeoutMs)
        throw new StepFailedError('snapshot', `snapshot '${sid}' was not taken within setup.timeoutMs`);
      await this.records.update(id, () => ({})); // progress for the janitor: waiting for the snapshot
      return next('start', 1);
    }
    if (snap?.status !== 'ready' || !snap.snapshot) throw snapshotUnusable(snap, sid);
    let ref = record.backend;
    if (!ref) {
      if (record.provisioning) await this.destroyStrays(id);
      else await this.setProgressOn(id, { phase: 'start', resolved: [], setupAt: [], synced: [], from: snap.snapshot });
      await this.step(id, 'snapshot', `creating the workspace from snapshot ${sid}`);
      const labels = { 'wsp.workspace': id, 'wsp.owner': this.deps.instanceId, 'wsp.snapshot': sid };
      ref = await this.deps.backend.create(plan, { workspaceId: id, labels, from: snap.snapshot });
      const created = ref;
      await this.records.update(id, () => ({ backend: created }));
    }
    const { commands, snapshots } = this.deps.backend.open(ref, plan);
    await commands.killAll();
    await this.step(id, 'baseline', 'taking the baseline snapshot (the state at the snapshot)');
    const baseline = await snapshots.take('baseline', id);
    const fingerprint = await this.fingerprint(ref, plan);
    const warnings = [...new Set([...(await this.records.get(id)).warnings, ...this.deps.backend.warnings])];
    await this.records.transition(
      id,
      ['provisioning'],
      'ready',
      { baseline, baselineFingerprint: fingerprint, repos: snap.repos, warnings, provisioning: undefined },
      { step: 'ready', message: `ready from snapshot ${sid} (fingerprint ${fingerprint.slice(0, 12)})` },
    );
    this.deps.log.info('workspace ready', { workspaceId: id, fromSnapshot: sid, forkedFrom: record.forkedFrom });
    return DONE;
  }

  /** One look at the setup command (waiting at most `waitMs`): still running → look again later. */
  private async awaitSetup(record: WorkspaceRecord, waitMs: number): Promise<PhaseOutcome> {
    const { id, plan, backend: ref, setupCommandId: commandId } = record;
    if (!ref || !commandId) throw new StepFailedError('setup', 'the record lost its compute or setup command');
    const status = await this.deps.backend.open(ref, plan).commands.wait(commandId, waitMs);
    if (status.state === 'running') {
      const key = record.provisioning?.buildingKey;
      // A long setup keeps its build lease: nobody else starts building the same entry meanwhile.
      if (key && !(await this.renewLease(id, key))) await this.lostLease(id, key);
      await this.setProgress(id, { setupCheckedAt: this.now().toISOString() });
      return next('await-setup', SETUP_RECHECK_SECONDS);
    }
    await this.recordSetupStatus(id, commandId, status);
    await stepResult(this.deps.backend, ref, plan, status, {
      step: 'setup',
      maxOutputBytes: this.deps.config.commands.maxOutputBytes,
    });
    // What setup left running (a daemon, `cmd &`) must not live on into the cache entry or keep
    // writing into the home while it is snapshotted.
    await this.deps.backend.open(ref, plan).commands.killAll();
    await this.setProgress(id, { phase: 'finish' });
    return next('finish');
  }

  /** Keep the cache entry, check out requested refs, baseline, fingerprint, ready. */
  private async finish(record: WorkspaceRecord): Promise<PhaseOutcome> {
    const { id, plan } = record;
    const progress = record.provisioning!;
    const ref = record.backend;
    if (!ref) throw new StepFailedError('provision', 'the record lost its compute');
    const { commands, snapshots } = this.deps.backend.open(ref, plan);
    await commands.killAll(); // nothing left running writes into the home while it is kept
    if (progress.buildingKey) {
      const entry = await this.deps.state.getCacheEntry(progress.buildingKey);
      // A re-run after the entry was kept finds it ready: not kept twice.
      if (entry?.status === 'building' && entry.builder === id)
        await this.keepCacheEntry(id, ref, plan, entry, progress.setupAt, progress.refsDigests ?? {});
      await this.setProgress(id, { buildingKey: undefined });
    }
    const mirrors = new Map<string, MirrorHandle>();
    // Then the requested refs are fetched and checked out over it, setup not re-run.
    if (!progress.from || progress.restoredFrom)
      await this.checkoutOverrides(id, ref, plan, progress.setupAt, progress.resolved, mirrors);

    await this.step(id, 'baseline', 'taking the baseline snapshot');
    await commands.killAll();
    const baseline = await snapshots.take('baseline', id);
    const fingerprint = await this.fingerprint(ref, plan);
    const repos: RepoState[] = plan.repos.map((r) => {
      const res = progress.resolved.find((x) => x.name === r.name);
      return { name: r.name, path: r.path, ...(res ? { commit: res.commit, ref: res.ref } : {}) };
    });
    const warnings = [...new Set([...(await this.records.get(id)).warnings, ...this.deps.backend.warnings])];
    await this.records.transition(
      id,
      ['provisioning'],
      'ready',
      { baseline, baselineFingerprint: fingerprint, repos, warnings, provisioning: undefined },
      { step: 'ready', message: `ready (fingerprint ${fingerprint.slice(0, 12)})` },
    );
    this.deps.log.info('workspace ready', { workspaceId: id, cacheKey: record.cache?.key, hit: record.cache?.hit });
    return DONE;
  }

  /**
   * Reset by replacement (`reset` with mode 'recreate'), in two phases of the reset operation: the
   * workspace's compute is destroyed and made again from its cache entry (`replaceCompute`), then its
   * repositories are fetched and checked out at the baseline commits — setup not re-run: the entry
   * holds its result — and a new baseline is taken (`syncReplaced`). For when restoring in place is not
   * enough (the compute itself is suspect) or not cheaper (a Fargate task from a warm pool).
   */
  async recreateEntry(ws: WorkspaceRecord): Promise<CacheEntryRecord & { snapshot: SnapshotRef }> {
    const key = ws.cache?.key;
    const entry = key ? await this.deps.state.getCacheEntry(key) : undefined;
    if (!key || entry?.status !== 'ready' || !entry.snapshot) {
      throw new ConflictError(
        `workspace '${ws.id}' has no ready cache entry to recreate from; reset with mode 'restore'`,
      );
    }
    return { ...entry, snapshot: entry.snapshot };
  }

  /**
   * New compute from the cache entry, named on the record. Safe to run again: whatever compute of the
   * workspace exists (the old one, or one a cut-short run made and did not record) is destroyed first.
   */
  async replaceCompute(ws: WorkspaceRecord): Promise<WorkspaceRecord> {
    const entry = await this.recreateEntry(ws);
    await this.step(ws.id, 'recreate', 'replacing the workspace compute');
    if (ws.backend) await this.deps.backend.destroy(ws.backend);
    await this.destroyStrays(ws.id);
    if (ws.baseline)
      await bestEffort(
        this.deps.backend.snapshots.delete(ws.baseline),
        this.deps.log,
        'deleting the old baseline before recreating',
      );
    const labels = { 'wsp.workspace': ws.id, 'wsp.owner': this.deps.instanceId, 'wsp.cache-key': entry.key };
    const ref = await this.deps.backend.create(ws.plan, { workspaceId: ws.id, labels, from: entry.snapshot });
    return this.records.update(ws.id, () => ({ backend: ref, baseline: undefined, baselineFingerprint: undefined }));
  }

  /** The replaced compute at the baseline commits, with a new baseline named on the record. Safe to run again. */
  async syncReplaced(ws: WorkspaceRecord): Promise<WorkspaceRecord> {
    const entry = await this.recreateEntry(ws);
    const { plan } = ws;
    const ref = ws.backend;
    if (!ref) throw new StepFailedError('recreate', 'the record lost its compute');
    // The baseline commits, not wherever the branches are now.
    const resolved: ResolvedRepo[] = [];
    for (const repo of gitRepos(plan)) {
      const state = ws.repos.find((r) => r.name === repo.name);
      const mirror = await this.repoSync.mirror(repo);
      if (!state?.commit) throw new ConflictError(`workspace '${ws.id}' has no baseline commit for '${repo.name}'`);
      const now = await this.deps.broker.resolveRef(mirror, state.ref ?? state.commit);
      resolved.push({
        name: repo.name,
        mirror,
        commit: state.commit,
        ref: state.ref ?? state.commit,
        ...(now.branch ? { branch: now.branch } : {}),
      });
    }
    await this.warmStart(ws.id, ref, plan, resolved, entry.repos);
    await this.deps.backend.open(ref, plan).commands.killAll();
    const baseline = await this.deps.backend.open(ref, plan).snapshots.take('baseline', ws.id);
    const baselineFingerprint = await this.fingerprint(ref, plan);
    return this.records.update(ws.id, () => ({ baseline, baselineFingerprint }));
  }

  /**
   * The most recent ready entry this build may start from instead of from nothing: same restore key
   * (only a cacheKeyFiles file differs), this backend, a snapshot. Its last use is touched, so
   * eviction keeps it as long as it serves.
   */
  private async restoreEntry(
    key: string,
    restoreKey: string,
  ): Promise<(CacheEntryRecord & { snapshot: SnapshotRef }) | undefined> {
    if (!this.deps.config.cache.restore) return undefined;
    const candidates = (await this.deps.state.listCacheEntries())
      .filter(
        (e): e is CacheEntryRecord & { snapshot: SnapshotRef } =>
          e.key !== key &&
          e.status === 'ready' &&
          e.snapshot !== undefined &&
          e.restoreKey === restoreKey &&
          e.backendKind === this.deps.backend.kind,
      )
      .sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    const newest = candidates[0];
    if (!newest) return undefined;
    await bestEffort(
      this.deps.state.updateCacheEntry(newest.key, newest.version, { lastUsedAt: this.now().toISOString() }),
      this.deps.log,
      'touching the cache entry a build restores from',
    );
    return newest;
  }

  private async resolveRepos(plan: WorkspacePlan): Promise<ResolvedRepo[]> {
    const out: ResolvedRepo[] = [];
    for (const repo of gitRepos(plan)) {
      const mirror = await this.repoSync.mirror(repo);
      const r = await this.deps.broker.resolveRef(mirror, repo.source.ref);
      out.push({ name: repo.name, mirror, commit: r.commit, ref: r.ref, ...(r.branch ? { branch: r.branch } : {}) });
    }
    return out;
  }

  /**
   * The configured refs (each repository's `ref`, or its default branch when none is configured),
   * resolved in the same mirrors as the requested ones. A repo whose request names the configured
   * ref string (or none) reuses its resolution. Undefined when a configured ref does not resolve
   * any more (e.g. its branch was deleted): then nothing may be cached from this request.
   */
  private async configuredRepos(plan: WorkspacePlan, resolved: ResolvedRepo[]): Promise<ResolvedRepo[] | undefined> {
    const out: ResolvedRepo[] = [];
    for (const repo of gitRepos(plan)) {
      const res = resolved.find((r) => r.name === repo.name)!;
      const configuredRef = this.deps.config.repositories.find((c) => normalizeRepoPath(c.path) === repo.name)?.ref;
      if (repo.source.ref === configuredRef) {
        out.push(res);
        continue;
      }
      try {
        const r = await this.deps.broker.resolveRef(res.mirror, configuredRef);
        out.push({
          name: repo.name,
          mirror: res.mirror,
          commit: r.commit,
          ref: r.ref,
          ...(r.branch ? { branch: r.branch } : {}),
        });
      } catch (error) {
        if (error instanceof BadRequestError) return undefined;
        throw error;
      }
    }
    return out;
  }

  private async cacheKey(plan: WorkspacePlan, resolved: ResolvedRepo[]): Promise<{ key: string; restoreKey: string }> {
    const keyFiles: Record<string, [string, string | undefined][]> = {};
    for (const repoConfig of this.deps.config.repositories) {
      const name = normalizeRepoPath(repoConfig.path);
      const res = resolved.find((r) => r.name === name);
      const files: [string, string | undefined][] = [];
      for (const file of repoConfig.cacheKeyFiles) {
        if (res) files.push([file, await this.deps.broker.readFile(res.mirror, res.commit, file)]);
        else if (repoConfig.localPath)
          files.push([
            file,
            await fs
              .readFile(path.resolve(this.deps.baseDir, repoConfig.localPath, file), 'utf8')
              .catch(() => undefined),
          ]);
      }
      keyFiles[name] = files;
    }
    const inputs = {
      backendKind: this.deps.backend.kind,
      baseIdentity: await this.deps.backend.baseIdentity(),
      plan,
      setupScript: this.deps.config.setup.script,
      setupEnv: this.deps.config.workspace.env,
      keyFiles,
    };
    return { key: computeCacheKey(inputs), restoreKey: computeRestoreKey(inputs) };
  }

  /**
   * Single-flight per key across instances: the first to create the entry (conditional put) builds it
   * (`builder`: this workspace, so a re-run of its `start` finds it its own); others wait for it to
   * become ready — at most CACHE_WAIT_IN_PHASE_MS in one run ('wait': run `start` again later) — and
   * go uncached after `deadline` (epoch ms) or when the builder fails or its lease runs out.
   */
  private async decideCache(
    id: string,
    key: string,
    restoreKey: string,
    usable: boolean,
    deadline: number,
  ): Promise<CacheDecision | 'wait'> {
    const { state } = this.deps;
    if (!this.deps.config.cache.enabled) return { info: { key, hit: false, reason: 'cache disabled' } };
    if (!usable) return { info: { key, hit: false, reason: 'uncached' } };
    const inPhaseUntil = Date.now() + CACHE_WAIT_IN_PHASE_MS;
    let waited = false;
    for (;;) {
      const entry = await state.getCacheEntry(key);
      const now = this.now();
      if (entry?.status === 'ready' && entry.snapshot) {
        const touched = await state
          .updateCacheEntry(key, entry.version, { lastUsedAt: now.toISOString() })
          .catch(() => entry);
        return {
          info: {
            key,
            hit: true,
            reason: waited ? 'entry built by a concurrent setup' : `entry ready since ${entry.createdAt}`,
          },
          entry: touched,
        };
      }
      const lease = { owner: this.deps.instanceId, expiresAt: now.getTime() + CACHE_LEASE_MS };
      if (entry?.status === 'building' && entry.builder === id) {
        // An earlier run of this workspace's `start` took the build and was cut short.
        return { info: { key, hit: false, reason: 'no entry for this key (building it)' }, building: entry };
      }
      if (!entry) {
        const fresh: CacheEntryRecord = {
          key,
          status: 'building',
          version: 1,
          backendKind: this.deps.backend.kind,
          repos: [],
          lease,
          builder: id,
          restoreKey,
          createdAt: now.toISOString(),
          lastUsedAt: now.toISOString(),
        };
        try {
          await state.createCacheEntry(fresh);
          return { info: { key, hit: false, reason: 'no entry for this key (building it)' }, building: fresh };
        } catch (error) {
          if (error instanceof ConflictError) continue; // someone else just started building it
          throw error;
        }
      }
      const stale = entry.status === 'failed' || (entry.lease?.expiresAt ?? 0) < now.getTime();
      if (stale) {
        try {
          const taken = await state.updateCacheEntry(key, entry.version, {
            status: 'building',
            lease,
            builder: id,
            restoreKey,
          });
          return {
            info: {
              key,
              hit: false,
              reason: `previous entry ${entry.status === 'failed' ? 'failed' : 'build was abandoned'} (rebuilding it)`,
            },
            building: taken,
          };
        } catch (error) {
          if (error instanceof ConflictError) continue;
          throw error;
        }
      }
      if (now.getTime() > deadline || Date.now() > deadline)
        return { info: { key, hit: false, reason: 'entry still building elsewhere (went uncached)' } };
      if (Date.now() > inPhaseUntil) return 'wait';
      waited = true;
      await sleep(250);
    }
  }

  /** Cold start: each repository not yet in the workspace is cloned (or copied) at `setupAt`. */
  private async syncRepos(
    id: string,
    ref: BackendRef,
    plan: WorkspacePlan,
    progress: ProvisionProgress,
    mirrors: Map<string, MirrorHandle>,
    resumed: boolean,
  ): Promise<void> {
    const digests: Record<string, string> = {};
    for (const repo of byDepth(plan.repos)) {
      if (progress.synced.includes(repo.name)) continue;
      if (repo.source.kind === 'localDir') {
        await this.step(id, 'copy', `copying ${repo.source.hostPath} to ${repo.target}`);
        await this.deps.backend.open(ref, plan).files.putDirectory(repo.source.hostPath, repo.target);
      } else {
        const at = progress.setupAt.find((r) => r.name === repo.name)!;
        const git = { ...repo, source: repo.source };
        await this.step(
          id,
          'clone',
          `cloning ${repo.source.url} at ${at.ref} (${at.commit.slice(0, 12)}) into ${repo.target}`,
        );
        // A clone an earlier run was cut short in is started over.
        if (resumed)
          await runStep(this.deps.backend, ref, plan, ['rm', '-rf', '--', `${repo.target}/.git`], {
            step: `clear ${repo.name}`,
          });
        const [res] = await this.withMirrors(plan, [at], mirrors);
        digests[repo.name] = await this.repoSync.clone(ref, plan, git, res!.mirror, at);
      }
      const done = repo.name;
      const digest = digests[done];
      await this.records.update(id, (r) => ({
        provisioning: {
          ...r.provisioning!,
          synced: [...r.provisioning!.synced, done],
          ...(digest ? { refsDigests: { ...r.provisioning!.refsDigests, [done]: digest } } : {}),
        },
      }));
    }
  }

  /**
   * Start the setup script as a command of the workspace (not awaited here). Idempotent: the command
   * id is written on the record first, and `commands.start` is idempotent on it.
   */
  private async startSetup(id: string, ref: BackendRef, plan: WorkspacePlan): Promise<void> {
    let commandId = (await this.records.get(id)).setupCommandId;
    if (!commandId) {
      const fresh = newSystemCommandId();
      await this.records.update(id, () => ({ setupCommandId: fresh }));
      commandId = fresh;
    }
    try {
      await this.deps.state.createCommand({
        workspaceId: id,
        id: commandId,
        version: 1,
        state: 'running',
        argv: ['sh', '-c', '<setup script>'],
        cwd: plan.workdir,
        internal: true,
        timeoutMs: this.deps.config.setup.timeoutMs,
        exitCode: null,
        signal: null,
        stdout: { bytes: 0, truncated: false },
        stderr: { bytes: 0, truncated: false },
        startedAt: this.now().toISOString(),
      });
    } catch (error) {
      if (!(error instanceof ConflictError)) throw error; // written by an earlier run
    }
    await this.step(id, 'setup', `running the setup script (command ${commandId})`);
    await this.deps.backend.open(ref, plan).commands.start({
      commandId,
      argv: ['sh', '-c', this.deps.config.setup.script],
      cwd: plan.workdir,
      env: { ...plan.env, GIT_TERMINAL_PROMPT: '0', ...this.deps.config.workspace.env },
      timeoutMs: this.deps.config.setup.timeoutMs,
      maxOutputBytes: this.deps.config.commands.maxOutputBytes,
      // Setup has its own network (config setup.network: egress by default, for `npm install`).
      ...(plan.setupNetwork ? { network: plan.setupNetwork } : {}),
    });
  }

  /** The setup command's final status onto its record (where its output is read and streamed from). */
  private async recordSetupStatus(id: string, commandId: string, status: CommandStatus): Promise<void> {
    const rec = await this.deps.state.getCommand(id, commandId);
    if (rec?.state !== 'running') return;
    await bestEffort(
      this.deps.state.updateCommand(id, commandId, rec.version, {
        state: status.state,
        exitCode: status.exitCode,
        signal: status.signal,
        stdout: status.stdout,
        stderr: status.stderr,
        ...(status.reason ? { reason: status.reason } : {}),
        ...(status.endedAt
          ? { endedAt: status.endedAt, durationMs: Date.parse(status.endedAt) - Date.parse(rec.startedAt) }
          : {}),
      }),
      this.deps.log,
      'recording the final status of the setup command',
    );
  }

  /**
   * Compute of this workspace that no record names: an earlier run was killed between `create` and
   * writing its ref (and may have been cut short inside `create`). Destroyed before creating again, so
   * a re-run never leaves two.
   */
  private async destroyStrays(id: string): Promise<void> {
    await bestEffort(
      (async () => {
        for (const res of await this.deps.backend.listResources()) {
          if (res.workspaceId !== id || res.owner !== this.deps.instanceId) continue;
          await this.deps.backend.destroy(res.ref);
        }
      })(),
      this.deps.log,
      'destroying compute an earlier run left unrecorded (the orphan sweep gets it once the workspace settles)',
    );
  }

  /** Extend this workspace's build lease on the entry; false when the entry is no longer its to build. */
  private async renewLease(id: string, key: string): Promise<boolean> {
    for (let attempt = 0; attempt < 4; attempt++) {
      const entry = await this.deps.state.getCacheEntry(key);
      if (entry?.status !== 'building' || entry.builder !== id) return false;
      try {
        await this.deps.state.updateCacheEntry(key, entry.version, {
          lease: { owner: this.deps.instanceId, expiresAt: this.now().getTime() + CACHE_LEASE_MS },
        });
        return true;
      } catch (error) {
        if (!(error instanceof ConflictError)) throw error;
      }
    }
    return false;
  }

  /** The build was taken over (its lease ran out): this workspace goes on uncached. */
  private async lostLease(id: string, key: string): Promise<void> {
    await this.records.update(id, (r) => ({
      provisioning: { ...r.provisioning!, buildingKey: undefined },
      warnings: [...r.warnings, `cache entry ${key.slice(0, 12)} not kept: its build lease ran out`],
    }));
  }

  private async setProgressOn(id: string, progress: ProvisionProgress): Promise<void> {
    await this.records.update(id, () => ({ provisioning: progress }));
  }

  private async setProgress(id: string, patch: Partial<ProvisionProgress>): Promise<void> {
    await this.records.update(id, (r) => ({ provisioning: { ...r.provisioning!, ...patch } }));
  }

  /** The resolved refs with their mirrors (synced once per run; a resumed phase syncs them again). */
  private async withMirrors(
    plan: WorkspacePlan,
    refs: ResolvedRef[],
    mirrors: Map<string, MirrorHandle>,
  ): Promise<ResolvedRepo[]> {
    const out: ResolvedRepo[] = [];
    for (const r of refs) {
      const repo = gitRepos(plan).find((g) => g.name === r.name);
      if (!repo) continue;
      let mirror = mirrors.get(r.name);
      if (!mirror) {
        mirror = await this.repoSync.mirror(repo);
        mirrors.set(r.name, mirror);
      }
      out.push({ ...r, mirror });
    }
    return out;
  }

  /** Start from the entry: fetch and check out the requested commits; setup is NOT re-run. */
  /**
   * Each repository from what the entry holds to `resolved`: an incremental fetch + checkout, or
   * nothing at all when the entry is already there — same commit and ref, and the mirror's branches
   * and tags unchanged since the entry got them (refsDigest): a fetch would change no ref. Answers
   * each git repository's refsDigest now.
   */
  private async warmStart(
    id: string,
    ref: BackendRef,
    plan: WorkspacePlan,
    resolved: ResolvedRepo[],
    cachedRepos: RepoState[],
  ): Promise<Record<string, string>> {
    const digests: Record<string, string> = {};
    for (const repo of byDepth(plan.repos)) {
      if (repo.source.kind === 'localDir') {
        // A local directory is the operator's live tree: always copied fresh, never served from cache.
        await this.step(id, 'copy', `copying ${repo.source.hostPath} to ${repo.target}`);
        await runStep(this.deps.backend, ref, plan, ['rm', '-rf', '--', repo.target], { step: `clear ${repo.name}` });
        await this.deps.backend.open(ref, plan).files.putDirectory(repo.source.hostPath, repo.target);
        continue;
      }
      const res = resolved.find((r) => r.name === repo.name)!;
      const cached = cachedRepos.find((r) => r.name === repo.name);
      const git = { ...repo, source: repo.source };
      if (cached?.refsDigest && cached.commit === res.commit && cached.ref === res.ref) {
        const now = refsDigest(await this.deps.broker.listRefs(res.mirror));
        if (now === cached.refsDigest) {
          await this.step(
            id,
            'fetch',
            `${repo.name} unchanged since the cache entry (${res.commit.slice(0, 12)}): nothing to fetch`,
          );
          digests[repo.name] = now;
          continue;
        }
      }
      // Refs and tags then equal a cold clone's.
      await this.step(
        id,
        'fetch',
        `fetching ${repo.name}: ${cached?.commit?.slice(0, 12) ?? '?'} → ${res.commit.slice(0, 12)}`,
      );
      digests[repo.name] = await this.repoSync.fetch(ref, plan, git, res.mirror, [res.commit]);
      await this.repoSync.checkout(ref, plan, git, res);
    }
    return digests;
  }

  /**
   * After setup ran at `setupAt` (the configured refs), bring each repo whose request differs to its
   * requested commit: fetch + check out, setup NOT re-run (what a warm start from the entry does).
   */
  private async checkoutOverrides(
    id: string,
    ref: BackendRef,
    plan: WorkspacePlan,
    setupAt: ResolvedRef[],
    resolved: ResolvedRef[],
    mirrors: Map<string, MirrorHandle>,
  ): Promise<void> {
    for (const repo of byDepth(gitRepos(plan))) {
      const at = setupAt.find((r) => r.name === repo.name)!;
      const [res] = await this.withMirrors(plan, [resolved.find((r) => r.name === repo.name)!], mirrors);
      if (!res || sameCheckout(at, res)) continue;
      await this.step(
        id,
        'fetch',
        `checking out the requested ${res.ref} of ${repo.name}: ${at.commit.slice(0, 12)} → ${res.commit.slice(0, 12)}`,
      );
      await this.repoSync.fetch(ref, plan, repo, res.mirror, [res.commit]);
      await this.repoSync.checkout(ref, plan, repo, res);
    }
  }

  /** Snapshot the clean post-setup state, refuse it if any known secret value is inside, mark ready. */
  private async keepCacheEntry(
    id: string,
    ref: BackendRef,
    plan: WorkspacePlan,
    building: CacheEntryRecord,
    resolved: ResolvedRef[],
    refsDigests: Record<string, string>,
  ): Promise<void> {
    await this.step(id, 'cache', 'keeping the post-setup state as the cache entry');
    const snapshot = await this.deps.backend.open(ref, plan).snapshots.take('cache', building.key);
    const hits = await this.deps.backend.snapshots.scan(snapshot, this.deps.secrets.knownSecretValues());
    if (hits.length > 0) {
      await this.deps.backend.snapshots.delete(snapshot);
      await bestEffort(
        this.deps.state.updateCacheEntry(building.key, building.version, { status: 'failed' }),
        this.deps.log,
        'marking a cache entry refused for a secret failed',
      );
      await this.records.update(id, (r) => ({
        warnings: [
          ...r.warnings,
          `cache entry refused: a secret value was found in ${hits.length} place(s) after setup`,
        ],
      }));
      this.deps.log.error('cache entry refused: secret found', {
        workspaceId: id,
        cacheKey: building.key,
        places: hits.length,
      });
      return;
    }
    const sizeBytes = await this.deps.backend.snapshots.sizeBytes(snapshot);
    await this.deps.state.updateCacheEntry(building.key, building.version, {
      status: 'ready',
      snapshot,
      sizeBytes,
      repos: resolved.map((r) => ({
        name: r.name,
        path: r.name,
        commit: r.commit,
        ref: r.ref,
        ...(refsDigests[r.name] ? { refsDigest: refsDigests[r.name] } : {}),
      })),
      lastUsedAt: this.now().toISOString(),
    });
    await evictCache(this.deps, this.now()).catch((e) => this.deps.log.warn('cache eviction failed', errorFields(e)));
  }

  /** A failed provisioning releases the entry it was building (marked failed: the next one rebuilds it). */
  private async releaseCacheEntry(id: string, key: string | undefined): Promise<void> {
    if (!key) return;
    const entry = await this.deps.state.getCacheEntry(key).catch(() => undefined);
    if (entry?.status !== 'building' || entry.builder !== id) return;
    await this.markEntryFailed(key, 'releasing the cache entry being built (marking it failed)');
  }

  private async markEntryFailed(key: string, what: string): Promise<void> {
    await bestEffort(
      (async () => {
        const entry = await this.deps.state.getCacheEntry(key);
        if (entry) await this.deps.state.updateCacheEntry(key, entry.version, { status: 'failed' });
      })(),
      this.deps.log,
      what,
    );
  }

  /**
   * The home's fingerprint: from the backend when it can compute the in-workspace digest itself
   * (faster, e.g. the local backend reads the host directory), else by the script inside.
   */
  async fingerprint(ref: BackendRef, plan: WorkspacePlan): Promise<string> {
    const { backend } = this.deps;
    const { files } = backend.open(ref, plan);
    if (files.fingerprintHome) return files.fingerprintHome();
    const out = await runStep(backend, ref, plan, fingerprintArgv(plan.home), {
      step: 'fingerprint',
      env: { LC_ALL: 'C' },
    });
    return parseFingerprint(out.stdout).digest;
  }

  private async fail(id: string, error: unknown, ref: BackendRef | undefined): Promise<void> {
    const step = error instanceof StepFailedError ? error.step : 'provision';
    const message = publicError(step, error, hostDirs(this.deps)).message;
    if (ref)
      await bestEffort(
        this.deps.backend.destroy(ref),
        this.deps.log,
        'destroying the compute of a failed provisioning',
      );
    await bestEffort(
      this.records.transition(
        id,
        ['provisioning'],
        'failed',
        { failure: { step, message } },
        { step: 'failed', message },
      ),
      this.deps.log,
      'marking the workspace failed',
    );
  }

  private async step(id: string, step: string, message: string): Promise<void> {
    await this.records.addStep(id, step, message);
  }

  private now(): Date {
    return (this.deps.now ?? (() => new Date()))();
  }
}

function plainRef(r: ResolvedRef): ResolvedRef {
  return { name: r.name, commit: r.commit, ref: r.ref, ...(r.branch ? { branch: r.branch } : {}) };
}

type CacheDecision = { info: CacheInfo; entry?: CacheEntryRecord; building?: CacheEntryRecord };

/** A miss that starts from an older entry of the same restore key. */
function restoredInfo(info: CacheInfo, from: CacheEntryRecord): CacheInfo {
  return {
    ...info,
    restoredFrom: from.key,
    reason: `${info.reason}; restored from entry ${from.key} (only a cacheKeyFiles file differs), setup re-run on top`,
  };
}

/** Same commit on the same branch (or both detached): an identical clone. */
function sameCheckout(a: ResolvedRef, b: ResolvedRef): boolean {
  return a.commit === b.commit && a.branch === b.branch;
}

/**
 * Repos whose requested ref differs from the configured one. "Differs" is decided on what a clone
 * would be: another commit, or the same commit but not on the same branch (a tag or commit id of
 * the configured branch's tip is an override; `main` when `main` is the default is not).
 */
function overriddenRepos(resolved: ResolvedRepo[], configured: ResolvedRepo[]): string[] {
  return resolved.filter((r) => !sameCheckout(r, configured.find((c) => c.name === r.name)!)).map((r) => r.name);
}

/**
 * Where setup runs and what the workspace's cache info says. With the cache in play, a workspace
 * at other refs always is "configured-ref setup, then its refs checked out" — from the ready entry,
 * or by building the entry from the configured refs, or (entry building elsewhere) the same uncached
 * — so its content does not depend on the cache's state, and no entry ever holds a requested
 * branch's setup. Without a usable cache (disabled, or a configured ref that no longer resolves),
 * setup runs at the requested refs and nothing is written.
 */
function startPlan(
  decision: CacheDecision,
  resolved: ResolvedRepo[],
  configured: ResolvedRepo[] | undefined,
  overridden: string[],
  cacheEnabled: boolean,
): { setupAt: ResolvedRepo[]; reason: string } {
  const reason = decision.info.reason;
  if (overridden.length === 0) return { setupAt: configured!, reason };
  const names = `refs override (${overridden.join(', ')})`;
  if (!cacheEnabled) return { setupAt: resolved, reason };
  if (!configured)
    return {
      setupAt: resolved,
      reason: `uncached: ${names}: a configured ref no longer resolves; setup ran at the requested refs, no entry written`,
    };
  if (decision.entry)
    return {
      setupAt: configured,
      reason: `${names}: started from the configured-ref entry (${reason}), requested refs checked out`,
    };
  if (decision.building)
    return {
      setupAt: configured,
      reason: `${names}: built the entry from the configured refs (${reason}), then checked out the requested refs`,
    };
  return {
    setupAt: configured,
    reason: `uncached: ${names}: ${reason}; setup ran at the configured refs, then the requested refs were checked out`,
  };
}
