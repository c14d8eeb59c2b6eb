import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendLayer } from '../../../../shared/backends/ecs/image/append-layer.js';
import { RegistryClient } from '../../../../shared/backends/ecs/image/registry-client.js';
import { BASE_IMAGE, DOCKER_SOCKET, dockerUnavailable } from '../../../support/docker-daemon.js';
import { bridgeIntoDockerNetns, type NetnsBridge } from '../../../support/netns-bridge.js';
import { pushBaseImage, registryUnavailable, startRegistry, type LoopbackRegistry } from '../../../support/registry.js';

/**
 * Acceptance for issue 5 item 5: a layer appended through the registry API (no Docker daemon
 * involved in building it) is pulled by the real dockerd and runs with the workspace content in
 * place, owned by the workspace user, on top of the intact base image.
 */

const run = promisify(execFile);
const docker = async (...args: string[]): Promise<string> =>
  (await run('docker', ['-H', `unix://${DOCKER_SOCKET}`, ...args], { maxBuffer: 16 * 1024 * 1024 })).stdout;

const BIG_BYTES = 3 * 1024 * 1024 + 12_345; // incompressible: one streamed PATCH of several MiB

/** The workspace layer: node-owned dirs and files, an executable, a symlink, a whiteout. */
async function writeLayerTar(file: string, big: Buffer): Promise<void> {
  const pack = tar.pack();
  const owner = { uid: 1000, gid: 1000, uname: 'node', gname: 'node' };
  const mtime = new Date('2026-01-02T03:04:05Z');
  const entry = (header: Partial<tar.Header> & { name: string }, body?: string | Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      const done = (e?: Error | null): void => (e ? reject(e) : resolve());
      if (body === undefined) pack.entry({ ...owner, mtime, ...header }, done);
      else pack.entry({ ...owner, mtime, ...header }, body, done);
    });
  const out = pipeline(pack, fs.createWriteStream(file));
  await entry({ name: 'home/node/', type: 'directory', mode: 0o755 });
  await entry({ name: 'home/node/workspace/', type: 'directory', mode: 0o755 });
  await entry({ name: 'home/node/workspace/README.md', mode: 0o644 }, 'hello from the cache layer\n');
  await entry({ name: 'home/node/workspace/bin/', type: 'directory', mode: 0o755 });
  await entry({ name: 'home/node/workspace/bin/run.sh', mode: 0o755 }, '#!/bin/sh\necho "ran as $(id -u)"\n');
  await entry({ name: 'home/node/workspace/link', type: 'symlink', linkname: 'README.md', mode: 0o777 });
  await entry({ name: 'home/node/workspace/big.bin', mode: 0o600 }, big);
  // OCI whiteout: the base's /home/node/.bash_logout is gone in the new image.
  await entry({ name: 'home/node/.wh..bash_logout', mode: 0o600, uid: 0, gid: 0, uname: 'root', gname: 'root' }, '');
  pack.finalize();
  await out;
}

