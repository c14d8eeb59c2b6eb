import dns from 'node:dns/promises';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPrivateAddress } from '../../shared/service/webhooks/targets.js';
import { WspClient } from '../../shared/client/client.js';
import type { WebhookEventView } from '../../shared/contract/views.js';
import { sweep } from '../../shared/service/janitor.js';
import { WebhookEvents } from '../../shared/service/webhooks/events.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';
import { closedPort, signatureValid, WebhookReceiver, type Received } from '../support/webhook-receiver.js';

// Lifecycle webhooks (issue 14) against receivers on 127.0.0.1, on a real local provider: signed
// (Standard Webhooks), retried with backoff while a receiver is down or failing, one event id across
// attempts, every attempt visible in GET /workspaces/{id}/events (as JSON); secrets never answered or logged.

const CONFIG_SECRET = 'config-hook-secret-0123456789abcdef';
const OWN_SECRET = 'whsec_c2VjcmV0LW9mLXRoZS13b3Jrc3BhY2UtaG9vaw==';
const SECRET_ENV = 'WSP_TEST_WEBHOOK_SECRET';

const configured = new WebhookReceiver();
let wsp: TestProvider;
let client: WspClient;

const payload = (r: Received) => JSON.parse(r.body) as { id: string; type: string; workspaceId: string; data: any };
const ofType = (type: string, workspaceId: string) => (r: Received) =>
  payload(r).type === type && payload(r).workspaceId === workspaceId;

/** The workspace's events once `done` holds for them (polls the API: what a controller would see). */
async function eventsWhen(id: string, done: (events: WebhookEventView[]) => boolean): Promise<WebhookEventView[]> {
  for (;;) {
    const events = await client.listWebhookEvents(id);
    if (done(events)) return events;
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  process.env[SECRET_ENV] = CONFIG_SECRET;
  await configured.listen();
  wsp = await startTestProvider({
    workspace: { network: 'none' },
    webhooks: [{ url: configured.url, secret: `env:${SECRET_ENV}` }],
    // Short backoff so a test sees several retries; the shape (doubling, capped, jitter) is the default's.
    // Receivers here are on 127.0.0.1 over http: allowed for workspace hooks by the operator (off by default).
    webhookDelivery: {
      retryBaseMs: 100,
      retryMaxMs: 400,
      timeoutMs: 2_000,
      maxAttempts: 30,
      allowHttp: true,
      allowPrivateAddresses: true,
    },
  });
  client = new WspClient({ baseUrl: wsp.url, token: wsp.token });
}, 120_000);

afterAll(async () => {
  await wsp?.close();
  await configured.close();
  delete process.env[SECRET_ENV];
});

