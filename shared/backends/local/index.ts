import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type {
  BackendResource,
  CommandSpec,
  CreateOptions,
  OutputStream,
  WorkspaceBackend,
} from '../../contract/backend.js';
import type { WorkspacePlan } from '../../contract/plan.js';
import type { BackendRef, SnapshotRef } from '../../contract/workspace.js';
import { BadRequestError, ConflictError, StepFailedError, WspError } from '../../contract/errors.js';
import { errorFields, silentLogger, type Logger } from '../../log.js';
import { fingerprintArgv, parseFingerprint } from '../../workspace/fingerprint.js';
import { detectLimits, type WorkspaceCgroups } from './cgroup.js';
import { CommandRunner } from './commands.js';
import { runTool, runToolChecked } from './exec.js';
import { copyDirIntoHome, hostPathInHome, putTransfer } from './files.js';
import { claimHostUid, DEFAULT_UID_REGISTRY, releaseHostUid } from './host-uids.js';
import { checkName } from '../../lib/names.js';
import { LocalLayout } from './layout.js';
import { killAllOfUid } from './procs.js';
import { readMeta, refBelongsTo, refWorkspaceId, requireMeta, writeMeta, type WorkspaceMeta } from './meta.js';
import { readOrigin, writeOrigin } from './origin.js';
import { detectSandbox } from './sandbox-detect.js';
import { accountFiles, mountsOverlapHome, networkWarnings, type SandboxHost } from './sandbox.js';
import * as snapshots from './snapshots.js';
import { prepareDataDir } from './setup-dirs.js';
import { copyTreeAs, hostFingerprint, restoreChanged, type AsUser } from './tree/index.js';
import { wipeAs } from './tree/as-user.js';
import { readManifest, waitPastCtime } from './tree/manifest.js';
import { maxOriginCtimeNs, recordOriginFiles, type OriginFiles } from './tree/snapshot-linked.js';
import { bestEffort } from '../../lib/best-effort.js';

export interface LocalBackendOptions {
  /** Provider data dir; the backend keeps everything under `<dataDir>/local/`. */
  dataDir: string;
  /** This provider instance; recorded in every workspace's meta.json for the reconciler. */
  owner: string;
  log?: Logger;
  /** Path of bwrap (default: search PATH); null = behave as if bwrap were not installed. */
  bwrapPath?: string | null;
  /** Host-wide registry of claimed workspace uids (root only); shared by every provider on the host. */
  hostUidRegistry?: string;
}

const KILL_ALL_REASON = 'all workspace processes killed';
/** Bounds of the in-workspace fingerprint, when the host cannot compute the same digest itself. */
const FINGERPRINT_TIMEOUT_MS = 10 * 60_000;
const FINGERPRINT_OUTPUT_BYTES = 64 * 1024;

/**
 * The local backend (`mode: local`): each workspace is a directory tree under the data dir; commands
 * run in a bubblewrap sandbox, as a host uid of the workspace's own when the provider is root.
 * Throws BackendUnavailableError when the host cannot run it (missing tools, untraversable data dir).
 */
export async function createLocalBackend(options: LocalBackendOptions): Promise<WorkspaceBackend> {
  const log = (options.log ?? silentLogger).child({ backend: 'local' });
  const layout = new LocalLayout(options.dataDir);
  const detected = await detectSandbox(options.bwrapPath === undefined ? {} : { bwrapPath: options.bwrapPath });
  await prepareDataDir(layout, detected.sandbox);
  const limits = await detectLimits(options.dataDir, detected.sandbox);
  const warnings = [...detected.warnings, ...limits.warnings];
  for (const warning of warnings) log.warn(warning);
  return new LocalBackend(
    layout,
    detected.sandbox,
    options.hostUidRegistry ?? DEFAULT_UID_REGISTRY,
    options.owner,
    log,
    warnings,
    limits.cgroups,
  );
}

class LocalBackend implements WorkspaceBackend {
  readonly kind = 'local';
  private readonly commands: CommandRunner;

