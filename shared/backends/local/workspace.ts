import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type {
  SnapshotPurpose,
  WorkspaceFiles,
  WorkspaceHandle,
  WorkspaceSnapshots,
  WorkspaceUsage,
} from '../../contract/backend.js';
import { StepFailedError, WspError } from '../../contract/errors.js';
import type { WorkspacePlan } from '../../contract/plan.js';
import type { BackendRef, SnapshotRef } from '../../contract/workspace.js';
import { bestEffort } from '../../lib/best-effort.js';
import { checkName } from '../../lib/names.js';
import { errorFields, type Logger } from '../../log.js';
import { fingerprintArgv, parseFingerprint } from '../../workspace/fingerprint.js';
import type { WorkspaceCgroups } from './cgroup.js';
import { readCgroupUsage } from './cgroup-usage.js';
import { type CommandRunner, LocalCommands } from './commands.js';
import { runTool } from './exec.js';
import { copyDirIntoHome, hostPathInHome, putTransfer } from './files.js';
import type { LocalLayout } from './layout.js';
import { requireMeta, type WorkspaceMeta } from './meta.js';
import { readOrigin, writeOrigin } from './origin.js';
import { usageOfUid } from './proc-usage.js';
import { mountsOverlapHome, type SandboxHost } from './sandbox.js';
import { DEFAULT_WORKSPACE_PIDS } from '../../contract/limits.js';
import * as snapshots from './snapshots.js';
import { hostFingerprint, restoreChanged, type AsUser } from './tree/index.js';
import { wipeAs } from './tree/as-user.js';
import type { OverlayHomes } from './overlay/index.js';
import { readManifest } from './tree/manifest.js';
import type { OriginFiles } from './tree/snapshot-linked.js';

export const KILL_ALL_REASON = 'all workspace processes killed';
/** Bounds of the in-workspace fingerprint, when the host cannot compute the same digest itself. */
const FINGERPRINT_TIMEOUT_MS = 10 * 60_000;
const FINGERPRINT_OUTPUT_BYTES = 64 * 1024;
/** How long a usage request's du may walk the home before its disk figure is given up (null). */
const USAGE_DU_SECONDS = 30;

/** What every handle of one local backend shares. */
export interface LocalContext {
  layout: LocalLayout;
  sandbox: SandboxHost;
  runner: CommandRunner;
  log: Logger;
  /** Copy-on-write homes; absent: homes are copied and reset path by path. */
  overlay?: OverlayHomes;
  /** The workspaces' cgroups (root with cgroup support): where their usage is read. */
  cgroups?: WorkspaceCgroups;
}

/**
 * Who writes into a workspace's home and /tmp (tree/as-user.ts): its own host uid when the
 * provider is root — a symlink the workspace planted can then only lead that writer to what the
 * workspace may touch anyway; the provider itself otherwise (it is the workspace's uid then).
 */
export function asUser(sandbox: SandboxHost, meta: { hostUid: number }): AsUser {
  return sandbox.asRoot ? { uid: meta.hostUid, gid: meta.hostUid } : undefined;
}

/**
 * Hand a directory the provider just made (home, tmp: in the root-owned workspace dir, so never a
 * symlink) to the workspace's host uid — the directory itself, never anything below it: what is
 * below is written by the workspace uid itself.
 */
export async function chownToWorkspace(sandbox: SandboxHost, meta: WorkspaceMeta, target: string): Promise<void> {
  if (!sandbox.asRoot) return;
  await fs.lchown(target, meta.hostUid, meta.hostUid);
}

/**
 * One local workspace (a directory tree under the data dir): commands in its sandbox, files copied
 * in as its uid, snapshots as root-only copies that know what a later reset must rewrite.
 */
export class LocalWorkspace implements WorkspaceHandle, WorkspaceFiles, WorkspaceSnapshots {
  readonly commands: LocalCommands;
  /** The files and snapshots of this workspace are methods of the handle itself. */
  readonly files: WorkspaceFiles = this;
  readonly snapshots: WorkspaceSnapshots = this;

  constructor(
    private readonly c: LocalContext,
    readonly ref: BackendRef,
    private readonly workspaceId: string,
    private readonly plan: WorkspacePlan,
  ) {
    this.commands = new LocalCommands(c.runner, c.layout, workspaceId, plan, KILL_ALL_REASON);
  }

  async putTransferFile(name: string, hostPath: string): Promise<void> {
    const meta = await requireMeta(this.c.layout, this.workspaceId);
    await putTransfer(this.c.layout.transfer(meta.workspaceId), checkName('transfer file name', name), hostPath);
  }

