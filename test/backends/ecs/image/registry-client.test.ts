import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basicAuth } from '../../../../shared/backends/ecs/image/auth.js';
import { sha256Digest } from '../../../../shared/backends/ecs/image/digest.js';
import { RegistryError } from '../../../../shared/backends/ecs/image/errors.js';
import type { ImageIndex, ImageManifest } from '../../../../shared/backends/ecs/image/manifest.js';
import {
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  OCI_CONFIG,
  OCI_INDEX,
  OCI_LAYER_GZIP,
  OCI_MANIFEST,
} from '../../../../shared/backends/ecs/image/media-types.js';
import { RegistryClient } from '../../../../shared/backends/ecs/image/registry-client.js';
import { BadRequestError } from '../../../../shared/contract/errors.js';
import { registryUnavailable, startRegistry, type LoopbackRegistry } from '../../../support/registry.js';
import { scriptedServer } from './scripted-server.js';

const KiB = 1024;

describe('streamed upload protocol (scripted registry)', () => {
  it("POST, one PATCH with the whole stream (no Content-Range) to its Location, then PUT ?digest= on the PATCH answer's Location", async () => {
    const server = await scriptedServer((req) => {
      if (req.method === 'POST') return { status: 202, headers: { location: '/v2/r/blobs/uploads/u1?_state=s0' } };
      if (req.method === 'PATCH') return { status: 202, headers: { location: '/v2/r/blobs/uploads/u1?_state=s1' } };
      if (req.method === 'PUT') return { status: 201 };
      return { status: 405 };
    });
    try {
      const data = crypto.randomBytes(2 * KiB + 452);
      const client = new RegistryClient({ endpoint: server.url });
      await client.uploadBlob(
        'r',
        sha256Digest(data),
        (async function* () {
          yield data.subarray(0, 100);
          yield data.subarray(100);
        })(),
      );
      expect(server.requests.map((r) => r.method)).toEqual(['POST', 'PATCH', 'PUT']);
      const patch = server.requests[1]!;
      expect(patch.url).toBe('/v2/r/blobs/uploads/u1?_state=s0');
      expect(patch.headers['content-range']).toBeUndefined();
      expect(patch.headers['content-type']).toBe('application/octet-stream');
      expect(patch.body.equals(data)).toBe(true);
      const put = server.requests[2]!;
      const putUrl = new URL(put.url, server.url);
      expect(putUrl.searchParams.get('_state')).toBe('s1');
      expect(putUrl.searchParams.get('digest')).toBe(sha256Digest(data));
      expect(put.body.length).toBe(0);
    } finally {
      await server.close();
    }
  });

  it("ECR's quirk: a PATCH answered 201 with a stale Range still commits (the Range is not trusted)", async () => {
    const server = await scriptedServer((req) => {
      if (req.method === 'POST') return { status: 202, headers: { location: '/v2/r/blobs/uploads/e1' } };
      if (req.method === 'PATCH')
        return { status: 201, headers: { location: '/v2/r/blobs/uploads/e1', range: '0-1023' } };
      if (req.method === 'PUT') return { status: 201 };
      return { status: 405 };
    });
    try {
      const data = crypto.randomBytes(3 * KiB);
      await new RegistryClient({ endpoint: server.url }).uploadBlob('r', sha256Digest(data), data);
      expect(server.requests.map((r) => r.method)).toEqual(['POST', 'PATCH', 'PUT']);
      expect(server.requests[1]!.body.length).toBe(data.length);
    } finally {
      await server.close();
    }
  });

  it('a failed PATCH cancels the upload (DELETE) and throws the registry error', async () => {
    const server = await scriptedServer((req) => {
      if (req.method === 'POST') return { status: 202, headers: { location: '/v2/r/blobs/uploads/u2' } };
      if (req.method === 'PATCH')
        return {
          status: 416,
          headers: { 'content-type': 'application/json' },
          body: '{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"blob upload invalid"}]}',
        };
      return { status: 204 };
    });
    try {
      const client = new RegistryClient({ endpoint: server.url, auth: basicAuth('user', 'pa55word-secret') });
      const error = (await client
        .uploadBlob('r', sha256Digest(Buffer.from('x')), Buffer.from('x'))
        .catch((e: unknown) => e)) as RegistryError;
      expect(error).toBeInstanceOf(RegistryError);
      expect(error.registryCode).toBe('BLOB_UPLOAD_INVALID');
      expect(error.status).toBe(416);
      expect(error.message).toMatch(
        /upload r@sha256:[0-9a-f]+: registry PATCH \/v2\/r\/blobs\/uploads\/u2 → HTTP 416 BLOB_UPLOAD_INVALID: blob upload invalid/,
      );
      expect(error.message).not.toContain(Buffer.from('user:pa55word-secret').toString('base64'));
      expect(server.requests.map((r) => r.method)).toEqual(['POST', 'PATCH', 'DELETE']);
    } finally {
      await server.close();
    }
  });
});

