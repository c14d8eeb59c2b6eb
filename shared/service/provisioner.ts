import fs from 'node:fs/promises';
import path from 'node:path';
import { BadRequestError, ConflictError, NotFoundError, StepFailedError } from '../contract/errors.js';
import type { WorkspacePlan } from '../contract/plan.js';
import type {
  BackendRef,
  CacheEntryRecord,
  CacheInfo,
  RepoState,
  SnapshotRef,
  WorkspaceRecord,
} from '../contract/workspace.js';
import type { MirrorHandle } from '../git/mirror.js';
import { normalizeRepoPath } from '../config/schema.js';
import { errorFields } from '../log.js';
import { fingerprintArgv, parseFingerprint } from '../workspace/fingerprint.js';
import { computeCacheKey } from './cache-key.js';
import { evictCache } from './cache-eviction.js';
import { hostDirs, type ServiceDeps } from './deps.js';
import { publicError } from './public-error.js';
import { newSystemCommandId } from './ids.js';
import type { WorkspaceRecords } from './records.js';
import { byDepth, gitRepos, type RepoSync } from './repo-sync.js';
import { runStep } from './steps.js';
import { bestEffort } from '../lib/best-effort.js';

interface ResolvedRepo {
  name: string;
  mirror: MirrorHandle;
  commit: string;
  ref: string;
  branch?: string;
}

/** How long a cache builder's lease lasts before another instance may take the key over. */
const CACHE_LEASE_MS = 10 * 60_000;

/**
 * Provisioning: resolve refs in the mirrors, compute the cache key, then either start from a ready
 * cache entry and fetch + check out (warm), or clone + run setup and keep the result as the entry
 * (cold). Ends with a baseline snapshot and its fingerprint, and the workspace 'ready'.
 */
export class Provisioner {
  constructor(
    private readonly deps: ServiceDeps,
    private readonly records: WorkspaceRecords,
    private readonly repoSync: RepoSync,
  ) {}

