import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StepFailedError } from '../../../contract/errors.js';
import { errorFields, type Logger } from '../../../log.js';
import { runTool } from '../exec.js';
import type { LocalLayout } from '../layout.js';
import type { SandboxHost } from '../sandbox.js';
import { wipeAs, type AsUser } from '../tree/as-user.js';

/**
 * Copy-on-write homes (issue 12): a workspace created from (or reset to) a snapshot gets its home as
 * an overlayfs mount, mounted by the provider (root) on the host and bound into the sandbox like
 * any home:
 *
 *   <ws>/ovl/            root-only 0700: nothing below is reachable by the workspace uid directly
 *     lower/             the snapshot's root-only `home`, bind-mounted read-only, nosuid, nodev and
 *                        ID-MAPPED (the snapshot's original uid → this workspace's uid), so the
 *                        snapshot itself is never written and its files look like the workspace's own
 *     upper/, work/      the workspace's writes (upper owned by its uid), overlay's work dir
 *   <ws>/home            the overlay mount point (root-owned 0700 when nothing is mounted there)
 *   <ws>/overlay.json    root-only: which snapshot (name, id, uid on disk) the lower is
 *
 * Create and reset are two mounts (O(1) in the home's size); a reset drops the upper dir (renamed
 * away, then emptied AS THE WORKSPACE UID: root never walks what the workspace wrote). The upper is
 * only ever written through overlayfs, so the workspace cannot plant raw whiteouts, opaque or
 * redirect xattrs there (trusted.* needs CAP_SYS_ADMIN on the host); redirect_dir, metacopy, index
 * and xino are off so overlay follows no redirect either way.
 *
 * The mount table is the state: a provider restart finds the mounts (isMountPoint); a home found
 * unmounted (a host reboot) is mounted again from overlay.json before the next command.
 * A snapshot that is a lower layer is never removed under a mount: deleteSnapshot retires it
 * (renamed to a dot name that list() skips) and sweepRetired removes it once no mount uses it.
 */

export interface OverlayRecord {
  snapshot: string;
  snapshotId?: string;
  /** The uid that owns the snapshot's files on disk (mapped to the workspace's uid). */
  fromUid: number;
}

const HELPER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'idmap-mount.py');
const PYTHON = '/usr/bin/python3';
const OVERLAY_OPTIONS = 'nosuid,nodev,redirect_dir=off,metacopy=off,index=off,xino=off,uuid=off';

/** Mount table entry: (root within its filesystem, mount point, fs type), decoded. */
interface MountEntry {
  root: string;
  mountPoint: string;
  fsType: string;
}

const unescapeOctal = (s: string): string =>
  s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

export function readMountTable(): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (line === '') continue;
    const f = line.split(' ');
    const sep = f.indexOf('-');
    out.push({ root: unescapeOctal(f[3]!), mountPoint: unescapeOctal(f[4]!), fsType: f[sep + 1] ?? '' });
  }
  return out;
}

function isMountPoint(dir: string, table = readMountTable()): boolean {
  return table.some((m) => m.mountPoint === dir);
}