describe('downloads are verified (scripted registry)', () => {
  const good = Buffer.from('the real blob');
  const digest = sha256Digest(good);

  it('a blob whose bytes do not hash to its digest is rejected', async () => {
    const server = await scriptedServer(() => ({ status: 200, body: 'tampered blob' }));
    try {
      const client = new RegistryClient({ endpoint: server.url });
      await expect(client.getBlobBytes('r', digest)).rejects.toMatchObject({
        name: 'RegistryError',
        registryCode: 'DIGEST_INVALID',
      });
      await expect(client.getBlobBytes('r', digest)).rejects.toThrow(`expected ${digest}`);
    } finally {
      await server.close();
    }
  });

  it('a blob of the wrong size is rejected even when the caller only streams it', async () => {
    const server = await scriptedServer(() => ({ status: 200, body: good }));
    try {
      const client = new RegistryClient({ endpoint: server.url });
      const stream = await client.getBlob('r', digest, good.length + 1);
      await expect(
        (async () => {
          for await (const _ of stream) void _;
        })(),
      ).rejects.toMatchObject({ registryCode: 'SIZE_INVALID' });
      expect((await client.getBlobBytes('r', digest)).equals(good)).toBe(true);
    } finally {
      await server.close();
    }
  });

  it('a manifest that does not match Docker-Content-Digest (or the digest asked for) is rejected', async () => {
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest, size: 13 },
      layers: [],
    });
    const server = await scriptedServer((req) => ({
      status: 200,
      headers: {
        'content-type': OCI_MANIFEST,
        ...(req.url.endsWith('/lying') ? { 'docker-content-digest': sha256Digest(Buffer.from('other')) } : {}),
      },
      body: manifest,
    }));
    try {
      const client = new RegistryClient({ endpoint: server.url });
      expect((await client.getManifest('r', 'honest')).digest).toBe(sha256Digest(Buffer.from(manifest)));
      await expect(client.getManifest('r', 'lying')).rejects.toMatchObject({ registryCode: 'DIGEST_INVALID' });
      await expect(client.getManifest('r', sha256Digest(Buffer.from('something else')))).rejects.toMatchObject({
        registryCode: 'DIGEST_INVALID',
      });
    } finally {
      await server.close();
    }
  });

  it('redirects are followed, and the Authorization header does not leave the registry origin (ECR → S3)', async () => {
    const s3 = await scriptedServer(() => ({ status: 200, body: good }));
    const reg = await scriptedServer(() => ({
      status: 307,
      headers: { location: `${s3.url}/bucket/blob?X-Amz-Signature=abc` },
    }));
    try {
      const client = new RegistryClient({ endpoint: reg.url, auth: basicAuth('AWS', 'pw') });
      expect((await client.getBlobBytes('r', digest)).equals(good)).toBe(true);
      expect(reg.requests[0]!.headers.authorization).toMatch(/^Basic /);
      expect(s3.requests[0]!.headers.authorization).toBeUndefined();
      expect(s3.requests[0]!.url).toBe('/bucket/blob?X-Amz-Signature=abc');
      // HEAD: the redirect itself says "exists"; a presigned GET URL is not HEAD-able, so not followed.
      expect(await client.blobExists('r', digest)).toBe(true);
      expect(s3.requests).toHaveLength(1);
    } finally {
      await reg.close();
      await s3.close();
    }
  });

  it('names are validated before any request; an unreachable registry is a RegistryError', async () => {
    const client = new RegistryClient({ endpoint: 'http://127.0.0.1:1' });
    await expect(client.getManifest('../etc', 'latest')).rejects.toBeInstanceOf(BadRequestError);
    await expect(client.getManifest('ok/repo', 'bad tag')).rejects.toBeInstanceOf(BadRequestError);
    await expect(client.blobExists('ok/repo', 'md5:abc')).rejects.toBeInstanceOf(BadRequestError);
    await expect(client.ping()).rejects.toThrow(/registry GET 127\.0\.0\.1:1\/v2\/ unreachable/);
  });
});