  async removeTransferFile(name: string): Promise<void> {
    const meta = await requireMeta(this.c.layout, this.workspaceId);
    await fs.rm(path.join(this.c.layout.transfer(meta.workspaceId), checkName('transfer file name', name)), {
      force: true,
    });
  }

  async putDirectory(hostDir: string, guestPath: string): Promise<void> {
    const meta = await requireMeta(this.c.layout, this.workspaceId);
    await this.c.overlay?.ensureMounted(meta); // a home found unmounted (reboot): mounted first
    const home = this.c.layout.home(meta.workspaceId);
    const dest = hostPathInHome(this.plan, home, guestPath);
    await copyDirIntoHome({ home, hostUid: meta.hostUid, asRoot: this.c.sandbox.asRoot }, hostDir, dest);
  }
  async take(purpose: SnapshotPurpose, name: string): Promise<SnapshotRef> {
    const meta = await requireMeta(this.c.layout, this.workspaceId);
    await this.c.overlay?.ensureMounted(meta); // a home found unmounted (reboot): mounted first
    checkName('snapshot name', name);
    // A baseline of an overlay home nothing was written to is the snapshot under it: an alias, O(1).
    const clean = purpose === 'baseline' ? await this.c.overlay?.cleanLower(meta.workspaceId) : undefined;
    if (clean) {
      const alias = await snapshots.createAlias(
        this.c.layout,
        name,
        { purpose, workspaceId: meta.workspaceId, createdAt: new Date().toISOString() },
        { name: clean.name, id: clean.snapshotId, owner: clean.owner },
      );
      // Still unwritten after (no process runs during a baseline): else a real snapshot is taken.
      if (await this.c.overlay!.upperEmpty(meta.workspaceId)) {
        this.c.log.info('snapshot taken', {
          workspaceId: meta.workspaceId,
          snapshot: name,
          purpose,
          aliasOf: clean.name,
        });
        return alias.ref;
      }
    }
    const origin = await readOrigin(this.c.layout.origin(meta.workspaceId));
    const taken = await snapshots.createSnapshot(
      this.c.layout,
      this.c.layout.home(meta.workspaceId),
      name,
      {
        purpose,
        workspaceId: meta.workspaceId,
        createdAt: new Date().toISOString(),
      },
      origin,
      { ownerUid: meta.hostUid },
    );
    this.c.log.info('snapshot taken', {
      workspaceId: meta.workspaceId,
      snapshot: name,
      purpose,
      linkedFiles: taken.linkedFiles ?? 0,
      copiedFiles: taken.copiedFiles ?? 'all',
      skippedSpecialFiles: taken.skipped?.special ?? 0,
      skippedForeignFiles: taken.skipped?.foreign ?? 0,
    });
    // A cache snapshot (or a fork point) is the lower of every warm start's (fork's) home, whose
    // fingerprint is this snapshot's digest: walked now, in the background, rather than by the first.
    if (purpose !== 'baseline' && taken.owner !== undefined) {
      void bestEffort(
        snapshots.snapshotDigest(this.c.layout.snapshotDir(name), taken.id, taken.owner),
        this.c.log,
        'walking a cache snapshot for its digest',
      );
    }
    // A workspace not seeded from a snapshot: its first snapshot becomes its origin (a cold start's
    // baseline, right after its cache snapshot, then links nearly everything from it).
    // (Not a fork point or user snapshot: one may be deleted soon, and links would then be copies.)
    if (origin === undefined && purpose !== 'snapshot')
      await this.recordOriginFromSnapshot(meta.workspaceId, name, taken.id);
    return taken.ref;
  }

  /**
   * origin.json from a snapshot just taken of this workspace: its manifest holds (inode, ctime) of
   * every live path, stat'ed before the copy, with the ctime barrier already passed — what
   * recordOrigin collects after a create. Entries reconciled to inode 0 are left out.
   */
  private async recordOriginFromSnapshot(workspaceId: string, snapshot: string, snapshotId: string): Promise<void> {
    const file = this.c.layout.origin(workspaceId);
    try {
      const manifest = await readManifest(this.c.layout.snapshotDir(snapshot));
      const files: OriginFiles = new Map();
      for (const [key, e] of manifest)
        if (e.type === 'f' && e.ino !== 0n) files.set(key, { ino: e.ino, ctimeNs: e.ctimeNs });
      await writeOrigin(file, { snapshot, snapshotId, files });
    } catch (error) {
      this.c.log.warn('origin record not written: snapshots of this workspace will copy every file', {
        workspaceId,
        ...errorFields(error),
      });
      await fs.rm(file, { force: true });
    }
  }

