import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An in-memory registry on 127.0.0.1 shaped like ECR's registry endpoint, for what the real
 * docker-registry (test/support/registry.ts) cannot show: ECR's limits and quirks on blob uploads.
 * It speaks the OCI distribution subset RegistryClient uses (blobs: HEAD/GET, uploads: POST/PATCH/PUT/
 * DELETE; manifests: GET/HEAD/PUT/DELETE by tag or digest) and enforces:
 *
 *  - ECR's login: every /v2/ request needs `Authorization: Basic …` (401 otherwise);
 *  - cross-repository mounts are declined (202 and a fresh session), as without ECR's blob mounting;
 *  - a streamed PATCH (no Content-Range: Docker's push) takes the whole blob; ECR answers it, like
 *    every PATCH, with 201 (not the spec's 202) and a stale Range (aws/containers-roadmap#2831);
 *  - a chunked PATCH (with Content-Range) is held to ECR's documented layer-part quotas, the only
 *    part limits ECR publishes: at most 10 MiB, at least 5 MiB unless it turns out to be the last,
 *    at most 4,200 parts; its range must start at the bytes received so far (416 otherwise);
 *  - a layer of at most `maxLayerBytes` (ECR's quota: 52,000 MiB);
 *  - PUT ?digest= commits only bytes that hash to the digest (400 DIGEST_INVALID).
 */

const MiB = 1024 * 1024;
const ECR_PART_MIN_BYTES = 5 * MiB;
const ECR_PART_MAX_BYTES = 10 * MiB;
const ECR_MAX_PARTS = 4200;

export interface EcrRegistryRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  /** Bytes of the request body. */
  bodyBytes: number;
}

export interface EcrRegistry {
  /** http://127.0.0.1:<port> */
  url: string;
  host: string;
  requests: EcrRegistryRequest[];
  /** repository → digest → bytes */
  blobs: Map<string, Map<string, Buffer>>;
  /** Uploads in progress (neither committed nor cancelled). */
  openUploads(): number;
  stop(): Promise<void>;
}

interface Upload {
  repository: string;
  chunks: Buffer[];
  size: number;
  /** Sizes of the chunked (Content-Range) parts so far. */
  parts: number[];
}

interface Manifest {
  bytes: Buffer;
  mediaType: string;
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const ROUTE =
  /^\/v2\/([a-z0-9]+(?:[._/-][a-z0-9]+)*)\/(?:blobs\/uploads\/([A-Za-z0-9-]*)|blobs\/(sha256:[a-f0-9]{64})|manifests\/([A-Za-z0-9_.:-]+))$/;

export async function startEcrRegistry(options: { maxLayerBytes?: number } = {}): Promise<EcrRegistry> {
  const maxLayerBytes = options.maxLayerBytes ?? 52_000 * MiB;
  const requests: EcrRegistryRequest[] = [];
  const blobs = new Map<string, Map<string, Buffer>>();
  const manifests = new Map<string, Map<string, Manifest>>();
  const uploads = new Map<string, Upload>();

  const repoBlobs = (repo: string): Map<string, Buffer> => {
    const m = blobs.get(repo) ?? new Map<string, Buffer>();
    blobs.set(repo, m);
    return m;
  };
  const repoManifests = (repo: string): Map<string, Manifest> => {
    const m = manifests.get(repo) ?? new Map<string, Manifest>();
    manifests.set(repo, m);
    return m;
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url ?? '/', 'http://ecr');
      const method = req.method ?? 'GET';
      requests.push({
        method,
        path: url.pathname,
        query: url.searchParams,
        headers: req.headers,
        bodyBytes: body.length,
      });
      handle(method, url, req.headers, body, res);
    });
  });

  const error = (res: http.ServerResponse, status: number, code: string, message: string): void => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ errors: [{ code, message }] }));
  };

  function handle(method: string, url: URL, headers: http.IncomingHttpHeaders, body: Buffer, res: http.ServerResponse) {
    if (!headers.authorization?.startsWith('Basic ')) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="https://ecr.example"' });
      res.end(JSON.stringify({ errors: [{ code: 'DENIED', message: 'Not Authorized' }] }));
      return;
    }
    if (url.pathname === '/v2/') {
      res.writeHead(200, { 'docker-distribution-api-version': 'registry/2.0' }).end('{}');
      return;
    }
    const m = ROUTE.exec(url.pathname);
    if (!m) return error(res, 404, 'NAME_UNKNOWN', 'no such route');
    const [, repo, uploadId, blobDigest, reference] = m as unknown as [string, string, string?, string?, string?];

    if (uploadId !== undefined) return uploadRoute(method, repo, uploadId, url, headers, body, res);

    if (blobDigest !== undefined) {
      const blob = repoBlobs(repo).get(blobDigest);
      if (method !== 'GET' && method !== 'HEAD') return error(res, 405, 'UNSUPPORTED', method);
      if (!blob) return method === 'HEAD' ? void res.writeHead(404).end() : error(res, 404, 'BLOB_UNKNOWN', 'unknown');
      res.writeHead(200, { 'content-length': blob.length, 'docker-content-digest': blobDigest });
      res.end(method === 'GET' ? blob : undefined);
      return;
    }

    const store = repoManifests(repo);
    const ref = reference!;
    if (method === 'PUT') {
      const digest = sha256(body);
      const manifest = { bytes: body, mediaType: String(headers['content-type'] ?? '') };
      store.set(digest, manifest);
      if (!ref.startsWith('sha256:')) store.set(ref, manifest);
      res.writeHead(201, { 'docker-content-digest': digest, location: `/v2/${repo}/manifests/${digest}` }).end();
      return;
    }
    const found = store.get(ref);
    if (method === 'GET' || method === 'HEAD') {
      if (!found) return error(res, 404, 'MANIFEST_UNKNOWN', `manifest ${ref} unknown`);
      res.writeHead(200, { 'content-type': found.mediaType, 'docker-content-digest': sha256(found.bytes) });
      res.end(method === 'GET' ? found.bytes : undefined);
      return;
    }
    if (method === 'DELETE') {
      if (!found) return error(res, 404, 'MANIFEST_UNKNOWN', `manifest ${ref} unknown`);
      for (const [key, value] of store) if (value === found) store.delete(key);
      res.writeHead(202).end();
      return;
    }
    error(res, 405, 'UNSUPPORTED', method);
  }

  function uploadRoute(
    method: string,
    repo: string,
    uploadId: string,
    url: URL,
    headers: http.IncomingHttpHeaders,
    body: Buffer,
    res: http.ServerResponse,
  ) {
    const location = (id: string): string => `/v2/${repo}/blobs/uploads/${id}`;
    if (method === 'POST' && uploadId === '') {
      // Mount requests (?mount=&from=) are declined: a session opens instead.
      const id = randomUUID();
      uploads.set(id, { repository: repo, chunks: [], size: 0, parts: [] });
      res.writeHead(202, { location: location(id), range: '0-0', 'docker-upload-uuid': id }).end();
      return;
    }
    const upload = uploads.get(uploadId);
    if (!upload || upload.repository !== repo) return error(res, 404, 'BLOB_UPLOAD_UNKNOWN', 'upload unknown');
    if (method === 'DELETE') {
      uploads.delete(uploadId);
      res.writeHead(204).end();
      return;
    }
    if (method === 'PATCH') {
      const type = headers['content-type'];
      if (type !== undefined && type !== 'application/octet-stream')
        return error(res, 400, 'BLOB_UPLOAD_INVALID', 'bad Content-Type');
      const range = headers['content-range'];
      if (range !== undefined) {
        const r = /^(\d+)-(\d+)$/.exec(String(range));
        if (!r || Number(r[1]) !== upload.size || Number(r[2]) - Number(r[1]) + 1 !== body.length)
          return error(res, 416, 'BLOB_UPLOAD_INVALID', `range ${String(range)} does not continue at ${upload.size}`);
        const previous = upload.parts.at(-1);
        if (previous !== undefined && previous < ECR_PART_MIN_BYTES)
          return error(res, 400, 'BLOB_UPLOAD_INVALID', 'Layer part size must be at least 5 MiB (but the last)');
        if (body.length > ECR_PART_MAX_BYTES)
          return error(res, 400, 'BLOB_UPLOAD_INVALID', 'Layer part size must be at most 10 MiB');
        if (upload.parts.length >= ECR_MAX_PARTS) return error(res, 400, 'BLOB_UPLOAD_INVALID', 'Too many layer parts');
        upload.parts.push(body.length);
      }
      if (upload.size + body.length > maxLayerBytes)
        return error(res, 400, 'SIZE_INVALID', 'Layer exceeds the maximum layer size');
      // ECR's quirk: 201, and a Range that does not count this PATCH.
      const stale = upload.size === 0 ? '0-0' : `0-${upload.size - 1}`;
      upload.chunks.push(body);
      upload.size += body.length;
      res.writeHead(201, { location: location(uploadId), range: stale, 'docker-upload-uuid': uploadId }).end();
      return;
    }
    if (method === 'PUT') {
      const digest = url.searchParams.get('digest') ?? '';
      const bytes = Buffer.concat([...upload.chunks, body]);
      if (bytes.length > maxLayerBytes) return error(res, 400, 'SIZE_INVALID', 'Layer exceeds the maximum layer size');
      if (sha256(bytes) !== digest) return error(res, 400, 'DIGEST_INVALID', 'digest does not match the upload');
      uploads.delete(uploadId);
      repoBlobs(repo).set(digest, bytes);
      res.writeHead(201, { location: `/v2/${repo}/blobs/${digest}`, 'docker-content-digest': digest }).end();
      return;
    }
    error(res, 405, 'UNSUPPORTED', method);
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    requests,
    blobs,
    openUploads: () => uploads.size,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
