import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { S3Client } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { S3BlobStore } from '../../../shared/backends/ecs/blob-store.js';
import { BackendUnavailableError, BadRequestError, NotFoundError } from '../../../shared/contract/errors.js';
import { startFakeS3, type FakeS3 } from '../../support/fake-s3.js';

/**
 * S3BlobStore over real HTTP against the fake S3 on 127.0.0.1, and presigned URLs used by the real
 * `curl` binary (as the Fargate task does). curl runs asynchronously: the fake lives in this process.
 */

const run = promisify(execFile);
const MiB = 1024 * 1024;
const ACCESS_KEY_ID = 'AKIDEXAMPLEFAKE0001';
const SECRET_ACCESS_KEY = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYzEXAMPLEKEY';

let fake: FakeS3;
let client: S3Client;
let store: S3BlobStore;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-blob-http-'));

beforeAll(async () => {
  fake = await startFakeS3({ listPageSize: 2 });
  client = new S3Client({
    endpoint: fake.endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET_ACCESS_KEY },
    // Fail fast on injected faults instead of retrying them.
    maxAttempts: 1,
  });
  store = new S3BlobStore({
    client,
    bucket: fake.bucket,
    prefix: 'transfer/',
    multipartThresholdBytes: 5 * MiB,
    partBytes: 5 * MiB,
  });
});
afterAll(async () => {
  client.destroy();
  await fake.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  fake.objects.clear();
  fake.requests.length = 0;
  fake.fault = undefined;
  fake.now = Date.now;
});
afterEach(() => {
  for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f), { force: true });
});

function randomFile(name: string, bytes: number): { file: string; data: Buffer } {
  const data = randomBytes(bytes);
  const file = path.join(dir, name);
  fs.writeFileSync(file, data);
  return { file, data };
}

/** curl as the task runs it; returns the HTTP status and the response body (never throws on 4xx). */
async function curl(args: string[]): Promise<{ status: number; body: string }> {
  const out = path.join(dir, `curl-${randomBytes(4).toString('hex')}`);
  const { stdout } = await run('curl', ['-sS', '-o', out, '-w', '%{http_code}', ...args]);
  const body = fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : '';
  return { status: Number(stdout), body };
}

