/**
 * OCI and Docker image media types. A pushed image keeps its family: a Docker schema2 base gets a
 * Docker schema2 manifest and gzip layer type; an OCI base gets OCI types.
 */
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
const DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';

const IMAGE_MANIFEST_TYPES = [OCI_MANIFEST, DOCKER_MANIFEST] as const;
const INDEX_TYPES = [OCI_INDEX, DOCKER_MANIFEST_LIST] as const;

/** The Accept header for manifest GETs: single-image manifests and indexes, never schema1. */
export const MANIFEST_ACCEPT = [...IMAGE_MANIFEST_TYPES, ...INDEX_TYPES].join(', ');

export function isIndexType(mediaType: string): boolean {
  return (INDEX_TYPES as readonly string[]).includes(mediaType);
}

export function isImageManifestType(mediaType: string): boolean {
  return (IMAGE_MANIFEST_TYPES as readonly string[]).includes(mediaType);
}

/** The gzip layer media type of the manifest family `manifestType` belongs to. */
export function gzipLayerTypeFor(manifestType: string): string {
  return manifestType === DOCKER_MANIFEST ? DOCKER_LAYER_GZIP : OCI_LAYER_GZIP;
}
