import type { BackendRef, SnapshotRef } from '../../contract/workspace.js';
import { BadRequestError } from '../../contract/errors.js';
import { checkName } from '../../lib/names.js';

/**
 * Names and places of the Fargate backend.
 *
 * Inside a task (root-only, never visible to the workspace user):
 *   /opt/wsp/runner.sh, /opt/wsp/pristine.sh   baked into the base image (the customer's contract)
 *   /var/lib/wsp/cmd/<commandId>/               runner command dirs (see runner.sh)
 *   /var/lib/wsp/pristine/<name>/               baseline copies (reset restores from them)
 *   /var/lib/wsp/tmp/                           tars in transit (putDirectory, cache layers)
 *
 * Handles (stored in DynamoDB, so any Lambda can rebuild them):
 *   workspace  { kind: 'ecs', workspaceId, taskArn, uid, gid }
 *   baseline   { kind: 'ecs-pristine', name, taskArn }
 *   cache      { kind: 'ecs-image', name, image, taskDefinitionArn, layerKey, bytes }
 * Tags on tasks and cache task definitions: TAG.* below.
 */

export const GUEST = {
  state: '/var/lib/wsp',
  cmdRoot: '/var/lib/wsp/cmd',
  pristineRoot: '/var/lib/wsp/pristine',
  tmp: '/var/lib/wsp/tmp',
} as const;

export const TAG = {
  workspace: 'wsp:workspace',
  owner: 'wsp:owner',
  snapshot: 'wsp:snapshot',
  kind: 'wsp:kind',
} as const;

export const commandDir = (commandId: string): string => `${GUEST.cmdRoot}/${checkName('command id', commandId)}`;
export const pristineDir = (name: string): string => `${GUEST.pristineRoot}/${checkName('snapshot name', name)}`;

export interface EcsRef {
  workspaceId: string;
  taskArn: string;
  uid?: number;
  gid?: number;
}

export function ecsRef(r: EcsRef): BackendRef {
  return {
    kind: 'ecs',
    workspaceId: r.workspaceId,
    taskArn: r.taskArn,
    ...(r.uid !== undefined ? { uid: r.uid, gid: r.gid ?? r.uid } : {}),
  };
}

/** Throws BadRequestError for a handle of another backend or a malformed one. */
export function parseRef(ref: BackendRef): EcsRef {
  if (ref?.kind !== 'ecs')
    throw new BadRequestError(`not an ecs backend ref (kind '${String(ref?.kind)}')`, { field: 'ref' });
  const taskArn = ref['taskArn'];
  if (typeof taskArn !== 'string' || !taskArn.startsWith('arn:'))
    throw new BadRequestError('ecs ref without a task ARN', { field: 'ref' });
  const uid = typeof ref['uid'] === 'number' ? ref['uid'] : undefined;
  const gid = typeof ref['gid'] === 'number' ? ref['gid'] : undefined;
  return {
    workspaceId: checkName('workspace id', ref.workspaceId),
    taskArn,
    ...(uid !== undefined ? { uid } : {}),
    ...(gid !== undefined ? { gid } : {}),
  };
}

export interface PristineSnapshot {
  kind: 'ecs-pristine';
  name: string;
  taskArn: string;
}

export interface ImageSnapshot {
  kind: 'ecs-image';
  name: string;
  /** repository@digest: the exact image, never a moving tag. */
  image: string;
  taskDefinitionArn: string;
  /** Blob-store key of the layer tar (kept for the secret scan; expires by bucket lifecycle). */
  layerKey: string;
  /** Compressed layer size. */
  bytes: number;
}

export function parseSnapshot(snapshot: SnapshotRef): PristineSnapshot | ImageSnapshot {
  const name = checkName('snapshot name', snapshot?.name);
  if (snapshot.kind === 'ecs-pristine' && typeof snapshot['taskArn'] === 'string')
    return { kind: 'ecs-pristine', name, taskArn: snapshot['taskArn'] };
  if (
    snapshot.kind === 'ecs-image' &&
    typeof snapshot['image'] === 'string' &&
    typeof snapshot['taskDefinitionArn'] === 'string' &&
    typeof snapshot['layerKey'] === 'string'
  ) {
    return {
      kind: 'ecs-image',
      name,
      image: snapshot['image'],
      taskDefinitionArn: snapshot['taskDefinitionArn'],
      layerKey: snapshot['layerKey'],
      bytes: typeof snapshot['bytes'] === 'number' ? snapshot['bytes'] : 0,
    };
  }
  throw new BadRequestError(`not an ecs snapshot (kind '${String(snapshot?.kind)}')`, { field: 'snapshot' });
}