  constructor(
    private readonly layout: LocalLayout,
    private readonly sandbox: SandboxHost,
    private readonly uidRegistry: string,
    private readonly owner: string,
    private readonly log: Logger,
    readonly warnings: string[],
    cgroups?: WorkspaceCgroups,
  ) {
    this.commands = new CommandRunner(layout, sandbox, cgroups);
  }

  private ref(workspaceId: string): BackendRef {
    return { kind: 'local', workspaceId, dir: this.layout.workspaceDir(workspaceId) };
  }

  private warnOnce(message: string): void {
    if (this.warnings.includes(message)) return;
    this.warnings.push(message);
    this.log.warn(message);
  }

  /**
   * Who writes into this workspace's home and /tmp (tree/as-user.ts): its own host uid when the
   * provider is root — a symlink the workspace planted can then only lead that writer to what the
   * workspace may touch anyway; the provider itself otherwise (it is the workspace's uid then).
   */
  private asUser(meta: { hostUid: number }): AsUser {
    return this.sandbox.asRoot ? { uid: meta.hostUid, gid: meta.hostUid } : undefined;
  }

  /**
   * Hand a directory the provider just made (home, tmp: in the root-owned workspace dir, so never a
   * symlink) to the workspace's host uid — the directory itself, never anything below it: what is
   * below is written by the workspace uid itself.
   */
  private async chownToWorkspace(meta: WorkspaceMeta, target: string): Promise<void> {
    if (!this.sandbox.asRoot) return;
    await fs.lchown(target, meta.hostUid, meta.hostUid);
  }

  /**
   * Remove a workspace dir. Its home and /tmp hold what the workspace made (any depth, any names,
   * symlinks, locked dirs): they are emptied AS the workspace uid (GNU rm, fd-relative), then the
   * provider removes its own root-owned files. When emptying fails, the whole dir is moved into the
   * root-only trash (no uid can reach into it) instead, so the workspace is gone all the same and its
   * uid can be handed out again; the leftover is logged. Never throws for the workspace's content.
   */
  private async removeWorkspaceDir(id: string, hostUid: number | undefined): Promise<void> {
    const wsDir = this.layout.workspaceDir(id);
    let clean = true;
    for (const dir of [this.layout.home(id), this.layout.tmp(id)]) {
      let st: Stats;
      try {
        st = await fs.lstat(dir);
      } catch {
        continue; // never made (a create that failed early)
      }
      try {
        if (st.isDirectory()) {
          // Without meta.json (a create that crashed early) the dir's owner is the uid it was handed to.
          await wipeAs('delete', this.asUser({ hostUid: hostUid ?? st.uid }), dir);
          await fs.rmdir(dir);
        } else await fs.unlink(dir);
      } catch (error) {
        clean = false;
        this.log.warn('workspace content could not be removed as its uid', { workspaceId: id, ...errorFields(error) });
      }
    }
    if (clean) {
      await fs.rm(wsDir, { recursive: true, force: true });
      return;
    }
    await fs.mkdir(this.layout.trashDir, { recursive: true, mode: 0o700 });
    await fs.chmod(this.layout.trashDir, 0o700);
    const parked = path.join(this.layout.trashDir, `${id}-${randomBytes(4).toString('hex')}`);
    await fs.rename(wsDir, parked);
    this.log.warn('workspace content left in the root-only trash of the data dir', {
      workspaceId: id,
      trash: path.basename(parked),
    });
  }

  refBelongsTo(ref: BackendRef, workspaceId: string): boolean {
    return refBelongsTo(this.layout, ref, workspaceId);
  }

