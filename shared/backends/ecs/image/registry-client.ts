import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { BackendUnavailableError } from '../../../contract/errors.js';
import { noAuth, type RegistryAuth } from './auth.js';
import { assertDigest, assertReference, assertRepository, isDigest, sha256Digest, VerifyingStream } from './digest.js';
import { RegistryError, errorFromBody, errorFromResponse } from './errors.js';
import {
  LINUX_AMD64,
  manifestMediaType,
  parseImageManifest,
  selectPlatform,
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
  type Platform,
} from './manifest.js';
import { MANIFEST_ACCEPT, isIndexType } from './media-types.js';

/**
 * A small OCI Distribution API client over Node's global fetch (one registry, many repositories).
 * Works against ECR (Basic auth from GetAuthorizationToken; blob GETs redirect to S3) and any
 * distribution-spec registry. Every failure is a RegistryError (a BackendUnavailableError).
 */
export interface RegistryClientOptions {
  /** The registry's base URL: `https://<account>.dkr.ecr.<region>.amazonaws.com`, `http://127.0.0.1:5000`. */
  endpoint: string;
  /** Default: no auth. */
  auth?: RegistryAuth;
}

export interface FetchedManifest {
  /** The manifest's digest (sha256 of `bytes`). */
  digest: string;
  mediaType: string;
  bytes: Buffer;
  manifest: ImageManifest;
}

export type BlobPlacement = 'present' | 'mounted' | 'copied';

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_REDIRECTS = 5;
const REDIRECTS = [301, 302, 303, 307, 308];

interface RequestInit2 {
  headers?: Record<string, string>;
  /** A Buffer can be sent again (after a 401); a stream is sent once, chunked. */
  body?: Buffer | AsyncIterable<Uint8Array>;
}

export class RegistryClient {
  readonly endpoint: URL;
  /** host[:port] — the prefix of image references in this registry */
  readonly host: string;
  private readonly auth: RegistryAuth;

  constructor(options: RegistryClientOptions) {
    this.endpoint = new URL(options.endpoint);
    if (this.endpoint.protocol !== 'https:' && this.endpoint.protocol !== 'http:')
      throw new BackendUnavailableError(`registry endpoint must be http(s): ${this.endpoint.protocol}`);
    this.host = this.endpoint.host;
    this.auth = options.auth ?? noAuth;
  }

  private url(pathAndQuery: string): URL {
    return new URL(pathAndQuery, this.endpoint);
  }

  /**
   * One HTTP exchange. Auth is attached only for the registry's own origin; a 401 gives the auth
   * one chance to refresh (a Buffer body is sent again; a streamed one cannot be). GET redirects are followed
   * by hand, without the Authorization header once they leave the registry's origin (ECR sends blob
   * GETs to S3 presigned URLs, which reject a second auth mechanism). Statuses outside `ok` throw.
   */
  private async request(what: string, method: string, url: URL, init: RequestInit2, ok: number[]): Promise<Response> {
    let target = url;
    for (let hop = 0, retried = false; ; ) {
      const headers: Record<string, string> = { ...init.headers };
      if (target.origin === this.endpoint.origin) {
        const auth = await this.auth.header();
        if (auth !== undefined) headers.authorization = auth;
      }
      let res: Response;
      try {
        res = await fetch(target, {
          method,
          headers,
          redirect: 'manual',
          ...(init.body === undefined ? {} : Buffer.isBuffer(init.body) ? { body: init.body } : streamed(init.body)),
        });
      } catch (error) {
        throw new RegistryError(
          `${what}: registry ${method} ${target.host}${target.pathname} unreachable (${(error as Error).message})`,
          { cause: error },
        );
      }
      if (
        res.status === 401 &&
        !retried &&
        this.auth.onUnauthorized &&
        target.origin === this.endpoint.origin &&
        (init.body === undefined || Buffer.isBuffer(init.body))
      ) {
        retried = true;
        const challenge = res.headers.get('www-authenticate');
        const text = (await res.text().catch(() => '')).slice(0, 65_536);
        if (await this.auth.onUnauthorized(challenge)) continue;
        throw errorFromBody(what, method, target, res.status, res.statusText, text);
      }
      const location = res.headers.get('location');
      if (REDIRECTS.includes(res.status) && location && method === 'GET') {
        await res.body?.cancel();
        if (++hop > MAX_REDIRECTS) throw new RegistryError(`${what}: too many redirects from ${url.pathname}`);
        target = new URL(location, target);
        continue;
      }
      if (!ok.includes(res.status)) throw await errorFromResponse(what, method, target, res);
      return res;
    }
  }

