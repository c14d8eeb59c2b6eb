import fs from 'node:fs/promises';
import { NotFoundError } from '../../contract/errors.js';
import type { DockerLayout } from './layout.js';

/** meta.json of a docker workspace (root-only, on the host): what a restarted provider needs. */
export interface DockerWorkspaceMeta {
  workspaceId: string;
  owner: string;
  /** Labels of the container (also given to its replacement at restore). */
  labels: Record<string, string>;
  /** The plan user: killAll runs `kill -1` as this uid, and a restored container runs as it. */
  user: { uid: number; gid: number };
  createdAt: string;
}

export async function writeMeta(layout: DockerLayout, meta: DockerWorkspaceMeta): Promise<void> {
  const file = layout.meta(meta.workspaceId);
  await fs.writeFile(`${file}.tmp`, JSON.stringify(meta, null, 2), { mode: 0o600 });
  await fs.rename(`${file}.tmp`, file);
}

/** undefined when the workspace (or its meta) does not exist. */
export async function readMeta(layout: DockerLayout, workspaceId: string): Promise<DockerWorkspaceMeta | undefined> {
  try {
    return JSON.parse(await fs.readFile(layout.meta(workspaceId), 'utf8')) as DockerWorkspaceMeta;
  } catch {
    return undefined;
  }
}

/** The meta of a workspace; NotFoundError when it was never created or is destroyed. */
export async function requireMeta(layout: DockerLayout, id: string): Promise<DockerWorkspaceMeta> {
  const meta = await readMeta(layout, id);
  if (meta === undefined) throw new NotFoundError('workspace', id);
  return meta;
}