  async provision(id: string): Promise<void> {
    const log = this.deps.log.child({ workspaceId: id });
    let ref: BackendRef | undefined;
    let building: CacheEntryRecord | undefined;
    try {
      const record = await this.records.get(id);
      if (record.status !== 'provisioning') return; // a re-delivered job for a settled workspace
      const plan = record.plan;
      await this.step(
        id,
        'resolve',
        `resolving ${plan.repos.length} repositor${plan.repos.length === 1 ? 'y' : 'ies'}`,
      );
      const resolved = await this.resolveRepos(plan);
      // The entry is keyed and built from the CONFIGURED refs only: a request for other refs must
      // never put its branch's setup side effects into everybody's cache (configuredRepos says which).
      const configured = await this.configuredRepos(plan, resolved);
      const overridden = configured ? overriddenRepos(resolved, configured) : resolved.map((r) => r.name);
      const key = await this.cacheKey(plan, configured ?? resolved);
      const labels = { 'wsp.workspace': id, 'wsp.owner': this.deps.instanceId, 'wsp.cache-key': key };
      let decision: Awaited<ReturnType<Provisioner['decideCache']>>;
      let start: ReturnType<typeof startPlan>;
      for (let attempt = 0; ; attempt++) {
        decision = await this.decideCache(key, configured !== undefined);
        building = decision.building;
        start = startPlan(decision, resolved, configured, overridden, this.deps.config.cache.enabled);
        const info: CacheInfo = { ...decision.info, reason: start.reason };
        await this.records.update(id, () => ({ cache: info }));
        await this.step(id, 'cache', `${info.hit ? 'hit' : 'miss'}: ${info.reason}`);
        try {
          ref = await this.deps.backend.create(plan, {
            workspaceId: id,
            labels,
            ...(decision.entry?.snapshot ? { from: decision.entry.snapshot } : {}),
          });
          break;
        } catch (error) {
          // A ready entry whose snapshot is gone (pruned by hand, lost with a disk): a miss, not a
          // failure. The entry is marked failed, so the next decision rebuilds it (once).
          if (!(error instanceof NotFoundError) || !decision.entry || attempt > 0) throw error;
          await bestEffort(
            this.deps.state.updateCacheEntry(key, decision.entry.version, { status: 'failed' }),
            this.deps.log,
            'marking a cache entry whose snapshot is gone failed',
          );
          await this.step(id, 'cache', "the entry's snapshot is gone: rebuilding the entry");
        }
      }
      await this.records.update(id, () => ({ backend: ref! }));

      if (decision.entry) await this.warmStart(id, ref, plan, resolved, decision.entry);
      else {
        // Setup runs at `start.setupAt`: the configured refs whenever the cache is in play.
        await this.coldStart(id, ref, plan, start.setupAt);
        if (building) building = await this.keepCacheEntry(id, ref, plan, building, start.setupAt);
        // Then the requested refs are fetched and checked out over it, setup not re-run.
        await this.checkoutOverrides(id, ref, plan, start.setupAt, resolved);
      }

      await this.step(id, 'baseline', 'taking the baseline snapshot');
      await this.deps.backend.open(ref, plan).commands.killAll(); // nothing left running writes into the home while it is kept
      const baseline = await this.deps.backend.open(ref, plan).snapshots.take('baseline', id);
      const fingerprint = await this.fingerprint(ref, plan);
      const repos: RepoState[] = plan.repos.map((r) => {
        const res = resolved.find((x) => x.name === r.name);
        return { name: r.name, path: r.path, ...(res ? { commit: res.commit, ref: res.ref } : {}) };
      });
      const warnings = [...new Set([...(await this.records.get(id)).warnings, ...this.deps.backend.warnings])];
      await this.records.transition(
        id,
        ['provisioning'],
        'ready',
        { baseline, baselineFingerprint: fingerprint, repos, warnings },
        { step: 'ready', message: `ready (fingerprint ${fingerprint.slice(0, 12)})` },
      );
      log.info('workspace ready', { cacheKey: key, hit: decision.info.hit });
    } catch (error) {
      log.error('provisioning failed', errorFields(error));
      await this.releaseCacheEntry(building);
      await this.fail(id, error, ref);
    }
  }

