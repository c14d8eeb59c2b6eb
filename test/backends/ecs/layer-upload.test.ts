import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { S3BlobStore } from '../../../shared/backends/ecs/blob-store.js';
import { rpcOk } from '../../../shared/backends/ecs/commands.js';
import { planParts, uploadFromTask } from '../../../shared/backends/ecs/layer-upload.js';
import { RUNNER_SCRIPT } from '../../../shared/backends/runner/command-files.js';
import { RunnerRpc, runnerRpcCommand } from '../../../shared/backends/runner/rpc.js';
import { BadRequestError } from '../../../shared/contract/errors.js';
import { silentLogger } from '../../../shared/log.js';
import { startFakeS3, type FakeS3 } from '../../support/fake-s3.js';
import { localPty } from '../../support/pty.js';
import { rootUnavailable } from '../../support/root.js';

/**
 * A cache layer out of the task as an S3 multipart upload: the provider's side (uploadFromTask)
 * with the real runner (`runner.sh put-parts` over a local PTY, real curl) against the fake S3,
 * which holds it to S3's rules (5 MiB parts but the last, 10,000 parts, ascending ETag list, 5 GiB
 * per PUT — lowered here so a small file stands for a big one).
 */

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('planParts', () => {
  it('keeps the configured part size while 10,000 parts suffice, else grows it to whole MiB', () => {
    expect(planParts(11 * MiB + 1, 5 * MiB)).toEqual({ partBytes: 5 * MiB, count: 3 });
    expect(planParts(10 * MiB, 5 * MiB)).toEqual({ partBytes: 5 * MiB, count: 2 });
    expect(planParts(0, 5 * MiB)).toEqual({ partBytes: 5 * MiB, count: 1 });
    expect(planParts(200 * GiB, 5 * MiB)).toEqual({ partBytes: 21 * MiB, count: 9753 });
    const huge = planParts(640 * GiB + 1, 64 * MiB);
    expect(huge.count).toBeLessThanOrEqual(10_000);
    expect(huge.partBytes % MiB).toBe(0);
    expect(() => planParts(1, 4 * MiB)).toThrow(BadRequestError);
    expect(() => planParts(1, 5 * GiB + 1)).toThrow(BadRequestError);
  });
});

