import { createHash } from 'node:crypto';
import type { SnapshotPurpose } from '../../contract/backend.js';
import type { SnapshotRef } from '../../contract/workspace.js';
import { BackendUnavailableError, BadRequestError, NotFoundError } from '../../contract/errors.js';
import type { Logger } from '../../log.js';
import { dockerStatus, isNotFound, type DockerClient } from './client.js';
import { checkName } from '../../lib/names.js';
import { LABEL } from './layout.js';
import { scanImageTar } from '../tar/scan.js';
import { bestEffort } from '../../lib/best-effort.js';

/**
 * Snapshots are images: `docker commit` of a workspace container, tagged
 * `wsp-<purpose>-<owner token>:<name>` and labelled (kind, snapshot name, owner) explicitly at commit —
 * a committed image inherits its container's labels, so `wsp.kind` must be overridden or the image
 * would look like a workspace. The repository is the owner's own: two providers on one daemon with the
 * same configuration compute the same cache key (the snapshot name), and a tag shared between them
 * would let one's commit or delete move or remove the other's image (seen as a cache entry's image
 * "not found" right after its commit, and it would let one provider start workspaces from the other's
 * snapshot).
 */

export type Purpose = SnapshotPurpose;
const PURPOSES: readonly string[] = ['cache', 'baseline', 'snapshot'] satisfies Purpose[];
const isPurpose = (p: unknown): p is Purpose => typeof p === 'string' && PURPOSES.includes(p);

/** The image repository of this owner's snapshots of one purpose. */
function repository(purpose: Purpose, owner: string): string {
  return `wsp-${purpose}-${createHash('sha256').update(owner).digest('hex').slice(0, 12)}`;
}

/** The one way a snapshot ref is built (the reconciler compares refs as JSON, so the shape is fixed). */
function snapshotRef(purpose: Purpose, name: string, owner: string): SnapshotRef {
  return { kind: 'docker', purpose, name, image: `${repository(purpose, owner)}:${name}` };
}

/** The image tag of a ref, rebuilt from purpose, name and owner (the stored `image` is not trusted). */
export function refImage(snapshot: SnapshotRef, owner: string): { purpose: Purpose; name: string; image: string } {
  if (snapshot?.kind !== 'docker')
    throw new BadRequestError(`not a docker snapshot (kind '${String(snapshot?.kind)}')`, { field: 'snapshot' });
  const purpose = snapshot.purpose;
  if (!isPurpose(purpose)) throw new BadRequestError('invalid snapshot purpose', { field: 'snapshot' });
  const name = checkName('snapshot name', snapshot.name);
  return { purpose, name, image: `${repository(purpose, owner)}:${name}` };
}

export async function commitSnapshot(
  docker: DockerClient,
  container: string,
  purpose: Purpose,
  name: string,
  owner: string,
): Promise<SnapshotRef> {
  checkName('snapshot name', name);
  const labels = [`"${LABEL.kind}"="${purpose}"`, `"${LABEL.snapshot}"="${name}"`, `"${LABEL.owner}"="${owner}"`].join(
    ' ',
  );
  try {
    // pause: a consistent file system for the commit (processes are frozen for its duration).
    await docker
      .getContainer(container)
      .commit({ repo: repository(purpose, owner), tag: name, pause: true, changes: [`LABEL ${labels}`] });
  } catch (error) {
    if (isNotFound(error)) throw new NotFoundError('workspace container', container);
    throw new BackendUnavailableError(`docker commit of ${container} failed`, error);
  }
  return snapshotRef(purpose, name, owner);
}

/**
 * The image of a container that is still exactly `imageId` (pristine.ts), tagged as snapshot `name`
 * instead of committed: same files, no new image. Its labels stay those of the image it was made as
 * (listSnapshots also reads the owner's tags, and deleteSnapshot only removes this tag while the image
 * is another snapshot's too).
 */
export async function tagSnapshot(
  docker: DockerClient,
  imageId: string,
  purpose: Purpose,
  name: string,
  owner: string,
): Promise<SnapshotRef> {
  checkName('snapshot name', name);
  try {
    await docker.getImage(imageId).tag({ repo: repository(purpose, owner), tag: name });
  } catch (error) {
    if (isNotFound(error)) throw new NotFoundError('snapshot image', imageId);
    throw new BackendUnavailableError(`docker tag of ${imageId} failed`, error);
  }
  return snapshotRef(purpose, name, owner);
}

/**
 * Image ids carrying this snapshot's labels (tagged or not — an untagged one is still ours to remove),
 * except those still tagged as another snapshot (a baseline made by tagSnapshot keeps its image alive).
 */