describe.skipIf(dockerUnavailable !== undefined || registryUnavailable !== undefined)(
  'appendLayer against a loopback registry, run by the local dockerd',
  () => {
    let registry: LoopbackRegistry;
    let bridge: NetnsBridge;
    let tmp: string;
    const pulled: string[] = [];

    beforeAll(async () => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-append-'));
      registry = await startRegistry();
      bridge = await bridgeIntoDockerNetns(registry.port);
      await pushBaseImage(registry, { dockerSocket: DOCKER_SOCKET, image: BASE_IMAGE });
    });

    afterAll(async () => {
      for (const ref of pulled) await docker('image', 'rm', '-f', ref).catch(() => undefined);
      await bridge?.close();
      await registry?.stop();
      if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    });

    it('the appended image pulls and runs: content present, owned by node, whiteout applied, base intact', async () => {
      const big = crypto.randomBytes(BIG_BYTES);
      const tarPath = path.join(tmp, 'layer.tar');
      await writeLayerTar(tarPath, big);
      const tag = `t${Date.now().toString(36)}`;
      const client = new RegistryClient({ endpoint: registry.url });

      const result = await appendLayer({
        client,
        baseRepository: 'wsp/base',
        baseReference: 'bookworm',
        targetRepository: 'wsp/cache',
        targetTag: tag,
        layerTar: async () => fs.createReadStream(tarPath),
        history: 'wsp cache test',
        labels: { 'wsp.cache-key': 'abc123' },
      });
      expect(result.digest).toMatch(/^sha256:[a-f0-9]{64}$/);
      expect(result.imageRef).toBe(`${registry.host}/wsp/cache@${result.digest}`);
      expect(result.diffId).toBe(
        `sha256:${crypto.createHash('sha256').update(fs.readFileSync(tarPath)).digest('hex')}`,
      );
      expect(result.compressedSize).toBeGreaterThan(BIG_BYTES);

      // The registry serves what we wrote: manifest by digest, layer list = base + 1.
      const base = await client.getManifest('wsp/base', 'bookworm');
      const cache = await client.getManifest('wsp/cache', result.digest);
      expect(cache.manifest.layers.map((l) => l.digest)).toEqual([
        ...base.manifest.layers.map((l) => l.digest),
        result.layerDigest,
      ]);
      expect(cache.mediaType).toBe(base.mediaType);

      // dockerd pulls (verifying every layer's diff_id against the config) and runs it with no network.
      const ref = `${registry.host}/wsp/cache:${tag}`;
      pulled.push(ref);
      await docker('pull', ref);
      const inspect = JSON.parse(await docker('image', 'inspect', ref)) as {
        RootFS: { Layers: string[] };
        Config: { Labels: Record<string, string> | null };
      }[];
      expect(inspect[0]!.RootFS.Layers.at(-1)).toBe(result.diffId);
      expect(inspect[0]!.Config.Labels?.['wsp.cache-key']).toBe('abc123');

      const script = [
        'cd /home/node/workspace',
        'stat -c "%n %u:%g %a" . README.md bin bin/run.sh big.bin /home/node',
        'cat README.md',
        'readlink link; cat link',
        './bin/run.sh',
        'sha256sum big.bin | cut -d" " -f1',
        'test -e /home/node/.bash_logout && echo "bash_logout present" || echo "bash_logout gone"',
        'test -f /home/node/.bashrc && echo "bashrc kept"',
        'git --version | cut -d" " -f1-2',
        '. /etc/os-release; echo "$VERSION_CODENAME"',
      ].join('\n');
      const out = await docker('run', '--rm', '--network', 'none', '--user', '1000:1000', ref, 'sh', '-c', script);
      expect(out.split('\n')).toEqual([
        '. 1000:1000 755',
        'README.md 1000:1000 644',
        'bin 1000:1000 755',
        'bin/run.sh 1000:1000 755',
        'big.bin 1000:1000 600',
        '/home/node 1000:1000 755',
        'hello from the cache layer',
        'README.md',
        'hello from the cache layer',
        'ran as 1000',
        crypto.createHash('sha256').update(big).digest('hex'),
        'bash_logout gone',
        'bashrc kept',
        'git version',
        'bookworm',
        '',
      ]);
    });

    it('appends onto the base repository itself, and onto a previous cache image', async () => {
      const client = new RegistryClient({ endpoint: registry.url });
      const tarPath = path.join(tmp, 'small.tar');
      const pack = tar.pack();
      pack.entry({ name: 'home/node/marker', uid: 1000, gid: 1000, mode: 0o644 }, 'one\n');
      pack.finalize();
      await pipeline(pack, fs.createWriteStream(tarPath));

      const first = await appendLayer({
        client,
        baseRepository: 'wsp/base',
        baseReference: 'bookworm',
        targetRepository: 'wsp/base',
        targetTag: 'with-marker',
        layerTar: async () => fs.createReadStream(tarPath),
      });
      const second = await appendLayer({
        client,
        baseRepository: 'wsp/base',
        baseReference: first.digest,
        targetRepository: 'wsp/other',
        targetTag: 'stacked',
        layerTar: async () => fs.createReadStream(tarPath),
      });
      const manifest = await client.getManifest('wsp/other', 'stacked');
      const base = await client.getManifest('wsp/base', 'bookworm');
      expect(manifest.manifest.layers).toHaveLength(base.manifest.layers.length + 2);

      const ref = `${registry.host}/wsp/other:stacked`;
      pulled.push(ref);
      await docker('pull', ref);
      const out = await docker(
        'run',
        '--rm',
        '--network',
        'none',
        ref,
        'sh',
        '-c',
        'stat -c "%u:%g" /home/node/marker; cat /home/node/marker',
      );
      expect(out).toBe('1000:1000\none\n');
      expect(second.digest).not.toBe(first.digest);
    });
  },
);
