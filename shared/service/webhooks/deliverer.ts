import http from 'node:http';
import https from 'node:https';
import { ConflictError } from '../../contract/errors.js';
import type { DeliveryAttempt, WebhookDelivery, WebhookEventRecord } from '../../contract/webhooks.js';
import { errorFields } from '../../log.js';
import type { ServiceDeps } from '../deps.js';
import { type Hook, hooksOf } from './hooks.js';
import { signedHeaders } from './signature.js';
import { PRIVATE_TARGET, publicOnlyLookup, refusedTarget } from './targets.js';

/** Longest error text kept per attempt. */
const MAX_ERROR_CHARS = 200;
/** A claim outlives the attempt's own timeout by this much before another process may take the delivery. */
const CLAIM_MARGIN_MS = 30_000;

/**
 * Delivers webhook events: at least once, each delivery retried with exponential backoff (jitter) up
 * to `webhookDelivery.maxAttempts`, every attempt recorded on the event. Before attempting, a process
 * claims the due deliveries with a conditional write (their next attempt moved past this one's
 * timeout), so two processes never send the same attempt; a process that dies mid-attempt leaves a
 * claim that lapses, and the delivery is attempted again (the receiver sees the same `webhook-id`).
 *
 * `background` (the local server): an event is attempted at once off the caller's path, and retries
 * are timers in this process; pending events are picked up again at start-up (`resume`) and by the
 * janitor. `inline` (Lambda, where a process freezes between invocations): the first attempt is made
 * before the emitting call returns; retries are the janitor's (`deliverDue`, once a minute).
 */
export class WebhookDeliverer {
  private readonly running = new Set<Promise<void>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(
    private readonly deps: ServiceDeps,
    private readonly mode: 'background' | 'inline',
  ) {}

  /** Attempt the event's due deliveries now (background: without waiting for them). */
  kick(event: Pick<WebhookEventRecord, 'workspaceId' | 'id'>): Promise<void> {
    const run = this.attempt(event.workspaceId, event.id).catch((error: unknown) =>
      this.deps.log.warn('webhook delivery round failed', { workspaceId: event.workspaceId, ...errorFields(error) }),
    );
    if (this.mode === 'inline') return run;
    const tracked = run.finally(() => this.running.delete(tracked));
    this.running.add(tracked);
    return Promise.resolve();
  }

  /** Every event due by now (the janitor; a Lambda's only retry path). Answers how many were looked at. */
  async deliverDue(limit = 100): Promise<number> {
    const due = await this.deps.events.listDueEvents(this.now().toISOString(), limit);
    for (const event of due) await this.attempt(event.workspaceId, event.id).catch(() => undefined);
    return due.length;
  }

  /** At start-up (background): schedule every pending event at its due time. */
  async resume(): Promise<void> {
    for (const event of await this.deps.events.listDueEvents('9999', 10_000)) this.schedule(event);
  }