async function imagesOf(docker: DockerClient, owner: string, purpose: Purpose, name: string): Promise<string[]> {
  const list = await docker.listImages({
    filters: JSON.stringify({
      label: [`${LABEL.owner}=${owner}`, `${LABEL.kind}=${purpose}`, `${LABEL.snapshot}=${name}`],
    }),
  });
  const own = `${repository(purpose, owner)}:${name}`;
  return list.filter((i) => !(i.RepoTags ?? []).some((t) => t !== own && t !== '<none>:<none>')).map((i) => i.Id);
}

/**
 * Remove the snapshot's image; idempotent. An image a container still runs from cannot go: its tag
 * is removed (so the name is free) and the untagged image stays listed by its labels until a later
 * delete (the reconciler's) succeeds — logged, not thrown.
 */
export async function deleteSnapshot(
  docker: DockerClient,
  owner: string,
  snapshot: SnapshotRef,
  log: Logger,
): Promise<void> {
  const { purpose, name, image } = refImage(snapshot, owner);
  const targets = [image, ...(await imagesOf(docker, owner, purpose, name))];
  for (const target of targets) {
    try {
      await docker.getImage(target).remove({ noprune: false });
    } catch (error) {
      const status = dockerStatus(error);
      if (status === 404) continue;
      if (status === 409) {
        // Forced removal of a *tag* only untags an image a container uses (never the image itself);
        // an image id is never force-removed (that would break a stopped container built on it).
        if (target === image)
          await bestEffort(
            docker.getImage(target).remove({ force: true }),
            log,
            'force-removing a snapshot image in use',
          );
        log.warn('snapshot image still used by a container: untagged, removal retried later', {
          snapshot: name,
          purpose,
        });
        continue;
      }
      throw new BackendUnavailableError(`cannot remove image ${image}`, error);
    }
  }
}

/**
 * Snapshots of this owner: by labels (tagged or left untagged by a delete that had to wait) and by
 * the owner's tags (a baseline made by tagSnapshot carries its image's labels, not its own).
 */
export async function listSnapshots(docker: DockerClient, owner: string): Promise<SnapshotRef[]> {
  const list = await docker.listImages({ filters: JSON.stringify({ label: [`${LABEL.owner}=${owner}`] }) });
  const out = new Map<string, SnapshotRef>();
  const add = (purpose: string | undefined, name: string | undefined): void => {
    if (!isPurpose(purpose) || name === undefined) return;
    try {
      checkName('snapshot name', name);
    } catch {
      return;
    }
    out.set(`${purpose}:${name}`, snapshotRef(purpose, name, owner));
  };
  const repos = new Map<string, Purpose>((PURPOSES as Purpose[]).map((p) => [repository(p, owner), p]));
  for (const img of list) {
    const labels = img.Labels ?? {};
    add(labels[LABEL.kind], labels[LABEL.snapshot]);
    for (const tag of img.RepoTags ?? []) {
      const colon = tag.lastIndexOf(':');
      add(repos.get(tag.slice(0, colon)), tag.slice(colon + 1));
    }
  }
  return [...out.values()];
}

/**
 * Bytes the snapshot adds on top of the base image (its whole size when it does not descend from it).
 * Throws NotFoundError when the image is gone.
 */
export async function snapshotSize(
  docker: DockerClient,
  snapshot: SnapshotRef,
  owner: string,
  baseImage: string,
): Promise<number> {
  const { image } = refImage(snapshot, owner);
  let info: { Size: number; RootFS?: { Layers?: string[] } };
  try {
    info = await docker.getImage(image).inspect();
  } catch (error) {
    if (isNotFound(error)) throw new NotFoundError('snapshot', String(snapshot.name));
    throw new BackendUnavailableError(`cannot inspect image ${image}`, error);
  }
  try {
    const base = await docker.getImage(baseImage).inspect();
    const mine = info.RootFS?.Layers ?? [];
    const theirs = base.RootFS?.Layers ?? [];
    if (theirs.length > 0 && theirs.every((l, i) => mine[i] === l)) return Math.max(1, info.Size - base.Size);
  } catch {
    // no base image to compare with: report the whole size
  }
  return info.Size;
}

/** Every needle in every layer (file contents and names) and in the image config: "<where>: needle #i". */
export async function scanSnapshot(
  docker: DockerClient,
  snapshot: SnapshotRef,
  owner: string,
  needles: readonly string[],
): Promise<string[]> {
  const { image } = refImage(snapshot, owner);
  let stream: NodeJS.ReadableStream;
  try {
    stream = await docker.getImage(image).get();
  } catch (error) {
    if (isNotFound(error)) throw new NotFoundError('snapshot', String(snapshot.name));
    throw new BackendUnavailableError(`docker save of ${image} failed`, error);
  }
  return scanImageTar(stream, needles);
}
