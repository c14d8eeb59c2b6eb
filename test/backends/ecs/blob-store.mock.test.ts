import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { S3BlobStore } from '../../../shared/backends/ecs/blob-store.js';
import { BackendUnavailableError, BadRequestError, NotFoundError } from '../../../shared/contract/errors.js';

/** Request shapes, checked against aws-sdk-client-mock (no network). */

const MiB = 1024 * 1024;
const client = new S3Client({
  region: 'us-east-1',
  credentials: { accessKeyId: 'AKIDMOCK', secretAccessKey: 'mock-secret' },
});
const s3 = mockClient(client);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-blob-mock-'));

function store(extra: Partial<ConstructorParameters<typeof S3BlobStore>[0]> = {}): S3BlobStore {
  return new S3BlobStore({
    client,
    bucket: 'wsp-bucket',
    prefix: 'transfer/',
    multipartThresholdBytes: 5 * MiB,
    partBytes: 5 * MiB,
    ...extra,
  });
}

function file(name: string, bytes: number): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, Buffer.alloc(bytes, 1));
  return p;
}

function s3Error(name: string, status: number): S3ServiceException {
  return new S3ServiceException({
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status },
    message: `${name} happened`,
  });
}

beforeEach(() => s3.reset());
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('S3BlobStore request shapes', () => {
  it('puts a small file in one PutObject with the prefixed key and its Content-Length', async () => {
    s3.on(PutObjectCommand).resolves({ ETag: '"e"' });
    await expect(store().putFile('ws-1/repo.bundle', file('small', 1234))).resolves.toEqual({ bytes: 1234 });
    const calls = s3.commandCalls(PutObjectCommand);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.args[0].input).toMatchObject({
      Bucket: 'wsp-bucket',
      Key: 'transfer/ws-1/repo.bundle',
      ContentLength: 1234,
    });
    expect(s3.commandCalls(CreateMultipartUploadCommand)).toHaveLength(0);
  });

  it('goes multipart above the threshold: CRC32 declared at creation, parts 1..n with exact lengths, completion lists ETags and checksums', async () => {
    s3.on(CreateMultipartUploadCommand).resolves({ UploadId: 'up-1' });
    s3.on(UploadPartCommand).callsFake((input: { PartNumber: number }) => ({
      ETag: `"etag-${input.PartNumber}"`,
      ChecksumCRC32: `crc-${input.PartNumber}`,
    }));
    s3.on(CompleteMultipartUploadCommand).resolves({});
    const size = 11 * MiB + 7;
    await expect(store().putFile('layer.tar', file('big', size))).resolves.toEqual({ bytes: size });

    expect(s3.commandCalls(CreateMultipartUploadCommand)[0]!.args[0].input).toEqual({
      Bucket: 'wsp-bucket',
      Key: 'transfer/layer.tar',
      ChecksumAlgorithm: 'CRC32',
    });
    const parts = s3.commandCalls(UploadPartCommand).map((c) => c.args[0].input);
    expect(parts.map((p) => [p.PartNumber, p.ContentLength, p.UploadId, p.Key, p.ChecksumAlgorithm])).toEqual([
      [1, 5 * MiB, 'up-1', 'transfer/layer.tar', 'CRC32'],
      [2, 5 * MiB, 'up-1', 'transfer/layer.tar', 'CRC32'],
      [3, MiB + 7, 'up-1', 'transfer/layer.tar', 'CRC32'],
    ]);
    expect(s3.commandCalls(CompleteMultipartUploadCommand)[0]!.args[0].input).toEqual({
      Bucket: 'wsp-bucket',
      Key: 'transfer/layer.tar',
      UploadId: 'up-1',
      MultipartUpload: {
        Parts: [
          { PartNumber: 1, ETag: '"etag-1"', ChecksumCRC32: 'crc-1' },
          { PartNumber: 2, ETag: '"etag-2"', ChecksumCRC32: 'crc-2' },
          { PartNumber: 3, ETag: '"etag-3"', ChecksumCRC32: 'crc-3' },
        ],
      },
    });
    expect(s3.commandCalls(AbortMultipartUploadCommand)).toHaveLength(0);
    expect(s3.commandCalls(PutObjectCommand)).toHaveLength(0);
  });

  it('grows the part size so a huge file never needs more than 10000 parts', async () => {
    // A sparse 60 GiB file: 16 MiB parts would be 3840 parts, but 5 MiB parts would be 12288.
    const sparse = path.join(dir, 'sparse');
    fs.closeSync(fs.openSync(sparse, 'w'));
    fs.truncateSync(sparse, 60 * 1024 * MiB);
    s3.on(CreateMultipartUploadCommand).resolves({ UploadId: 'up-big' });
    // Fail the first part: only its size matters here.
    s3.on(UploadPartCommand).rejects(s3Error('AccessDenied', 403));
    await expect(store().putFile('huge', sparse)).rejects.toBeInstanceOf(BackendUnavailableError);
    const first = s3.commandCalls(UploadPartCommand)[0]!.args[0].input;
    expect(first.ContentLength).toBe(Math.ceil((60 * 1024 * MiB) / 10_000));
    fs.rmSync(sparse);
  });

  it('aborts the multipart upload when a part fails, does not complete it, and reports the S3 code', async () => {
    s3.on(CreateMultipartUploadCommand).resolves({ UploadId: 'up-2' });
    s3.on(UploadPartCommand, { PartNumber: 1 }).resolves({ ETag: '"a"', ChecksumCRC32: 'c' });
    s3.on(UploadPartCommand, { PartNumber: 2 }).rejects(s3Error('SlowDown', 503));
    s3.on(AbortMultipartUploadCommand).resolves({});
    const err = await store()
      .putFile('layer.tar', file('big2', 11 * MiB))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as Error).message).toBe('S3 UploadPart layer.tar failed: SlowDown (HTTP 503)');
    expect((err as Error).cause).toBeInstanceOf(S3ServiceException);
    expect(s3.commandCalls(AbortMultipartUploadCommand).map((c) => c.args[0].input)).toEqual([
      { Bucket: 'wsp-bucket', Key: 'transfer/layer.tar', UploadId: 'up-2' },
    ]);
    expect(s3.commandCalls(CompleteMultipartUploadCommand)).toHaveLength(0);
    expect(s3.commandCalls(UploadPartCommand)).toHaveLength(2);
  });

  it('aborts when completion fails too, and the completion error is what the caller sees', async () => {
    s3.on(CreateMultipartUploadCommand).resolves({ UploadId: 'up-3' });
    s3.on(UploadPartCommand).resolves({ ETag: '"a"' });
    s3.on(CompleteMultipartUploadCommand).rejects(s3Error('InvalidPart', 400));
    s3.on(AbortMultipartUploadCommand).rejects(s3Error('InternalError', 500));
    await expect(store().putFile('x', file('big3', 6 * MiB))).rejects.toThrow(
      'S3 CompleteMultipartUpload x failed: InvalidPart (HTTP 400)',
    );
    expect(s3.commandCalls(AbortMultipartUploadCommand)).toHaveLength(1);
  });

  it('maps NoSuchKey to NotFoundError and other S3 errors to BackendUnavailableError with the code', async () => {
    s3.on(GetObjectCommand, { Key: 'transfer/missing' }).rejects(
      new NoSuchKey({ message: 'The specified key does not exist.', $metadata: { httpStatusCode: 404 } }),
    );
    s3.on(GetObjectCommand, { Key: 'transfer/denied' }).rejects(s3Error('AccessDenied', 403));
    await expect(store().getStream('missing')).rejects.toBeInstanceOf(NotFoundError);
    await expect(store().getToFile('missing', path.join(dir, 'never'))).rejects.toBeInstanceOf(NotFoundError);
    expect(fs.existsSync(path.join(dir, 'never'))).toBe(false);
    await expect(store().getStream('denied')).rejects.toThrow(
      new BackendUnavailableError('S3 GetObject denied failed: AccessDenied (HTTP 403)'),
    );
  });

  it('getToFile refuses a body shorter than its Content-Length and leaves no file behind', async () => {
    s3.on(GetObjectCommand).resolves({ Body: Readable.from([Buffer.from('only-ten!!')]) as never, ContentLength: 20 });
    const target = path.join(dir, 'short');
    await expect(store().getToFile('k', target)).rejects.toThrow('S3 GetObject k: got 10 bytes, expected 20');
    expect(fs.readdirSync(dir).filter((f) => f.includes('short'))).toEqual([]);
  });

  it('delete sends DeleteObject with the prefixed key and treats NoSuchKey as done', async () => {
    s3.on(DeleteObjectCommand)
      .resolvesOnce({})
      .rejectsOnce(new NoSuchKey({ message: 'gone', $metadata: { httpStatusCode: 404 } }));
    await store().delete('ws-1/a');
    await store().delete('ws-1/a');
    expect(s3.commandCalls(DeleteObjectCommand).map((c) => c.args[0].input)).toEqual([
      { Bucket: 'wsp-bucket', Key: 'transfer/ws-1/a' },
      { Bucket: 'wsp-bucket', Key: 'transfer/ws-1/a' },
    ]);
  });

  it('deletePrefix pages ListObjectsV2 with the continuation token and deletes each page quietly', async () => {
    s3.on(ListObjectsV2Command, { ContinuationToken: undefined }).resolves({
      Contents: [{ Key: 'transfer/ws-1/a' }, { Key: 'transfer/ws-1/b' }],
      IsTruncated: true,
      NextContinuationToken: 't1',
    });
    s3.on(ListObjectsV2Command, { ContinuationToken: 't1' }).resolves({
      Contents: [{ Key: 'transfer/ws-1/c' }],
      IsTruncated: false,
    });
    s3.on(DeleteObjectsCommand).resolves({});
    await expect(store().deletePrefix('ws-1/')).resolves.toBe(3);
    expect(s3.commandCalls(ListObjectsV2Command).map((c) => c.args[0].input)).toEqual([
      { Bucket: 'wsp-bucket', Prefix: 'transfer/ws-1/' },
      { Bucket: 'wsp-bucket', Prefix: 'transfer/ws-1/', ContinuationToken: 't1' },
    ]);
    expect(s3.commandCalls(DeleteObjectsCommand).map((c) => c.args[0].input)).toEqual([
      {
        Bucket: 'wsp-bucket',
        Delete: { Objects: [{ Key: 'transfer/ws-1/a' }, { Key: 'transfer/ws-1/b' }], Quiet: true },
      },
      { Bucket: 'wsp-bucket', Delete: { Objects: [{ Key: 'transfer/ws-1/c' }], Quiet: true } },
    ]);
  });

  it('deletePrefix fails when DeleteObjects reports per-key errors', async () => {
    s3.on(ListObjectsV2Command).resolves({ Contents: [{ Key: 'transfer/p/a' }], IsTruncated: false });
    s3.on(DeleteObjectsCommand).resolves({ Errors: [{ Key: 'transfer/p/a', Code: 'AccessDenied' }] });
    await expect(store().deletePrefix('p/')).rejects.toThrow('S3 DeleteObjects p/: 1 of 1 not deleted (AccessDenied)');
  });

  it('deletePrefix never deletes a whole bucket', async () => {
    await expect(store({ prefix: '' }).deletePrefix('')).rejects.toBeInstanceOf(BadRequestError);
    expect(s3.calls()).toHaveLength(0);
  });

  it.each(['../etc/passwd', 'a/../b', '/abs', 'a//b', 'a b', 'ключ', 'a?b', 'a\nb', ''])(
    'rejects the key %j before any S3 call',
    async (key) => {
      const st = store();
      await expect(st.putFile(key, file('k', 1))).rejects.toBeInstanceOf(BadRequestError);
      await expect(st.getStream(key)).rejects.toBeInstanceOf(BadRequestError);
      await expect(st.presignGet(key, 60)).rejects.toBeInstanceOf(BadRequestError);
      await expect(st.delete(key)).rejects.toBeInstanceOf(BadRequestError);
      expect(s3.calls()).toHaveLength(0);
    },
  );

  it('bounds presigned-URL lifetimes by maxTtlSeconds (default 900, at most 3600)', async () => {
    await expect(store().presignGet('k', 0)).rejects.toBeInstanceOf(BadRequestError);
    await expect(store().presignGet('k', 901)).rejects.toBeInstanceOf(BadRequestError);
    await expect(store().presignPut('k', 1.5)).rejects.toBeInstanceOf(BadRequestError);
    await expect(store({ maxTtlSeconds: 3600 }).presignPut('k', 3600)).resolves.toContain('X-Amz-Expires=3600');
    expect(() => store({ maxTtlSeconds: 3601 })).toThrow(BadRequestError);
    expect(() => store({ prefix: '../up/' })).toThrow(BadRequestError);
    expect(() => store({ partBytes: MiB })).toThrow(BadRequestError);
  });
});
