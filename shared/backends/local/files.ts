import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { WorkspacePlan } from '../../contract/plan.js';
import { BadRequestError, StepFailedError } from '../../contract/errors.js';
import { runToolChecked } from './exec.js';

/**
 * Moving host files into a workspace. The home belongs to the (untrusted) workspace user, who may
 * have planted symlinks anywhere in it; so whatever the provider does there as root is limited to
 * creating a fresh, randomly named entry, and every step that walks the user's tree runs AS the
 * workspace's host uid, where a symlink can only lead to what that uid may touch anyway.
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
 */
export async function copyDirIntoHome(owner: HomeOwner, hostDir: string, dest: string): Promise<void> {
  const st = await fs.stat(hostDir).catch(() => undefined);
  if (!st?.isDirectory()) throw new BadRequestError('local directory to copy does not exist or is not a directory', { field: 'hostDir' });
  const asUser = owner.asRoot ? { uid: owner.hostUid, gid: owner.hostUid } : {};
  // 1. As the provider: copy into a fresh, unguessable name in the home (mkdir-exclusive by cp).
  const stage = path.join(owner.home, `.wsp-put-${randomBytes(8).toString('hex')}`);
  try {
    await runToolChecked('copy directory', ['cp', '-a', '--no-target-directory', '--', hostDir, stage]);
    if (owner.asRoot) await runToolChecked('copy directory', ['chown', '-hR', `${owner.hostUid}:${owner.hostUid}`, '--', stage]);
    // 2. As the workspace user: create parents, then rename into place (or merge into an existing dir).
    await runToolChecked('copy directory', ['mkdir', '-p', '--', path.dirname(dest)], asUser);
    const place = 'if [ -e "$2" ] || [ -L "$2" ]; then cp -a -f --no-target-directory -- "$1" "$2"; else mv --no-target-directory -- "$1" "$2"; fi';
    await runToolChecked('copy directory', ['sh', '-c', place, 'wsp-place', stage, dest], asUser);
  } catch (error) {
    if (error instanceof StepFailedError || error instanceof BadRequestError) throw error;
    throw new StepFailedError('copy directory', (error as Error).message);
  } finally {
    await fs.rm(stage, { recursive: true, force: true });
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
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new BadRequestError('transfer source file does not exist', { field: 'hostPath' });
    throw new StepFailedError('transfer file', (error as Error).message);
  }
}
