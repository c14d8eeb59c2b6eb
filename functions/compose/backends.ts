import type { WarmTaskStore } from '../../shared/backends/ecs/warm-task-store.js';
import type { ProviderConfig } from '../../shared/config/schema.js';
import type { WorkspaceBackend } from '../../shared/contract/backend.js';
import type { Logger } from '../../shared/log.js';

/**
 * The backend registry: mode → async factory. Each factory imports its backend lazily (a dynamic
 * import, so only the chosen backend's code loads). A bundler still follows a literal dynamic
 * import, so what a build CONTAINS is decided by which factories its entry point registers: this
 * file holds only the Fargate factory (every build has it); the local and docker factories live in
 * machine-backends.ts, which no Lambda handler imports (test/lambda/bundle.test.ts checks).
 */

/** What a factory gets from the composition. */
export interface BackendContext {
  config: ProviderConfig;
  dataDir: string;
  /** This provider instance (or Lambda deployment): the owner of everything the backend creates. */
  instanceId: string;
  log: Logger;
  /** The Fargate warm pool's records (the state store's table). */
  warmTasks: WarmTaskStore;
  /** What is left of the current invocation (Lambda); undefined: no deadline. */
  remainingMs?: () => number | undefined;
}

export type BackendFactory = (context: BackendContext) => Promise<WorkspaceBackend>;

/** The backends a build contains, by mode; a mode without a factory is not available in that build. */
export type BackendRegistry = Partial<Record<ProviderConfig['mode'], BackendFactory>>;

/** Fargate (config section `ecs`; in Lambda filled from the stack's WSP_ECS_* environment). */
export const ecsBackend: BackendFactory = async ({ config, dataDir, instanceId, log, warmTasks, remainingMs }) => {
  const { createEcsBackendFromConfig } = await import('../../shared/backends/ecs/factory.js');
  return createEcsBackendFromConfig(config, {
    owner: instanceId,
    dataDir,
    log,
    warmTasks,
    ...(remainingMs ? { remainingMs } : {}),
  });
};
