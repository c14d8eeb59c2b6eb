import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';

/**
 * A minimal S3-protocol server on 127.0.0.1 for tests (node http, path-style `/<bucket>/<key>`).
 * One bucket. Speaks enough of S3 for the AWS SDK v3 S3Client (with `forcePathStyle: true`) and
 * for a real `curl` using presigned URLs:
 *
 *   PUT    /b/k                          PutObject (also aws-chunked bodies with a checksum trailer)
 *   GET    /b/k   HEAD /b/k              GetObject / HeadObject (404 NoSuchKey)
 *   DELETE /b/k                          DeleteObject (204 even when absent, like S3)
 *   POST   /b/k?uploads                  CreateMultipartUpload (optional x-amz-checksum-algorithm)
 *   PUT    /b/k?partNumber=N&uploadId=U  UploadPart
 *   POST   /b/k?uploadId=U               CompleteMultipartUpload
 *   DELETE /b/k?uploadId=U               AbortMultipartUpload
 *   GET    /b?list-type=2&prefix=…       ListObjectsV2 (pages of `listPageSize`)
 *   POST   /b?delete                     DeleteObjects
 *
 * Authentication is checked for SHAPE ONLY — there is NO signature verification:
 *  - presigned requests (query has X-Amz-Algorithm) need AWS4-HMAC-SHA256, X-Amz-Credential,
 *    X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders and X-Amz-Signature; a URL past
 *    X-Amz-Date + X-Amz-Expires (by the injectable `now`) is refused with 403 AccessDenied
 *    "Request has expired", as S3 does;
 *  - any other request must carry an `authorization: AWS4-HMAC-SHA256 …` header.
 * What it does check like S3: CRC32 checksums (header, presigned query or aws-chunked trailer),
 * Content-Length vs decoded length, the multipart checksum-type rule ("Checksum Type mismatch"
 * when an upload created without a checksum algorithm gets parts with one, and vice versa), and
 * S3's size rules: one PUT carries at most 5 GiB (EntityTooLarge; `maxPutBytes` lowers the cap so a
 * test can stand for it), a part at most 5 GiB, part numbers 1..10,000; at completion every listed
 * part but the last has at least 5 MiB (EntityTooSmall), the list is in ascending part order
 * (InvalidPartOrder) and names each part by its ETag (InvalidPart).
 */

export interface FakeS3Options {
  bucket?: string;
  /** Clock for presigned-URL expiry, epoch ms. Default Date.now. Also settable later via `fake.now`. */
  now?: () => number;
  /** ListObjectsV2 page size cap (S3's is 1000), so tests can force continuation tokens. */
  listPageSize?: number;
  /** Largest single PUT, bytes. Default S3's 5 GiB; also settable later via `fake.maxPutBytes`. */
  maxPutBytes?: number;
}

export interface FakeS3Request {
  method: string;
  bucket: string;
  key: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  /** True when authenticated by presigned query parameters rather than an authorization header. */
  presigned: boolean;
}

export interface FakeS3Fault {
  status: number;
  code: string;
  message?: string;
}

interface Upload {
  key: string;
  checksumAlgorithm: string | undefined;
  parts: Map<number, { body: Buffer; etag: string; crc32?: string }>;
}

export interface FakeS3 {
  /** `http://127.0.0.1:<port>` — pass to S3Client({ endpoint, forcePathStyle: true }). */
  endpoint: string;
  bucket: string;
  /** The bucket's objects, key → body. Tests may read and write it directly. */
  objects: Map<string, Buffer>;
  /** Multipart uploads in progress (created, neither completed nor aborted), uploadId → key. */
  pendingUploads(): Map<string, string>;
  /** Every request that reached the handler (after auth), in order. */
  requests: FakeS3Request[];
  /** Clock used for presigned-URL expiry, epoch ms. Replace to move time without sleeping. */
  now: () => number;
  /** When it returns a fault for a request, the request fails with it (after auth, before acting). */
  fault: ((req: FakeS3Request) => FakeS3Fault | undefined) | undefined;
  /** Largest single PUT (PutObject), bytes: larger ones get 400 EntityTooLarge. */
  maxPutBytes: number;
  stop(): Promise<void>;
}

