import { pipeline, type Readable } from 'node:stream';
import zlib from 'node:zlib';
import { appendLayerToConfig } from './image-config.js';
import type { Descriptor, ImageManifest, Platform } from './manifest.js';
import { DOCKER_CONFIG, DOCKER_MANIFEST, OCI_CONFIG, gzipLayerTypeFor } from './media-types.js';
import { HashTap, sha256Digest } from './digest.js';
import type { RegistryClient } from './registry-client.js';

/**
 * A cache image without a Docker daemon: the base image plus ONE layer (the set-up workspace as a
 * tar), written through the registry API. See docs in cloud.md ("Cached images without a Docker daemon").
 */
export interface AppendLayerInput {
  client: RegistryClient;
  /** Repository and tag/digest of the base image, in the client's registry. */
  baseRepository: string;
  baseReference: string;
  /** Where the new image goes (same registry; may equal baseRepository). */
  targetRepository: string;
  targetTag: string;
  /**
   * Opens the layer: an UNCOMPRESSED tar, paths relative to / (e.g. `home/node/...`), owners/modes as
   * they must be in the image; `.wh.<name>` entries delete base files (OCI whiteouts). Read once,
   * streamed: gzipped and hashed on its way into the registry, never stored (no temp file).
   */
  layerTar: () => Promise<Readable>;
  /** The history entry's created_by (no secrets: it is readable by anyone who can pull). */
  history?: string;
  /** Merged into the config's Labels. */
  labels?: Record<string, string>;
  /** For a base that is an index / manifest list; default linux/amd64. */
  platform?: Platform;
  /** gzip level (zlib), default 6. */
  gzipLevel?: number;
  /** Clock for `created`; default now. */
  now?: () => Date;
}

export interface AppendLayerResult {
  /** The new image manifest's digest. */
  digest: string;
  /** `<registry host>/<targetRepository>@<digest>`: immutable, what a task definition should name. */
  imageRef: string;
  /** `<registry host>/<targetRepository>:<targetTag>` */
  taggedRef: string;
  /** The new layer: gzip digest (manifest), uncompressed digest (config diff_id), gzip bytes. */
  layerDigest: string;
  diffId: string;
  compressedSize: number;
  /** The manifest's media type (the base's family: Docker schema2 or OCI). */
  mediaType: string;
}

/**
 * Appends the layer tar to the base image and tags the result `targetRepository:targetTag`.
 * Steps: fetch base manifest + config (verified); make the base layers present in the target repo
 * (mount, else copy); stream the tar through gzip into one PATCH (as docker push does), hashing both
 * sides on the way, then PUT with the digest known at the end; upload the new config; put the
 * manifest. Nothing is held in memory or written to disk: the layer's size is bounded by neither.
 * Throws RegistryError (BackendUnavailableError) for registry failures, BadRequestError for bad
 * names or a base without the wanted platform.
 */
export async function appendLayer(input: AppendLayerInput): Promise<AppendLayerResult> {
  const { client } = input;
  const base = await client.getManifest(
    input.baseRepository,
    input.baseReference,
    input.platform ? { platform: input.platform } : {},
  );
  const baseConfig = JSON.parse(
    (await client.getBlobBytes(input.baseRepository, base.manifest.config.digest)).toString('utf8'),
  ) as unknown;

  if (input.targetRepository !== input.baseRepository) {
    // Sequential: mounts are cheap, and a fallback copy should not run several big downloads at once.
    for (const l of base.manifest.layers) await client.copyBlob(input.baseRepository, input.targetRepository, l);
  }

  const layerMediaType = gzipLayerTypeFor(base.mediaType);
  const tar = new HashTap();
  const gz = new HashTap();
  // A failure anywhere (the source, gzip) destroys the chain: the PATCH body errors, the upload is cancelled.
  const gzipped = pipeline(await input.layerTar(), tar, zlib.createGzip({ level: input.gzipLevel ?? 6 }), gz, () => {});
  try {
    await client.uploadBlob(input.targetRepository, () => gz.digest, gzipped);
  } catch (error) {
    gzipped.destroy(); // and with it the source (an S3 body holds a socket)
    throw error;
  }
  const layer = { digest: gz.digest, diffId: tar.digest, compressedSize: gz.size };

  const config = appendLayerToConfig(baseConfig, {
    diffId: layer.diffId,
    created: (input.now ?? (() => new Date()))(),
    ...(input.history !== undefined ? { createdBy: input.history } : {}),
    ...(input.labels ? { labels: input.labels } : {}),
  });
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDigest = sha256Digest(configBytes);
  if (!(await client.blobExists(input.targetRepository, configDigest)))
    await client.uploadBlob(input.targetRepository, configDigest, configBytes);

  const configMediaType =
    base.manifest.config.mediaType || (base.mediaType === DOCKER_MANIFEST ? DOCKER_CONFIG : OCI_CONFIG);
  const newLayer: Descriptor = { mediaType: layerMediaType, digest: layer.digest, size: layer.compressedSize };
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: base.mediaType,
    config: { mediaType: configMediaType, digest: configDigest, size: configBytes.length },
    layers: [...base.manifest.layers, newLayer],
  };
  const digest = await client.putManifest(
    input.targetRepository,
    input.targetTag,
    base.mediaType,
    Buffer.from(JSON.stringify(manifest)),
  );
  return {
    digest,
    imageRef: `${client.host}/${input.targetRepository}@${digest}`,
    taggedRef: `${client.host}/${input.targetRepository}:${input.targetTag}`,
    layerDigest: layer.digest,
    diffId: layer.diffId,
    compressedSize: layer.compressedSize,
    mediaType: base.mediaType,
  };
}