describe('lifecycle webhooks', () => {
  it('signs every event for the configured hook and the workspace hook; command.finished comes without polling', async () => {
    const own = new WebhookReceiver();
    await own.listen();
    try {
      const created = await client.createWorkspace({
        webhook: { url: own.url, events: ['workspace.ready', 'command.finished'], secret: OWN_SECRET },
      });
      expect(created.webhook).toEqual({ url: own.url, events: ['workspace.ready', 'command.finished'] });
      const id = created.id;

      const readyHere = await own.waitFor(ofType('workspace.ready', id));
      const readyThere = await configured.waitFor(ofType('workspace.ready', id));
      expect(signatureValid(OWN_SECRET, readyHere)).toBe(true);
      expect(signatureValid(CONFIG_SECRET, readyThere)).toBe(true);
      // Each receiver's secret is its own: the other one's does not verify.
      expect(signatureValid(CONFIG_SECRET, readyHere)).toBe(false);
      expect(readyHere.headers['webhook-id']).toBe(payload(readyHere).id);
      expect(payload(readyHere)).toMatchObject({
        type: 'workspace.ready',
        data: { workspace: { id, status: 'ready' } },
      });
      expect(readyHere.body).toBe(readyThere.body);

      // Started and answered 202 at once; nobody polls it — its end is reported anyway.
      const cmd = await client.runCommand(id, { command: 'sleep 0.5; exit 3', waitMs: 0 }, { wait: false });
      expect(cmd.state).toBe('running');
      const finished = await own.waitFor(ofType('command.finished', id));
      expect(payload(finished).data.command).toMatchObject({ id: cmd.id, state: 'exited', exitCode: 3 });
      expect(signatureValid(OWN_SECRET, finished)).toBe(true);

      await client.reset(id);
      const reset = await configured.waitFor(ofType('workspace.reset', id));
      expect(payload(reset).data.workspace.status).toBe('ready');
      await client.deleteWorkspace(id);
      await configured.waitFor(ofType('workspace.deleted', id));

      const events = await eventsWhen(id, (es) => es.every((e) => e.deliveries.every((d) => d.state === 'delivered')));
      expect(events.map((e) => e.type)).toEqual([
        'workspace.ready',
        'command.finished',
        'workspace.reset',
        'workspace.deleted',
      ]);
      // The workspace hook gets only what it asked for.
      expect(events.map((e) => e.deliveries.map((d) => d.hook))).toEqual([
        ['config:0', 'workspace'],
        ['config:0', 'workspace'],
        ['config:0'],
        ['config:0'],
      ]);
      expect(own.received.map((r) => payload(r).type).sort()).toEqual(['command.finished', 'workspace.ready']);
      expect(events[0]!.deliveries[0]!.attempts).toEqual([expect.objectContaining({ status: 200 })]);
    } finally {
      await own.close();
    }
    // Neither secret in any answer the API gave or any log line the provider wrote.
    for (const text of [...wsp.responses, ...wsp.logs]) {
      expect(text).not.toContain(CONFIG_SECRET);
      expect(text).not.toContain(OWN_SECRET);
    }
  });

  it('keeps trying a receiver that is down, and delivers the same event once it is back', async () => {
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}/hook`;
    const { id } = await client.createWorkspace({
      webhook: { url, events: ['workspace.ready'], secret: OWN_SECRET },
    });
    // Refused, again and again: each attempt recorded, the delivery still pending with its next attempt.
    const failing = await eventsWhen(
      id,
      (es) => (es[0]?.deliveries.find((d) => d.hook === 'workspace')?.attempts.length ?? 0) >= 3,
    );
    const down = failing[0]!.deliveries.find((d) => d.hook === 'workspace')!;
    expect(down.state).toBe('pending');
    expect(down.nextAttemptAt).toBeDefined();
    expect(down.attempts.every((a) => a.status === undefined && a.error === 'ECONNREFUSED')).toBe(true);

    const back = new WebhookReceiver();
    await back.listen(port);
    try {
      const got = await back.waitFor(ofType('workspace.ready', id));
      expect(got.headers['webhook-id']).toBe(failing[0]!.id);
      expect(signatureValid(OWN_SECRET, got)).toBe(true);
      const after = await eventsWhen(id, (es) => es[0]!.deliveries.every((d) => d.state === 'delivered'));
      const delivered = after[0]!.deliveries.find((d) => d.hook === 'workspace')!;
      expect(delivered.attempts.at(-1)).toMatchObject({ status: 200 });
      expect(delivered.attempts.length).toBeGreaterThan(3);
      expect(delivered.nextAttemptAt).toBeUndefined();
    } finally {
      await back.close();
      await client.deleteWorkspace(id);
    }
  });

  it('retries a failing receiver with the same id and body; a redirect is not followed and is no success', async () => {
    const flaky = new WebhookReceiver((n) => ({ status: n < 2 ? 500 : 204 }));
    await flaky.listen();
    const elsewhere = new WebhookReceiver();
    await elsewhere.listen();
    const redirecting = new WebhookReceiver((n) =>
      n === 0 ? { status: 302, headers: { location: elsewhere.url } } : { status: 200 },
    );
    await redirecting.listen();
    try {
      const a = await client.createWorkspace({
        webhook: { url: flaky.url, events: ['workspace.ready'], secret: OWN_SECRET },
      });
      const b = await client.createWorkspace({
        webhook: { url: redirecting.url, events: ['workspace.ready'], secret: OWN_SECRET },
      });
      await flaky.waitFor((r) => r.status === 204);
      expect(flaky.received).toHaveLength(3);
      expect(new Set(flaky.received.map((r) => r.headers['webhook-id'])).size).toBe(1);
      expect(new Set(flaky.received.map((r) => r.body)).size).toBe(1);
      expect(flaky.received.every((r) => signatureValid(OWN_SECRET, r))).toBe(true);
      const events = await eventsWhen(a.id, (es) => es[0]?.deliveries.every((d) => d.state === 'delivered') ?? false);
      expect(events[0]!.deliveries.find((d) => d.hook === 'workspace')!.attempts.map((x) => x.status)).toEqual([
        500, 500, 204,
      ]);

      await redirecting.waitFor((r) => r.status === 200);
      const redirected = await eventsWhen(
        b.id,
        (es) => es[0]?.deliveries.every((d) => d.state === 'delivered') ?? false,
      );
      expect(redirected[0]!.deliveries.find((d) => d.hook === 'workspace')!.attempts.map((x) => x.status)).toEqual([
        302, 200,
      ]);
      expect(elsewhere.received).toEqual([]);
      await client.deleteWorkspace(a.id);
      await client.deleteWorkspace(b.id);
    } finally {
      await Promise.all([flaky.close(), elsewhere.close(), redirecting.close()]);
    }
  });

  it('says workspace.expiring before the janitor tears a workspace down, once per deadline', async () => {
    const { id } = await client.createWorkspace({ ttlSeconds: 600 });
    await client.waitForWorkspace(id, { timeoutMs: 60_000 });
    const { deps, service } = wsp.provider;
    // Nothing yet at 10 minutes out; within 5 minutes of the TTL, one event however often the janitor looks.
    expect((await sweep(deps, service, new Date())).expiring).not.toContain(id);
    const near = new Date(Date.now() + 330_000);
    expect((await sweep(deps, service, near)).expiring).toContain(id);
    expect((await sweep(deps, service, new Date(near.getTime() + 60_000))).expiring).toContain(id);
    const got = await configured.waitFor(ofType('workspace.expiring', id));
    expect(payload(got).data).toMatchObject({ reason: 'ttl', workspace: { id } });
    const events = await client.listWebhookEvents(id);
    expect(events.filter((e) => e.type === 'workspace.expiring')).toHaveLength(1);
    await client.deleteWorkspace(id);
  });

  it('the janitor records an event a crash lost between the status change and the event', async () => {
    const { id } = await client.createWorkspace({});
    await client.waitForWorkspace(id, { timeoutMs: 60_000 });
    const { deps, service } = wsp.provider;
    // As if the process died right after the write that made it ready again: the record owes an event never recorded.
    const ws = (await deps.state.getWorkspace(id))!;
    const lost = WebhookEvents.id(id, 'workspace.reset', 'lost-by-a-crash');
    await deps.state.updateWorkspace(id, ws.version, { lastEvent: { id: lost, type: 'workspace.reset' } });
    expect((await client.listWebhookEvents(id)).map((e) => e.id)).not.toContain(lost);
    expect((await sweep(deps, service)).webhookEventsRepaired).toBe(1);
    const got = await configured.waitFor((r) => payload(r).id === lost);
    expect(payload(got)).toMatchObject({ type: 'workspace.reset', workspaceId: id });
    // Repaired once: the next sweep finds it recorded.
    expect((await sweep(deps, service)).webhookEventsRepaired).toBe(0);
    await client.deleteWorkspace(id);
  });

  it('refuses hooks it must not call or cannot sign for (400, nothing created)', async () => {
    const before = (await client.listWorkspaces()).length;
    for (const webhook of [
      { url: 'file:///etc/passwd', secret: OWN_SECRET },
      { url: 'http://user:pass@127.0.0.1:1/hook', secret: OWN_SECRET },
      { url: 'not a url', secret: OWN_SECRET },
      { url: configured.url, secret: 'short' },
      { url: configured.url, secret: OWN_SECRET, events: ['workspace.exploded'] },
      { url: configured.url, secret: OWN_SECRET, events: [] },
      { url: configured.url, secret: OWN_SECRET, extra: 1 },
    ]) {
      const r = await wsp.api('POST', '/workspaces', { webhook });
      expect(r.status, JSON.stringify(webhook)).toBe(400);
      expect(r.body.error.code).toBe('bad_request');
    }
    expect((await client.listWorkspaces()).length).toBe(before);
  });
});

describe('lifecycle webhooks under the default target policy', () => {
  let strict: TestProvider;
  let strictClient: WspClient;

  beforeAll(async () => {
    // Defaults: a workspace's hook must be https to a public address. Setup fails on purpose.
    strict = await startTestProvider({
      workspace: { network: 'none' },
      setup: { script: 'echo failing on purpose; exit 7' },
      webhooks: [{ url: configured.url, events: ['workspace.failed'], secret: `env:${SECRET_ENV}` }],
      webhookDelivery: { retryBaseMs: 100, retryMaxMs: 400, timeoutMs: 2_000 },
    });
    strictClient = new WspClient({ baseUrl: strict.url, token: strict.token });
  }, 120_000);

  afterAll(async () => {
    await strict?.close();
  });

  it("reports a failed setup as workspace.failed (to the operator's own hook on 127.0.0.1)", async () => {
    const { id } = await strictClient.createWorkspace();
    const got = await configured.waitFor(ofType('workspace.failed', id));
    expect(signatureValid(CONFIG_SECRET, got)).toBe(true);
    expect(payload(got).data.workspace).toMatchObject({ id, status: 'failed', failure: { step: expect.any(String) } });
  });

  it("refuses a workspace hook aimed at the provider's own network (400): metadata, loopback, private, http", async () => {
    for (const url of [
      'https://169.254.169.254/latest/meta-data/',
      'https://127.0.0.1:7070/hook',
      'https://[::1]/hook',
      'https://[::ffff:10.0.0.1]/hook',
      'https://10.1.2.3/hook',
      'https://192.168.1.1/hook',
      'https://localhost/hook',
      'https://api.localhost/hook',
      'http://hooks.example.com/hook',
    ]) {
      const r = await strict.api('POST', '/workspaces', { webhook: { url, secret: OWN_SECRET } });
      expect(r.status, url).toBe(400);
      expect(r.body.error.details[0].path).toBe('body.webhook.url');
    }
  });

  it('fails, without a retry or a connection, a hook whose name resolves to a private address', async () => {
    const receiver = new WebhookReceiver();
    const port = await receiver.listen();
    const name = os.hostname();
    const resolved = await dns.lookup(name, { all: true });
    // Debian maps the host's own name to 127.0.1.1 (/etc/hosts): a name the URL check cannot see through.
    expect(resolved.some((a) => isPrivateAddress(a.address))).toBe(true);
    // A provider that allows http but not private addresses (an operator testing on a LAN, say).
    const lan = await startTestProvider({
      workspace: { network: 'none' },
      webhookDelivery: { allowHttp: true, retryBaseMs: 100 },
    });
    try {
      const c = new WspClient({ baseUrl: lan.url, token: lan.token });
      const { id } = await c.createWorkspace({
        webhook: { url: `http://${name}:${port}/hook`, events: ['workspace.ready'], secret: OWN_SECRET },
      });
      await c.waitForWorkspace(id, { timeoutMs: 60_000 });
      const events = await (async () => {
        for (;;) {
          const es = await c.listWebhookEvents(id);
          if (es[0]?.deliveries[0]?.state === 'failed') return es;
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      expect(events[0]!.deliveries[0]!.attempts).toHaveLength(1);
      expect(events[0]!.deliveries[0]!.attempts[0]!.error).toMatch(/^refused: .*private/);
      expect(receiver.received).toEqual([]);
    } finally {
      await lan.close();
      await receiver.close();
    }
  });
});