  private location(what: string, res: Response, base: URL): URL {
    const loc = res.headers.get('location');
    if (!loc) throw new RegistryError(`${what}: registry answered ${res.status} without a Location header`);
    return new URL(loc, base);
  }

  /** `/v2/` answers (with auth): the registry is reachable and the credentials work. */
  async ping(): Promise<void> {
    const res = await this.request('ping', 'GET', this.url('/v2/'), {}, [200]);
    await res.body?.cancel();
  }

  /**
   * The image manifest for `reference` (tag or digest). An index / manifest list resolves to its
   * `platform` entry (default linux/amd64; BadRequestError if absent). The bytes are verified
   * against the reference digest or the Docker-Content-Digest header.
   */
  async getManifest(
    repository: string,
    reference: string,
    options: { platform?: Platform } = {},
  ): Promise<FetchedManifest> {
    assertRepository(repository);
    assertReference(reference);
    const where = `manifest ${repository}:${reference}`;
    const first = await this.getRawManifest(repository, reference, where);
    if (!isIndexType(first.mediaType))
      return { ...first, manifest: parseImageManifest(first.mediaType, first.body, where) };
    const entry = selectPlatform(first.body as ImageIndex, options.platform ?? LINUX_AMD64, where);
    const chosen = await this.getRawManifest(repository, entry.digest, `${where} (${entry.digest})`);
    return { ...chosen, manifest: parseImageManifest(chosen.mediaType, chosen.body, `${where} (${entry.digest})`) };
  }

  private async getRawManifest(
    repository: string,
    reference: string,
    where: string,
  ): Promise<{ digest: string; mediaType: string; bytes: Buffer; body: unknown }> {
    const url = this.url(`/v2/${repository}/manifests/${reference}`);
    const res = await this.request(where, 'GET', url, { headers: { accept: MANIFEST_ACCEPT } }, [200]);
    const bytes = Buffer.from(await res.arrayBuffer());
    if (bytes.length > MAX_MANIFEST_BYTES)
      throw new RegistryError(`${where}: manifest larger than ${MAX_MANIFEST_BYTES} bytes`);
    const digest = sha256Digest(bytes);
    const claimed = isDigest(reference) ? reference : res.headers.get('docker-content-digest');
    if (claimed?.startsWith('sha256:') && claimed !== digest) {
      throw new RegistryError(`${where}: manifest digest mismatch (expected ${claimed}, got ${digest})`, {
        registryCode: 'DIGEST_INVALID',
      });
    }
    let body: unknown;
    try {
      body = JSON.parse(bytes.toString('utf8'));
    } catch (error) {
      throw new RegistryError(`${where}: manifest is not JSON`, { cause: error });
    }
    return { digest, mediaType: manifestMediaType(res.headers.get('content-type'), body as object), bytes, body };
  }

  /** Stores a manifest under `reference` (a tag); returns its digest (sha256 of `bytes`). */
  async putManifest(repository: string, reference: string, mediaType: string, bytes: Buffer): Promise<string> {
    assertRepository(repository);
    assertReference(reference);
    const digest = sha256Digest(bytes);
    const where = `put manifest ${repository}:${reference}`;
    const res = await this.request(
      where,
      'PUT',
      this.url(`/v2/${repository}/manifests/${reference}`),
      { headers: { 'content-type': mediaType }, body: bytes },
      [200, 201],
    );
    await res.body?.cancel();
    const echoed = res.headers.get('docker-content-digest');
    if (echoed && echoed !== digest)
      throw new RegistryError(`${where}: registry stored digest ${echoed}, we sent ${digest}`, {
        registryCode: 'DIGEST_INVALID',
      });
    return digest;
  }

