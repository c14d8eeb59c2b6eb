/**
 * Bundles and cache layers through S3, for the Fargate backend (issue 5 item 4).
 *
 * The provider uploads a git bundle / a tar to S3 and hands the task a short-lived presigned GET
 * URL (the task `curl`s it); the task uploads its cache-layer tar as the parts of a multipart upload
 * the provider creates, presigns (UploadPart, part by part) and completes, and the provider streams
 * it back. The task never holds AWS credentials. Bundles are token-free, and no
 * git token ever goes into a key or URL.
 *
 * Presigned URLs carry the access key ID (not the secret) and, with temporary credentials (Lambda),
 * the session token in `X-Amz-Security-Token`; that is inherent to presigning, so keep TTLs short
 * (default cap 900 s) and never log a URL. Errors name the operation, the key and S3's error code,
 * never a URL.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { BuildMiddleware, RelativeMiddlewareOptions } from '@smithy/types';
import { BackendUnavailableError, BadRequestError, NotFoundError, WspError } from '../../contract/errors.js';

export interface BlobStore {
  /** Upload a local file; single PUT up to the multipart threshold, multipart above it (aborted on failure). */
  putFile(key: string, file: string): Promise<{ bytes: number }>;
  /** Stream an object to a local file (verifies the byte count); NotFoundError if absent. */
  getToFile(key: string, file: string): Promise<{ bytes: number }>;
  /** The object's bytes as a stream; NotFoundError if absent (thrown before any byte is read). */
  getStream(key: string): Promise<NodeJS.ReadableStream>;
  /** A URL a credential-less `curl` can GET for `ttlSeconds` (1..maxTtlSeconds). */
  presignGet(key: string, ttlSeconds: number): Promise<string>;
  /** A URL a credential-less `curl -T file` can PUT for `ttlSeconds` (1..maxTtlSeconds). Single PUT: S3 caps it at 5 GiB. */
  presignPut(key: string, ttlSeconds: number): Promise<string>;
  /**
   * Starts a multipart upload whose parts a credential-less curl PUTs (presignPart); its upload id.
   * No checksum algorithm: presigned parts carry none, and S3 refuses parts whose checksum type
   * differs from the upload's.
   */
  createMultipart(key: string): Promise<string>;
  /** A URL a credential-less `curl -T part` can PUT as part `partNumber` (1..10000) for `ttlSeconds`. */
  presignPart(key: string, uploadId: string, partNumber: number, ttlSeconds: number): Promise<string>;
  /** Completes the upload from its parts' ETags, listed in ascending part order (S3 checks sizes and ETags). */
  completeMultipart(
    key: string,
    uploadId: string,
    parts: readonly { partNumber: number; etag: string }[],
  ): Promise<void>;
  /** Discards the upload and its parts. Idempotent: an unknown (finished or aborted) upload is fine. */
  abortMultipart(key: string, uploadId: string): Promise<void>;
  /** Idempotent: deleting an absent key succeeds. */
  delete(key: string): Promise<void>;
  /** Deletes every object under `prefix` (relative to the store's prefix); returns how many. */
  deletePrefix(prefix: string): Promise<number>;
}

export interface S3BlobStoreOptions {
  client: S3Client;
  bucket: string;
  /** Prepended to every key, e.g. 'transfer/'. Same character rules as keys; may be ''. */
  prefix: string;
  /** Longest presigned-URL lifetime accepted, seconds. Default 900; at most 3600. */
  maxTtlSeconds?: number;
  /** Files larger than this go multipart, bytes. Default 64 MiB; at least 5 MiB (S3's smallest part). */
  multipartThresholdBytes?: number;
  /** Part size for multipart uploads, bytes. Default 16 MiB; at least 5 MiB; grown if a file would need > 10000 parts. */
  partBytes?: number;
}

const MiB = 1024 * 1024;
/** S3's smallest part (all but the last) and largest part count. */
const MIN_PART_BYTES = 5 * MiB;
const MAX_PARTS = 10_000;
/** S3's largest single PUT. */
const MAX_SINGLE_PUT_BYTES = 5 * 1024 * MiB;
const KEY_CHARS = /^[A-Za-z0-9._/-]+$/;

/**
 * Key rules (for keys and the store prefix): characters [A-Za-z0-9._/-] only, no '..', no leading
 * '/', no '//' — so a key can never climb out of the prefix or be read two ways. Throws BadRequestError.
 */
function validateBlobKey(key: string, what = 'blob key'): void {
  if (key.length === 0 || key.length > 900)
    throw new BadRequestError(`${what} must be 1..900 characters`, { field: what });
  if (!KEY_CHARS.test(key)) throw new BadRequestError(`${what} may contain only A-Z a-z 0-9 . _ / -`, { field: what });
  if (key.includes('..')) throw new BadRequestError(`${what} must not contain '..'`, { field: what });
  if (key.startsWith('/')) throw new BadRequestError(`${what} must not start with '/'`, { field: what });
  if (key.includes('//')) throw new BadRequestError(`${what} must not contain '//'`, { field: what });
}