/** Mount points at or below `dir`, deepest first (unmount order). */
export function mountsUnder(dir: string, table = readMountTable()): string[] {
  return table
    .map((m) => m.mountPoint)
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/**
 * Whether overlay homes can be used here: root, bwrap, overlayfs and idmapped mounts (tried once
 * on a scratch dir in the data dir). `WSP_LOCAL_OVERLAY=off` forces the copy path.
 */
export async function detectOverlay(
  layout: LocalLayout,
  sandbox: SandboxHost,
): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (process.env.WSP_LOCAL_OVERLAY === 'off') return { ok: false, reason: 'WSP_LOCAL_OVERLAY=off' };
  if (!sandbox.asRoot || sandbox.kind !== 'bwrap') return { ok: false, reason: 'needs root and bwrap' };
  if (!existsSync(PYTHON)) return { ok: false, reason: `${PYTHON} (for idmapped mounts) is missing` };
  const probe = path.join(layout.base, `.overlay-probe-${randomBytes(4).toString('hex')}`);
  try {
    await fs.mkdir(probe, { mode: 0o700 });
    for (const d of ['src', 'lower', 'upper', 'work', 'merged']) await fs.mkdir(path.join(probe, d));
    await fs.writeFile(path.join(probe, 'src', 'f'), 'x');
    await fs.chown(path.join(probe, 'src', 'f'), 65533, 65533);
    const merged = path.join(probe, 'merged');
    await mountLower(path.join(probe, 'src'), path.join(probe, 'lower'), 65533, 65532);
    await mountOverlay(probe, merged);
    const st = await fs.stat(path.join(merged, 'f'));
    if (st.uid !== 65532) return { ok: false, reason: 'idmapped lower layer not honoured' };
    return { ok: true };
  } catch (error) {
    return { ok: false, reason: (error as Error).message };
  } finally {
    for (const m of mountsUnder(probe)) await runTool(['umount', '-l', '--', m]);
    await fs.rm(probe, { recursive: true, force: true }).catch(() => undefined);
  }
}

async function mountLower(src: string, target: string, fromUid: number, toUid: number): Promise<void> {
  const r = await runTool([PYTHON, '-I', '-S', HELPER, src, target, String(fromUid), String(toUid)]);
  if (r.code !== 0) throw new StepFailedError('mount home', `idmapped lower: ${r.stderr.trim().slice(-300)}`);
}

/**
 * Overlay at `target` from `dir`/{lower,upper,work}. The layer paths are given RELATIVE to `dir`
 * (mount runs there): the kernel shows the options as given in every mountinfo, the sandbox's
 * included, so the workspace never sees the provider's data dir path.
 */
async function mountOverlay(dir: string, target: string): Promise<void> {
  const opts = `lowerdir=lower,upperdir=upper,workdir=work,${OVERLAY_OPTIONS}`;
  const r = await runTool(['mount', '-t', 'overlay', '-o', opts, 'overlay', target], { cwd: dir });
  if (r.code !== 0) throw new StepFailedError('mount home', `overlay: ${r.stderr.trim().slice(-300)}`);
}

/** Unmount everything at or below `dir` (lazily when busy). Throws when a mount is still there. */
export async function unmountAll(dir: string): Promise<void> {
  for (const m of mountsUnder(dir)) {
    const r = await runTool(['umount', '--', m]);
    if (r.code !== 0) await runTool(['umount', '-l', '--', m]);
  }
  const left = mountsUnder(dir);
  if (left.length > 0) throw new StepFailedError('unmount home', `${left.length} mount(s) left`);
}

export interface OverlayWorkspace {
  workspaceId: string;
  hostUid: number;
}

/** Per-backend overlay operations. */
export class OverlayHomes {
  /** Workspaces whose home this process has seen mounted (skips the mount table on each command). */
  private readonly mounted = new Set<string>();

  constructor(
    private readonly layout: LocalLayout,
    private readonly log: Logger,
  ) {}

  ovl(id: string): string {
    return path.join(this.layout.workspaceDir(id), 'ovl');
  }
  recordFile(id: string): string {
    return path.join(this.layout.workspaceDir(id), 'overlay.json');
  }

  async readRecord(id: string): Promise<OverlayRecord | undefined> {
    try {
      return JSON.parse(await fs.readFile(this.recordFile(id), 'utf8')) as OverlayRecord;
    } catch {
      return undefined;
    }
  }

  /**
   * Whether a snapshot can be a lower layer: its info.json says every file has one owner on disk
   * (SnapshotInfo.owner) and its home is that owner's. Older snapshots (mixed owners possible) are
   * copied instead: an idmapping maps one uid only, the rest would show as nobody.
   */
  async usable(snapDir: string): Promise<boolean> {
    try {
      const info = JSON.parse(await fs.readFile(path.join(snapDir, 'info.json'), 'utf8')) as { owner?: unknown };
      return Number.isInteger(info.owner) && (await fs.stat(path.join(snapDir, 'home'))).uid === info.owner;
    } catch {
      return false;
    }
  }

