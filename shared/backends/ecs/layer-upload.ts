import { BackendUnavailableError, BadRequestError } from '../../contract/errors.js';
import type { Logger } from '../../log.js';
import { bestEffort } from '../../lib/best-effort.js';
import type { BlobStore } from './blob-store.js';

/**
 * A file in the task to S3 as a multipart upload, without credentials in the task: one presigned
 * PUT takes at most 5 GiB, a `node_modules`-heavy home is more. The provider creates the upload,
 * presigns the UploadPart URLs a batch at a time (so no URL waits long enough to expire), the runner
 * cuts the file into parts and PUTs each (`runner.sh put-parts`, answering each part's ETag), and the
 * provider completes the upload from the ETags in part order — or aborts it on any failure (the
 * bucket's lifecycle rule aborts what an abort missed after a day).
 *
 * S3's rules: parts of 5 MiB–5 GiB (the last may be smaller), at most 10,000 of them.
 */

const MiB = 1024 * 1024;
const S3_MIN_PART_BYTES = 5 * MiB;
const S3_MAX_PART_BYTES = 5 * 1024 * MiB;
const S3_MAX_PARTS = 10_000;
/** Parts per runner request, and bytes: a batch's URLs are presigned just before it runs. */
const BATCH_PARTS = 16;
const BATCH_BYTES = 256 * MiB;
const ETAG = /^"?[A-Za-z0-9-]{1,128}"?$/;

/**
 * The part size and count for `sizeBytes`: `partBytes` (5 MiB..5 GiB), grown to whole MiB when the
 * file would need more than 10,000 parts. An empty file is one empty part.
 */
export function planParts(sizeBytes: number, partBytes: number): { partBytes: number; count: number } {
  if (!Number.isInteger(partBytes) || partBytes < S3_MIN_PART_BYTES || partBytes > S3_MAX_PART_BYTES)
    throw new BadRequestError('the layer part size must be 5 MiB..5 GiB', { field: 'layerPartBytes' });
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0)
    throw new BackendUnavailableError(`the layer tar has no valid size (${sizeBytes})`);
  const needed = Math.ceil(Math.ceil(sizeBytes / S3_MAX_PARTS) / MiB) * MiB;
  const size = Math.max(partBytes, needed);
  if (size > S3_MAX_PART_BYTES) throw new BadRequestError(`a layer of ${sizeBytes} bytes is larger than S3 takes`);
  return { partBytes: size, count: Math.max(1, Math.ceil(sizeBytes / size)) };
}

export interface TaskUpload {
  blobs: BlobStore;
  /** Blob-store key of the object the upload makes. */
  key: string;
  /** The file inside the task, and its size. */
  guestFile: string;
  sizeBytes: number;
  /** Configured part size (5 MiB..5 GiB). */
  partBytes: number;
  /** Lifetime of each presigned part URL, seconds. */
  ttlSeconds: number;
  /** One runner request; resolves with its stdout (throws when the runner fails). */
  runner: (argv: string[]) => Promise<Buffer>;
  log: Logger;
}

/** Uploads the task's file to `key`; on failure the upload is aborted and the error rethrown. */
export async function uploadFromTask(u: TaskUpload): Promise<{ parts: number; partBytes: number }> {
  const { partBytes, count } = planParts(u.sizeBytes, u.partBytes);
  const uploadId = await u.blobs.createMultipart(u.key);
  try {
    const parts: { partNumber: number; etag: string }[] = [];
    const perBatch = Math.max(1, Math.min(BATCH_PARTS, Math.floor(BATCH_BYTES / partBytes)));
    for (let first = 1; first <= count; first += perBatch) {
      const numbers = Array.from({ length: Math.min(perBatch, count - first + 1) }, (_, i) => first + i);
      const urls: string[] = [];
      for (const n of numbers) urls.push(await u.blobs.presignPart(u.key, uploadId, n, u.ttlSeconds));
      const out = await u.runner(['put-parts', u.guestFile, String(partBytes), String(first), ...urls]);
      parts.push(...parseEtags(out.toString('utf8'), numbers));
    }
    await u.blobs.completeMultipart(u.key, uploadId, parts);
    return { parts: count, partBytes };
  } catch (error) {
    await bestEffort(u.blobs.abortMultipart(u.key, uploadId), u.log, 'aborting the layer upload');
    throw error;
  }
}

/** `put-parts` answers "<part> <ETag>" per line, for exactly the parts asked, in order. */
function parseEtags(out: string, numbers: number[]): { partNumber: number; etag: string }[] {
  const lines = out.split('\n').filter((l) => l !== '');
  const parts = lines.map((line) => {
    const [n, etag, extra] = line.split(' ');
    return { partNumber: Number(n), etag: etag ?? '', extra };
  });
  const ok =
    parts.length === numbers.length &&
    parts.every((p, i) => p.partNumber === numbers[i] && ETAG.test(p.etag) && p.extra === undefined);
  if (!ok)
    throw new BackendUnavailableError(
      `uploading the cache layer: the runner reported parts ${lines.length > 0 ? JSON.stringify(out.slice(0, 200)) : 'none'} for parts ${numbers[0]}..${numbers.at(-1)}`,
    );
  return parts.map(({ partNumber, etag }) => ({ partNumber, etag }));
}