describe.skipIf(rootUnavailable !== undefined)('uploadFromTask with the real runner (local pty, fake S3)', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-layer-upload-'));
  let fake: FakeS3;
  let client: S3Client;
  let store: S3BlobStore;
  let rpc: RunnerRpc;
  const requests: string[][] = [];

  beforeAll(async () => {
    // One PUT of a layer would be refused: 8 MiB stands for S3's 5 GiB.
    fake = await startFakeS3({ bucket: 'wsp-data', maxPutBytes: 8 * MiB });
    client = new S3Client({
      endpoint: fake.endpoint,
      forcePathStyle: true,
      region: 'us-east-1',
      credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret-key' },
      maxAttempts: 1,
    });
    store = new S3BlobStore({ client, bucket: fake.bucket, prefix: '' });
    rpc = new RunnerRpc(localPty(runnerRpcCommand(RUNNER_SCRIPT), { WSP_RPC_WORK_ROOT: path.join(tmp, 'rpc') }), {
      readyTimeoutMs: 20_000,
      requestTimeoutMs: 60_000,
    });
    await rpc.ready();
  });
  afterAll(async () => {
    rpc?.close();
    client?.destroy();
    await fake?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  beforeEach(() => {
    fake.requests.length = 0;
    fake.fault = undefined;
    requests.length = 0;
  });

  const runner = (argv: string[]): Promise<Buffer> => {
    requests.push(argv);
    return rpcOk(rpc, 'uploading the cache layer', argv);
  };
  const upload = (file: string, key: string, partBytes = 5 * MiB) =>
    uploadFromTask({
      blobs: store,
      key,
      guestFile: file,
      sizeBytes: fs.statSync(file).size,
      partBytes,
      ttlSeconds: 120,
      runner,
      log: silentLogger,
    });

  it('a file larger than one PUT goes up as 5 MiB parts cut by the runner, completed in order', async () => {
    const data = randomBytes(23 * MiB + 4321);
    const file = path.join(tmp, 'home.tar');
    fs.writeFileSync(file, data);
    await expect(upload(file, 'layers/home.tar')).resolves.toEqual({ parts: 5, partBytes: 5 * MiB });
    expect(fake.objects.get('layers/home.tar')?.equals(data)).toBe(true);
    expect(fake.pendingUploads().size).toBe(0);
    const parts = fake.requests.filter((r) => r.method === 'PUT' && r.query.has('uploadId'));
    expect(parts.map((r) => r.query.get('partNumber'))).toEqual(['1', '2', '3', '4', '5']);
    expect(parts.every((r) => r.presigned && r.headers['transfer-encoding'] === undefined)).toBe(true);
    expect(parts.map((r) => Number(r.headers['content-length']))).toEqual([
      5 * MiB,
      5 * MiB,
      5 * MiB,
      5 * MiB,
      3 * MiB + 4321,
    ]);
    expect(fake.requests.some((r) => r.method === 'PUT' && !r.query.has('uploadId'))).toBe(false);
    // The part files the runner cut are gone; the tar stays (the caller removes it).
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith('home.tar'))).toEqual(['home.tar']);
  });

  it('batches its requests: each put-parts call carries freshly presigned URLs for its parts only', async () => {
    const file = path.join(tmp, 'many.tar');
    fs.writeFileSync(file, randomBytes(17 * 5 * MiB + 1)); // 18 parts: more than one request's worth
    await expect(upload(file, 'layers/many.tar')).resolves.toMatchObject({ parts: 18 });
    expect(requests.map((argv) => [argv[0], argv[2], argv[3], argv.length - 4])).toEqual([
      ['put-parts', String(5 * MiB), '1', 16],
      ['put-parts', String(5 * MiB), '17', 2],
    ]);
    expect(fake.objects.get('layers/many.tar')?.length).toBe(17 * 5 * MiB + 1);
  });

  it('a refused part fails the upload: aborted (nothing pending, no object), the S3 URL in no message', async () => {
    const file = path.join(tmp, 'bad.tar');
    fs.writeFileSync(file, randomBytes(12 * MiB));
    fake.fault = (r) => (r.query.get('partNumber') === '2' ? { status: 403, code: 'AccessDenied' } : undefined);
    const error = (await upload(file, 'layers/bad.tar').catch((e: unknown) => e)) as Error;
    expect(error.message).toMatch(/uploading the cache layer failed in the workspace task .*part 2 failed/s);
    expect(error.message).not.toMatch(/X-Amz-Signature|http:/);
    expect(fake.pendingUploads().size).toBe(0);
    expect(fake.requests.some((r) => r.method === 'DELETE' && r.query.has('uploadId'))).toBe(true);
    expect(fake.objects.has('layers/bad.tar')).toBe(false);
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith('bad.tar'))).toEqual(['bad.tar']);
  });

  it('the runner refuses a part past the end and bad arguments; an empty file is one empty part', async () => {
    const file = path.join(tmp, 'small.tar');
    fs.writeFileSync(file, randomBytes(MiB));
    const uploadId = await store.createMultipart('layers/small.tar');
    const url = await store.presignPart('layers/small.tar', uploadId, 2, 60);
    expect((await rpc.call(['put-parts', file, String(MiB), '2', url])).status).toBe(2);
    expect((await rpc.call(['put-parts', file, '0', '1', url])).status).toBe(2);
    expect((await rpc.call(['put-parts', file, String(MiB), '1', 'file:///etc/passwd'])).status).toBe(2);
    await store.abortMultipart('layers/small.tar', uploadId);

    const empty = path.join(tmp, 'empty.tar');
    fs.writeFileSync(empty, '');
    await expect(upload(empty, 'layers/empty.tar')).resolves.toEqual({ parts: 1, partBytes: 5 * MiB });
    expect(fake.objects.get('layers/empty.tar')?.length).toBe(0);
  });
});