  /**
   * Mount the home of `ws` over snapshot `snapshot` (its dir `snapDir`) with a fresh, empty upper.
   * `home` must be an existing empty dir or absent; it becomes root-owned 0700 (the mount point).
   */
  async mount(ws: OverlayWorkspace, snapshot: string, snapDir: string, snapshotId: string | undefined): Promise<void> {
    const id = ws.workspaceId;
    const home = this.layout.home(id);
    const ovl = this.ovl(id);
    const snapHome = path.join(snapDir, 'home');
    const top = await fs.stat(snapHome);
    await fs.mkdir(ovl, { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
    await fs.chmod(ovl, 0o700);
    for (const d of ['lower', 'upper', 'work']) await fs.mkdir(path.join(ovl, d), { mode: 0o700 });
    // The merged root takes the upper root's owner and mode: the snapshot home's mode, the workspace's uid.
    await fs.chown(path.join(ovl, 'upper'), ws.hostUid, ws.hostUid);
    await fs.chmod(path.join(ovl, 'upper'), top.mode & 0o7777);
    await fs.mkdir(home, { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
    await fs.chown(home, 0, 0);
    await fs.chmod(home, 0o700);
    const record: OverlayRecord = { snapshot, fromUid: top.uid, ...(snapshotId ? { snapshotId } : {}) };
    await fs.writeFile(this.recordFile(id), JSON.stringify(record), { mode: 0o600 });
    await mountLower(snapHome, path.join(ovl, 'lower'), top.uid, ws.hostUid);
    await mountOverlay(ovl, home);
    this.mounted.add(id);
  }

  /**
   * Before a command: an overlay workspace whose home is not mounted (a host reboot) is mounted
   * again from its record over the same snapshot (checked by id) and its kept upper dir.
   */
  async ensureMounted(ws: OverlayWorkspace): Promise<void> {
    const id = ws.workspaceId;
    if (this.mounted.has(id)) return;
    const record = await this.readRecord(id);
    if (record === undefined) return; // a copied home
    const home = this.layout.home(id);
    const table = readMountTable();
    if (isMountPoint(home, table)) {
      this.mounted.add(id);
      return;
    }
    const ovl = this.ovl(id);
    const snapDir = this.snapshotDir(record.snapshot);
    if ((await readId(snapDir)) !== record.snapshotId)
      throw new StepFailedError('mount home', 'the snapshot under this workspace home is gone');
    for (const m of mountsUnder(ovl, table)) await runTool(['umount', '-l', '--', m]);
    await mountLower(path.join(snapDir, 'home'), path.join(ovl, 'lower'), record.fromUid, ws.hostUid);
    await mountOverlay(ovl, home);
    this.log.info('overlay home mounted again', { workspaceId: id, snapshot: record.snapshot });
    this.mounted.add(id);
  }

  /**
   * Unmount the home and its lower layer (every process of the workspace killed before), then drop
   * the upper and work dirs: renamed into a root-only dir first (so a process that survived on a
   * lazily detached mount writes where nobody looks), the upper emptied as the workspace's uid,
   * the rest (work: overlay's own) removed by root. Leftovers go to the trash.
   */
  async unmountAndDrop(ws: OverlayWorkspace, user: AsUser): Promise<void> {
    const id = ws.workspaceId;
    this.mounted.delete(id);
    await unmountAll(this.layout.home(id));
    const ovl = this.ovl(id);
    await unmountAll(ovl);
    await fs.rm(this.recordFile(id), { force: true });
    if (!existsSync(ovl)) return;
    const dropped = path.join(this.layout.workspaceDir(id), `.dropped-${randomBytes(4).toString('hex')}`);
    await fs.rename(ovl, dropped);
    try {
      const upper = path.join(dropped, 'upper');
      if (existsSync(upper)) {
        await wipeAs('drop overlay upper', user, upper);
        await fs.rmdir(upper); // not recursive: root never walks what the workspace wrote
      }
      // Overlay's own work dir and the empty lower mount point: never written by the workspace.
      await fs.rm(path.join(dropped, 'work'), { recursive: true, force: true });
      await fs.rm(path.join(dropped, 'lower'), { recursive: true, force: true });
      await fs.rmdir(dropped);
    } catch (error) {
      this.log.warn('overlay upper could not be removed as its uid: moved to the trash', {
        workspaceId: id,
        ...errorFields(error),
      });
      await fs.mkdir(this.layout.trashDir, { recursive: true, mode: 0o700 });
      await fs.rename(dropped, path.join(this.layout.trashDir, `${id}-upper-${randomBytes(4).toString('hex')}`));
    }
  }

  /**
   * When the home is an overlay home that holds nothing of its own (empty upper: no write since it
   * was mounted over its snapshot), the merged view IS the snapshot's home: its lower snapshot (dir,
   * id, on-disk owner). Undefined otherwise (a copied home, or anything written).
   */
  async cleanLower(
    id: string,
  ): Promise<{ snapDir: string; name: string; snapshotId: string; owner: number } | undefined> {
    const record = await this.readRecord(id);
    if (record?.snapshotId === undefined) return undefined;
    if (!(await this.upperEmpty(id))) return undefined;
    const snapDir = this.snapshotDir(record.snapshot);
    if ((await readId(snapDir)) !== record.snapshotId) return undefined;
    return { snapDir, name: record.snapshot, snapshotId: record.snapshotId, owner: record.fromUid };
  }

  /** A lower's snapshot dir: a snapshot name, or a retired one's dir name (snapshots.ts removeSnapshotDir). */
  private snapshotDir(name: string): string {
    return /^\.retired-[A-Za-z0-9_.-]+$/.test(name) && !name.includes('..')
      ? path.join(this.layout.snapshotsDir, name)
      : this.layout.snapshotDir(name);
  }

  /** Whether the upper dir has no entry (the merged view is the lower's). */
  async upperEmpty(id: string): Promise<boolean> {
    try {
      return (await fs.readdir(path.join(this.ovl(id), 'upper'))).length === 0;
    } catch {
      return false;
    }
  }

  /** The upper dir (what the workspace wrote), for disk usage; undefined for a copied home. */
  upperOf(id: string): string | undefined {
    const upper = path.join(this.ovl(id), 'upper');
    return existsSync(this.recordFile(id)) && existsSync(upper) ? upper : undefined;
  }
}

async function readId(snapDir: string): Promise<string | undefined> {
  try {
    const info = JSON.parse(await fs.readFile(path.join(snapDir, 'info.json'), 'utf8')) as { id?: unknown };
    return typeof info.id === 'string' ? info.id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether a snapshot dir's `home` is the lower layer of a mounted overlay home: some mount's root
 * (path within its filesystem) is that dir. The dir's path within its filesystem is derived from
 * the mount table (the mount holding it with the longest mount point).
 */
export function snapshotInUse(snapDir: string, table = readMountTable()): boolean {
  const home = path.join(snapDir, 'home');
  let best: MountEntry | undefined;
  for (const m of table) {
    if (m.fsType === 'overlay') continue;
    const within = m.mountPoint === '/' || home === m.mountPoint || home.startsWith(`${m.mountPoint}/`);
    if (within && (best === undefined || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  if (best === undefined) return false;
  const rel = best.mountPoint === '/' ? home : home.slice(best.mountPoint.length);
  const inFs = path.posix.join(best.root, rel);
  return table.some((m) => m.root === inFs && m.mountPoint !== best.mountPoint);
}