describe('S3BlobStore over HTTP (fake S3)', () => {
  it('round-trips a small file through PutObject and GetObject', async () => {
    const { file, data } = randomFile('small.bundle', 70_000);
    await expect(store.putFile('ws-1/repo.bundle', file)).resolves.toEqual({ bytes: data.length });
    expect(fake.objects.get('transfer/ws-1/repo.bundle')?.equals(data)).toBe(true);
    const back = path.join(dir, 'small.back');
    await expect(store.getToFile('ws-1/repo.bundle', back)).resolves.toEqual({ bytes: data.length });
    expect(fs.readFileSync(back).equals(data)).toBe(true);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.part'))).toEqual([]);
  });

  it('round-trips a multipart-size file: three CRC32-checked parts, completed, nothing pending', async () => {
    const { file, data } = randomFile('layer.tar', 11 * MiB + 321);
    await expect(store.putFile('cache/layer.tar', file)).resolves.toEqual({ bytes: data.length });
    const parts = fake.requests.filter((r) => r.method === 'PUT' && r.query.has('uploadId'));
    expect(parts.map((r) => r.query.get('partNumber'))).toEqual(['1', '2', '3']);
    expect(fake.pendingUploads().size).toBe(0);
    expect(fake.objects.get('transfer/cache/layer.tar')?.equals(data)).toBe(true);

    const back = path.join(dir, 'layer.back');
    await expect(store.getToFile('cache/layer.tar', back)).resolves.toEqual({ bytes: data.length });
    expect(fs.readFileSync(back).equals(data)).toBe(true);
  });

  it('aborts a multipart upload whose part is refused; no object, no pending upload, S3 code in the error', async () => {
    const { file } = randomFile('bad.tar', 6 * MiB);
    fake.fault = (r) =>
      r.query.get('partNumber') === '2' ? { status: 403, code: 'AccessDenied', message: 'no' } : undefined;
    const err = await store.putFile('cache/bad.tar', file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as Error).message).toBe('S3 UploadPart cache/bad.tar failed: AccessDenied (HTTP 403)');
    expect(fake.requests.some((r) => r.method === 'DELETE' && r.query.has('uploadId'))).toBe(true);
    expect(fake.pendingUploads().size).toBe(0);
    expect(fake.objects.has('transfer/cache/bad.tar')).toBe(false);
  });

  it('works the same with a client configured requestChecksumCalculation WHEN_REQUIRED (explicit part checksums)', async () => {
    const lean = new S3Client({
      endpoint: fake.endpoint,
      forcePathStyle: true,
      region: 'us-east-1',
      credentials: { accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET_ACCESS_KEY },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      maxAttempts: 1,
    });
    const other = new S3BlobStore({
      client: lean,
      bucket: fake.bucket,
      prefix: 'transfer/',
      multipartThresholdBytes: 5 * MiB,
      partBytes: 5 * MiB,
    });
    const { file, data } = randomFile('lean.tar', 7 * MiB);
    await expect(other.putFile('lean.tar', file)).resolves.toEqual({ bytes: data.length });
    expect(fake.objects.get('transfer/lean.tar')?.equals(data)).toBe(true);
    const url = await other.presignPut('lean2', 60);
    expect((await curl(['-T', file, url])).status).toBe(200);
    expect(fake.objects.get('transfer/lean2')?.equals(data)).toBe(true);
    lean.destroy();
  });

  it('getStream streams the object; a missing key is NotFoundError and leaves no file', async () => {
    fake.objects.set('transfer/s/obj', Buffer.from('stream me'));
    const chunks: Buffer[] = [];
    for await (const c of await store.getStream('s/obj')) chunks.push(Buffer.from(c as Buffer));
    expect(Buffer.concat(chunks).toString()).toBe('stream me');

    await expect(store.getStream('s/missing')).rejects.toBeInstanceOf(NotFoundError);
    const target = path.join(dir, 'missing.out');
    await expect(store.getToFile('s/missing', target)).rejects.toThrow("blob 's/missing' not found");
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('an S3 failure is BackendUnavailableError with the S3 code', async () => {
    fake.fault = () => ({ status: 403, code: 'AccessDenied', message: 'Access Denied' });
    await expect(store.getStream('x')).rejects.toThrow(
      new BackendUnavailableError('S3 GetObject x failed: AccessDenied (HTTP 403)'),
    );
  });

  it('a presigned GET URL is fetched by curl without credentials', async () => {
    const data = randomBytes(300_000);
    fake.objects.set('transfer/ws-2/full.bundle', data);
    const url = await store.presignGet('ws-2/full.bundle', 60);
    const out = path.join(dir, 'curl-get.bundle');
    await run('curl', ['-fsS', '-o', out, url]);
    expect(fs.readFileSync(out).equals(data)).toBe(true);
    const req = fake.requests.at(-1)!;
    expect(req).toMatchObject({ method: 'GET', key: 'transfer/ws-2/full.bundle', presigned: true });
    expect(req.headers.authorization).toBeUndefined();
  });

  it('a presigned PUT URL takes a curl upload (no empty-body checksum baked into the URL), and the provider reads it back', async () => {
    const { file, data } = randomFile('task-layer.tar', 2 * MiB + 5);
    const url = await store.presignPut('ws-2/layer.tar', 120);
    expect(url).not.toMatch(/x-amz-checksum|x-amz-sdk-checksum/i);
    const res = await curl(['-T', file, url]);
    expect(res).toEqual({ status: 200, body: '' });
    expect(fake.objects.get('transfer/ws-2/layer.tar')?.equals(data)).toBe(true);

    const back = path.join(dir, 'layer-from-task');
    await expect(store.getToFile('ws-2/layer.tar', back)).resolves.toEqual({ bytes: data.length });
    expect(fs.readFileSync(back).equals(data)).toBe(true);
  });

  /** curl PUTs `file` to a presigned part URL as the task's runner does; the part's ETag. */
  async function putPart(file: string, url: string): Promise<string> {
    const { stdout } = await run('curl', ['-fsS', '-D', '-', '-o', '/dev/null', '-T', file, url]);
    const etag = /^etag:\s*(\S+)\s*$/im.exec(stdout)?.[1];
    if (!etag) throw new Error(`no ETag in ${stdout}`);
    return etag;
  }

  it('a multipart upload of presigned parts: curl PUTs each part (no checksum in the URLs), completion makes the object', async () => {
    const sizes = [5 * MiB, 5 * MiB, MiB + 17];
    const parts = sizes.map((n, i) => randomFile(`part${i + 1}`, n));
    const uploadId = await store.createMultipart('layers/big.tar');
    const done: { partNumber: number; etag: string }[] = [];
    for (const [i, part] of parts.entries()) {
      const url = await store.presignPart('layers/big.tar', uploadId, i + 1, 120);
      expect(url).not.toMatch(/x-amz-checksum|x-amz-sdk-checksum/i);
      done.push({ partNumber: i + 1, etag: await putPart(part.file, url) });
    }
    expect(fake.requests.filter((r) => r.query.has('partNumber')).every((r) => r.presigned)).toBe(true);
    await store.completeMultipart('layers/big.tar', uploadId, done);
    expect(fake.objects.get('transfer/layers/big.tar')?.equals(Buffer.concat(parts.map((p) => p.data)))).toBe(true);
    expect(fake.pendingUploads().size).toBe(0);
    // Aborting a finished (or unknown) upload is fine.
    await expect(store.abortMultipart('layers/big.tar', uploadId)).resolves.toBeUndefined();
  });

  it("the fake holds multipart uploads to S3's rules: 5 MiB parts but the last, ascending ETag list, 10,000 parts, 5 GiB PUTs", async () => {
    const small = randomFile('small-part', MiB);
    const big = randomFile('big-part', 5 * MiB);
    const uploadId = await store.createMultipart('rules.tar');
    const url = (n: number) => store.presignPart('rules.tar', uploadId, n, 60);
    const one = await putPart(small.file, await url(1));
    const two = await putPart(big.file, await url(2));
    const code = (e: unknown): string => String((e as Error).message);
    // A 1 MiB part that is not the last.
    expect(
      code(
        await store
          .completeMultipart('rules.tar', uploadId, [
            { partNumber: 1, etag: one },
            { partNumber: 2, etag: two },
          ])
          .catch((e: unknown) => e),
      ),
    ).toMatch(/EntityTooSmall/);
    expect(
      code(
        await store
          .completeMultipart('rules.tar', uploadId, [
            { partNumber: 2, etag: two },
            { partNumber: 1, etag: one },
          ])
          .catch((e: unknown) => e),
      ),
    ).toMatch(/InvalidPartOrder/);
    expect(
      code(
        await store.completeMultipart('rules.tar', uploadId, [{ partNumber: 2, etag: one }]).catch((e: unknown) => e),
      ),
    ).toMatch(/: InvalidPart \(HTTP 400\)/);
    await expect(url(10_001)).rejects.toBeInstanceOf(BadRequestError);
    const past = new URL(await url(1));
    past.searchParams.set('partNumber', '10001');
    expect((await curl(['-T', small.file, past.toString()])).body).toContain('<Code>InvalidArgument</Code>');
    await store.abortMultipart('rules.tar', uploadId);
    expect(fake.pendingUploads().size).toBe(0);

    fake.maxPutBytes = MiB - 1;
    try {
      const res = await curl(['-T', small.file, await store.presignPut('too-big', 60)]);
      expect(res.status).toBe(400);
      expect(res.body).toContain('<Code>EntityTooLarge</Code>');
    } finally {
      fake.maxPutBytes = 5 * 1024 * MiB;
    }
  });

  it('the fake refuses a PUT whose body does not match a checksum signed into the URL (what real S3 does)', async () => {
    // Guards the guard: without the store's checksum stripping the SDK signs CRC32("") into the URL.
    const { file } = randomFile('x', 10);
    const url = new URL(await store.presignPut('k', 60));
    url.searchParams.set('x-amz-checksum-crc32', 'AAAAAA==');
    const res = await curl(['-T', file, url.toString()]);
    expect(res.status).toBe(400);
    expect(res.body).toContain('<Code>BadDigest</Code>');
    expect(fake.objects.has('transfer/k')).toBe(false);
  });

  it('refuses an expired presigned URL (fake clock moved past X-Amz-Expires) and accepts it before', async () => {
    fake.objects.set('transfer/e/obj', Buffer.from('payload'));
    const url = await store.presignGet('e/obj', 30);
    const signedAt = Date.now();
    fake.now = () => signedAt + 29_000;
    await expect(curl([url])).resolves.toEqual({ status: 200, body: 'payload' });

    fake.now = () => signedAt + 31_000 + 1_000;
    const expired = await curl([url]);
    expect(expired.status).toBe(403);
    expect(expired.body).toContain('<Code>AccessDenied</Code>');
    expect(expired.body).toContain('Request has expired');

    const putUrl = await store.presignPut('e/new', 5);
    fake.now = () => Date.now() + 7_000;
    const { file } = randomFile('late', 3);
    expect((await curl(['-T', file, putUrl])).status).toBe(403);
    expect(fake.objects.has('transfer/e/new')).toBe(false);
  });

  it('the fake refuses unsigned requests and presigned URLs with a missing signature', async () => {
    fake.objects.set('transfer/u/obj', Buffer.from('x'));
    expect((await curl([`${fake.endpoint}/${fake.bucket}/transfer/u/obj`])).status).toBe(403);
    const url = new URL(await store.presignGet('u/obj', 60));
    url.searchParams.delete('X-Amz-Signature');
    const res = await curl([url.toString()]);
    expect(res.status).toBe(403);
    expect(res.body).toContain('X-Amz-Signature');
  });

  it('presigned URLs never contain the secret access key (raw or encoded)', async () => {
    const urls = [await store.presignGet('s/k', 900), await store.presignPut('s/k', 900)];
    for (const url of urls) {
      expect(url).toContain(`X-Amz-Credential=${ACCESS_KEY_ID}%2F`);
      expect(url).not.toContain(SECRET_ACCESS_KEY);
      expect(url).not.toContain(encodeURIComponent(SECRET_ACCESS_KEY));
      expect(decodeURIComponent(url)).not.toContain(SECRET_ACCESS_KEY);
    }
  });

  it('invalid keys fail with BadRequestError before any request', async () => {
    const { file } = randomFile('f', 1);
    for (const key of ['../escape', 'a/../../b', '/root', 'space here', 'q?x=1', 'a%2Fb']) {
      await expect(store.putFile(key, file)).rejects.toBeInstanceOf(BadRequestError);
      await expect(store.presignPut(key, 60)).rejects.toBeInstanceOf(BadRequestError);
      await expect(store.deletePrefix(key)).rejects.toBeInstanceOf(BadRequestError);
    }
    await expect(store.presignGet('ok', 901)).rejects.toBeInstanceOf(BadRequestError);
    await expect(store.putFile('ok', path.join(dir, 'no-such-file'))).rejects.toBeInstanceOf(BadRequestError);
    expect(fake.requests).toEqual([]);
  });

  it('delete is idempotent', async () => {
    fake.objects.set('transfer/d/one', Buffer.from('1'));
    await store.delete('d/one');
    expect(fake.objects.has('transfer/d/one')).toBe(false);
    await expect(store.delete('d/one')).resolves.toBeUndefined();
  });

  it('deletePrefix deletes every page under the prefix and nothing else', async () => {
    for (const k of ['a', 'b', 'c', 'd/e', 'f']) fake.objects.set(`transfer/ws-9/${k}`, Buffer.from(k));
    fake.objects.set('transfer/ws-90/keep', Buffer.from('k'));
    fake.objects.set('other/ws-9/keep', Buffer.from('k'));
    await expect(store.deletePrefix('ws-9/')).resolves.toBe(5);
    expect([...fake.objects.keys()].sort()).toEqual(['other/ws-9/keep', 'transfer/ws-90/keep']);
    // listPageSize 2 → three list pages, each deleted in its own DeleteObjects.
    expect(fake.requests.filter((r) => r.query.has('delete'))).toHaveLength(3);
    await expect(store.deletePrefix('ws-9/')).resolves.toBe(0);
  });
});
