import path from 'node:path';
import type { WorkspacePlan } from '../contract/plan.js';
import { BadRequestError } from '../contract/errors.js';

/** Checks every container backend makes on plans and guest destinations (Docker and Fargate share them); names: shared/lib/names.ts. */

/** Throws BadRequestError unless the plan's paths are absolute and its user a valid name with integer ids. */
export function checkPlanShape(plan: WorkspacePlan): void {
  const abs = [plan.home, plan.root, plan.workdir, plan.transferDir].every(
    (p) => typeof p === 'string' && path.posix.isAbsolute(p),
  );
  if (
    !abs ||
    !Number.isInteger(plan.user.uid) ||
    !Number.isInteger(plan.user.gid) ||
    !/^[a-z_][a-z0-9_-]*$/.test(plan.user.name)
  ) {
    throw new BadRequestError('plan paths must be absolute and plan.user a valid name with integer uid/gid', {
      field: 'plan',
    });
  }
}

/**
 * Where `guestPath` (relative to the workdir, or absolute) lands, relative to the home, plus the
 * directories to create on the way (mode 0755). Throws BadRequestError when it is outside the home.
 */
export function homeDestination(
  plan: WorkspacePlan,
  guestPath: string,
): { rel: string; parents: Array<{ name: string; mode: number }> } {
  const dest = path.posix.resolve(plan.workdir, guestPath);
  const rel = path.posix.relative(plan.home, dest);
  if (rel.startsWith('..') || path.posix.isAbsolute(rel)) {
    throw new BadRequestError(`destination ${guestPath} is outside the workspace home`, { field: 'guestPath' });
  }
  const segments = rel === '' ? [] : rel.split('/');
  const parents = segments.slice(0, -1).map((_, i) => ({ name: segments.slice(0, i + 1).join('/'), mode: 0o755 }));
  return { rel, parents };
}
