/** Cache images without a Docker daemon (issue 5 item 5): registry client, layer append, task definitions. */
export { appendLayer, type AppendLayerInput, type AppendLayerResult } from './append-layer.js';
export { basicAuth, basicTokenAuth, bearerChallengeAuth, noAuth, type RegistryAuth } from './auth.js';
export { createEcrRegistryClient, ecrAuth, type EcrAuth, type EcrAuthOptions } from './ecr-auth.js';
export { RegistryError } from './errors.js';
export { LINUX_AMD64, type Descriptor, type ImageIndex, type ImageManifest, type Platform } from './manifest.js';
export {
  RegistryClient,
  type BlobPlacement,
  type FetchedManifest,
  type RegistryClientOptions,
} from './registry-client.js';
export {
  deregisterCacheTaskDefinition,
  registerCacheTaskDefinition,
  taskDefinitionPlatform,
  type CacheTaskDefinitionInput,
} from './task-definition.js';
