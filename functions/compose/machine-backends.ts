import { ecsBackend, type BackendFactory, type BackendRegistry } from './backends.js';

/**
 * Every backend, for the local server and the CLI (`wsp serve`). Never imported by a Lambda
 * handler: the local backend and dockerode would be bundled into it (see backends.ts).
 */

const localBackend: BackendFactory = async ({ dataDir, instanceId, log }) => {
  const { createLocalBackend } = await import('../../shared/backends/local/index.js');
  return createLocalBackend({ dataDir, owner: instanceId, log });
};

const dockerBackend: BackendFactory = async ({ config, dataDir, instanceId, log }) => {
  const { createDockerBackend } = await import('../../shared/backends/docker/index.js');
  const { socketPath, baseImage } = config.docker;
  return createDockerBackend({
    dataDir,
    owner: instanceId,
    baseImage,
    ...(socketPath !== undefined ? { socketPath } : {}),
    log,
  });
};

export const MACHINE_BACKENDS: BackendRegistry = { local: localBackend, docker: dockerBackend, ecs: ecsBackend };
