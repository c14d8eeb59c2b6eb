import { describe, expect, it } from 'vitest';
import { newId, useBackendFixture, type BackendHandle } from '../../support/backend-fixture.js';
import { dockerUnavailable, makeDockerBackend } from '../../support/docker-daemon.js';

type DockerHandle = Awaited<ReturnType<typeof makeDockerBackend>>;

/**
 * A container still exactly its snapshot image (pristine.ts): its baseline is that image tagged, and
 * it stays a snapshot of its own — listed, restorable after the image's first snapshot is deleted,
 * removed with its last tag. Anything run in the container makes the next baseline a commit again.
 */
describe.skipIf(dockerUnavailable !== undefined)('docker: baselines of untouched containers', () => {
  const fx = useBackendFixture(() => makeDockerBackend());
  const h = (): DockerHandle => fx.handle as BackendHandle as DockerHandle;
  const imageId = async (image: unknown): Promise<string> => (await h().docker.getImage(String(image)).inspect()).Id;

  it('tags the snapshot image as the baseline, and keeps it a snapshot of its own', async () => {
    const src = await fx.create();
    await fx.sh(src, 'echo cached > cached.txt');
    const cache = await fx.backend.open(src, fx.plan).snapshots.take('cache', newId('cache'));
    const ref = await fx.create({ from: cache });
    const ws = fx.backend.open(ref, fx.plan);
    const baseline = fx.trackSnapshot(await ws.snapshots.take('baseline', newId('base')));
    // Same image, no commit.
    expect(await imageId(baseline.image)).toBe(await imageId(cache.image));
    const names = (await fx.backend.snapshots.list()).map((s) => `${s.purpose}:${s.name}`);
    expect(names).toEqual(expect.arrayContaining([`cache:${cache.name}`, `baseline:${baseline.name}`]));
    // Its fingerprint is the snapshot's, and the same again without a walk.
    const first = await ws.files.fingerprintHome!();
    expect(await ws.files.fingerprintHome!()).toBe(first);

    // Something ran: the next baseline is a commit of what the container now holds.
    await fx.sh(ref, 'echo changed > changed.txt');
    const changed = fx.trackSnapshot(await ws.snapshots.take('baseline', newId('base')));
    expect(await imageId(changed.image)).not.toBe(await imageId(cache.image));
    expect(await ws.files.fingerprintHome!()).not.toBe(first);

    // The first snapshot deleted: the tagged baseline still restores (the image stays while tagged).
    await fx.backend.snapshots.delete(cache);
    await ws.snapshots.restore(baseline);
    const after = await fx.sh(ref, 'cat cached.txt; test -e changed.txt && echo changed || echo gone');
    expect(after.stdout).toBe('cached\ngone\n');
    expect(await ws.files.fingerprintHome!()).toBe(first);

    // Its last tag removed: the image goes once no container runs from it.
    await fx.backend.destroy(ref);
    await fx.backend.snapshots.delete(baseline);
    await expect(h().docker.getImage(String(baseline.image)).inspect()).rejects.toMatchObject({ statusCode: 404 });
    const left = (await fx.backend.snapshots.list()).map((s) => s.name);
    expect(left).not.toContain(cache.name);
    expect(left).not.toContain(baseline.name);
  });
});
