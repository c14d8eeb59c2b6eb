import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { BackendUnavailableError } from '../../contract/errors.js';
import { LocalLayout } from './layout.js';
import type { SandboxHost } from './sandbox.js';
import { removeAs } from './tree/as-user.js';

/**
 * Where workspace dirs go when the data dir's parents are closed to other uids: a root-owned dir
 * every uid can traverse (not list), one subdir per data dir (named by the hash of its path).
 */
const REACHABLE_ROOT = '/var/lib/wsp-workspaces';

/**
 * The backend's layout. As root, each workspace runs as a host uid of its own, and bwrap (as that uid)
 * must traverse every directory down to `workspaces/<id>`: under the data dir when its parents allow
 * it, else under REACHABLE_ROOT — so `npm start` works from any checkout (`/root` is 0700) with
 * nothing to chmod. The choice is recorded in the data dir and kept (its workspaces stay where they
 * are even if the parents change).
 */
export async function resolveLayout(dataDir: string, sandbox: SandboxHost): Promise<LocalLayout> {
  const layout = new LocalLayout(dataDir);
  const recorded = (await fs.readFile(layout.workspacesRecord, 'utf8').catch(() => '')).trim();
  if (recorded !== '') return new LocalLayout(dataDir, recorded);
  if (!sandbox.asRoot || (await closedAncestor(layout.dataDir)) === undefined) return layout;
  const hash = createHash('sha256').update(layout.dataDir).digest('hex').slice(0, 16);
  const moved = new LocalLayout(dataDir, path.join(REACHABLE_ROOT, hash));
  try {
    await fs.mkdir(layout.base, { recursive: true, mode: 0o700 });
    await fs.writeFile(`${layout.workspacesRecord}.tmp`, `${moved.workspacesDir}\n`, { mode: 0o600 });
    await fs.rename(`${layout.workspacesRecord}.tmp`, layout.workspacesRecord);
  } catch (error) {
    throw new BackendUnavailableError(`cannot prepare the local backend's data dir ${layout.dataDir}`, error);
  }
  return moved;
}

/**
 * Create the backend's dirs with their modes. When workspaces run as their own host uids, bwrap
 * (or the command itself, without bwrap), running as that uid, must traverse every directory from /
 * down to `workspaces/<id>`: the dirs we own get o+x (0711: traverse, not list); a parent that is
 * not traversable is an error the operator must fix (we do not chmod their directories; resolveLayout
 * chose a reachable place when the data dir's parents are closed). Without root nothing changes uid.
 */
export async function prepareDataDir(layout: LocalLayout, sandbox: SandboxHost): Promise<void> {
  // Root: commands run as per-workspace host uids, with or without bwrap.
  const perUid = sandbox.asRoot;
  const inside = path.dirname(layout.workspacesDir) === layout.base;
  try {
    await fs.mkdir(layout.dataDir, { recursive: true, mode: 0o700 });
    await ensureDir(layout.base, inside ? 0o711 : 0o700);
    if (!inside) await ensureDir(path.dirname(layout.workspacesDir), 0o711);
    await ensureDir(layout.workspacesDir, 0o711);
    await ensureDir(layout.snapshotsDir, 0o700);
    if (perUid && inside) {
      const st = await fs.stat(layout.dataDir);
      if ((st.mode & 0o001) === 0) await fs.chmod(layout.dataDir, (st.mode & 0o7777) | 0o001);
    }
  } catch (error) {
    throw new BackendUnavailableError(`cannot prepare the local backend's data dir ${layout.dataDir}`, error);
  }
  await sweepTrash(layout);
  if (!perUid) return;
  const closed = await closedAncestor(path.dirname(layout.workspacesDir));
  if (closed !== undefined) {
    throw new BackendUnavailableError(
      `the local backend runs each workspace as its own host uid, and those uids cannot traverse ${closed.dir} ` +
        `(mode ${closed.mode.toString(8)}) on the way to ${layout.workspacesDir}: ` +
        `run 'chmod o+x ${closed.dir}' (traverse only, no listing)`,
    );
  }
}

/** The nearest of `dir`'s parents (or `dir` itself) that other uids cannot traverse, if any. */
async function closedAncestor(dir: string): Promise<{ dir: string; mode: number } | undefined> {
  for (let d = dir; ; d = path.dirname(d)) {
    const st = await fs.stat(d).catch(() => undefined);
    // Not there yet: it will be made by us, traversable.
    if (st !== undefined && (st.mode & 0o001) === 0 && d !== dir) return { dir: d, mode: st.mode & 0o777 };
    if (d === path.dirname(d)) return undefined;
  }
}

/**
 * Remove what deleted workspaces left in the root-only trash (content their uid could not remove,
 * parked there so the delete could finish). No uid can reach into the trash, and GNU rm is
 * fd-relative and never follows a symlink, so root removes it here. Best effort: a failure leaves it
 * for the next start.
 */
async function sweepTrash(layout: LocalLayout): Promise<void> {
  const names = await fs.readdir(layout.trashDir).catch(() => [] as string[]);
  if (names.length === 0) return;
  await removeAs(
    'sweep trash',
    undefined,
    layout.trashDir,
    names.map((n) => Buffer.from(n)),
  ).catch(() => undefined);
}

/** mkdir with an exact mode (mkdir's mode is filtered by the umask; an existing dir is re-moded). */
async function ensureDir(dir: string, mode: number): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode });
  await fs.chmod(dir, mode);
}