  /** killAll, then rewrite only what changed since the snapshot, then an empty /tmp. */
  async restore(snapshot: SnapshotRef): Promise<void> {
    const meta = await requireMeta(this.c.layout, this.workspaceId);
    // An alias (a baseline that is its lower) stands for its target: name and dir are the target's.
    const { dir: snapDir, name: snapName } = await snapshots.resolveSnapshot(this.c.layout, snapshot);
    await this.c.runner.killAll(meta, KILL_ALL_REASON);
    const user = asUser(this.c.sandbox, meta);
    let result: { restored: number; removed: number } | { remounted: true };
    try {
      if (this.c.overlay !== undefined && (await this.c.overlay.usable(snapDir))) {
        // Copy-on-write: drop what the workspace wrote, mount a new empty upper over the snapshot.
        // (A copied home — a cold start — is dropped once here and is an overlay home from then on.)
        await this.c.overlay.unmountAndDrop(meta, user);
        await this.dropPlainHome(meta, user);
        const snapshotId = await snapshots.readSnapshotId(snapDir);
        await this.c.overlay.mount(meta, snapName, snapDir, snapshotId);
        // Later snapshots link from the snapshot now under the home (see origin.ts `lower`).
        const originFile = this.c.layout.origin(meta.workspaceId);
        if (snapshotId === undefined) await fs.rm(originFile, { force: true });
        else await writeOrigin(originFile, { snapshot: snapName, snapshotId, files: new Map(), lower: true });
        await snapshots.sweepRetired(this.c.layout);
        result = { remounted: true };
      } else result = await restoreChanged(this.c.layout.home(meta.workspaceId), snapDir, user);
      // /tmp emptied as the workspace uid too; the dir itself (root-owned parent) stays.
      const tmp = this.c.layout.tmp(meta.workspaceId);
      await fs.mkdir(tmp, { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'EEXIST') throw error;
      });
      await wipeAs('wipe /tmp', user, tmp);
      await fs.chmod(tmp, 0o700);
      await chownToWorkspace(this.c.sandbox, meta, tmp);
    } catch (error) {
      if (error instanceof WspError) throw error;
      // A file system error names host paths: the step, not the message, goes to the caller.
      this.c.log.warn('restore failed', { workspaceId: meta.workspaceId, ...errorFields(error) });
      throw new StepFailedError(
        'restore',
        `cannot restore the workspace home (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
    this.c.log.info('workspace restored', { workspaceId: meta.workspaceId, snapshot: snapshot.name, ...result });
  }

  /**
   * A plain (copied) home under the overlay mount point: emptied as the workspace uid, then removed,
   * so the mount point is an empty root-owned dir. No-op for an (unmounted) overlay mount point.
   */
  private async dropPlainHome(meta: WorkspaceMeta, user: ReturnType<typeof asUser>): Promise<void> {
    const home = this.c.layout.home(meta.workspaceId);
    const st = await fs.lstat(home).catch(() => undefined);
    if (st === undefined) return;
    if (!st.isDirectory()) {
      await fs.unlink(home);
      return;
    }
    if (st.uid === 0) return;
    await wipeAs('drop copied home', user, home);
    await fs.rmdir(home);
  }

  /**
   * hostFingerprint of the home: the digest the in-workspace script prints, without a sandbox
   * start and a shell pipeline (and as root, so a file the user made unreadable does not fail it).
   * When another sandbox mount (/tmp, the transfer dir, system dirs) lies inside or around
   * plan.home, the workspace sees a different tree there: the script is run inside instead.
   */
  async fingerprintHome(): Promise<string> {
    const { plan } = this;
    const meta = await requireMeta(this.c.layout, this.workspaceId);
    await this.c.overlay?.ensureMounted(meta); // a home found unmounted (reboot): mounted first
    if (this.c.sandbox.kind === 'bwrap' && mountsOverlapHome(plan)) return this.fingerprintInside();
    try {
      const clean = await this.c.overlay?.cleanLower(meta.workspaceId);
      if (clean) {
        // Nothing written over the snapshot: its digest (walked once per snapshot, from the root-only
        // snapshot the workspace cannot touch), if the home is still unwritten after reading it.
        const digest = await snapshots.snapshotDigest(clean.snapDir, clean.snapshotId, clean.owner);
        if (await this.c.overlay!.upperEmpty(meta.workspaceId)) return digest;
      }
      return await hostFingerprint(this.c.layout.home(meta.workspaceId), { ownerUid: meta.hostUid });
    } catch (error) {
      if (error instanceof WspError) throw error;
      const failed = new StepFailedError('fingerprint', 'cannot read the workspace home');
      failed.cause = error;
      throw failed;
    }
  }

  /**
   * `du` as root over the home and /tmp: no symlink followed, one filesystem, hardlinks once, and a
   * directory the workspace made unreadable still counted. A walk that raced a deletion (du exits
   * non-zero) still reports what it saw.
   */
  async usageBytes(): Promise<number> {
    return this.du(await requireMeta(this.c.layout, this.workspaceId));
  }

  /** `limitSeconds`: du is killed after that long (an answer to a request must not wait on a huge tree). */
  private async du(meta: WorkspaceMeta, limitSeconds?: number): Promise<number> {
    await this.c.overlay?.ensureMounted(meta); // a home found unmounted (reboot): mounted first
    const id = meta.workspaceId;
    // An overlay home uses disk only for what it wrote: its upper dir (root-only, not the snapshot).
    const home = this.c.overlay?.upperOf(id) ?? this.c.layout.home(id);
    const du = ['du', '-s', '-x', '-B1', '--total', '--', home, this.c.layout.tmp(id)];
    const result = await runTool(
      limitSeconds === undefined ? du : ['timeout', '-s', 'KILL', String(limitSeconds), ...du],
    );
    const total = /^(\d+)\s+total$/m.exec(result.stdout);
    if (total === null) throw new StepFailedError('disk usage', `du exited ${result.code ?? result.signal}`);
    return Number(total[1]);
  }

  /**
   * From the host: the workspace's cgroup (root with cgroups), else the processes of its host uid
   * (root: the uid is the workspace's alone), else — the provider's own uid runs every workspace —
   * nothing of cpu, memory and pids. Disk: du as root, as the disk limit measures it.
   */
  async usage(): Promise<WorkspaceUsage> {
    const meta = await requireMeta(this.c.layout, this.workspaceId);
    const diskMb = this.plan.resources.diskMb;
    const usedBytes = await this.du(meta, USAGE_DU_SECONDS).catch((error: unknown) => {
      this.c.log.warn('disk usage of a workspace could not be measured', {
        workspaceId: meta.workspaceId,
        ...errorFields(error),
      });
      return null;
    });
    const disk = { usedBytes, limitBytes: diskMb === undefined ? null : diskMb * 1024 * 1024 };
    const { cgroups, sandbox } = this.c;
    if (cgroups !== undefined) {
      const cg = await readCgroupUsage(cgroups.usageDirs(meta.workspaceId));
      return {
        source: `cgroup v${cgroups.version}`,
        cpu: { usageSeconds: cg.cpuSeconds },
        memory: { currentBytes: cg.memoryBytes, limitBytes: cg.memoryLimitBytes },
        disk,
        pids: { current: cg.pids, limit: cg.pidsLimit },
      };
    }
    if (sandbox.asRoot) {
      const procs = await usageOfUid(meta.hostUid);
      return {
        source: 'proc scan',
        cpu: { usageSeconds: procs.cpuSeconds },
        memory: { currentBytes: procs.rssBytes, limitBytes: null },
        disk,
        // RLIMIT_NPROC of the workspace's own host uid (commands.ts launchPlan).
        pids: { current: procs.tasks, limit: this.plan.resources.pids ?? DEFAULT_WORKSPACE_PIDS },
      };
    }
    return {
      source: 'none (the provider does not run as root)',
      cpu: { usageSeconds: null },
      memory: { currentBytes: null, limitBytes: null },
      disk,
      pids: { current: null, limit: null },
    };
  }

  private async fingerprintInside(): Promise<string> {
    const { plan } = this;
    const commandId = `sys-fp-${randomBytes(8).toString('hex')}`;
    await this.commands.start({
      commandId,
      argv: fingerprintArgv(plan.home),
      cwd: plan.home,
      env: { ...plan.env, LC_ALL: 'C' },
      timeoutMs: FINGERPRINT_TIMEOUT_MS,
      maxOutputBytes: FINGERPRINT_OUTPUT_BYTES,
    });
    let status = await this.commands.wait(commandId, 25_000);
    while (status.state === 'running') status = await this.commands.wait(commandId, 25_000);
    if (status.state !== 'exited' || status.exitCode !== 0) {
      const stderr = (await this.commands.read(commandId, 'stderr', 0, FINGERPRINT_OUTPUT_BYTES)).data
        .toString('utf8')
        .trim();
      throw new StepFailedError(
        'fingerprint',
        `${status.state} ${status.exitCode ?? status.reason ?? ''}: ${stderr.slice(-2000)}`,
        { commandId },
      );
    }
    return parseFingerprint(
      (await this.commands.read(commandId, 'stdout', 0, FINGERPRINT_OUTPUT_BYTES)).data.toString('utf8'),
    ).digest;
  }
}
