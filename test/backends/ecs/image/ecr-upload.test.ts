import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { appendLayer } from '../../../../shared/backends/ecs/image/append-layer.js';
import { basicAuth } from '../../../../shared/backends/ecs/image/auth.js';
import { sha256Digest } from '../../../../shared/backends/ecs/image/digest.js';
import type { ImageManifest } from '../../../../shared/backends/ecs/image/manifest.js';
import { OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST } from '../../../../shared/backends/ecs/image/media-types.js';
import { RegistryClient } from '../../../../shared/backends/ecs/image/registry-client.js';
import { startEcrRegistry, type EcrRegistry, type EcrRegistryRequest } from '../../../support/ecr-registry.js';

/**
 * Blob uploads against the ECR-shaped registry double (test/support/ecr-registry.ts): Docker's push
 * path — one streamed PATCH of the whole blob, then PUT ?digest= — for blobs larger than any part
 * ECR documents, and the double's own rules.
 */

const MiB = 1024 * 1024;
let ecr: EcrRegistry;
let client: RegistryClient;
let tmp: string;

beforeAll(async () => {
  ecr = await startEcrRegistry();
  client = new RegistryClient({ endpoint: ecr.url, auth: basicAuth('AWS', 'ecr-token') });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-ecr-upload-'));
});
afterAll(async () => {
  await ecr?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});
beforeEach(() => {
  ecr.requests.length = 0;
});

const auth = { authorization: `Basic ${Buffer.from('AWS:ecr-token').toString('base64')}` };
const send = async (method: string, url: string, headers: Record<string, string> = {}, body?: Buffer) =>
  fetch(new URL(url, ecr.url), { method, headers: { ...auth, ...headers }, ...(body ? { body } : {}) });

describe('the ECR-shaped registry double', () => {
  it('holds chunked PATCHes to ECR’s documented part quotas (≤ 10 MiB; ≥ 5 MiB but the last)', async () => {
    const open = async (): Promise<string> => (await send('POST', '/v2/r/blobs/uploads/')).headers.get('location')!;
    const big = Buffer.alloc(10 * MiB + 1);
    const first = await open();
    const tooBig = await send('PATCH', first, { 'content-range': `0-${big.length - 1}` }, big);
    expect(tooBig.status).toBe(400);

    const small = Buffer.alloc(4 * MiB);
    const at = await open();
    expect((await send('PATCH', at, { 'content-range': `0-${small.length - 1}` }, small)).status).toBe(201);
    const second = await send('PATCH', at, { 'content-range': `${small.length}-${2 * small.length - 1}` }, small);
    expect(second.status).toBe(400);
    expect(await second.text()).toContain('at least 5 MiB');
    for (const session of [first, at]) expect((await send('DELETE', session)).status).toBe(204);
    expect(ecr.openUploads()).toBe(0);

    expect((await fetch(new URL('/v2/', ecr.url))).status).toBe(401);
  });

  it('takes a streamed PATCH of any size (up to the layer quota) and verifies the digest at the PUT', async () => {
    const limited = await startEcrRegistry({ maxLayerBytes: MiB });
    try {
      const c = new RegistryClient({ endpoint: limited.url, auth: basicAuth('AWS', 'x') });
      const over = Buffer.alloc(MiB + 1, 7);
      await expect(c.uploadBlob('r', sha256Digest(over), over)).rejects.toMatchObject({ registryCode: 'SIZE_INVALID' });
      const ok = Buffer.alloc(MiB, 7);
      await expect(c.uploadBlob('r', sha256Digest(Buffer.from('other')), ok)).rejects.toMatchObject({
        registryCode: 'DIGEST_INVALID',
      });
      expect(limited.openUploads()).toBe(0);
    } finally {
      await limited.stop();
    }
  });
});

describe('RegistryClient.uploadBlob on ECR', () => {
  it('a 25 MiB blob: POST, ONE streamed PATCH (no Content-Range), PUT ?digest= without a body', async () => {
    const data = crypto.randomBytes(25 * MiB);
    const digest = sha256Digest(data);
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let i = 0; i < data.length; i += 3 * MiB) yield data.subarray(i, i + 3 * MiB);
    }
    await client.uploadBlob('wsp/cache', digest, chunks());
    expect(ecr.requests.map((r) => r.method)).toEqual(['POST', 'PATCH', 'PUT']);
    const [, patch, put] = ecr.requests as [EcrRegistryRequest, EcrRegistryRequest, EcrRegistryRequest];
    expect(patch.headers['content-range']).toBeUndefined();
    expect(patch.headers['content-type']).toBe('application/octet-stream');
    expect(patch.headers['transfer-encoding']).toBe('chunked');
    expect(patch.bodyBytes).toBe(data.length);
    // The PUT goes to the PATCH answer's Location, whatever its (stale) Range said.
    expect(put.path).toBe(patch.path);
    expect(put.query.get('digest')).toBe(digest);
    expect(put.bodyBytes).toBe(0);
    expect(ecr.blobs.get('wsp/cache')?.get(digest)?.equals(data)).toBe(true);
    expect(ecr.openUploads()).toBe(0);
  });

  it('a source that fails mid-stream cancels the upload (DELETE) and rejects', async () => {
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(MiB, 1);
      throw new Error('source broke');
    }
    await expect(client.uploadBlob('wsp/cache', sha256Digest(Buffer.from('x')), failing())).rejects.toThrow();
    expect(ecr.requests.at(-1)?.method).toBe('DELETE');
    expect(ecr.openUploads()).toBe(0);
  });

  it('appendLayer: a 12 MiB layer onto a base in another repository (mount declined → copied, streamed)', async () => {
    const baseLayer = crypto.randomBytes(64 * 1024);
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: [sha256Digest(baseLayer)] },
      }),
    );
    await client.uploadBlob('wsp/base', sha256Digest(baseLayer), baseLayer);
    await client.uploadBlob('wsp/base', sha256Digest(config), config);
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: sha256Digest(config), size: config.length },
      layers: [{ mediaType: OCI_LAYER_GZIP, digest: sha256Digest(baseLayer), size: baseLayer.length }],
    };
    await client.putManifest('wsp/base', 'base', OCI_MANIFEST, Buffer.from(JSON.stringify(manifest)));
    const layerTarPath = path.join(tmp, 'layer.tar');
    fs.writeFileSync(layerTarPath, crypto.randomBytes(12 * MiB)); // incompressible: the gzip is > 10 MiB
    ecr.requests.length = 0;

    const result = await appendLayer({
      client,
      baseRepository: 'wsp/base',
      baseReference: 'base',
      targetRepository: 'wsp/cache',
      targetTag: 'cache-big',
      layerTar: async () => fs.createReadStream(layerTarPath),
    });
    expect(result.compressedSize).toBeGreaterThan(10 * MiB);
    const stored = (await client.getManifest('wsp/cache', 'cache-big')).manifest;
    expect(stored.layers.map((l) => l.digest)).toEqual([sha256Digest(baseLayer), result.layerDigest]);
    // One PATCH per blob: the copied base layer, the new layer, the new config.
    const patches = ecr.requests.filter((r) => r.method === 'PATCH');
    expect(patches.map((r) => r.bodyBytes)).toEqual([baseLayer.length, result.compressedSize, stored.config.size]);
    expect(patches.every((r) => r.headers['content-range'] === undefined)).toBe(true);
  });
});
