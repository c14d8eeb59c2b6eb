import path from 'node:path';
import { checkName } from '../../lib/names.js';

/**
 * Where the local backend keeps everything, under `<dataDir>/local/` (never visible inside a
 * workspace):
 *
 *   workspaces/<id>/            root-owned 0711 (the workspace's host uid must traverse it for bwrap);
 *                               when the data dir's parents are closed to other uids (a checkout under
 *                               /root), under REACHABLE_ROOT/<hash of the data dir>/ instead, recorded in
 *                               `workspaces-at` (setup-dirs.ts resolveLayout)
 *     meta.json                 root-only: id, owner, labels, host uid, createdAt
 *     origin.json               root-only: the snapshot the home was seeded from (or its first
 *                               snapshot) and (inode, ctime) of each home file then (origin.ts)
 *     passwd, group             0644: bound over /etc/passwd and /etc/group (the plan user's name)
 *     home/                     bound at plan.home, owned by the workspace's host uid (or, for a
 *                               copy-on-write home, a root-owned 0700 overlay mount point: overlay/)
 *     ovl/{lower,upper,work}/   root-only 0700: an overlay home's idmapped snapshot, writes, work dir
 *     overlay.json              root-only: the snapshot under an overlay home (overlay/index.ts)
 *     tmp/                      bound at /tmp, owned by the host uid
 *     transfer/                 bound read-only at plan.transferDir, root-owned 0755
 *     commands/<cid>/           root-only: the exec contract's files (see supervisor/daemon.ts)
 *     pidns, pidns.log          root-only: the namespace holder's record and bwrap's complaints (pid-namespace.ts)
 *     chan/                     root-owned 0711, bound read-only into the holder: the in-sandbox forker's
 *                               script, request FIFO and per-command FIFOs (supervisor/forked.ts)
 *   run/                        root-only 0700: the command supervisor's socket, log and FIFOs
 *   trash/<id>-<rand>/          root-only 0700: a deleted workspace's dir whose content could not be
 *                               removed as its uid (kept out of reach of every uid, logged)
 *   snapshots/<name>/           root-only: home/ + manifest.json (tree.ts) + info.json; home files
 *                               may be hard links shared with other snapshots (never written to)
 *
 * Host uid claims are host-wide, not per data dir: see host-uids.ts.
 */

export class LocalLayout {
  /** `<dataDir>/local`, absolute. */
  readonly base: string;
  readonly dataDir: string;
  /** Where workspace dirs live: `<base>/workspaces`, or a reachable dir elsewhere (setup-dirs.ts resolveLayout). */
  readonly workspacesDir: string;

  constructor(dataDir: string, workspacesDir?: string) {
    this.dataDir = path.resolve(dataDir);
    this.base = path.join(this.dataDir, 'local');
    this.workspacesDir = workspacesDir ?? path.join(this.base, 'workspaces');
  }

  /** Root-only record of where workspace dirs were put when not under the data dir (resolveLayout). */
  get workspacesRecord(): string {
    return path.join(this.base, 'workspaces-at');
  }
  get snapshotsDir(): string {
    return path.join(this.base, 'snapshots');
  }
  /** Root-only 0700: the command supervisor's socket, log and FIFO pool (supervisor/). */
  get runDir(): string {
    return path.join(this.base, 'run');
  }
  /** Root-only: workspace dirs whose content could not be removed (see LocalBackend.removeWorkspaceDir). */
  get trashDir(): string {
    return path.join(this.base, 'trash');
  }

  workspaceDir(workspaceId: string): string {
    return path.join(this.workspacesDir, checkName('workspace id', workspaceId));
  }
  meta(workspaceId: string): string {
    return path.join(this.workspaceDir(workspaceId), 'meta.json');
  }
  home(workspaceId: string): string {
    return path.join(this.workspaceDir(workspaceId), 'home');
  }
  origin(workspaceId: string): string {
    return path.join(this.workspaceDir(workspaceId), 'origin.json');
  }
  passwd(workspaceId: string): string {
    return path.join(this.workspaceDir(workspaceId), 'passwd');
  }
  group(workspaceId: string): string {
    return path.join(this.workspaceDir(workspaceId), 'group');
  }
  tmp(workspaceId: string): string {
    return path.join(this.workspaceDir(workspaceId), 'tmp');
  }
  transfer(workspaceId: string): string {
    return path.join(this.workspaceDir(workspaceId), 'transfer');
  }
  /** Root-owned 0711, bound read-only into the workspace's holder: its forker's channel (pid-namespace.ts). */
  chanDir(workspaceId: string): string {
    return path.join(this.workspaceDir(workspaceId), 'chan');
  }
  commandsDir(workspaceId: string): string {
    return path.join(this.workspaceDir(workspaceId), 'commands');
  }
  commandDir(workspaceId: string, commandId: string): string {
    return path.join(this.commandsDir(workspaceId), checkName('command id', commandId));
  }
  snapshotDir(name: string): string {
    return path.join(this.snapshotsDir, checkName('snapshot name', name));
  }
}
