import type { WorkspaceBackend } from '../contract/backend.js';
import type { StateStore } from '../contract/state.js';
import type { WebhookEventStore } from '../contract/webhooks.js';
import type { ProviderConfig } from '../config/schema.js';
import type { GitBroker } from '../git/mirror.js';
import type { Logger } from '../log.js';
import type { SecretResolver } from '../secrets/resolver.js';
import type { LongWork } from './long-work.js';
import type { ServiceMetrics } from './metrics.js';

/** Everything the service needs, built once by an entry point (functions/server/main.ts). */
export interface ServiceDeps {
  config: ProviderConfig;
  /** Relative local paths in the config resolve against this. */
  baseDir: string;
  /** This provider instance; written as owner on every record it creates. */
  instanceId: string;
  state: StateStore;
  /** Lifecycle webhook events and their deliveries (same table as `state`). */
  events: WebhookEventStore;
  backend: WorkspaceBackend;
  broker: GitBroker;
  secrets: SecretResolver;
  /** Scratch space for bundles (provider-only). */
  scratchDir: string;
  log: Logger;
  /** Where the service's counters go (metrics.ts); default: nowhere. */
  metrics?: ServiceMetrics;
  now?: () => Date;
  /** Where long work (provisioning, fetch, reset) runs; default: in this process (see long-work.ts). */
  work?: LongWork;
  /**
   * How webhook events are delivered (webhooks/deliverer.ts): `background` (default; the local server:
   * off the caller's path, retries on timers) or `inline` (Lambda: the first attempt before the emitting
   * call returns, retries by the janitor).
   */
  webhookDelivery?: 'background' | 'inline';
  /**
   * Why this deployment cannot reach workspaces (its backend could not be built; the backend then
   * answers 503 with it): createWorkspace refuses up front instead of storing a workspace doomed to fail.
   */
  backendUnavailable?: string;
}

/** The provider's own host directories: never named in a public message (see public-error.ts). */
export function hostDirs(deps: Pick<ServiceDeps, 'config' | 'baseDir' | 'scratchDir'>): string[] {
  return [deps.config.dataDir, deps.scratchDir, deps.baseDir];
}
