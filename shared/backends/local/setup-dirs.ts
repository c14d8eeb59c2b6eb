import fs from 'node:fs/promises';
import path from 'node:path';
import { BackendUnavailableError } from '../../contract/errors.js';
import type { LocalLayout } from './layout.js';
import type { SandboxHost } from './sandbox.js';
import { removeAs } from './tree/as-user.js';

/**
 * Create the backend's dirs with their modes. When workspaces run as their own host uids, bwrap
 * (or the command itself, without bwrap), running as that uid, must traverse every directory from / down to `workspaces/<id>`: the dirs we
 * own get o+x (0711: traverse, not list); a parent above the data dir that is not traversable is an
 * error the operator must fix (we do not chmod their directories). Without root nothing changes uid.
 */
export async function prepareDataDir(layout: LocalLayout, sandbox: SandboxHost): Promise<void> {
  // Root: commands run as per-workspace host uids, with or without bwrap.
  const perUid = sandbox.asRoot;
  try {
    await fs.mkdir(layout.dataDir, { recursive: true, mode: 0o700 });
    await ensureDir(layout.base, 0o711);
    await ensureDir(layout.workspacesDir, 0o711);
    await ensureDir(layout.snapshotsDir, 0o700);
    if (perUid) {
      const st = await fs.stat(layout.dataDir);
      if ((st.mode & 0o001) === 0) await fs.chmod(layout.dataDir, (st.mode & 0o7777) | 0o001);
    }
  } catch (error) {
    throw new BackendUnavailableError(`cannot prepare the local backend's data dir ${layout.dataDir}`, error);
  }
  await sweepTrash(layout);
  if (!perUid) return;
  for (let dir = path.dirname(layout.dataDir); ; dir = path.dirname(dir)) {
    const st = await fs.stat(dir);
    if ((st.mode & 0o001) === 0) {
      throw new BackendUnavailableError(
        `the local backend runs each workspace as its own host uid, and those uids cannot traverse ${dir} ` +
          `(mode ${(st.mode & 0o777).toString(8)}) on the way to the data dir ${layout.dataDir}: ` +
          `run 'chmod o+x ${dir}' (traverse only, no listing) or choose a data dir whose parents are traversable`,
      );
    }
    if (dir === path.dirname(dir)) break;
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