  /** Whether the repository has the blob (HEAD; 404 = no). */
  async blobExists(repository: string, digest: string): Promise<boolean> {
    assertRepository(repository);
    assertDigest(digest);
    // A redirect (to storage) also means "exists"; it is not followed: presigned URLs are per-method.
    const res = await this.request(
      `blob ${repository}@${digest}`,
      'HEAD',
      this.url(`/v2/${repository}/blobs/${digest}`),
      {},
      [200, 404, ...REDIRECTS],
    );
    await res.body?.cancel();
    return res.status !== 404;
  }

  /**
   * The blob's bytes as a stream that fails at the end if they do not hash to `digest` (or differ
   * from `expectedSize`, when given). The consumer must read it to the end to get the check.
   */
  async getBlob(repository: string, digest: string, expectedSize?: number): Promise<Readable> {
    assertRepository(repository);
    assertDigest(digest);
    const where = `blob ${repository}@${digest}`;
    const res = await this.request(where, 'GET', this.url(`/v2/${repository}/blobs/${digest}`), {}, [200]);
    if (!res.body) throw new RegistryError(`${where}: empty response body`);
    const source = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
    const verify = new VerifyingStream(digest, where, expectedSize);
    source.on('error', (e) =>
      verify.destroy(new RegistryError(`${where}: download failed (${e.message})`, { cause: e })),
    );
    // A consumer that stops early (destroy) must not leave the HTTP body flowing.
    verify.on('close', () => source.destroy());
    return source.pipe(verify);
  }