  /** Let attempts in flight end and stop the retry timers (pending events stay recorded for the next start). */
  async drain(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  private async attempt(workspaceId: string, eventId: string): Promise<void> {
    const event = await this.deps.events.getEvent(workspaceId, eventId);
    if (event === undefined) return;
    const now = this.now();
    const due = event.deliveries.filter(
      (d) => d.state === 'pending' && Date.parse(d.nextAttemptAt ?? '') <= now.getTime(),
    );
    if (due.length === 0) return this.schedule(event);
    // Providers may share a table: another instance's events are its own to deliver (its hooks, its config).
    const ws = await this.deps.state.getWorkspace(workspaceId);
    if (ws !== undefined && ws.owner !== this.deps.instanceId) return;
    const claimUntil = new Date(
      now.getTime() + this.deps.config.webhookDelivery.timeoutMs + CLAIM_MARGIN_MS,
    ).toISOString();
    let claimed: WebhookEventRecord;
    try {
      claimed = await this.write(
        event,
        event.deliveries.map((d) => (due.includes(d) ? { ...d, nextAttemptAt: claimUntil } : d)),
      );
    } catch (error) {
      if (error instanceof ConflictError) return; // another process claimed it first
      throw error;
    }
    const hooks = hooksOf(this.deps.config, this.deps.secrets, ws ?? {});
    const outcomes = new Map<WebhookDelivery, DeliveryAttempt>();
    await Promise.all(
      due.map(async (d) => {
        outcomes.set(
          d,
          await this.post(
            event,
            d,
            hooks.find((h) => h.id === d.hook && h.url === d.url),
          ),
        );
      }),
    );
    const { maxAttempts } = this.deps.config.webhookDelivery;
    const after = claimed.deliveries.map((d, i): WebhookDelivery => {
      const attempt = outcomes.get(event.deliveries[i]!);
      if (attempt === undefined) return d;
      const attempts = [...d.attempts, attempt];
      if (attempt.status !== undefined && attempt.status >= 200 && attempt.status < 300)
        return { hook: d.hook, url: d.url, state: 'delivered', attempts };
      if (attempts.length >= maxAttempts || isFinal(attempt.error)) {
        this.deps.log.warn('webhook delivery failed for good', { workspaceId, eventId, hook: d.hook });
        return { hook: d.hook, url: d.url, state: 'failed', attempts };
      }
      const next = new Date(this.now().getTime() + this.backoffMs(attempts.length));
      return { ...d, attempts, nextAttemptAt: next.toISOString() };
    });
    const written = await this.write(claimed, after);
    this.schedule(written);
  }

  /** One POST: the event's body, signed for this attempt; any 2xx is success, nothing else is (redirects included). */
  private async post(event: WebhookEventRecord, d: WebhookDelivery, hook: Hook | undefined): Promise<DeliveryAttempt> {
    const at = this.now();
    if (hook === undefined) return { at: at.toISOString(), error: NO_HOOK, durationMs: 0 };
    const { timeoutMs, allowHttp, allowPrivateAddresses } = this.deps.config.webhookDelivery;
    // A workspace's own hook is held to the target policy on every attempt (the config may have changed).
    const guarded = hook.id === 'workspace' && !allowPrivateAddresses;
    if (hook.id === 'workspace') {
      const refused = refusedTarget(d.url, { allowHttp, allowPrivateAddresses });
      if (refused !== undefined)
        return { at: at.toISOString(), error: `${REFUSED}: the URL ${refused}`, durationMs: 0 };
    }
    const started = Date.now();
    try {
      const secret = await hook.secret();
      const status = await postOnce(
        new URL(d.url),
        {
          'content-type': 'application/json',
          'user-agent': 'wsp-webhooks/1',
          ...signedHeaders(secret, event.id, Math.floor(at.getTime() / 1000), event.body),
        },
        event.body,
        timeoutMs,
        guarded,
      );
      const ok = status >= 200 && status < 300;
      return {
        at: at.toISOString(),
        status,
        ...(ok ? {} : { error: `HTTP ${status}` }),
        durationMs: Date.now() - started,
      };
    } catch (error) {
      return { at: at.toISOString(), error: describe(error), durationMs: Date.now() - started };
    }
  }

  /** Conditional on the event's version; dueAt follows the earliest pending delivery. */
  private write(event: WebhookEventRecord, deliveries: WebhookDelivery[]): Promise<WebhookEventRecord> {
    const pending = deliveries
      .filter((d) => d.state === 'pending' && d.nextAttemptAt !== undefined)
      .map((d) => d.nextAttemptAt!)
      .sort();
    return this.deps.events.updateEvent(event.workspaceId, event.id, event.version, {
      deliveries,
      dueAt: pending[0],
    });
  }

  /** Background mode: a timer for the event's next due delivery. */
  private schedule(event: WebhookEventRecord): void {
    if (this.mode !== 'background' || this.closed || event.dueAt === undefined) return;
    const delay = Math.max(0, Date.parse(event.dueAt) - this.now().getTime());
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      void this.kick(event);
    }, delay);
    timer.unref();
    this.timers.add(timer);
  }

  /** Before attempt n+1: base·2^(n-1), capped, with jitter (half fixed, half random) so retries spread out. */
  private backoffMs(failedAttempts: number): number {
    const { retryBaseMs, retryMaxMs } = this.deps.config.webhookDelivery;
    const full = Math.min(retryMaxMs, retryBaseMs * 2 ** Math.min(30, failedAttempts - 1));
    return Math.round(full / 2 + Math.random() * (full / 2));
  }

  private now(): Date {
    return (this.deps.now ?? (() => new Date()))();
  }
}

const NO_HOOK = 'the hook is no longer configured';
const REFUSED = 'refused';

/** Attempts that can never succeed: the delivery fails at once instead of being retried. */
function isFinal(error: string | undefined): boolean {
  return error !== undefined && (error === NO_HOOK || error.startsWith(`${REFUSED}:`));
}

/** Why a POST got no answer, in a few words (never the request: its headers carry the signature). */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return 'failed';
  const code = (error as NodeJS.ErrnoException).code;
  if (code === PRIVATE_TARGET) return `${REFUSED}: ${error.message}`.slice(0, MAX_ERROR_CHARS);
  return (code ?? error.message).slice(0, MAX_ERROR_CHARS);
}

/**
 * POST `body` and resolve with the answer's status (its body is drained, not kept). node:http rather
 * than fetch: it follows no redirect, and takes the lookup that keeps a guarded hook off private addresses.
 */
function postOnce(
  url: URL,
  headers: Record<string, string>,
  body: string,
  timeoutMs: number,
  guarded: boolean,
): Promise<number> {
  const request = url.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: 'POST',
      headers: { ...headers, 'content-length': Buffer.byteLength(body) },
      ...(guarded ? { lookup: publicOnlyLookup } : {}),
    });
    const timer = setTimeout(
      () => req.destroy(Object.assign(new Error('timed out'), { code: 'timed out' })),
      timeoutMs,
    );
    req.on('response', (res) => {
      clearTimeout(timer);
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end(body);
  });
}