  async create(plan: WorkspacePlan, options: CreateOptions): Promise<BackendRef> {
    const id = checkName('workspace id', options.workspaceId);
    if (!path.posix.isAbsolute(plan.home) || !Number.isInteger(plan.user.uid) || !Number.isInteger(plan.user.gid)) {
      throw new BadRequestError('plan.home must be absolute and plan.user.uid/gid integers', { field: 'plan' });
    }
    const snapDir = options.from ? await snapshots.requireSnapshot(this.layout, options.from) : undefined;
    const wsDir = this.layout.workspaceDir(id);
    let hostUid: number | undefined;
    try {
      await fs.mkdir(wsDir, { mode: 0o711 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST')
        throw new ConflictError(`local workspace '${id}' already exists`, { cause: error });
      throw error;
    }
    try {
      // 0711: bwrap, running as the workspace uid, must traverse it to reach home/tmp/transfer.
      await fs.chmod(wsDir, 0o711);
      if (this.sandbox.asRoot) hostUid = await claimHostUid(this.uidRegistry, wsDir);
      else hostUid = process.getuid!();
      const meta: WorkspaceMeta = {
        workspaceId: id,
        owner: this.owner,
        labels: { ...options.labels },
        hostUid,
        createdAt: new Date().toISOString(),
      };
      // meta.json first: from here on a crash leaves a resource the reconciler can find and destroy.
      await writeMeta(this.layout, meta);
      // Its cgroup right after meta.json: a crash from here on leaves a workspace the reconciler's
      // destroy finds, and destroy removes the cgroup (by workspace id).
      await this.commands.prepareLimits(id, plan);
      await fs.mkdir(this.layout.commandsDir(id), { mode: 0o700 });
      const accounts = accountFiles(plan);
      await fs.writeFile(this.layout.passwd(id), accounts.passwd, { mode: 0o644 });
      await fs.writeFile(this.layout.group(id), accounts.group, { mode: 0o644 });
      await fs.mkdir(this.layout.transfer(id), { mode: 0o755 });
      await fs.chmod(this.layout.transfer(id), 0o755);
      await fs.mkdir(this.layout.tmp(id), { mode: 0o700 });
      await this.chownToWorkspace(meta, this.layout.tmp(id));
      const home = this.layout.home(id);
      if (snapDir !== undefined) {
        const snapshotId = await snapshots.readSnapshotId(snapDir);
        await fs.mkdir(home, { mode: 0o700 });
        await this.chownToWorkspace(meta, home);
        // The provider reads the root-only snapshot; the workspace uid writes its home (tree/as-user.ts).
        await copyTreeAs(path.join(snapDir, 'home'), home, this.asUser(meta));
        if (snapshotId !== undefined) await this.recordOrigin(id, String(options.from!.name), snapDir, snapshotId);
      } else {
        await fs.mkdir(home, { mode: 0o700 });
        await this.chownToWorkspace(meta, home);
      }
      await this.ensureRootDir(meta, plan);
      if (plan.resources.cpus !== undefined) this.warnOnce('resources.cpus is not enforced by the local backend');
      for (const warning of networkWarnings(this.sandbox, plan)) this.warnOnce(warning);
      this.log.info('workspace created', { workspaceId: id, hostUid, fromSnapshot: options.from?.name ?? null });
      return this.ref(id);
    } catch (error) {
      await bestEffort(this.removeWorkspaceDir(id, hostUid), this.log, 'removing the workspace dir of a failed create');
      await bestEffort(this.commands.removeLimits(id), this.log, 'removing the limits of a failed create');
      if (this.sandbox.asRoot && hostUid !== undefined)
        await bestEffort(
          releaseHostUid(this.uidRegistry, hostUid, wsDir),
          this.log,
          'releasing the host uid of a failed create',
        );
      throw error;
    }
  }

  /**
   * origin.json for a home just copied from a snapshot (and chowned; no workspace process exists
   * yet), so later snapshots can link what stays unchanged. Kept only when the snapshot still has
   * the id it had before the copy (not replaced meanwhile). Then the clock is made to pass the
   * newest recorded ctime: a write in the same tick could otherwise keep a file's ctime and look
   * untouched. A failure here costs only the optimisation (warned, record removed).
   */
  private async recordOrigin(
    workspaceId: string,
    snapshot: string,
    snapDir: string,
    snapshotId: string,
  ): Promise<void> {
    const file = this.layout.origin(workspaceId);
    try {
      const files = await recordOriginFiles(this.layout.home(workspaceId));
      if ((await snapshots.readSnapshotId(snapDir)) !== snapshotId) return;
      await writeOrigin(file, { snapshot, snapshotId, files });
      await waitPastCtime(this.layout.workspaceDir(workspaceId), maxOriginCtimeNs(files));
    } catch (error) {
      this.log.warn('origin record not written: snapshots of this workspace will copy every file', {
        workspaceId,
        ...errorFields(error),
      });
      await fs.rm(file, { force: true });
    }
  }

  /** plan.root (where repositories land) exists in a fresh workspace; made as the workspace user. */
  private async ensureRootDir(meta: WorkspaceMeta, plan: WorkspacePlan): Promise<void> {
    const home = this.layout.home(meta.workspaceId);
    let root: string;
    try {
      root = hostPathInHome(plan, home, plan.root);
    } catch {
      return; // a root outside the home is not the backend's to create
    }
    if (root === home) return;
    const asUser = this.sandbox.asRoot ? { uid: meta.hostUid, gid: meta.hostUid } : {};
    await runToolChecked('create workspace root', ['mkdir', '-p', '--', root], asUser);
  }

  async destroy(ref: BackendRef): Promise<void> {
    const id = refWorkspaceId(ref);
    const meta = await readMeta(this.layout, id);
    if (meta !== undefined) await this.commands.killAll(meta, KILL_ALL_REASON);
    const wsDir = this.layout.workspaceDir(id);
    await this.removeWorkspaceDir(id, meta?.hostUid);
    // Kills whatever is still in the workspace's cgroup, then removes it (also without meta.json).
    await this.commands.removeLimits(id);
    if (meta !== undefined && this.sandbox.asRoot) {
      // A command that was mid-start during the first sweep must not outlive its uid's claim: the uid
      // goes to the next workspace. (Without meta the claim, if any, is stale already.)
      await killAllOfUid(meta.hostUid);
      await releaseHostUid(this.uidRegistry, meta.hostUid, wsDir);
    }
    this.log.info('workspace destroyed', { workspaceId: id, existed: meta !== undefined });
  }

  async putTransferFile(ref: BackendRef, _plan: WorkspacePlan, name: string, hostPath: string): Promise<void> {
    const meta = await requireMeta(this.layout, ref);
    await putTransfer(this.layout.transfer(meta.workspaceId), checkName('transfer file name', name), hostPath);
  }

  async removeTransferFile(ref: BackendRef, _plan: WorkspacePlan, name: string): Promise<void> {
    const meta = await requireMeta(this.layout, ref);
    await fs.rm(path.join(this.layout.transfer(meta.workspaceId), checkName('transfer file name', name)), {
      force: true,
    });
  }

  async putDirectory(ref: BackendRef, plan: WorkspacePlan, hostDir: string, guestPath: string): Promise<void> {
    const meta = await requireMeta(this.layout, ref);
    const home = this.layout.home(meta.workspaceId);
    const dest = hostPathInHome(plan, home, guestPath);
    await copyDirIntoHome({ home, hostUid: meta.hostUid, asRoot: this.sandbox.asRoot }, hostDir, dest);
  }

  async startCommand(ref: BackendRef, plan: WorkspacePlan, spec: CommandSpec): Promise<void> {
    const meta = await requireMeta(this.layout, ref);
    await this.commands.start(meta, plan, spec);
  }

  commandStatus(ref: BackendRef, commandId: string) {
    return this.commands.status(refWorkspaceId(ref), commandId);
  }

  waitCommand(ref: BackendRef, commandId: string, waitMs: number) {
    return this.commands.wait(refWorkspaceId(ref), commandId, waitMs);
  }

  readOutput(ref: BackendRef, commandId: string, stream: OutputStream, offset: number, limit: number) {
    return this.commands.read(refWorkspaceId(ref), commandId, stream, offset, limit);
  }

  killCommand(ref: BackendRef, commandId: string, reason: string): Promise<void> {
    return this.commands.kill(refWorkspaceId(ref), commandId, reason);
  }

  async killAll(ref: BackendRef): Promise<void> {
    await this.commands.killAll(await requireMeta(this.layout, ref), KILL_ALL_REASON);
  }

  async snapshot(
    ref: BackendRef,
    _plan: WorkspacePlan,
    purpose: 'cache' | 'baseline',
    name: string,
  ): Promise<SnapshotRef> {
    const meta = await requireMeta(this.layout, ref);
    checkName('snapshot name', name);
    const origin = await readOrigin(this.layout.origin(meta.workspaceId));
    const taken = await snapshots.createSnapshot(
      this.layout,
      this.layout.home(meta.workspaceId),
      name,
      {
        purpose,
        workspaceId: meta.workspaceId,
        createdAt: new Date().toISOString(),
      },
      origin,
      { ownerUid: meta.hostUid },
    );
    this.log.info('snapshot taken', {
      workspaceId: meta.workspaceId,
      snapshot: name,
      purpose,
      linkedFiles: taken.linkedFiles ?? 0,
      copiedFiles: taken.copiedFiles ?? 'all',
      skippedSpecialFiles: taken.skipped?.special ?? 0,
      skippedForeignFiles: taken.skipped?.foreign ?? 0,
    });
    // A workspace not seeded from a snapshot: its first snapshot becomes its origin (a cold start's
    // baseline, right after its cache snapshot, then links nearly everything from it).
    if (origin === undefined) await this.recordOriginFromSnapshot(meta.workspaceId, name, taken.id);
    return taken.ref;
  }

  /**
   * origin.json from a snapshot just taken of this workspace: its manifest holds (inode, ctime) of
   * every live path, stat'ed before the copy, with the ctime barrier already passed — what
   * recordOrigin collects after a create. Entries reconciled to inode 0 are left out.
   */
  private async recordOriginFromSnapshot(workspaceId: string, snapshot: string, snapshotId: string): Promise<void> {
    const file = this.layout.origin(workspaceId);
    try {
      const manifest = await readManifest(this.layout.snapshotDir(snapshot));
      const files: OriginFiles = new Map();
      for (const [key, e] of manifest)
        if (e.type === 'f' && e.ino !== 0n) files.set(key, { ino: e.ino, ctimeNs: e.ctimeNs });
      await writeOrigin(file, { snapshot, snapshotId, files });
    } catch (error) {
      this.log.warn('origin record not written: snapshots of this workspace will copy every file', {
        workspaceId,
        ...errorFields(error),
      });
      await fs.rm(file, { force: true });
    }
  }

  /** killAll, then rewrite only what changed since the snapshot, then an empty /tmp. */
  async restore(ref: BackendRef, _plan: WorkspacePlan, snapshot: SnapshotRef): Promise<void> {
    const meta = await requireMeta(this.layout, ref);
    const snapDir = await snapshots.requireSnapshot(this.layout, snapshot);
    await this.commands.killAll(meta, KILL_ALL_REASON);
    const user = this.asUser(meta);
    let result: { restored: number; removed: number };
    try {
      result = await restoreChanged(this.layout.home(meta.workspaceId), snapDir, user);
      // /tmp emptied as the workspace uid too; the dir itself (root-owned parent) stays.
      const tmp = this.layout.tmp(meta.workspaceId);
      await fs.mkdir(tmp, { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'EEXIST') throw error;
      });
      await wipeAs('wipe /tmp', user, tmp);
      await fs.chmod(tmp, 0o700);
      await this.chownToWorkspace(meta, tmp);
    } catch (error) {
      if (error instanceof WspError) throw error;
      // A file system error names host paths: the step, not the message, goes to the caller.
      this.log.warn('restore failed', { workspaceId: meta.workspaceId, ...errorFields(error) });
      throw new StepFailedError(
        'restore',
        `cannot restore the workspace home (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
    this.log.info('workspace restored', { workspaceId: meta.workspaceId, snapshot: snapshot.name, ...result });
  }

  /**
   * hostFingerprint of the home: the digest the in-workspace script prints, without a sandbox
   * start and a shell pipeline (and as root, so a file the user made unreadable does not fail it).
   * When another sandbox mount (/tmp, the transfer dir, system dirs) lies inside or around
   * plan.home, the workspace sees a different tree there: the script is run inside instead.
   */
  async fingerprintHome(ref: BackendRef, plan: WorkspacePlan): Promise<string> {
    const meta = await requireMeta(this.layout, ref);
    if (this.sandbox.kind === 'bwrap' && mountsOverlapHome(plan)) return this.fingerprintInside(meta, plan);
    try {
      return await hostFingerprint(this.layout.home(meta.workspaceId), { ownerUid: meta.hostUid });
    } catch (error) {
      if (error instanceof WspError) throw error;
      const failed = new StepFailedError('fingerprint', 'cannot read the workspace home');
      failed.cause = error;
      throw failed;
    }
  }

  private async fingerprintInside(meta: WorkspaceMeta, plan: WorkspacePlan): Promise<string> {
    const id = meta.workspaceId;
    const commandId = `sys-fp-${randomBytes(8).toString('hex')}`;
    await this.commands.start(meta, plan, {
      commandId,
      argv: fingerprintArgv(plan.home),
      cwd: plan.home,
      env: { ...plan.env, LC_ALL: 'C' },
      timeoutMs: FINGERPRINT_TIMEOUT_MS,
      maxOutputBytes: FINGERPRINT_OUTPUT_BYTES,
    });
    let status = await this.commands.wait(id, commandId, 25_000);
    while (status.state === 'running') status = await this.commands.wait(id, commandId, 25_000);
    if (status.state !== 'exited' || status.exitCode !== 0) {
      const stderr = (await this.commands.read(id, commandId, 'stderr', 0, FINGERPRINT_OUTPUT_BYTES)).data
        .toString('utf8')
        .trim();
      throw new StepFailedError(
        'fingerprint',
        `${status.state} ${status.exitCode ?? status.reason ?? ''}: ${stderr.slice(-2000)}`,
        { commandId },
      );
    }
    return parseFingerprint(
      (await this.commands.read(id, commandId, 'stdout', 0, FINGERPRINT_OUTPUT_BYTES)).data.toString('utf8'),
    ).digest;
  }

  deleteSnapshot(snapshot: SnapshotRef): Promise<void> {
    return snapshots.deleteSnapshot(this.layout, snapshot);
  }

  snapshotSizeBytes(snapshot: SnapshotRef): Promise<number> {
    return snapshots.snapshotSize(this.layout, snapshot);
  }

  scanSnapshot(snapshot: SnapshotRef, needles: readonly string[]): Promise<string[]> {
    return snapshots.scanSnapshot(this.layout, snapshot, needles);
  }

  /** Every workspace dir; one without meta.json (crash during create) is listed with owner ''. */
  async listResources(): Promise<BackendResource[]> {
    const names = await fs.readdir(this.layout.workspacesDir).catch(() => [] as string[]);
    const out: BackendResource[] = [];
    for (const name of names.sort()) {
      try {
        checkName('workspace id', name);
      } catch {
        continue;
      }
      const meta = await readMeta(this.layout, name);
      out.push({ workspaceId: name, owner: meta?.owner ?? '', ref: this.ref(name) });
    }
    return out;
  }

  /**
   * `du` as root over the home and /tmp: no symlink followed, one filesystem, hardlinks once, and a
   * directory the workspace made unreadable still counted. A walk that raced a deletion (du exits
   * non-zero) still reports what it saw.
   */
  async usageBytes(ref: BackendRef): Promise<number> {
    const meta = await requireMeta(this.layout, ref);
    const id = meta.workspaceId;
    const result = await runTool(['du', '-s', '-x', '-B1', '--total', '--', this.layout.home(id), this.layout.tmp(id)]);
    const total = /^(\d+)\s+total$/m.exec(result.stdout);
    if (total === null) throw new StepFailedError('disk usage', `du exited ${result.code ?? result.signal}`);
    return Number(total[1]);
  }

  listSnapshots(): Promise<SnapshotRef[]> {
    return snapshots.listSnapshots(this.layout);
  }
}