  /** A small blob (a config) in memory, verified; RegistryError past `maxBytes` (default 16 MiB). */
  async getBlobBytes(repository: string, digest: string, maxBytes = 16 * 1024 * 1024): Promise<Buffer> {
    const stream = await this.getBlob(repository, digest);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of stream) {
      size += (chunk as Buffer).length;
      if (size > maxBytes) {
        stream.destroy();
        throw new RegistryError(`blob ${repository}@${digest}: larger than ${maxBytes} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks);
  }

  /** Opens an upload session (POST /blobs/uploads/); its URL. */
  async startUpload(repository: string): Promise<URL> {
    assertRepository(repository);
    const url = this.url(`/v2/${repository}/blobs/uploads/`);
    const res = await this.request(
      `start upload to ${repository}`,
      'POST',
      url,
      { headers: { 'content-length': '0' } },
      [202],
    );
    await res.body?.cancel();
    return this.location(`start upload to ${repository}`, res, url);
  }

  /**
   * Uploads a blob the way Docker's own push does (moby daemon/internal/distribution/push_v2.go
   * uploadUsingSession → distribution's client blob_writer.go ReadFrom + Commit): ONE PATCH streams
   * the whole blob (application/octet-stream, no Content-Range, chunked transfer encoding), then
   * PUT ?digest= with no body commits it, and the registry verifies the digest (DIGEST_INVALID
   * otherwise). Not chunked PATCHes with Content-Range: ECR publishes part limits (5–10 MiB, 4,200
   * parts) only for its own UploadLayerPart API and no public report shows its registry endpoint
   * taking chunked uploads, while every `docker push` to ECR takes the streamed path. Not one
   * monolithic PUT: the same path, minus the one Docker proves daily. The answer's Range is not
   * trusted (ECR's can be stale, aws/containers-roadmap#2831); the next request goes to its Location.
   * `source` is streamed, never held in memory. `session` continues an upload that a mount attempt
   * already opened. A failed upload is cancelled (best effort).
   */
  async uploadBlob(
    repository: string,
    /** The blob's digest, or — for a blob hashed while it streams — a function read once the PATCH is sent. */
    digestOf: string | (() => string),
    source: Buffer | AsyncIterable<Uint8Array>,
    session?: URL,
  ): Promise<void> {
    assertRepository(repository);
    if (typeof digestOf === 'string') assertDigest(digestOf);
    const where = `upload ${repository}@${typeof digestOf === 'string' ? digestOf : '(streamed)'}`;
    let location = session ?? (await this.startUpload(repository));
    try {
      const patch = await this.request(
        where,
        'PATCH',
        location,
        { headers: { 'content-type': 'application/octet-stream' }, body: source },
        // ECR answers 201 (not the spec's 202).
        [201, 202],
      );
      await patch.body?.cancel();
      const next = patch.headers.get('location');
      if (next) location = new URL(next, location);
      const digest = typeof digestOf === 'string' ? digestOf : digestOf();
      assertDigest(digest);
      const done = new URL(location);
      done.searchParams.set('digest', digest);
      const res = await this.request(where, 'PUT', done, { headers: { 'content-length': '0' } }, [201]);
      await res.body?.cancel();
    } catch (error) {
      await fetch(location, { method: 'DELETE', headers: await this.authHeaders(location) }).then(
        (r) => r.body?.cancel(),
        () => undefined,
      );
      throw error;
    }
  }

  private async authHeaders(url: URL): Promise<Record<string, string>> {
    if (url.origin !== this.endpoint.origin) return {};
    const auth = await this.auth.header().catch(() => undefined);
    return auth === undefined ? {} : { authorization: auth };
  }

  /**
   * Makes `descriptor`'s blob present in `toRepository`: already there; else a cross-repository
   * mount from `fromRepository` (no bytes move); else, if the registry declines the mount (202,
   * or an error like ECR without blob mounting), download-and-upload, streamed and verified.
   */
  async copyBlob(fromRepository: string, toRepository: string, descriptor: Descriptor): Promise<BlobPlacement> {
    assertRepository(fromRepository);
    assertRepository(toRepository);
    assertDigest(descriptor.digest);
    if (await this.blobExists(toRepository, descriptor.digest)) return 'present';
    let session: URL | undefined;
    const url = this.url(
      `/v2/${toRepository}/blobs/uploads/?mount=${encodeURIComponent(descriptor.digest)}&from=${encodeURIComponent(fromRepository)}`,
    );
    try {
      const res = await this.request(
        `mount ${descriptor.digest} from ${fromRepository} into ${toRepository}`,
        'POST',
        url,
        { headers: { 'content-length': '0' } },
        [201, 202],
      );
      await res.body?.cancel();
      if (res.status === 201) return 'mounted';
      session = this.location(`mount into ${toRepository}`, res, url);
    } catch (error) {
      // Only "the registry does not do mounts" falls back; auth and availability errors propagate.
      if (!(error instanceof RegistryError) || error.status === undefined || ![400, 404, 405].includes(error.status))
        throw error;
    }
    const bytes = await this.getBlob(fromRepository, descriptor.digest, descriptor.size);
    await this.uploadBlob(toRepository, descriptor.digest, bytes, session);
    return 'copied';
  }

  /**
   * Deletes a manifest by digest. Idempotent: MANIFEST_UNKNOWN / NAME_UNKNOWN count as done; a bare
   * 404 without a registry error code (a registry without the delete API — older ECR answered
   * "404 page not found", aws/containers-roadmap#1229) throws, so nothing is silently left behind.
   */
  async deleteManifest(repository: string, digest: string): Promise<void> {
    assertRepository(repository);
    assertDigest(digest);
    const what = `delete manifest ${repository}@${digest}`;
    const url = this.url(`/v2/${repository}/manifests/${digest}`);
    const res = await this.request(what, 'DELETE', url, {}, [200, 202, 404]);
    if (res.status !== 404) {
      await res.body?.cancel();
      return;
    }
    const error = await errorFromResponse(what, 'DELETE', url, res);
    if (error.registryCode !== 'MANIFEST_UNKNOWN' && error.registryCode !== 'NAME_UNKNOWN') throw error;
  }
}

/** fetch options for a streamed request body (undici sends it chunked; `duplex` is required for a stream). */
function streamed(body: AsyncIterable<Uint8Array>): { body: AsyncIterable<Uint8Array>; duplex: 'half' } {
  return { body, duplex: 'half' };
}