describe.skipIf(registryUnavailable !== undefined)('against a real registry (docker-registry 2.8 on loopback)', () => {
  let registry: LoopbackRegistry;
  let client: RegistryClient;
  beforeAll(async () => {
    registry = await startRegistry();
    client = new RegistryClient({ endpoint: registry.url });
  });
  afterAll(async () => {
    await registry?.stop();
  });

  /** A tiny image (config + one layer blob) in `repo`; returns its manifest digest. */
  async function pushTinyImage(
    repo: string,
    arch: string,
    manifestType = OCI_MANIFEST,
  ): Promise<{ digest: string; size: number }> {
    const layer = crypto.randomBytes(100);
    const config = Buffer.from(
      JSON.stringify({ architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256Digest(layer)] } }),
    );
    await client.uploadBlob(repo, sha256Digest(layer), layer);
    await client.uploadBlob(repo, sha256Digest(config), config);
    const m: ImageManifest = {
      schemaVersion: 2,
      mediaType: manifestType,
      config: { mediaType: OCI_CONFIG, digest: sha256Digest(config), size: config.length },
      layers: [{ mediaType: OCI_LAYER_GZIP, digest: sha256Digest(layer), size: layer.length }],
    };
    const bytes = Buffer.from(JSON.stringify(m));
    return { digest: await client.putManifest(repo, arch, manifestType, bytes), size: bytes.length };
  }

  it('a streamed upload lands intact; HEAD and verified GET see it', async () => {
    const data = crypto.randomBytes(200 * KiB + 7);
    const digest = sha256Digest(data);
    expect(await client.blobExists('t/blobs', digest)).toBe(false);
    await client.uploadBlob('t/blobs', digest, data);
    expect(await client.blobExists('t/blobs', digest)).toBe(true);
    expect((await client.getBlobBytes('t/blobs', digest)).equals(data)).toBe(true);
  });

  it('maps registry errors: unknown manifest, wrong upload digest', async () => {
    const unknown = (await client.getManifest('t/nothing', 'latest').catch((e: unknown) => e)) as RegistryError;
    expect(unknown).toBeInstanceOf(RegistryError);
    expect(unknown.status).toBe(404);
    expect(['MANIFEST_UNKNOWN', 'NAME_UNKNOWN']).toContain(unknown.registryCode);
    expect(unknown.message).toContain('registry GET /v2/t/nothing/manifests/latest → HTTP 404');

    const wrong = (await client
      .uploadBlob('t/blobs', sha256Digest(Buffer.from('not these bytes')), Buffer.from('these bytes'))
      .catch((e: unknown) => e)) as RegistryError;
    expect(wrong.status).toBe(400);
    expect(wrong.registryCode).toBe('DIGEST_INVALID');
    expect(wrong.message).not.toContain('_state');
  });

  it('an image index resolves to linux/amd64 (or the platform asked for); a missing platform is a clear 400', async () => {
    const amd = await pushTinyImage('t/multi', 'amd64');
    const arm = await pushTinyImage('t/multi', 'arm64');
    const index: ImageIndex = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        { mediaType: OCI_MANIFEST, ...arm, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
        { mediaType: OCI_MANIFEST, ...amd, platform: { os: 'linux', architecture: 'amd64' } },
      ],
    };
    await client.putManifest('t/multi', 'multi', OCI_INDEX, Buffer.from(JSON.stringify(index)));

    const chosen = await client.getManifest('t/multi', 'multi');
    expect(chosen.digest).toBe(amd.digest);
    expect(chosen.mediaType).toBe(OCI_MANIFEST);
    expect(
      (await client.getManifest('t/multi', 'multi', { platform: { os: 'linux', architecture: 'arm64' } })).digest,
    ).toBe(arm.digest);

    const missing = (await client
      .getManifest('t/multi', 'multi', { platform: { os: 'linux', architecture: 's390x' } })
      .catch((e: unknown) => e)) as BadRequestError;
    expect(missing).toBeInstanceOf(BadRequestError);
    expect(missing.message).toBe(
      'manifest t/multi:multi: the image index has no linux/s390x image (it has: linux/arm64/v8, linux/amd64)',
    );
  });

  it('a Docker manifest list resolves the same way', async () => {
    const amd = await pushTinyImage('t/dlist', 'amd64', DOCKER_MANIFEST);
    const list = {
      schemaVersion: 2,
      mediaType: DOCKER_MANIFEST_LIST,
      manifests: [{ mediaType: DOCKER_MANIFEST, ...amd, platform: { os: 'linux', architecture: 'amd64' } }],
    };
    await client.putManifest('t/dlist', 'list', DOCKER_MANIFEST_LIST, Buffer.from(JSON.stringify(list)));
    const chosen = await client.getManifest('t/dlist', 'list');
    expect(chosen.digest).toBe(amd.digest);
    expect(chosen.mediaType).toBe(DOCKER_MANIFEST);
    await expect(
      client.getManifest('t/dlist', 'list', { platform: { os: 'windows', architecture: 'amd64' } }),
    ).rejects.toThrow('the manifest list has no windows/amd64 image (it has: linux/amd64)');
  });

  it('deleteManifest removes a manifest and is idempotent', async () => {
    const img = await pushTinyImage('t/del', 'amd64');
    expect((await client.getManifest('t/del', img.digest)).digest).toBe(img.digest);
    await client.deleteManifest('t/del', img.digest);
    await expect(client.getManifest('t/del', img.digest)).rejects.toMatchObject({ status: 404 });
    await expect(client.deleteManifest('t/del', img.digest)).resolves.toBeUndefined();
  });

  it('copyBlob mounts across repositories, then finds the blob present', async () => {
    const data = crypto.randomBytes(5000);
    const digest = sha256Digest(data);
    await client.uploadBlob('t/from', digest, data);
    const d = { mediaType: OCI_LAYER_GZIP, digest, size: data.length };
    expect(await client.copyBlob('t/from', 't/to', d)).toBe('mounted');
    expect(await client.copyBlob('t/from', 't/to', d)).toBe('present');
    expect((await client.getBlobBytes('t/to', digest)).equals(data)).toBe(true);
  });
});

