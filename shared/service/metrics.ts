/**
 * The service's metrics port: what happened to workspaces and commands, counted where it is decided
 * (each count sits next to the state-store write that makes it true, so a count is never taken for
 * something another writer won). One catalogue names them for every adapter — Prometheus on the
 * local server (`GET /metrics`), CloudWatch EMF in the Lambda functions — so both count the same.
 *
 * A dimension value is always a bounded word (a command's end state, a provisioning step without the
 * repository it named), never an id, a path, a URL or anything a caller typed.
 */

interface CounterSpec {
  help: string;
  /** The one dimension the counter is split by, if any. */
  dimension?: string;
}

export const SERVICE_COUNTERS = {
  workspacesCreated: { help: 'Workspaces accepted for provisioning (created, forked or made from a snapshot)' },
  cacheHits: { help: 'Provisionings that started from a ready cache entry' },
  cacheMisses: {
    help: 'Provisionings that found no ready cache entry (built one, restored an older one, or went uncached)',
  },
  commandsStarted: { help: 'Agent commands started' },
  commandsFinished: { help: 'Agent commands whose end was recorded, by final state', dimension: 'state' },
  resets: { help: 'Resets that brought a workspace back to ready' },
  workspaceFailures: { help: 'Workspaces that became failed, by the step that failed', dimension: 'step' },
} as const satisfies Record<string, CounterSpec>;

export const SERVICE_DURATIONS = {
  setupDuration: { help: 'Seconds from a workspace accepted to ready (provisioning: cache, clone, setup, baseline)' },
} as const satisfies Record<string, { help: string }>;

export type CounterName = keyof typeof SERVICE_COUNTERS;
export type DurationName = keyof typeof SERVICE_DURATIONS;

export interface ServiceMetrics {
  /** One more of `counter`; `dimension` is the value of its dimension (for counters that have one). */
  count(counter: CounterName, dimension?: string): void;
  /** One observed duration, in seconds. */
  seconds(duration: DurationName, value: number): void;
}

/** The default: nothing is recorded (tests, tools that compose a service without an exporter). */
export const noMetrics: ServiceMetrics = { count: () => {}, seconds: () => {} };

/** `workspacesCreated` → `workspaces_created` (Prometheus spelling). */
export function snakeName(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** `workspacesCreated` → `WorkspacesCreated` (CloudWatch spelling). */
export function pascalName(name: string): string {
  return name.charAt(0).toUpperCase() + name.slice(1);
}

/**
 * A failed step as a dimension value: the repository a per-repository step names is dropped
 * (`clone app` → `clone`, `read heads of app` → `read heads`), so the values stay the provisioner's
 * step names whatever the repositories are called.
 */
export function stepKind(step: string, repoNames: readonly string[]): string {
  for (const name of repoNames) {
    if (step.endsWith(` of ${name}`)) return step.slice(0, -` of ${name}`.length);
    if (step.endsWith(` ${name}`)) return step.slice(0, -` ${name}`.length);
  }
  return step;
}
