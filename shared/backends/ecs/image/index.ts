/** Cache images without a Docker daemon (issue 5 item 5): registry client, layer append, task definitions. */
export { appendLayer } from './append-layer.js';
export { createEcrRegistryClient } from './ecr-auth.js';
export type { Platform } from './manifest.js';
export { RegistryClient } from './registry-client.js';
export {
  deregisterCacheTaskDefinition,
  registerCacheTaskDefinition,
  taskDefinitionPlatform,
} from './task-definition.js';