  /**
   * Reset by replacement (`reset` with mode 'recreate'): the workspace's compute is destroyed and made
   * again from its cache entry, its repositories are fetched and checked out at the baseline commits
   * (setup is not re-run: the entry holds its result), and a new baseline is taken. For when restoring
   * in place is not enough (the compute itself is suspect) or not cheaper (a Fargate task from a warm
   * pool). Throws ConflictError when the workspace's cache entry is not ready (nothing to recreate from).
   */
  async recreate(
    ws: WorkspaceRecord,
  ): Promise<{ backend: BackendRef; baseline: SnapshotRef; baselineFingerprint: string }> {
    const key = ws.cache?.key;
    const entry = key ? await this.deps.state.getCacheEntry(key) : undefined;
    if (!key || entry?.status !== 'ready' || !entry.snapshot) {
      throw new ConflictError(
        `workspace '${ws.id}' has no ready cache entry to recreate from; reset with mode 'restore'`,
      );
    }
    const { plan } = ws;
    await this.step(ws.id, 'recreate', 'replacing the workspace compute');
    if (ws.backend) await this.deps.backend.destroy(ws.backend);
    if (ws.baseline)
      await bestEffort(
        this.deps.backend.snapshots.delete(ws.baseline),
        this.deps.log,
        'deleting the old baseline before recreating',
      );
    const labels = { 'wsp.workspace': ws.id, 'wsp.owner': this.deps.instanceId, 'wsp.cache-key': key };
    const ref = await this.deps.backend.create(plan, { workspaceId: ws.id, labels, from: entry.snapshot });
    await this.records.update(ws.id, () => ({ backend: ref }));
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
    await this.warmStart(ws.id, ref, plan, resolved, entry);
    await this.deps.backend.open(ref, plan).commands.killAll();
    const baseline = await this.deps.backend.open(ref, plan).snapshots.take('baseline', ws.id);
    return { backend: ref, baseline, baselineFingerprint: await this.fingerprint(ref, plan) };
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

  private async cacheKey(plan: WorkspacePlan, resolved: ResolvedRepo[]): Promise<string> {
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
    return computeCacheKey({
      backendKind: this.deps.backend.kind,
      baseIdentity: await this.deps.backend.baseIdentity(),
      plan,
      setupScript: this.deps.config.setup.script,
      setupEnv: this.deps.config.workspace.env,
      keyFiles,
    });
  }

  /**
   * Single-flight per key across instances: the first to create the entry (conditional put) builds it;
   * others wait for it to become ready, or go uncached when the builder fails or its lease runs out.
   */
  private async decideCache(key: string, usable = true): Promise<CacheDecision> {
    const { state } = this.deps;
    if (!this.deps.config.cache.enabled) return { info: { key, hit: false, reason: 'cache disabled' } };
    if (!usable) return { info: { key, hit: false, reason: 'uncached' } };
    const deadline = Date.now() + this.deps.config.setup.timeoutMs;
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
      if (!entry) {
        const fresh: CacheEntryRecord = {
          key,
          status: 'building',
          version: 1,
          backendKind: this.deps.backend.kind,
          repos: [],
          lease,
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
          const taken = await state.updateCacheEntry(key, entry.version, { status: 'building', lease });
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
      if (Date.now() > deadline)
        return { info: { key, hit: false, reason: 'entry still building elsewhere (went uncached)' } };
      waited = true;
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  private async coldStart(id: string, ref: BackendRef, plan: WorkspacePlan, resolved: ResolvedRepo[]): Promise<void> {
    for (const repo of byDepth(plan.repos)) {
      if (repo.source.kind === 'localDir') {
        await this.step(id, 'copy', `copying ${repo.source.hostPath} to ${repo.target}`);
        await this.deps.backend.open(ref, plan).files.putDirectory(repo.source.hostPath, repo.target);
        continue;
      }
      const res = resolved.find((r) => r.name === repo.name)!;
      await this.step(
        id,
        'clone',
        `cloning ${repo.source.url} at ${res.ref} (${res.commit.slice(0, 12)}) into ${repo.target}`,
      );
      await this.repoSync.clone(ref, plan, { ...repo, source: repo.source }, res.mirror, res);
    }
    await this.runSetup(id, ref, plan);
  }

  /** Start from the entry: fetch and check out the requested commits; setup is NOT re-run. */
  private async warmStart(
    id: string,
    ref: BackendRef,
    plan: WorkspacePlan,
    resolved: ResolvedRepo[],
    entry: CacheEntryRecord,
  ): Promise<void> {
    for (const repo of byDepth(plan.repos)) {
      if (repo.source.kind === 'localDir') {
        // A local directory is the operator's live tree: always copied fresh, never served from cache.
        await this.step(id, 'copy', `copying ${repo.source.hostPath} to ${repo.target}`);
        await runStep(this.deps.backend, ref, plan, ['rm', '-rf', '--', repo.target], { step: `clear ${repo.name}` });
        await this.deps.backend.open(ref, plan).files.putDirectory(repo.source.hostPath, repo.target);
        continue;
      }
      const res = resolved.find((r) => r.name === repo.name)!;
      const cached = entry.repos.find((r) => r.name === repo.name)?.commit;
      const git = { ...repo, source: repo.source };
      // Always fetch (cheap when nothing is new): refs and tags then equal a cold clone's.
      await this.step(
        id,
        'fetch',
        `fetching ${repo.name}: ${cached?.slice(0, 12) ?? '?'} → ${res.commit.slice(0, 12)}`,
      );
      await this.repoSync.fetch(ref, plan, git, res.mirror, [res.commit]);
      await this.repoSync.checkout(ref, plan, git, res);
    }
  }

  /**
   * After setup ran at `setupAt` (the configured refs), bring each repo whose request differs to its
   * requested commit: fetch + check out, setup NOT re-run (what a warm start from the entry does).
   */
  private async checkoutOverrides(
    id: string,
    ref: BackendRef,
    plan: WorkspacePlan,
    setupAt: ResolvedRepo[],
    resolved: ResolvedRepo[],
  ): Promise<void> {
    for (const repo of byDepth(gitRepos(plan))) {
      const res = resolved.find((r) => r.name === repo.name)!;
      const at = setupAt.find((r) => r.name === repo.name)!;
      if (sameCheckout(at, res)) continue;
      await this.step(
        id,
        'fetch',
        `checking out the requested ${res.ref} of ${repo.name}: ${at.commit.slice(0, 12)} → ${res.commit.slice(0, 12)}`,
      );
      await this.repoSync.fetch(ref, plan, repo, res.mirror, [res.commit]);
      await this.repoSync.checkout(ref, plan, repo, res);
    }
  }

  private async runSetup(id: string, ref: BackendRef, plan: WorkspacePlan): Promise<void> {
    const script = this.deps.config.setup.script;
    if (script.trim() === '') return;
    const commandId = newSystemCommandId();
    const now = this.now().toISOString();
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
      startedAt: now,
    });
    await this.records.update(id, () => ({ setupCommandId: commandId }));
    await this.step(id, 'setup', `running the setup script (command ${commandId})`);
    try {
      await runStep(this.deps.backend, ref, plan, ['sh', '-c', script], {
        step: 'setup',
        commandId,
        cwd: plan.workdir,
        env: this.deps.config.workspace.env,
        timeoutMs: this.deps.config.setup.timeoutMs,
        maxOutputBytes: this.deps.config.commands.maxOutputBytes,
        // Setup has its own network (config setup.network: egress by default, for `npm install`).
        ...(plan.setupNetwork ? { network: plan.setupNetwork } : {}),
      });
    } finally {
      const status = await this.deps.backend.open(ref, plan).commands.status(commandId);
      const rec = await this.deps.state.getCommand(id, commandId);
      if (rec) {
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
    }
    // What setup left running (a daemon, `cmd &`) must not live on into the cache entry or keep
    // writing into the home while it is snapshotted.
    await this.deps.backend.open(ref, plan).commands.killAll();
  }

  /** Snapshot the clean post-setup state, refuse it if any known secret value is inside, mark ready. */
  private async keepCacheEntry(
    id: string,
    ref: BackendRef,
    plan: WorkspacePlan,
    building: CacheEntryRecord,
    resolved: ResolvedRepo[],
  ): Promise<undefined> {
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
      return undefined;
    }
    const sizeBytes = await this.deps.backend.snapshots.sizeBytes(snapshot);
    await this.deps.state.updateCacheEntry(building.key, building.version, {
      status: 'ready',
      snapshot,
      sizeBytes,
      repos: resolved.map((r) => ({ name: r.name, path: r.name, commit: r.commit, ref: r.ref })),
      lastUsedAt: this.now().toISOString(),
    });
    await evictCache(this.deps, this.now()).catch((e) => this.deps.log.warn('cache eviction failed', errorFields(e)));
    return undefined;
  }

  private async releaseCacheEntry(building: CacheEntryRecord | undefined): Promise<void> {
    if (!building) return;
    await bestEffort(
      this.deps.state.updateCacheEntry(building.key, building.version, { status: 'failed' }),
      this.deps.log,
      'releasing the cache entry being built (marking it failed)',
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

type CacheDecision = { info: CacheInfo; entry?: CacheEntryRecord; building?: CacheEntryRecord };

/** Same commit on the same branch (or both detached): an identical clone. */
function sameCheckout(a: ResolvedRepo, b: ResolvedRepo): boolean {
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