describe('deleteManifest on a registry without the delete API (scripted)', () => {
  it('a bare 404 (no registry error code) is an error, not "already gone"', async () => {
    const server = await scriptedServer(() => ({ status: 404, body: '404 page not found' }));
    try {
      const client = new RegistryClient({ endpoint: server.url });
      await expect(client.deleteManifest('r', sha256Digest(Buffer.from('m')))).rejects.toThrow(
        /HTTP 404 404 page not found/,
      );
    } finally {
      await server.close();
    }
  });
});

describe('copyBlob when the registry declines the mount (scripted)', () => {
  it('202 on the mount POST → download from the source repo and upload into the opened session', async () => {
    const data = crypto.randomBytes(3000);
    const digest = sha256Digest(data);
    const server = await scriptedServer((req) => {
      if (req.method === 'HEAD') return { status: 404 };
      if (req.method === 'POST') return { status: 202, headers: { location: '/v2/t/to/blobs/uploads/s1' } };
      if (req.method === 'GET' && req.url === `/v2/t/from/blobs/${digest}`) return { status: 200, body: data };
      if (req.method === 'PATCH') return { status: 202, headers: { location: '/v2/t/to/blobs/uploads/s1' } };
      if (req.method === 'PUT') return { status: 201 };
      return { status: 400 };
    });
    try {
      const client = new RegistryClient({ endpoint: server.url });
      expect(await client.copyBlob('t/from', 't/to', { mediaType: OCI_LAYER_GZIP, digest, size: data.length })).toBe(
        'copied',
      );
      expect(server.requests.map((r) => `${r.method} ${r.url.split('?')[0]}`)).toEqual([
        `HEAD /v2/t/to/blobs/${digest}`,
        'POST /v2/t/to/blobs/uploads/',
        `GET /v2/t/from/blobs/${digest}`,
        'PATCH /v2/t/to/blobs/uploads/s1',
        'PUT /v2/t/to/blobs/uploads/s1',
      ]);
      expect(new URL(server.requests[1]!.url, server.url).searchParams.get('from')).toBe('t/from');
      expect(Buffer.concat(server.requests.filter((r) => r.method === 'PATCH').map((r) => r.body)).equals(data)).toBe(
        true,
      );
    } finally {
      await server.close();
    }
  });
});
