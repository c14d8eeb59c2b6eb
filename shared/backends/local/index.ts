import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type {
  BackendResource,
  CreateOptions,
  SnapshotStore,
  WorkspaceBackend,
  WorkspaceHandle,
} from '../../contract/backend.js';
import type { WorkspacePlan } from '../../contract/plan.js';
import type { BackendRef } from '../../contract/workspace.js';
import { BadRequestError, ConflictError } from '../../contract/errors.js';
import { errorFields, silentLogger, type Logger } from '../../log.js';
import { detectLimits, type WorkspaceCgroups } from './cgroup.js';
import { CommandRunner } from './commands.js';
import { runToolChecked } from './exec.js';
import { hostPathInHome } from './files.js';
import { claimHostUid, DEFAULT_UID_REGISTRY, releaseHostUid, sweepStaleHostUids } from './host-uids.js';
import { checkName } from '../../lib/names.js';
import type { LocalLayout } from './layout.js';
import { killAllOfUid } from './procs.js';
import { readMeta, refBelongsTo, refWorkspaceId, writeMeta, type WorkspaceMeta } from './meta.js';
import { writeOrigin } from './origin.js';
import { detectSandbox } from './sandbox-detect.js';
import { accountFiles, networkWarnings, type SandboxHost } from './sandbox.js';
import * as snapshots from './snapshots.js';
import { prepareDataDir, resolveLayout } from './setup-dirs.js';
import { detectOverlay, mountsUnder, OverlayHomes, unmountAll } from './overlay/index.js';
import { copyTreeAs } from './tree/index.js';
import { wipeAs } from './tree/as-user.js';
import { waitPastCtime } from './tree/manifest.js';
import { maxOriginCtimeNs, recordOriginFiles } from './tree/snapshot-linked.js';
import { bestEffort } from '../../lib/best-effort.js';
import { openOrReject } from '../handle.js';
import { asUser, chownToWorkspace, KILL_ALL_REASON, type LocalContext, LocalWorkspace } from './workspace.js';

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
  /**
   * Start commands through each workspace's in-sandbox forker where the host allows it (default
   * true; pid-namespace.ts); false: a new sandbox per command.
   */
  forker?: boolean;
}

/**
 * The local backend (`mode: local`): each workspace is a directory tree under the data dir; commands
 * run in a bubblewrap sandbox, as a host uid of the workspace's own when the provider is root.
 * Throws BackendUnavailableError when the host cannot run it (missing tools, untraversable data dir).
 */
export async function createLocalBackend(options: LocalBackendOptions): Promise<WorkspaceBackend> {
  const log = (options.log ?? silentLogger).child({ backend: 'local' });
  const detected = await detectSandbox(options.bwrapPath === undefined ? {} : { bwrapPath: options.bwrapPath });
  const layout = await resolveLayout(options.dataDir, detected.sandbox);
  await prepareDataDir(layout, detected.sandbox);
  const limits = await detectLimits(options.dataDir, detected.sandbox, layout);
  const warnings = [...detected.warnings, ...limits.warnings];
  const overlay = await detectOverlay(layout, detected.sandbox);
  if (!overlay.ok)
    warnings.push(
      `copy-on-write homes unavailable (${overlay.reason}): homes are copied from snapshots and reset by rewriting changed paths`,
    );
  for (const warning of warnings) log.warn(warning);
  const uidRegistry = options.hostUidRegistry ?? DEFAULT_UID_REGISTRY;
  // In the background: a host with many claims must not slow the start (a Lambda-style compose per call).
  if (detected.sandbox.asRoot) void sweepUids(uidRegistry, log);
  return new LocalBackend(
    layout,
    detected.sandbox,
    uidRegistry,
    options.owner,
    log,
    warnings,
    limits.cgroups,
    overlay.ok ? new OverlayHomes(layout, log) : undefined,
    options.forker,
  );
}

/** Stale host-uid claims freed (start-up and upkeep); a failure only delays their reuse. */
async function sweepUids(registry: string, log: Logger): Promise<void> {
  try {
    const removed = await sweepStaleHostUids(registry);
    if (removed > 0) log.info('stale host uid claims removed', { removed });
  } catch (error) {
    log.warn('could not sweep stale host uid claims', errorFields(error));
  }
}

class LocalBackend implements WorkspaceBackend {
  readonly kind = 'local';
  readonly snapshots: SnapshotStore;
  private readonly commands: CommandRunner;
  private readonly context: LocalContext;

  constructor(
    private readonly layout: LocalLayout,
    private readonly sandbox: SandboxHost,
    private readonly uidRegistry: string,
    private readonly owner: string,
    private readonly log: Logger,
    readonly warnings: string[],
    cgroups?: WorkspaceCgroups,
    private readonly overlay?: OverlayHomes,
    forker?: boolean,
  ) {
    this.commands = new CommandRunner(layout, sandbox, cgroups, overlay, forker === undefined ? {} : { forker });
    this.context = {
      layout,
      sandbox,
      runner: this.commands,
      log,
      ...(overlay ? { overlay } : {}),
      ...(cgroups ? { cgroups } : {}),
    };
    this.snapshots = {
      delete: (snapshot) => snapshots.deleteSnapshot(layout, snapshot),
      sizeBytes: (snapshot) => snapshots.snapshotSize(layout, snapshot),
      scan: (snapshot, needles) => snapshots.scanSnapshot(layout, snapshot, needles),
      list: () => snapshots.listSnapshots(layout),
    };
  }

