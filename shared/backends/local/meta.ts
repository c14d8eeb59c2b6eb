import fs from 'node:fs/promises';
import type { BackendRef } from '../../contract/workspace.js';
import { BadRequestError, NotFoundError } from '../../contract/errors.js';
import { checkName } from '../../lib/names.js';
import type { LocalLayout } from './layout.js';

/** meta.json of a workspace (root-only): what a restarted provider needs to manage it. */
export interface WorkspaceMeta {
  workspaceId: string;
  owner: string;
  labels: Record<string, string>;
  /** Host uid (and gid) its processes and files run/belong as. */
  hostUid: number;
  createdAt: string;
}

export async function writeMeta(layout: LocalLayout, meta: WorkspaceMeta): Promise<void> {
  const file = layout.meta(meta.workspaceId);
  await fs.writeFile(`${file}.tmp`, JSON.stringify(meta, null, 2), { mode: 0o600 });
  await fs.rename(`${file}.tmp`, file);
}

/** undefined when the workspace (or its meta) does not exist. */
export async function readMeta(layout: LocalLayout, workspaceId: string): Promise<WorkspaceMeta | undefined> {
  try {
    return JSON.parse(await fs.readFile(layout.meta(workspaceId), 'utf8')) as WorkspaceMeta;
  } catch {
    return undefined;
  }
}

/** The workspace id of a ref; the ref's `dir` is informational only (paths derive from the id). */
export function refWorkspaceId(ref: BackendRef): string {
  if (ref?.kind !== 'local')
    throw new BadRequestError(`not a local backend ref (kind '${String(ref?.kind)}')`, { field: 'ref' });
  return checkName('workspace id', ref.workspaceId);
}

/**
 * Does `ref` address workspace `workspaceId`'s own dir? Its id must be that id and its `dir` the
 * layout's dir for that id: a ref copied from another workspace (into this one's record, in the
 * state store) names that workspace's uid and home and must never be used for this one.
 */
export function refBelongsTo(layout: LocalLayout, ref: BackendRef, workspaceId: string): boolean {
  try {
    return refWorkspaceId(ref) === workspaceId && ref.dir === layout.workspaceDir(workspaceId);
  } catch {
    return false;
  }
}

/** The meta of a workspace; NotFoundError when it was never created or is destroyed. */
export async function requireMeta(layout: LocalLayout, id: string): Promise<WorkspaceMeta> {
  const meta = await readMeta(layout, id);
  if (meta === undefined) throw new NotFoundError('workspace', id);
  return meta;
}