export class S3BlobStore implements BlobStore {
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  readonly maxTtlSeconds: number;
  private readonly thresholdBytes: number;
  private readonly partBytes: number;

  /** Throws BadRequestError on a bad prefix, TTL cap or size option. */
  constructor(options: S3BlobStoreOptions) {
    this.client = options.client;
    this.bucket = options.bucket;
    if (options.prefix !== '') validateBlobKey(options.prefix, 'blob store prefix');
    this.prefix = options.prefix;
    const maxTtl = options.maxTtlSeconds ?? 900;
    if (!Number.isInteger(maxTtl) || maxTtl < 1 || maxTtl > 3600)
      throw new BadRequestError('maxTtlSeconds must be an integer in 1..3600', { field: 'maxTtlSeconds' });
    this.maxTtlSeconds = maxTtl;
    this.thresholdBytes = options.multipartThresholdBytes ?? 64 * MiB;
    this.partBytes = options.partBytes ?? 16 * MiB;
    if (!(this.thresholdBytes >= MIN_PART_BYTES))
      throw new BadRequestError('multipartThresholdBytes must be at least 5 MiB', { field: 'multipartThresholdBytes' });
    if (!(this.partBytes >= MIN_PART_BYTES) || this.partBytes > MAX_SINGLE_PUT_BYTES)
      throw new BadRequestError('partBytes must be 5 MiB..5 GiB', { field: 'partBytes' });
  }

  /** The full S3 key for a store key (validated). */
  objectKey(key: string): string {
    validateBlobKey(key);
    return this.prefix + key;
  }

