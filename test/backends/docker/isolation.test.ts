import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BackendRef } from '../../../shared/contract/workspace.js';
import { newId, useBackendFixture, type BackendHandle } from '../../support/backend-fixture.js';
import { dockerUnavailable, makeDockerBackend } from '../../support/docker-daemon.js';

type DockerHandle = Awaited<ReturnType<typeof makeDockerBackend>>;

/**
 * The canary scan and isolation, docker-only: every layer of cache and baseline images (docker save)
 * and every container's environment (docker inspect) are searched; a container sees nothing of
 * another workspace or of the provider's data dir.
 */
describe.skipIf(dockerUnavailable !== undefined)('docker backend: canary scan and isolation', () => {
  const fx = useBackendFixture(() => makeDockerBackend());
  const h = (): DockerHandle => fx.handle as BackendHandle as DockerHandle;

  /** Config.Env of every container of this backend's owner, and of the images they run. */
  async function containerEnvironments(): Promise<string[]> {
    const list = await h().docker.listContainers({
      all: true,
      filters: JSON.stringify({ label: [`wsp.owner=${h().owner}`] }),
    });
    const envs: string[] = [];
    for (const c of list) envs.push(...((await h().docker.getContainer(c.Id).inspect()).Config.Env ?? []));
    return envs;
  }

  it('finds a needle planted in a file in every snapshot that holds it, and nothing in a clean workspace', async () => {
    const needle = newId('canary-token');
    const dirty = await fx.create();
    // Planted as a file's content and as part of a file's name, in the home and outside it.
    expect(
      (
        await fx.sh(dirty, 'printf "token=%s\\n" "$1" > "$HOME/.npmrc" && mkdir -p "$HOME/d" && : > "$HOME/d/x-$1"', [
          needle,
        ])
      ).status.exitCode,
    ).toBe(0);
    const cache = fx.trackSnapshot(await fx.backend.open(dirty, fx.plan).snapshots.take('cache', newId('snap')));
    const hits = await fx.backend.snapshots.scan(cache, ['absent-needle', needle]);
    expect(hits.some((x) => /:\/home\/node\/\.npmrc: needle #1$/.test(x))).toBe(true);
    expect(hits.some((x) => /:\/home\/node\/d\/x-\*\*\* \(name\): needle #1$/.test(x))).toBe(true);
    expect(hits.join('\n')).not.toContain(needle);
    // A workspace from the dirty cache carries it into its baseline too.
    const warm = await fx.create({ from: cache });
    const baseline = fx.trackSnapshot(await fx.backend.open(warm, fx.plan).snapshots.take('baseline', newId('snap')));
    expect((await fx.backend.snapshots.scan(baseline, [needle])).length).toBeGreaterThan(0);

    // Clean: the needle only ever travelled as a command's env value and stdin.
    const clean = await fx.create();
    const r = await fx.sh(clean, 'read -r line; test "$line" = "$SECRET_VALUE" && echo same', [], {
      env: { SECRET_VALUE: needle },
      stdin: `${needle}\n`,
    });
    expect(r.stdout).toBe('same\n');
    const cleanCache = fx.trackSnapshot(await fx.backend.open(clean, fx.plan).snapshots.take('cache', newId('snap')));
    const cleanWarm = await fx.create({ from: cleanCache });
    const cleanBaseline = fx.trackSnapshot(
      await fx.backend.open(cleanWarm, fx.plan).snapshots.take('baseline', newId('snap')),
    );
    expect(await fx.backend.snapshots.scan(cleanCache, [needle])).toEqual([]);
    expect(await fx.backend.snapshots.scan(cleanBaseline, [needle])).toEqual([]);
    // Every container's environment (and the clean images' configs, scanned above) is free of it.
    const envs = await containerEnvironments();
    expect(envs.length).toBeGreaterThan(0);
    expect(envs.join('\n')).not.toContain(needle);
  });

  it('a workspace cannot see another workspace, the provider data dir or its own command files', async () => {
    const marker = newId('marker');
    const a = await fx.create();
    const b = await fx.create();
    // B leaves a file, a transfer file and a running process that all carry the marker.
    expect((await fx.sh(b, 'echo "$1" > "$HOME/b-file"', [marker])).status.exitCode).toBe(0);
    const host = fs.mkdtempSync(path.join(h().dataDir, 'host-'));
    fs.writeFileSync(path.join(host, 'bundle'), `${marker}\n`);
    await fx.backend.open(b, fx.plan).files.putTransferFile('b.bundle', path.join(host, 'bundle'));
    const bg = await fx.start(b, ['sh', '-c', 'exec sleep 300', marker]);

    const probe = async (ref: BackendRef, script: string, args: string[] = []) => fx.sh(ref, script, args);
    // Nothing readable anywhere in A's file system carries the marker (the same probe in B finds it).
    const everywhere = 'grep -rlF -e "$1" / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null; true';
    expect((await probe(a, everywhere, [marker])).stdout).toBe('');
    expect((await probe(b, everywhere, [marker])).stdout.split('\n').filter(Boolean).sort()).toEqual([
      `${fx.plan.home}/b-file`,
      `${fx.plan.transferDir}/b.bundle`,
    ]);
    // No process of B is visible (own pid namespace).
    const ps = await probe(a, 'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" " "');
    expect(ps.stdout).not.toContain(marker);
    // The provider's data dir does not exist inside; A's own command dirs are root-only.
    expect((await probe(a, 'ls -d "$1"', [h().dataDir])).status.exitCode).not.toBe(0);
    expect((await probe(a, 'ls /run/wsp-runner/cmd')).status.exitCode).not.toBe(0);
    expect((await probe(a, 'cat /proc/1/environ')).status.exitCode).not.toBe(0);
    // B really has them (the probes could have found them).
    expect((await fx.run(b, ['cat', `${fx.plan.home}/b-file`, `${fx.plan.transferDir}/b.bundle`])).stdout).toBe(
      `${marker}\n${marker}\n`,
    );
    expect((await probe(b, 'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" " "')).stdout).toContain(marker);
    await fx.backend.open(b, fx.plan).commands.kill(bg, 'cancelled');
  });
});
