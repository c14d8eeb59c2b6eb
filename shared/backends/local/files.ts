import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { WorkspacePlan } from '../../contract/plan.js';
import { BadRequestError, StepFailedError } from '../../contract/errors.js';
import { tarAs } from './tree/as-user.js';

/**
 * Moving host files into a workspace. The home belongs to the (untrusted) workspace user, who may
 * have planted symlinks anywhere in it; so every write there runs AS the workspace's host uid,
 * where a symlink can only lead to what that uid may touch anyway.
 */

export interface HomeOwner {
  /** Host directory bound at plan.home. */
  home: string;
  /** Host uid/gid owning it (the workspace uid when root; the provider's own uid otherwise). */
  hostUid: number;
  asRoot: boolean;
}

/** Host path inside `home` for a guest path under plan.home; BadRequestError for anything else. */
export function hostPathInHome(plan: WorkspacePlan, home: string, guestPath: string): string {
  if (typeof guestPath !== 'string' || !path.posix.isAbsolute(guestPath) || guestPath.includes('\0')) {
    throw new BadRequestError('guest path must be absolute', { field: 'guestPath' });
  }
  const rel = path.posix.relative(plan.home, path.posix.normalize(guestPath));
  if (rel.startsWith('..') || path.posix.isAbsolute(rel)) {
    throw new BadRequestError(`guest path must be inside the workspace home ${plan.home}`, { field: 'guestPath' });
  }
  return rel === '' ? home : path.join(home, ...rel.split('/'));
}

/**
 * Copy `hostDir` whole (incl. `.git`, dotfiles, symlinks as symlinks, modes) to `dest` (a host path in
 * the home), owned by the workspace user. An existing directory at `dest` is merged into.
 *
 * The provider reads only `hostDir` (provider-given) and streams it as a tar archive into a `tar -x`
 * running AS the workspace's host uid (tree/as-user.ts), which makes the parents of `dest` and
 * writes there: nothing in the home is ever followed or written by root.
 */
export async function copyDirIntoHome(owner: HomeOwner, hostDir: string, dest: string): Promise<void> {
  const st = await fs.stat(hostDir).catch(() => undefined);
  if (!st?.isDirectory())
    throw new BadRequestError('local directory to copy does not exist or is not a directory', { field: 'hostDir' });
  const user = owner.asRoot ? { uid: owner.hostUid, gid: owner.hostUid } : undefined;
  const rel = path.relative(owner.home, dest);
  if (rel.startsWith('..') || path.isAbsolute(rel))
    throw new BadRequestError('destination must be inside the workspace home', { field: 'guestPath' });
  try {
    await tarAs('copy directory', user, hostDir, owner.home, undefined, { subdir: rel });
  } catch (error) {
    if (error instanceof StepFailedError || error instanceof BadRequestError) throw error;
    throw new StepFailedError('copy directory', (error as NodeJS.ErrnoException).code ?? 'error');
  }
}

/** Copy a host file into the transfer dir as `name` (0644, root-owned; read-only inside). Atomic. */
export async function putTransfer(transferDir: string, name: string, hostPath: string): Promise<void> {
  const tmp = path.join(transferDir, `.${name}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await fs.copyFile(hostPath, tmp);
    await fs.chmod(tmp, 0o644);
    await fs.rename(tmp, path.join(transferDir, name));
  } catch (error) {
    await fs.rm(tmp, { force: true });
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      throw new BadRequestError('transfer source file does not exist', { field: 'hostPath' });
    throw new StepFailedError('transfer file', (error as Error).message);
  }
}