  async putFile(key: string, file: string): Promise<{ bytes: number }> {
    const objectKey = this.objectKey(key);
    // One open handle for the whole upload: the size and every byte come from the same file even
    // if the path is replaced meanwhile, and no stream opens the path lazily after we are done.
    const handle = await openRegularFile(file);
    try {
      const size = (await handle.stat()).size;
      if (size > this.thresholdBytes) return await this.putMultipart(objectKey, handle, size);
      await this.send('PutObject', key, () =>
        this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: objectKey,
            Body: rangeStream(handle, 0, size),
            ContentLength: size,
          }),
        ),
      );
      return { bytes: size };
    } finally {
      await handle.close();
    }
  }

  /**
   * Multipart with CRC32 part checksums declared at creation: the SDK (default "when supported")
   * adds a CRC32 to every UploadPart, and S3 refuses parts whose checksum type differs from the
   * upload's ("Checksum Type mismatch"), so the upload must say CRC32 and the completion must list
   * each part's checksum. Any failure aborts the upload so no orphaned parts are billed.
   */
  private async putMultipart(objectKey: string, handle: fsp.FileHandle, size: number): Promise<{ bytes: number }> {
    const key = objectKey.slice(this.prefix.length);
    const partBytes = Math.max(this.partBytes, Math.ceil(size / MAX_PARTS));
    const created = await this.send('CreateMultipartUpload', key, () =>
      this.client.send(
        new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, ChecksumAlgorithm: 'CRC32' }),
      ),
    );
    const uploadId = created.UploadId;
    if (!uploadId) throw new BackendUnavailableError(`S3 CreateMultipartUpload ${key} returned no UploadId`);
    try {
      const parts: CompletedPart[] = [];
      for (let start = 0, n = 1; start < size; start += partBytes, n++) {
        const length = Math.min(partBytes, size - start);
        const out = await this.send('UploadPart', key, () =>
          this.client.send(
            new UploadPartCommand({
              Bucket: this.bucket,
              Key: objectKey,
              UploadId: uploadId,
              PartNumber: n,
              ContentLength: length,
              ChecksumAlgorithm: 'CRC32',
              Body: rangeStream(handle, start, length),
            }),
          ),
        );
        parts.push({
          PartNumber: n,
          ETag: out.ETag,
          ...(out.ChecksumCRC32 ? { ChecksumCRC32: out.ChecksumCRC32 } : {}),
        });
      }
      await this.send('CompleteMultipartUpload', key, () =>
        this.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: this.bucket,
            Key: objectKey,
            UploadId: uploadId,
            MultipartUpload: { Parts: parts },
          }),
        ),
      );
      return { bytes: size };
    } catch (err) {
      // Best effort: the original failure is what the caller needs; a lifecycle rule on
      // incomplete multipart uploads is the backstop if the abort fails too.
      try {
        await this.client.send(
          new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, UploadId: uploadId }),
        );
      } catch {
        /* the part/complete error below is the one to report */
      }
      throw err;
    }
  }

  async getToFile(key: string, file: string): Promise<{ bytes: number }> {
    const { body, length } = await this.getObject(key);
    // Write beside the target and rename, so a failed or short download never leaves a partial file.
    const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.part`);
    let bytes = 0;
    try {
      body.on('data', (c: Buffer) => (bytes += c.length));
      await pipeline(body, fs.createWriteStream(tmp, { flags: 'wx' }));
      if (length !== undefined && bytes !== length) {
        throw new BackendUnavailableError(`S3 GetObject ${key}: got ${bytes} bytes, expected ${length}`);
      }
      await fsp.rename(tmp, file);
      return { bytes };
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      if (err instanceof WspError) throw err;
      throw new BackendUnavailableError(`S3 GetObject ${key}: download failed after ${bytes} bytes`, err);
    }
  }

  async getStream(key: string): Promise<NodeJS.ReadableStream> {
    return (await this.getObject(key)).body;
  }

  async presignGet(key: string, ttlSeconds: number): Promise<string> {
    const objectKey = this.objectKey(key);
    const expiresIn = this.checkTtl(ttlSeconds);
    return this.send('presign GetObject', key, () =>
      getSignedUrl(this.client, withoutChecksums(new GetObjectCommand({ Bucket: this.bucket, Key: objectKey })), {
        expiresIn,
      }),
    );
  }

  async presignPut(key: string, ttlSeconds: number): Promise<string> {
    const objectKey = this.objectKey(key);
    const expiresIn = this.checkTtl(ttlSeconds);
    return this.send('presign PutObject', key, () =>
      getSignedUrl(this.client, withoutChecksums(new PutObjectCommand({ Bucket: this.bucket, Key: objectKey })), {
        expiresIn,
      }),
    );
  }

  async createMultipart(key: string): Promise<string> {
    const objectKey = this.objectKey(key);
    const created = await this.send('CreateMultipartUpload', key, () =>
      this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey })),
    );
    if (!created.UploadId) throw new BackendUnavailableError(`S3 CreateMultipartUpload ${key} returned no UploadId`);
    return created.UploadId;
  }

  async presignPart(key: string, uploadId: string, partNumber: number, ttlSeconds: number): Promise<string> {
    const objectKey = this.objectKey(key);
    const expiresIn = this.checkTtl(ttlSeconds);
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PARTS)
      throw new BadRequestError(`part number must be an integer in 1..${MAX_PARTS}`, { field: 'partNumber' });
    return this.send('presign UploadPart', key, () =>
      getSignedUrl(
        this.client,
        withoutChecksums(
          new UploadPartCommand({ Bucket: this.bucket, Key: objectKey, UploadId: uploadId, PartNumber: partNumber }),
        ),
        { expiresIn },
      ),
    );
  }

  async completeMultipart(
    key: string,
    uploadId: string,
    parts: readonly { partNumber: number; etag: string }[],
  ): Promise<void> {
    const objectKey = this.objectKey(key);
    await this.send('CompleteMultipartUpload', key, () =>
      this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: objectKey,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })) },
        }),
      ),
    );
  }

  async abortMultipart(key: string, uploadId: string): Promise<void> {
    const objectKey = this.objectKey(key);
    try {
      await this.client.send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, UploadId: uploadId }),
      );
    } catch (err) {
      if ((err as { name?: unknown } | undefined)?.name === 'NoSuchUpload') return;
      throw mapS3Error('AbortMultipartUpload', key, err);
    }
  }

  async delete(key: string): Promise<void> {
    const objectKey = this.objectKey(key);
    try {
      await this.send('DeleteObject', key, () =>
        this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: objectKey })),
      );
    } catch (err) {
      if (err instanceof NotFoundError) return;
      throw err;
    }
  }

  async deletePrefix(prefix: string): Promise<number> {
    if (prefix !== '') validateBlobKey(prefix, 'blob prefix');
    const full = this.prefix + prefix;
    // An empty full prefix would mean "the whole bucket": never.
    if (full === '')
      throw new BadRequestError('deletePrefix needs a non-empty prefix when the store has none', { field: 'prefix' });
    let deleted = 0;
    let token: string | undefined;
    do {
      const page = await this.send('ListObjectsV2', prefix, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: full,
            ...(token ? { ContinuationToken: token } : {}),
          }),
        ),
      );
      const keys = (page.Contents ?? []).map((o) => o.Key).filter((k): k is string => typeof k === 'string');
      // ListObjectsV2 pages hold at most 1000 keys, DeleteObjects takes at most 1000.
      if (keys.length > 0) {
        const out = await this.send('DeleteObjects', prefix, () =>
          this.client.send(
            new DeleteObjectsCommand({
              Bucket: this.bucket,
              Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true },
            }),
          ),
        );
        const failed = out.Errors ?? [];
        if (failed.length > 0) {
          throw new BackendUnavailableError(
            `S3 DeleteObjects ${prefix}: ${failed.length} of ${keys.length} not deleted (${failed[0]?.Code ?? 'unknown'})`,
          );
        }
        deleted += keys.length;
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return deleted;
  }

  private checkTtl(ttlSeconds: number): number {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > this.maxTtlSeconds) {
      throw new BadRequestError(`presigned URL lifetime must be an integer in 1..${this.maxTtlSeconds} seconds`, {
        field: 'ttlSeconds',
      });
    }
    return ttlSeconds;
  }

  private async getObject(key: string): Promise<{ body: Readable; length: number | undefined }> {
    const objectKey = this.objectKey(key);
    const out = await this.send('GetObject', key, () =>
      this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: objectKey })),
    );
    const body = out.Body;
    if (!(body instanceof Readable))
      throw new BackendUnavailableError(`S3 GetObject ${key} returned no Node stream body`);
    return { body, length: out.ContentLength };
  }

  /** Runs one S3 call and maps its failure to a domain error (S3 code only, no URL or signature). */
  private async send<T>(op: string, key: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw mapS3Error(op, key, err);
    }
  }
}

/** NoSuchKey / 404 → NotFoundError('blob', key); anything else → BackendUnavailableError naming S3's code. */
function mapS3Error(op: string, key: string, err: unknown): WspError {
  if (err instanceof WspError) return err;
  const e = err as { name?: unknown; Code?: unknown; $metadata?: { httpStatusCode?: number } } | undefined;
  const code = typeof e?.Code === 'string' ? e.Code : typeof e?.name === 'string' ? e.name : 'UnknownError';
  const status = e?.$metadata?.httpStatusCode;
  if (
    code === 'NoSuchKey' ||
    code === 'NotFound' ||
    (status === 404 && code !== 'NoSuchBucket' && code !== 'NoSuchUpload')
  ) {
    return new NotFoundError('blob', key);
  }
  return new BackendUnavailableError(`S3 ${op} ${key} failed: ${code}${status ? ` (HTTP ${status})` : ''}`, err);
}

/**
 * Strips the SDK's flexible-checksum headers from a command that is only being presigned. Since
 * SDK 3.729 (`requestChecksumCalculation: WHEN_SUPPORTED` by default) a presigned PutObject, which
 * has no body at signing time, gets `x-amz-checksum-crc32=AAAAAA==` (the CRC32 of nothing) hoisted
 * into the URL, and S3 then rejects every real upload with BadDigest (aws/aws-sdk-js-v3#6994). Doing
 * it here keeps the fix independent of how the caller configured its S3Client. Runs after the
 * checksum middleware (build step), so before presigning (finalizeRequest).
 */
function withoutChecksums<
  // biome-ignore lint/suspicious/noExplicitAny: one middleware for all commands (SDK middleware types are invariant)
  C extends { middlewareStack: { addRelativeTo(m: BuildMiddleware<any, any>, o: RelativeMiddlewareOptions): void } },
>(command: C): C {
  command.middlewareStack.addRelativeTo(stripChecksumHeaders, {
    relation: 'after',
    toMiddleware: 'flexibleChecksumsMiddleware',
    name: 'wspPresignWithoutChecksums',
  });
  return command;
}

// biome-ignore lint/suspicious/noExplicitAny: one middleware for all commands (SDK middleware types are invariant)
const stripChecksumHeaders: BuildMiddleware<any, any> = (next) => async (args) => {
  const headers = (args.request as { headers?: Record<string, string> }).headers ?? {};
  for (const name of Object.keys(headers)) {
    const lower = name.toLowerCase();
    if (lower.startsWith('x-amz-checksum-') || lower === 'x-amz-sdk-checksum-algorithm') delete headers[name];
  }
  return next(args);
};

/** Opens a file to upload; BadRequestError (file name only, not the path) if it is missing or not a regular file. */
async function openRegularFile(file: string): Promise<fsp.FileHandle> {
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(file, 'r');
    if (!(await handle.stat()).isFile()) throw new BadRequestError(`not a regular file: ${path.basename(file)}`);
    return handle;
  } catch (err) {
    await handle?.close();
    if (err instanceof WspError) throw err;
    throw new BadRequestError(`cannot read file to upload: ${path.basename(file)}`, undefined, err);
  }
}

/**
 * `length` bytes from `start` of an open file, for a request body. The handle stays open (closed by
 * the caller). A body the SDK never read (the request failed first) is read by nobody; the 'error'
 * listener keeps a late EBADF after the handle closes from crashing the process.
 */
function rangeStream(handle: fsp.FileHandle, start: number, length: number): fs.ReadStream {
  const stream = handle.createReadStream({ start, end: start + length - 1, autoClose: false });
  stream.on('error', () => undefined);
  return stream;
}