const MiB = 1024 * 1024;
/** S3's largest single PUT and largest part; its smallest part but the last. */
const S3_MAX_PUT_BYTES = 5 * 1024 * MiB;
const S3_MIN_PART_BYTES = 5 * MiB;

export async function startFakeS3(options: FakeS3Options = {}): Promise<FakeS3> {
  const bucket = options.bucket ?? 'wsp-test-bucket';
  const pageSize = options.listPageSize ?? 1000;
  const objects = new Map<string, Buffer>();
  const uploads = new Map<string, Upload>();
  const requests: FakeS3Request[] = [];

  const fake: FakeS3 = {
    endpoint: '',
    bucket,
    objects,
    pendingUploads: () => new Map([...uploads].map(([id, u]) => [id, u.key])),
    requests,
    now: options.now ?? Date.now,
    fault: undefined,
    maxPutBytes: options.maxPutBytes ?? S3_MAX_PUT_BYTES,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendError(res, 500, 'InternalError', String(err));
      else res.destroy();
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    const body = await readBody(req);
    const segments = url.pathname.split('/');
    const reqBucket = decodeURIComponent(segments[1] ?? '');
    const key = decodeURIComponent(segments.slice(2).join('/'));
    const q = url.searchParams;

    const presigned = q.has('X-Amz-Algorithm');
    const authError = presigned ? checkPresigned(q, fake.now()) : checkAuthorizationHeader(req.headers);
    if (authError) return sendError(res, 403, 'AccessDenied', authError);
    if (reqBucket !== bucket) return sendError(res, 404, 'NoSuchBucket', 'The specified bucket does not exist');

    const info: FakeS3Request = { method, bucket: reqBucket, key, query: q, headers: req.headers, presigned };
    requests.push(info);
    const fault = fake.fault?.(info);
    if (fault) return sendError(res, fault.status, fault.code, fault.message ?? fault.code);

    if (key === '') {
      if (method === 'GET' && q.get('list-type') === '2') return listObjects(q, res);
      if (method === 'POST' && q.has('delete')) return deleteObjects(body, res);
      return sendError(res, 400, 'NotImplemented', `fake S3 does not implement ${method} on the bucket`);
    }

    let payload: Buffer;
    try {
      payload = decodePayload(req.headers, body, q);
    } catch (err) {
      const e = err as FakeS3Fault;
      return sendError(res, e.status ?? 400, e.code ?? 'InvalidRequest', e.message ?? String(err));
    }

    if (method === 'PUT' && payload.length > (q.has('uploadId') ? S3_MAX_PUT_BYTES : fake.maxPutBytes))
      return sendError(res, 400, 'EntityTooLarge', 'Your proposed upload exceeds the maximum allowed size');
    if (method === 'PUT' && q.has('uploadId')) return uploadPart(key, q, req.headers, payload, res);
    if (method === 'PUT') {
      objects.set(key, payload);
      res.writeHead(200, { etag: etagOf(payload) }).end();
      return;
    }
    if (method === 'POST' && q.has('uploads')) {
      const uploadId = randomUUID();
      const algo = header(req.headers, 'x-amz-checksum-algorithm')?.toUpperCase();
      uploads.set(uploadId, { key, checksumAlgorithm: algo, parts: new Map() });
      return sendXml(
        res,
        200,
        `<InitiateMultipartUploadResult><Bucket>${bucket}</Bucket><Key>${esc(key)}</Key><UploadId>${uploadId}</UploadId></InitiateMultipartUploadResult>`,
      );
    }
    if (method === 'POST' && q.has('uploadId')) return completeUpload(key, q.get('uploadId') ?? '', payload, res);
    if (method === 'DELETE' && q.has('uploadId')) {
      const id = q.get('uploadId') ?? '';
      if (!uploads.delete(id)) return sendError(res, 404, 'NoSuchUpload', 'The specified upload does not exist');
      res.writeHead(204).end();
      return;
    }
    if (method === 'GET' || method === 'HEAD') {
      const obj = objects.get(key);
      if (!obj) {
        if (method === 'HEAD') return void res.writeHead(404).end();
        return sendError(res, 404, 'NoSuchKey', 'The specified key does not exist.');
      }
      res.writeHead(200, {
        'content-length': obj.length,
        'content-type': 'application/octet-stream',
        etag: etagOf(obj),
        'last-modified': new Date(0).toUTCString(),
      });
      res.end(method === 'GET' ? obj : undefined);
      return;
    }
    if (method === 'DELETE') {
      objects.delete(key);
      res.writeHead(204).end();
      return;
    }
    sendError(res, 400, 'NotImplemented', `fake S3 does not implement ${method}`);
  }

  function uploadPart(
    key: string,
    q: URLSearchParams,
    headers: http.IncomingHttpHeaders,
    payload: Buffer,
    res: http.ServerResponse,
  ): void {
    const upload = uploads.get(q.get('uploadId') ?? '');
    if (!upload || upload.key !== key) {
      sendError(res, 404, 'NoSuchUpload', 'The specified upload does not exist');
      return;
    }
    const partNumber = Number(q.get('partNumber'));
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10000) {
      sendError(res, 400, 'InvalidArgument', 'Part number must be an integer between 1 and 10000');
      return;
    }
    const partAlgo = sentChecksumAlgorithm(headers, q);
    if (partAlgo !== upload.checksumAlgorithm) {
      sendError(
        res,
        400,
        'InvalidRequest',
        `Checksum Type mismatch occurred, expected checksum Type: ${upload.checksumAlgorithm?.toLowerCase() ?? 'null'}, actual checksum Type: ${partAlgo?.toLowerCase() ?? 'null'}`,
      );
      return;
    }
    const etag = etagOf(payload);
    const crc32 = upload.checksumAlgorithm === 'CRC32' ? crc32Base64(payload) : undefined;
    upload.parts.set(partNumber, { body: payload, etag, ...(crc32 ? { crc32 } : {}) });
    res.writeHead(200, { etag, ...(crc32 ? { 'x-amz-checksum-crc32': crc32 } : {}) }).end();
  }

  function completeUpload(key: string, uploadId: string, xml: Buffer, res: http.ServerResponse): void {
    const upload = uploads.get(uploadId);
    if (!upload || upload.key !== key) {
      sendError(res, 404, 'NoSuchUpload', 'The specified upload does not exist');
      return;
    }
    const listed = [...xml.toString().matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((m) => ({
      partNumber: Number(tag(m[1]!, 'PartNumber')),
      etag: tag(m[1]!, 'ETag'),
      crc32: tag(m[1]!, 'ChecksumCRC32'),
    }));
    if (listed.length === 0) {
      sendError(res, 400, 'MalformedXML', 'no parts listed');
      return;
    }
    const chunks: Buffer[] = [];
    let previous = 0;
    for (const [i, p] of listed.entries()) {
      if (p.partNumber <= previous) {
        sendError(res, 400, 'InvalidPartOrder', 'The list of parts was not in ascending order.');
        return;
      }
      previous = p.partNumber;
      const stored = upload.parts.get(p.partNumber);
      if (!stored || stored.etag !== p.etag) {
        sendError(
          res,
          400,
          'InvalidPart',
          `One or more of the specified parts could not be found (part ${p.partNumber}).`,
        );
        return;
      }
      if (stored.crc32 !== undefined && p.crc32 !== stored.crc32) {
        sendError(
          res,
          400,
          'InvalidRequest',
          `The upload was created using a crc32 checksum. The complete request must include the checksum for each part. It was missing for part ${p.partNumber} in the request.`,
        );
        return;
      }
      if (i < listed.length - 1 && stored.body.length < S3_MIN_PART_BYTES) {
        sendError(res, 400, 'EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed size');
        return;
      }
      chunks.push(stored.body);
    }
    const whole = Buffer.concat(chunks);
    objects.set(key, whole);
    uploads.delete(uploadId);
    const etag = `"${createHash('md5')
      .update(listed.map((p) => p.etag.replaceAll('"', '')).join(''))
      .digest('hex')}-${listed.length}"`;
    sendXml(
      res,
      200,
      `<CompleteMultipartUploadResult><Bucket>${bucket}</Bucket><Key>${esc(key)}</Key><ETag>${esc(etag)}</ETag></CompleteMultipartUploadResult>`,
    );
  }

  function listObjects(q: URLSearchParams, res: http.ServerResponse): void {
    const prefix = q.get('prefix') ?? '';
    const maxKeys = Math.min(Number(q.get('max-keys') ?? 1000) || 1000, pageSize);
    const after = q.get('continuation-token') ?? q.get('start-after') ?? '';
    const keys = [...objects.keys()].filter((k) => k.startsWith(prefix) && k > after).sort();
    const page = keys.slice(0, maxKeys);
    const truncated = keys.length > page.length;
    const contents = page
      .map(
        (k) =>
          `<Contents><Key>${esc(k)}</Key><Size>${objects.get(k)!.length}</Size><ETag>${esc(etagOf(objects.get(k)!))}</ETag><LastModified>${new Date(0).toISOString()}</LastModified><StorageClass>STANDARD</StorageClass></Contents>`,
      )
      .join('');
    // The continuation token is the last key returned (opaque to clients, as in S3).
    const next = truncated ? `<NextContinuationToken>${esc(page[page.length - 1]!)}</NextContinuationToken>` : '';
    sendXml(
      res,
      200,
      `<ListBucketResult><Name>${bucket}</Name><Prefix>${esc(prefix)}</Prefix><KeyCount>${page.length}</KeyCount><MaxKeys>${maxKeys}</MaxKeys><IsTruncated>${truncated}</IsTruncated>${contents}${next}</ListBucketResult>`,
    );
  }

  function deleteObjects(xml: Buffer, res: http.ServerResponse): void {
    const keys = [...xml.toString().matchAll(/<Object>([\s\S]*?)<\/Object>/g)].map((m) => tag(m[1]!, 'Key'));
    if (keys.length > 1000) {
      sendError(res, 400, 'MalformedXML', 'more than 1000 keys');
      return;
    }
    const quiet = /<Quiet>true<\/Quiet>/.test(xml.toString());
    for (const k of keys) objects.delete(k);
    const deleted = quiet ? '' : keys.map((k) => `<Deleted><Key>${esc(k)}</Key></Deleted>`).join('');
    sendXml(res, 200, `<DeleteResult>${deleted}</DeleteResult>`);
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return fake;
}

// ---- authentication shape checks (no signature verification) ----

function checkPresigned(q: URLSearchParams, nowMs: number): string | undefined {
  if (q.get('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256') return 'Unsupported X-Amz-Algorithm';
  for (const p of ['X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Signature']) {
    if (!q.get(p)) return `Query-string authentication requires the ${p} parameter`;
  }
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(q.get('X-Amz-Date')!);
  if (!m) return 'X-Amz-Date must be in the ISO8601 Long Format';
  const signedAt = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
  const expires = Number(q.get('X-Amz-Expires'));
  if (!Number.isInteger(expires) || expires < 1 || expires > 604800)
    return 'X-Amz-Expires must be between 1 and 604800 seconds';
  if (nowMs > signedAt + expires * 1000) return 'Request has expired';
  return undefined;
}

function checkAuthorizationHeader(headers: http.IncomingHttpHeaders): string | undefined {
  const auth = header(headers, 'authorization');
  if (!auth?.startsWith('AWS4-HMAC-SHA256 ') || !auth.includes('Signature='))
    return 'Access Denied (no AWS4-HMAC-SHA256 authorization header)';
  return undefined;
}

// ---- payloads and checksums ----

/**
 * The object bytes of a request: the raw body, or the decoded aws-chunked body (SDK streaming
 * uploads: `content-encoding: aws-chunked`, checksum in a trailer). Verifies the declared length
 * and any CRC32 checksum (header, presigned query parameter, or trailer); throws a fault otherwise.
 */
function decodePayload(headers: http.IncomingHttpHeaders, body: Buffer, q: URLSearchParams): Buffer {
  let payload = body;
  const trailers: Record<string, string> = {};
  const chunked =
    (header(headers, 'content-encoding') ?? '').includes('aws-chunked') ||
    (header(headers, 'x-amz-content-sha256') ?? '').startsWith('STREAMING-');
  if (chunked) {
    payload = decodeAwsChunked(body, trailers);
    const declared = header(headers, 'x-amz-decoded-content-length');
    if (declared !== undefined && Number(declared) !== payload.length) {
      throw { status: 400, code: 'IncompleteBody', message: 'The request body terminated unexpectedly' };
    }
  }
  const expected =
    header(headers, 'x-amz-checksum-crc32') ?? q.get('x-amz-checksum-crc32') ?? trailers['x-amz-checksum-crc32'];
  if (expected !== undefined && expected !== crc32Base64(payload)) {
    throw { status: 400, code: 'BadDigest', message: 'The CRC32 you specified did not match the calculated checksum.' };
  }
  return payload;
}

/** `hex-size[;ext]\r\n bytes \r\n … 0\r\n trailer: value\r\n \r\n` */
function decodeAwsChunked(body: Buffer, trailers: Record<string, string>): Buffer {
  const out: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const eol = body.indexOf('\r\n', pos);
    if (eol < 0) throw { status: 400, code: 'IncompleteBody', message: 'aws-chunked: missing chunk header' };
    const size = parseInt(body.subarray(pos, eol).toString().split(';')[0]!, 16);
    if (!Number.isFinite(size)) throw { status: 400, code: 'InvalidRequest', message: 'aws-chunked: bad chunk size' };
    pos = eol + 2;
    if (size === 0) break;
    out.push(body.subarray(pos, pos + size));
    pos += size + 2;
  }
  for (const line of body.subarray(pos).toString().split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) trailers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return Buffer.concat(out);
}

/** The checksum algorithm a request carries (header, trailer declaration or presigned query), upper case. */
function sentChecksumAlgorithm(headers: http.IncomingHttpHeaders, q: URLSearchParams): string | undefined {
  const sent = [header(headers, 'x-amz-trailer'), ...Object.keys(headers), ...q.keys()]
    .filter((h): h is string => typeof h === 'string')
    .map((h) => /^x-amz-checksum-(crc32c|crc32|crc64nvme|sha1|sha256)$/i.exec(h.toLowerCase())?.[1])
    .find((a) => a !== undefined);
  return sent?.toUpperCase();
}

function crc32Base64(data: Buffer): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(zlib.crc32(data) >>> 0);
  return b.toString('base64');
}

// ---- small helpers ----

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function header(headers: http.IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function etagOf(body: Buffer): string {
  return `"${createHash('md5').update(body).digest('hex')}"`;
}

function tag(xml: string, name: string): string {
  const m = new RegExp(`<${name}>([\\s\\S]*?)</${name}>`).exec(xml);
  return unesc(m?.[1] ?? '');
}

function esc(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

function unesc(s: string): string {
  return s
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&#(\d+);/g, (_m, d: string) => String.fromCharCode(Number(d)))
    .replace(/&amp;/g, '&');
}

function sendXml(res: http.ServerResponse, status: number, xml: string): void {
  // Real S3 puts the namespace on the root element (and the SDK's parser relies on an element, not text, for empty results).
  const rooted = xml.replace(/^<(\w+)>/, '<$1 xmlns="http://s3.amazonaws.com/doc/2006-03-01/">');
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n${rooted}`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) }).end(body);
}

function sendError(res: http.ServerResponse, status: number, code: string, message: string): void {
  sendXml(
    res,
    status,
    `<Error><Code>${esc(code)}</Code><Message>${esc(message)}</Message><RequestId>fake</RequestId></Error>`,
  );
}
