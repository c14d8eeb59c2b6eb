import path from 'node:path';
import type { BackendRef } from '../../contract/workspace.js';
import { BadRequestError } from '../../contract/errors.js';
import { checkName } from '../../lib/names.js';

/**
 * Names and places of the Docker backend.
 *
 * Host, under `<dataDir>/docker/` (never visible inside a workspace except the two binds below):
 *   workspaces/<id>/            root-only 0700
 *     meta.json                 id, owner, labels, createdAt (what a restarted provider needs)
 *     cmd/                      root-only 0700, bind-mounted at GUEST_CMD_ROOT: runner command dirs
 *     transfer/                 root-owned 0755, bind-mounted read-only at plan.transferDir
 *   runner/                     root-only 0700, bind-mounted read-only at GUEST_RUNNER_DIR in every container:
 *     runner.sh                 copied from the code at backend start (runner.ts)
 *     cmd/                      empty: the mount point of each workspace's cmd/ bind
 *
 * Guest: GUEST_RUNNER (the read-only runner/ bind above), GUEST_CMD_ROOT (the cmd/ bind above).
 * Docker objects: container `wsp-<id>`; snapshot images `wsp-<purpose>:<name>`; labels below.
 */

export const GUEST_RUNNER_DIR = '/run/wsp-runner';
export const GUEST_RUNNER = `${GUEST_RUNNER_DIR}/runner.sh`;
export const GUEST_CMD_ROOT = `${GUEST_RUNNER_DIR}/cmd`;

export const LABEL = {
  workspace: 'wsp.workspace',
  owner: 'wsp.owner',
  cacheKey: 'wsp.cache-key',
  /** workspace | cache | baseline — committed images inherit container labels, so this tells them apart. */
  kind: 'wsp.kind',
  /** The snapshot name on an image (also when its tag is gone). */
  snapshot: 'wsp.snapshot',
} as const;

export const containerName = (workspaceId: string): string => `wsp-${checkName('workspace id', workspaceId)}`;

export function dockerRef(workspaceId: string): BackendRef {
  return { kind: 'docker', workspaceId, container: containerName(workspaceId) };
}

/**
 * Does `ref` address workspace `workspaceId`'s container (`wsp-<id>`) and nothing else? A ref copied
 * from another workspace's record names that workspace's container and must never be used.
 */
export function refBelongsTo(ref: BackendRef, workspaceId: string): boolean {
  try {
    return refWorkspaceId(ref) === workspaceId && ref.container === containerName(workspaceId);
  } catch {
    return false;
  }
}

/** The workspace id of a ref (the container name is derived from it, never trusted). */
export function refWorkspaceId(ref: BackendRef): string {
  if (ref?.kind !== 'docker')
    throw new BadRequestError(`not a docker backend ref (kind '${String(ref?.kind)}')`, { field: 'ref' });
  return checkName('workspace id', ref.workspaceId);
}

export class DockerLayout {
  readonly base: string;

  constructor(dataDir: string) {
    this.base = path.join(path.resolve(dataDir), 'docker');
  }

  get workspacesDir(): string {
    return path.join(this.base, 'workspaces');
  }
  workspaceDir(workspaceId: string): string {
    return path.join(this.workspacesDir, checkName('workspace id', workspaceId));
  }
  meta(workspaceId: string): string {
    return path.join(this.workspaceDir(workspaceId), 'meta.json');
  }
  commandsDir(workspaceId: string): string {
    return path.join(this.workspaceDir(workspaceId), 'cmd');
  }
  commandDir(workspaceId: string, commandId: string): string {
    return path.join(this.commandsDir(workspaceId), checkName('command id', commandId));
  }
  /** The runner dir every container mounts read-only at GUEST_RUNNER_DIR. */
  get runnerDir(): string {
    return path.join(this.base, 'runner');
  }
  transfer(workspaceId: string): string {
    return path.join(this.workspaceDir(workspaceId), 'transfer');
  }
}

export const guestCommandDir = (commandId: string): string => `${GUEST_CMD_ROOT}/${checkName('command id', commandId)}`;
