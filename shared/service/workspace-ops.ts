import type { FetchParams, ResetParams } from '../contract/inputs.js';
import type { ChangesView, FetchResult, ResetResult, SnapshotResult } from '../contract/views.js';
import { BadRequestError, ConflictError, StepFailedError, type WspError } from '../contract/errors.js';
import type {
  OperationKind,
  OperationPhase,
  OperationProgress,
  OperationRecord,
  WorkspaceRecord,
} from '../contract/workspace.js';
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

/** What one phase of an operation answers: the phase to run next (after `waitSeconds`), or the result. */
export type PhaseStep =
  | { result: FetchResult | ResetResult | SnapshotResult }
  | { next: OperationPhase; progress?: OperationProgress; waitSeconds?: number };

/** Records an operation's progress (merged into what its record holds). */
export type SaveProgress = (progress: OperationProgress) => Promise<void>;

const RESET_PHASE_MESSAGES: Record<OperationPhase, string> = {
  begin: 'resetting',
  restore: 'restoring the baseline',
  replace: 'replacing the compute',
  sync: 'putting the baseline commits into the new compute',
  move: 'moving to the requested refs',
  verify: 'verifying the fingerprint',
};

/** Fetch, reset and changes: git and snapshot work on a ready workspace. */
export class WorkspaceOps {
  constructor(
    private readonly deps: ServiceDeps,
    private readonly records: WorkspaceRecords,
    private readonly repoSync: RepoSync,
    private readonly provisioner: Provisioner,
    private readonly gate: WorkspaceGate,
  ) {}

  /**
   * Run one phase of an operation (see OperationPhase): what comes next, or its result. Phases run
   * one by one in this process, or each in its own worker invocation (the operations state machine),
   * so each is safe to run again after a run cut short. `save` records progress on the operation.
   */
  runPhase(op: OperationRecord, save: SaveProgress): Promise<PhaseStep> {
    const phase = op.phase ?? 'begin';
    if (op.kind === 'fetch') {
      if (phase !== 'begin') throw new StepFailedError('fetch', `a fetch has no phase '${phase}'`);
      return this.fetch(op.workspaceId, op.input as FetchParams, op.progress ?? {}, save);
    }
    return this.resetPhase(op, phase, op.input as ResetParams);
  }

  /** How phases of one kind hold the workspace in this process (WorkspaceGate). */
  exclusive<T>(kind: OperationKind, id: string, fn: () => Promise<T>): Promise<T> {
    // Fetch changes only git metadata, through the workspace's own git: commands may run beside it.
    // A reset refuses command starts (409) and lets the ones starting now finish starting first, so
    // the backend's kill-all inside restore/recreate catches every process before content is rewritten.
    return kind === 'fetch'
      ? this.gate.exclusive(id, 'fetching', false, fn)
      : this.gate.exclusive(id, 'resetting', true, fn);
  }

  /** The provider fetches into its mirror (with the token), then the workspace fetches a bundle. */
  private async fetch(id: string, input: FetchParams, progress: OperationProgress, save: SaveProgress) {
    const ws = await this.ready(id);
    const repos = gitRepos(ws.plan);
    const names = input.repos ?? repos.map((r) => r.name);
    for (const n of [...names, ...(input.checkout ? [input.checkout.repo] : [])]) {
      if (!repos.some((r) => r.name === n))
        throw new BadRequestError(`unknown git repository '${n}'`, [
          { path: 'body.repos', message: `known: ${repos.map((r) => r.name).join(', ')}` },
        ]);
    }
    // A re-run (its worker was cut short) goes on with the repositories not fetched yet.
    const result: FetchResult = { repos: [...((progress.fetched ?? []) as unknown as FetchResult['repos'])] };
    for (const repo of repos.filter((r) => names.includes(r.name))) {
      if (result.repos.some((r) => r.name === repo.name)) continue;
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
      await save({ fetched: result.repos.map((r) => ({ ...r })) });
    }
    await this.records.addStep(id, 'fetch', `fetched ${result.repos.map((r) => r.name).join(', ') || 'nothing'}`);
    return { result };
  }

