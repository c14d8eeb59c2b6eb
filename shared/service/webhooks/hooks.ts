import type { ProviderConfig } from '../../config/schema.js';
import type { WebhookEventType } from '../../contract/webhooks.js';
import type { WorkspaceRecord } from '../../contract/workspace.js';
import type { SecretResolver } from '../../secrets/resolver.js';

/** One place events of a workspace go: a configured hook (`config:<n>`) or the workspace's own (`workspace`). */
export interface Hook {
  id: string;
  url: string;
  events: readonly WebhookEventType[];
  /** The signing key, read when an attempt is signed (a configured one through the secret resolver). */
  secret(): Promise<string>;
}

/** Every hook a workspace's events go to: the configured ones, then its own. */
export function hooksOf(
  config: Pick<ProviderConfig, 'webhooks'>,
  secrets: Pick<SecretResolver, 'resolve'>,
  ws: Pick<WorkspaceRecord, 'webhook'>,
): Hook[] {
  const hooks: Hook[] = config.webhooks.map((h, n) => ({
    id: `config:${n}`,
    url: h.url,
    events: h.events,
    secret: () => secrets.resolve(h.secret),
  }));
  const own = ws.webhook;
  if (own !== undefined)
    hooks.push({ id: 'workspace', url: own.url, events: own.events, secret: async () => own.secret });
  return hooks;
}

/** True when some hook of the workspace wants events of this type. */
export function wants(hooks: readonly Hook[], type: WebhookEventType): boolean {
  return hooks.some((h) => h.events.includes(type));
}
