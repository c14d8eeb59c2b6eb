import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BackendRef } from '../../../shared/contract/workspace.js';
import { fingerprintArgv, parseFingerprint } from '../../../shared/workspace/fingerprint.js';
import { newId, useBackendFixture, type BackendHandle } from '../../support/backend-fixture.js';
import { dockerUnavailable, makeDockerBackend } from '../../support/docker-daemon.js';

type DockerHandle = Awaited<ReturnType<typeof makeDockerBackend>>;

/**
 * A reset's verifying fingerprint on docker costs O(changes): after a restore (a fresh container from
 * the baseline image) an empty `docker diff` under the home means the image's digest applies.
 */
describe.skipIf(dockerUnavailable !== undefined)('docker fingerprintHome', () => {
  const fx = useBackendFixture(() => makeDockerBackend());
  const h = (): DockerHandle => fx.handle as BackendHandle as DockerHandle;
  const inside = async (ref: BackendRef): Promise<string> =>
    parseFingerprint((await fx.run(ref, ['env', 'LC_ALL=C', ...fingerprintArgv(fx.plan.home)])).stdout).digest;
  const cacheFile = async (ref: BackendRef): Promise<string> => {
    const imageId = (await h().docker.getContainer(String(ref.container)).inspect()).Image;
    return path.join(h().dataDir, 'docker', 'fingerprints', imageId.replace(/[^A-Za-z0-9]/g, '_'));
  };

  it("remembers the baseline image's digest, uses it only while nothing under the home changed", async () => {
    const ref = await fx.create();
    expect((await fx.sh(ref, 'mkdir -p w && printf a > w/a && printf b > w/b')).status.exitCode).toBe(0);
    const snap = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('base')));
    const baseline = await inside(ref);

    await fx.backend.open(ref, fx.plan).snapshots.restore(snap);
    expect(await fx.backend.open(ref, fx.plan).files.fingerprintHome!()).toBe(baseline); // computed, then remembered
    const file = await cacheFile(ref);
    expect(fs.readFileSync(file, 'utf8')).toBe(baseline);

    // Prove the remembered value is what answers: plant a marker digest and restore again.
    const marker = 'f'.repeat(64);
    fs.writeFileSync(file, marker);
    await fx.backend.open(ref, fx.plan).snapshots.restore(snap);
    expect(await fx.backend.open(ref, fx.plan).files.fingerprintHome!()).toBe(marker);

    // Any change under the home — even rewriting a file with its own bytes — bypasses it.
    expect((await fx.sh(ref, 'printf a > w/a')).status.exitCode).toBe(0);
    expect(await fx.backend.open(ref, fx.plan).files.fingerprintHome!()).toBe(baseline);
    expect((await fx.sh(ref, 'printf changed > w/b')).status.exitCode).toBe(0);
    const changed = await fx.backend.open(ref, fx.plan).files.fingerprintHome!();
    expect(changed).not.toBe(baseline);
    expect(changed).toBe(await inside(ref));
    fs.writeFileSync(file, baseline);
  });
});
