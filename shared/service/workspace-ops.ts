import type { FetchParams, ResetParams } from '../contract/inputs.js';
import type { ChangesView, FetchResult, ResetResult } from '../contract/views.js';
import { BadRequestError, ConflictError, StepFailedError } from '../contract/errors.js';
import type { WorkspaceRecord } from '../contract/workspace.js';
import {
  contentCheckArgv,
  diffArgv,
  parseContentCheck,
  parseStatus,
  reconcileChanges,
  statusArgv,
} from '../git/workspace-git.js';
import type { ServiceDeps } from './deps.js';
import type { Provisioner } from './provisioner.js';
import type { WorkspaceRecords } from './records.js';
import { gitRepos, type RepoSync } from './repo-sync.js';
import { hostDirs } from './deps.js';
import { clearDiskExceeded } from './disk-limit.js';
import { publicError } from './public-error.js';
import { runStep } from './steps.js';
import type { WorkspaceGate } from './workspace-gate.js';
import { bestEffort } from '../lib/best-effort.js';

const MAX_DIFF_BYTES = 1024 * 1024;

/** Fetch, reset and changes: git and snapshot work on a ready workspace. */
export class WorkspaceOps {
  constructor(
    private readonly deps: ServiceDeps,
    private readonly records: WorkspaceRecords,
    private readonly repoSync: RepoSync,
    private readonly provisioner: Provisioner,
    private readonly gate: WorkspaceGate,
  ) {}

  /** The provider fetches into its mirror (with the token), then the workspace fetches a bundle. */
  async fetch(id: string, input: FetchParams): Promise<FetchResult> {
    // Fetch changes only git metadata, through the workspace's own git: commands may run beside it.
    return this.gate.exclusive(id, 'fetching', false, async () => {
      const ws = await this.ready(id);
      const repos = gitRepos(ws.plan);
      const names = input.repos ?? repos.map((r) => r.name);
      for (const n of [...names, ...(input.checkout ? [input.checkout.repo] : [])]) {
        if (!repos.some((r) => r.name === n))
          throw new BadRequestError(`unknown git repository '${n}'`, [
            { path: 'body.repos', message: `known: ${repos.map((r) => r.name).join(', ')}` },
          ]);
      }
      const result: FetchResult = { repos: [] };
      for (const repo of repos.filter((r) => names.includes(r.name))) {
        const before = (await this.repoSync.heads(ws.backend!, ws.plan, repo)).head;
        const mirror = await this.repoSync.mirror(repo);
        const heads = await this.deps.broker.heads(mirror);
        await this.repoSync.fetch(ws.backend!, ws.plan, repo, mirror, Object.values(heads));
        let checkedOut: string | undefined;
        if (input.checkout?.repo === repo.name) {
          const target = await this.deps.broker.resolveRef(mirror, input.checkout.ref);
          await this.repoSync.checkout(ws.backend!, ws.plan, repo, target);
          checkedOut = target.commit;
        }
        const after = (await this.repoSync.heads(ws.backend!, ws.plan, repo)).head;
        result.repos.push({
          name: repo.name,
          ...(before ? { before } : {}),
          ...(after ? { after } : {}),
          heads,
          ...(checkedOut ? { checkedOut } : {}),
        });
      }
      await this.records.addStep(id, 'fetch', `fetched ${result.repos.map((r) => r.name).join(', ') || 'nothing'}`);
      return result;
    });
  }