  /**
   * Back to the baseline, a phase at a time: `begin` checks the input and marks the workspace
   * resetting (by this operation); `restore` kills its processes and rewrites only what changed — or,
   * mode 'recreate', `replace` makes new compute from the cache entry and `sync` puts the baseline
   * commits in and takes a new baseline; `move` (with `refs`) moves to them and makes that the
   * baseline; `verify` recomputes the fingerprint, compares, and makes it ready. A failed phase fails
   * the workspace (it may be half rewritten), with the reset's public error.
   */
  private async resetPhase(op: OperationRecord, phase: OperationPhase, input: ResetParams): Promise<PhaseStep> {
    const id = op.workspaceId;
    if (phase === 'begin') return this.beginReset(op, input);
    let ws = await this.records.get(id);
    if (ws.status !== 'resetting' || ws.resetBy !== op.id)
      throw new ConflictError(`workspace '${id}' is ${ws.status}; the reset lost it`, {
        details: { status: ws.status },
      });
    const refs = input.refs && Object.keys(input.refs).length > 0 ? input.refs : undefined;
    try {
      switch (phase) {
        case 'restore': {
          if (!ws.backend || !ws.baseline) throw new ConflictError(`workspace '${id}' has no baseline`);
          await this.deps.backend.open(ws.backend, ws.plan).snapshots.restore(ws.baseline);
          return this.advance(id, refs ? 'move' : 'verify');
        }
        case 'replace':
          await this.provisioner.replaceCompute(ws);
          return this.advance(id, 'sync');
        case 'sync':
          await this.provisioner.syncReplaced(ws);
          return this.advance(id, refs ? 'move' : 'verify');
        case 'move': {
          if (!ws.backend || !ws.baseline || !refs) throw new ConflictError(`workspace '${id}' has no baseline`);
          const repos = await this.moveTo(ws, refs);
          // Nothing may keep writing into the new baseline (a `git gc --auto` the checkout left behind).
          await this.deps.backend.open(ws.backend, ws.plan).commands.killAll();
          await bestEffort(
            this.deps.backend.snapshots.delete(ws.baseline),
            this.deps.log,
            'deleting the old baseline before a new one',
          );
          const baseline = await this.deps.backend.open(ws.backend, ws.plan).snapshots.take('baseline', id);
          const baselineFingerprint = await this.provisioner.fingerprint(ws.backend, ws.plan);
          ws = await this.records.update(id, () => ({ baseline, baselineFingerprint, repos }));
          return this.advance(id, 'verify');
        }
        case 'verify':
          return { result: await this.verify(ws, op) };
        default:
          throw new StepFailedError('reset', `a reset has no phase '${phase}'`);
      }
    } catch (error) {
      throw await this.failReset(id, op.id, error);
    }
  }

  /** Bad input is refused before anything changes (a failed reset would cost the workspace). */
  private async beginReset(op: OperationRecord, input: ResetParams): Promise<PhaseStep> {
    const id = op.workspaceId;
    const ws = await this.records.get(id);
    const started = { startedAt: Date.parse(op.createdAt) };
    const first: OperationPhase = input.mode === 'recreate' ? 'replace' : 'restore';
    // A re-run after the workspace was marked: go on.
    if (ws.status === 'resetting' && ws.resetBy === op.id) return { next: first, progress: started };
    const known = gitRepos(ws.plan).map((r) => r.name);
    for (const name of Object.keys(input.refs ?? {})) {
      if (!known.includes(name))
        throw new BadRequestError(`unknown git repository '${name}'`, [
          { path: `body.refs.${name}`, message: `known: ${known.join(', ') || 'none'}` },
        ]);
    }
    if (ws.status === 'ready' && input.mode === 'recreate') await this.provisioner.recreateEntry(ws); // 409 if none
    const marked = await this.records.transition(
      id,
      ['ready'],
      'resetting',
      { resetBy: op.id },
      { step: 'reset', message: RESET_PHASE_MESSAGES[first] },
    );
    if (!marked.backend || !marked.baseline)
      throw await this.failReset(id, op.id, new ConflictError(`workspace '${id}' has no baseline`));
    return {
      next: first,
      progress: {
        ...started,
        ...(input.mode === 'recreate' ? { previousBaselineFingerprint: marked.baselineFingerprint ?? '' } : {}),
      },
    };
  }

  /** The fingerprint now against the baseline's, and the workspace ready again. */
  private async verify(ws: WorkspaceRecord, op: OperationRecord): Promise<ResetResult> {
    if (!ws.backend || !ws.baseline) throw new ConflictError(`workspace '${ws.id}' has no baseline`);
    const baselineFingerprint = ws.baselineFingerprint ?? '';
    const fingerprint = await this.provisioner.fingerprint(ws.backend, ws.plan);
    await this.records.transition(
      ws.id,
      ['resetting'],
      'ready',
      { ...clearDiskExceeded(ws), resetBy: undefined },
      {
        step: 'reset',
        message: `reset to the baseline (${fingerprint === baselineFingerprint ? 'fingerprint matches' : 'FINGERPRINT DIFFERS'})`,
      },
    );
    const previous = op.progress?.previousBaselineFingerprint;
    return {
      fingerprint,
      baselineFingerprint,
      matches: fingerprint === baselineFingerprint,
      ...(previous !== undefined ? { recreated: true, previousBaselineFingerprint: previous } : {}),
      durationMs: Date.now() - (op.progress?.startedAt ?? Date.parse(op.createdAt)),
    };
  }

  /** The next phase; the step on the record is progress the janitor sees (its abandoned rule). */
  private async advance(id: string, next: OperationPhase): Promise<PhaseStep> {
    await this.records.addStep(id, 'reset', RESET_PHASE_MESSAGES[next]);
    return { next };
  }

  /**
   * A reset that failed part-way: the workspace (perhaps half rewritten) is failed, if this reset
   * still holds it. Answers the public error: what the workspace provoked (a too-deep tree, a full
   * disk) told without the provider's host paths — in the record and in the answer alike.
   */
  async failReset(id: string, operationId: string, error: unknown): Promise<WspError> {
    const failure = publicError('reset', error, hostDirs(this.deps));
    const ws = await this.deps.state.getWorkspace(id).catch(() => undefined);
    if (ws?.status === 'resetting' && ws.resetBy === operationId)
      await bestEffort(
        this.records.transition(id, ['resetting'], 'failed', {
          failure: { step: 'reset', message: failure.message },
          resetBy: undefined,
        }),
        this.deps.log,
        'marking the workspace failed after a failed reset',
      );
    return failure;
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
