import { BadRequestError } from '../../../contract/errors.js';
import { RegistryError } from './errors.js';
import { DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, isImageManifestType, isIndexType } from './media-types.js';

/** OCI image-spec shapes (the subset we read and write). Sizes in bytes; digests `sha256:<hex>`. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  urls?: string[];
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: (Descriptor & { platform?: Platform })[];
}

/** The platform Fargate runs by default (X86_64). */
export const LINUX_AMD64: Platform = { os: 'linux', architecture: 'amd64' };

/**
 * The media type of a fetched manifest: the Content-Type if it is a known one, else the body's
 * `mediaType`, else inferred from its shape (OCI allows omitting mediaType).
 */
export function manifestMediaType(
  contentType: string | null,
  body: { mediaType?: unknown; manifests?: unknown; config?: unknown },
): string {
  const header = contentType?.split(';')[0]?.trim();
  if (header && (isImageManifestType(header) || isIndexType(header))) return header;
  if (typeof body.mediaType === 'string' && body.mediaType) return body.mediaType;
  if (Array.isArray(body.manifests)) return OCI_INDEX;
  if (body.config) return OCI_MANIFEST;
  return header ?? 'unknown';
}

/** Parses a single-image manifest, throwing a RegistryError if it is not one we can extend. */
export function parseImageManifest(mediaType: string, body: unknown, where: string): ImageManifest {
  const m = body as Partial<ImageManifest>;
  if (!isImageManifestType(mediaType) || m.schemaVersion !== 2 || !m.config?.digest || !Array.isArray(m.layers)) {
    throw new RegistryError(
      `${where}: unsupported manifest (media type ${mediaType}); need an OCI or Docker schema2 image manifest`,
    );
  }
  return m as ImageManifest;
}

const platformName = (p: Platform | undefined): string =>
  p ? `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}` : 'unknown';

/**
 * The entry of an index / manifest list for `want` (variant compared only if `want` names one).
 * Throws BadRequestError listing the platforms there are, when none matches (the configured base
 * image cannot run on Fargate's platform).
 */
export function selectPlatform(index: ImageIndex, want: Platform, where: string): Descriptor {
  const match = index.manifests.find(
    (m) =>
      m.platform?.os === want.os &&
      m.platform.architecture === want.architecture &&
      (want.variant === undefined || m.platform.variant === want.variant),
  );
  if (match) return match;
  const have = index.manifests.map((m) => platformName(m.platform)).join(', ') || 'none';
  const kind = index.mediaType === DOCKER_MANIFEST_LIST ? 'manifest list' : 'image index';
  throw new BadRequestError(`${where}: the ${kind} has no ${platformName(want)} image (it has: ${have})`, {
    platforms: index.manifests.map((m) => m.platform ?? null),
  });
}