  /**
   * Back to the baseline: processes killed, only what changed rewritten, then the fingerprint is
   * recomputed and compared. With `refs`, the workspace then moves to them and that becomes the baseline.
   */
  async reset(id: string, input: ResetParams): Promise<ResetResult> {
    // No command starts from here on (409), and the ones starting now finish starting first, so the
    // backend's kill-all inside restore/recreate catches every process before content is rewritten.
    return this.gate.exclusive(id, 'resetting', true, async () => {
      const started = Date.now();
      // Bad input is refused before anything changes (a failed reset would cost the workspace).
      const known = gitRepos((await this.records.get(id)).plan).map((r) => r.name);
      for (const name of Object.keys(input.refs ?? {})) {
        if (!known.includes(name))
          throw new BadRequestError(`unknown git repository '${name}'`, [
            { path: `body.refs.${name}`, message: `known: ${known.join(', ') || 'none'}` },
          ]);
      }
      let ws = await this.records.transition(id, ['ready'], 'resetting');
      try {
        if (!ws.backend || !ws.baseline) throw new ConflictError(`workspace '${id}' has no baseline`);
        // The fingerprint the workspace must come back to: the baseline's, whichever way it is reached.
        let baselineFingerprint = ws.baselineFingerprint ?? '';
        let previous: string | undefined;
        if (input.mode === 'recreate') {
          // A new baseline at the same commits: the files and HEAD as before; git's own metadata is new
          // (index stat data, reflog times; remote-tracking refs as the mirror has them now), so its
          // fingerprint is a new one. Both are reported.
          const made = await this.provisioner.recreate(ws);
          previous = baselineFingerprint;
          baselineFingerprint = made.baselineFingerprint;
          ws = await this.records.update(id, () => ({
            backend: made.backend,
            baseline: made.baseline,
            baselineFingerprint: made.baselineFingerprint,
          }));
        } else {
          await this.deps.backend.open(ws.backend, ws.plan).snapshots.restore(ws.baseline);
        }
        if (!ws.backend || !ws.baseline) throw new ConflictError(`workspace '${id}' has no baseline`);
        let repos = ws.repos;
        if (input.refs && Object.keys(input.refs).length > 0) {
          repos = await this.moveTo(ws, input.refs);
          // Nothing may keep writing into the new baseline (a `git gc --auto` the checkout left behind).
          await this.deps.backend.open(ws.backend, ws.plan).commands.killAll();
          await bestEffort(
            this.deps.backend.snapshots.delete(ws.baseline),
            this.deps.log,
            'deleting the old baseline before a new one',
          );
          const baseline = await this.deps.backend.open(ws.backend, ws.plan).snapshots.take('baseline', id);
          baselineFingerprint = await this.provisioner.fingerprint(ws.backend, ws.plan);
          await this.records.update(id, () => ({ baseline, baselineFingerprint, repos }));
        }
        const fingerprint = await this.provisioner.fingerprint(ws.backend, ws.plan);
        await this.records.transition(id, ['resetting'], 'ready', clearDiskExceeded(ws), {
          step: 'reset',
          message: `reset to the baseline (${fingerprint === baselineFingerprint ? 'fingerprint matches' : 'FINGERPRINT DIFFERS'})`,
        });
        return {
          fingerprint,
          baselineFingerprint,
          matches: fingerprint === baselineFingerprint,
          ...(previous !== undefined ? { recreated: true, previousBaselineFingerprint: previous } : {}),
          durationMs: Date.now() - started,
        };
      } catch (error) {
        // What the workspace provoked (a too-deep tree, a full disk) is the reset's failure, told
        // without the provider's host paths — in the record and in the answer alike.
        const failure = publicError('reset', error, hostDirs(this.deps));
        await bestEffort(
          this.records.transition(id, ['resetting'], 'failed', {
            failure: { step: 'reset', message: failure.message },
          }),
          this.deps.log,
          'marking the workspace failed after a failed reset',
        );
        throw failure;
      }
    });
  }

  /**
   * Per git repo: porcelain status (incl. untracked) and the diff against the baseline commit, made
   * whole by a content check the workspace cannot blind (index flags, ignore rules and attributes it
   * added, forged stat data): `hidden` names each changed file git had been told to hide.
   */
  async changes(id: string): Promise<ChangesView> {
    const ws = await this.ready(id);
    const view: ChangesView = { repos: [] };
    for (const repo of gitRepos(ws.plan)) {
      const baseCommit = ws.repos.find((r) => r.name === repo.name)?.commit;
      const at = { target: repo.target, baseCommit: baseCommit ?? 'HEAD' };
      const status = await runStep(this.deps.backend, ws.backend!, ws.plan, statusArgv(at), {
        step: `status ${repo.name}`,
      });
      const check = await runStep(this.deps.backend, ws.backend!, ws.plan, contentCheckArgv(at), {
        step: `content check ${repo.name}`,
      });
      const diff = await runStep(this.deps.backend, ws.backend!, ws.plan, diffArgv(at), {
        step: `diff ${repo.name}`,
        maxOutputBytes: MAX_DIFF_BYTES + 1,
      });
      const head = (await this.repoSync.heads(ws.backend!, ws.plan, repo)).head;
      if (check.status.stdout.truncated)
        throw new StepFailedError(`content check ${repo.name}`, 'too many changed files to list');
      let whole: ReturnType<typeof reconcileChanges>;
      try {
        whole = reconcileChanges(parseStatus(status.stdout), parseContentCheck(check.stdout));
      } catch {
        throw new StepFailedError(`content check ${repo.name}`, 'unreadable content check output');
      }
      view.repos.push({
        name: repo.name,
        path: repo.path,
        ...(baseCommit ? { baseCommit } : {}),
        ...(head ? { head } : {}),
        status: whole.status,
        hidden: whole.hidden,
        diff: diff.stdout.slice(0, MAX_DIFF_BYTES),
        diffTruncated: diff.status.stdout.bytes > MAX_DIFF_BYTES,
      });
    }
    return view;
  }

  private async moveTo(ws: WorkspaceRecord, refs: Record<string, string>): Promise<WorkspaceRecord['repos']> {
    const repos = gitRepos(ws.plan);
    const next = [...ws.repos];
    for (const [name, ref] of Object.entries(refs)) {
      const repo = repos.find((r) => r.name === name);
      if (!repo) throw new BadRequestError(`unknown git repository '${name}'`);
      const mirror = await this.repoSync.mirror(repo);
      const target = await this.deps.broker.resolveRef(mirror, ref);
      await this.repoSync.fetch(ws.backend!, ws.plan, repo, mirror, [target.commit]);
      await this.repoSync.checkout(ws.backend!, ws.plan, repo, target);
      const i = next.findIndex((r) => r.name === name);
      const state = { name, path: repo.path, commit: target.commit, ref: target.ref };
      if (i >= 0) next[i] = state;
      else next.push(state);
    }
    return next;
  }

  private async ready(id: string): Promise<WorkspaceRecord> {
    const ws = await this.records.get(id);
    if (ws.status !== 'ready' || !ws.backend)
      throw new ConflictError(`workspace '${id}' is ${ws.status}; this needs it ready`);
    return ws;
  }
}