  /**
   * Fresh local workspaces start from the host itself (its /usr, /etc… bound read-only into the
   * sandbox): nothing the provider can name a version of.
   */
  async baseIdentity(): Promise<string> {
    return 'host';
  }

  open(ref: BackendRef, plan: WorkspacePlan): WorkspaceHandle {
    return openOrReject(ref, () => new LocalWorkspace(this.context, ref, refWorkspaceId(ref), plan));
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
   * Remove a workspace dir. Its home and /tmp hold what the workspace made (any depth, any names,
   * symlinks, locked dirs): they are emptied AS the workspace uid (GNU rm, fd-relative), then the
   * provider removes its own root-owned files. When emptying fails, the whole dir is moved into the
   * root-only trash (no uid can reach into it) instead, so the workspace is gone all the same and its
   * uid can be handed out again; the leftover is logged. Never throws for the workspace's content.
   */
  private async removeWorkspaceDir(id: string, hostUid: number | undefined): Promise<void> {
    const wsDir = this.layout.workspaceDir(id);
    let clean = true;
    // An overlay home: unmounted (lazily when busy) and its upper emptied as the uid first. Root
    // never removes a tree while anything is mounted in it (the rm would reach through the mount).
    if (
      hostUid !== undefined &&
      (await fs.stat(path.join(wsDir, 'ovl')).then(
        () => true,
        () => false,
      ))
    ) {
      try {
        await (this.overlay ?? new OverlayHomes(this.layout, this.log)).unmountAndDrop(
          { workspaceId: id, hostUid },
          asUser(this.sandbox, { hostUid }),
        );
      } catch (error) {
        clean = false;
        this.log.warn('overlay home could not be dropped', { workspaceId: id, ...errorFields(error) });
      }
    }
    if (mountsUnder(wsDir).length > 0) await unmountAll(wsDir);
    // An upper nobody could drop as its uid (no meta.json): never removed recursively by root.
    if (
      hostUid === undefined &&
      (await fs.stat(path.join(wsDir, 'ovl')).then(
        () => true,
        () => false,
      ))
    )
      clean = false;
    for (const dir of [this.layout.home(id), this.layout.tmp(id)]) {
      let st: Stats;
      try {
        st = await fs.lstat(dir);
      } catch {
        continue; // never made (a create that failed early)
      }
      try {
        if (st.isDirectory()) {
          // An overlay mount point (root-owned, empty) is simply removed.
          if (st.uid === 0 && this.sandbox.asRoot) {
            await fs.rmdir(dir);
            continue;
          }
          // Without meta.json (a create that crashed early) the dir's owner is the uid it was handed to.
          await wipeAs('delete', asUser(this.sandbox, { hostUid: hostUid ?? st.uid }), dir);
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
    // An alias (a baseline that is its lower) stands for its target: name and dir are the target's.
    const from = options.from ? await snapshots.resolveSnapshot(this.layout, options.from) : undefined;
    const snapDir = from?.dir;
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
      await chownToWorkspace(this.sandbox, meta, this.layout.tmp(id));
      const home = this.layout.home(id);
      if (snapDir !== undefined && this.overlay !== undefined && (await this.overlay.usable(snapDir))) {
        // Copy-on-write: the snapshot is the read-only lower layer, writes land in an upper of its own.
        const snapshotId = await snapshots.readSnapshotId(snapDir);
        await this.overlay.mount(meta, from!.name, snapDir, snapshotId);
        // Unchanged files ARE the snapshot's files (their inodes): a later snapshot links them, no walk.
        if (snapshotId !== undefined)
          await writeOrigin(this.layout.origin(id), {
            snapshot: from!.name,
            snapshotId,
            files: new Map(),
            lower: true,
          });
      } else if (snapDir !== undefined) {
        const snapshotId = await snapshots.readSnapshotId(snapDir);
        await fs.mkdir(home, { mode: 0o700 });
        await chownToWorkspace(this.sandbox, meta, home);
        // The provider reads the root-only snapshot; the workspace uid writes its home (tree/as-user.ts).
        await copyTreeAs(path.join(snapDir, 'home'), home, asUser(this.sandbox, meta));
        if (snapshotId !== undefined) await this.recordOrigin(id, from!.name, snapDir, snapshotId);
      } else {
        await fs.mkdir(home, { mode: 0o700 });
        await chownToWorkspace(this.sandbox, meta, home);
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
    await bestEffort(snapshots.sweepRetired(this.layout), this.log, 'removing retired snapshots');
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

  /** Every workspace dir; one without meta.json (crash during create) is listed with owner ''. */
  /** Upkeep (the janitor, once a minute): host uids whose workspace was removed without destroy are freed. */
  async close(): Promise<void> {
    this.commands.close();
  }

  async maintain(): Promise<void> {
    if (this.sandbox.asRoot) await sweepUids(this.uidRegistry, this.log);
  }

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
}
