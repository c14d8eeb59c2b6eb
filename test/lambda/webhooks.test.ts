import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configureLambda, lambdaContainer } from '../../functions/lambda/compose.js';
import { handler as api } from '../../functions/lambda/api.js';
import { handler as janitor } from '../../functions/lambda/janitor.js';
import { handler as worker } from '../../functions/lambda/worker.js';
import { EcsBackend } from '../../shared/backends/ecs/index.js';
import type { WebhookEventView } from '../../shared/contract/views.js';
import { createLogger } from '../../shared/log.js';
import { WebhookEvents } from '../../shared/service/webhooks/events.js';
import { dockerUnavailable } from '../support/docker-daemon.js';
import { startTcpDynalite, type TcpDynamo } from '../support/dynalite-tcp.js';
import { makeEcsBackend, type EcsHandle } from '../support/ecs-fixture.js';
import { FakeSecretsManager } from '../support/fake-secrets-manager.js';
import { FakeStateMachine } from '../support/fake-state-machine.js';
import { registryUnavailable } from '../support/registry.js';
import { closedPort, signatureValid, WebhookReceiver, type Received } from '../support/webhook-receiver.js';
import { apiEvent, lambdaContext, parseResult } from './events.js';

// Lifecycle webhooks on the AWS path: the api, worker and janitor handlers as deployed (settings from
// the environment, the config hook from WSP_CONFIG_JSON, its secret a `secretsmanager:` reference read
// through the SDK), provisioning run by the state machine's loop over the worker handler, workspaces
// on the Fargate backend with ECS faked at the SDK boundary, state in a DynamoDB-protocol endpoint.
// A Lambda is frozen once it answers: whatever it owes a receiver must be sent before it returns, so
// every receipt below is checked right after the invocation that owes it returned (no waiting).
// Receivers on 127.0.0.1; signatures checked with the test's own code (webhook-receiver.ts).

const CONFIG_SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:wsp/webhook-signing-AbCdEf';
const CONFIG_SECRET = 'config-hook-secret-from-secrets-manager-7f3a';
const OWN_SECRET = 'whsec_b3duLWhvb2stb2YtYS1sYW1iZGEtd29ya3NwYWNl';
const MACHINE = 'arn:aws:states:eu-west-1:111111111111:stateMachine:wsp-test-provision';

const payload = (r: Received) => JSON.parse(r.body) as { id: string; type: string; workspaceId: string; data: any };
const ofType = (receiver: WebhookReceiver, type: string, id: string) =>
  receiver.received.filter((r) => payload(r).type === type && payload(r).workspaceId === id);

describe.skipIf(dockerUnavailable !== undefined || registryUnavailable !== undefined)(
  'lifecycle webhooks through the Lambda handlers',
  () => {
    let dynamo: TcpDynamo;
    let ecs: EcsHandle;
    let dataDir: string;
    const secretsManager = new FakeSecretsManager({ [CONFIG_SECRET_ARN]: CONFIG_SECRET });
    const configured = new WebhookReceiver();
    const own = new WebhookReceiver();
    let ownPort: number;
    let machine: FakeStateMachine;
    const logs: string[] = [];
    const answers: string[] = [];
    const saved: Record<string, string | undefined> = {};

    const call = async (method: string, url: string, body?: unknown, headers: Record<string, string> = {}) => {
      const result = parseResult(
        await api(
          apiEvent(method, url, {
            headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
            ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          }),
          lambdaContext('wsp-api'),
        ),
      );
      answers.push(result.text);
      return result;
    };
    const events = async (id: string): Promise<WebhookEventView[]> => {
      const r = await call('GET', `/workspaces/${id}/events`, undefined, { accept: 'application/json' });
      expect(r.status, r.text).toBe(200);
      return r.body.events;
    };

    const stdoutWrite = process.stdout.write.bind(process.stdout);
    beforeAll(async () => {
      // The handlers' own Powertools loggers write JSON lines to stdout: those count for the secret scan too.
      process.stdout.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
        logs.push(String(chunk));
        return stdoutWrite(chunk, ...rest);
      }) as typeof process.stdout.write;
      dynamo = await startTcpDynalite();
      ecs = await makeEcsBackend();
      dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-lambda-hooks-'));
      await configured.listen();
      ownPort = await closedPort(); // the workspace's receiver is down at first
      // The SDK builds its Secrets Manager client from the process environment (endpoint, credentials).
      const smEndpoint = await secretsManager.start();
      for (const [k, v] of Object.entries({
        AWS_ENDPOINT_URL_SECRETS_MANAGER: smEndpoint,
        AWS_ACCESS_KEY_ID: 'AKIDTESTHOOKS',
        AWS_SECRET_ACCESS_KEY: 'test-hooks-secret-key',
      })) {
        saved[k] = process.env[k];
        process.env[k] = v;
      }
      machine = new FakeStateMachine((p) => worker(p, lambdaContext('wsp-worker')));
      await configureLambda({
        env: {
          ...process.env,
          TABLE_NAME: 'wsp-hooks',
          AWS_REGION: 'eu-west-1',
          WSP_DATA_DIR: dataDir,
          // The backend's owner: the deployment's one id, as the stack sets it.
          WSP_INSTANCE_ID: ecs.owner,
          WSP_MODE: 'ecs',
          WSP_PROVISION_STATE_MACHINE: MACHINE,
          WSP_CONFIG_JSON: JSON.stringify({
            webhooks: [{ url: configured.url, secret: `secretsmanager:${CONFIG_SECRET_ARN}` }],
            // Tiny backoff: every retry is due by the janitor's next run. Receivers are http on
            // 127.0.0.1, which a workspace's hook may use only when the operator allows it.
            webhookDelivery: {
              retryBaseMs: 10,
              retryMaxMs: 10,
              timeoutMs: 5_000,
              allowHttp: true,
              allowPrivateAddresses: true,
            },
          }),
        },
        dynamoEndpoint: dynamo.endpoint,
        backend: async ({ log }) => new EcsBackend({ ...ecs.options, log }),
        startExecution: machine,
        log: createLogger({}, (line) => logs.push(line)),
      });
    }, 300_000);

    afterAll(async () => {
      process.stdout.write = stdoutWrite;
      await machine?.drain();
      await configureLambda({});
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      await ecs?.cleanup();
      await dynamo?.close();
      await secretsManager.close();
      await configured.close();
      await own.close();
      if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    }, 300_000);

    it('ready, signed, from the worker; a receiver down at first gets it from a later janitor run, same id; command.finished; deleted', async () => {
      const created = await call('POST', '/workspaces', {
        labels: { hooks: 'lambda' },
        webhook: { url: `http://127.0.0.1:${ownPort}/hook`, secret: OWN_SECRET },
      });
      expect(created.status, created.text).toBe(202);
      const id: string = created.body.id;
      await machine.drain();
      expect(machine.invocations.map((p) => p['phase']).at(-1)).toBe('finish');
      expect((await call('GET', `/workspaces/${id}`)).body.status).toBe('ready');

      // The worker invocation that made it ready sent workspace.ready to the config hook, signed with the
      // secret read from Secrets Manager by the ARN in WSP_CONFIG_JSON.
      const [readyThere] = ofType(configured, 'workspace.ready', id);
      expect(readyThere).toBeDefined();
      expect(signatureValid(CONFIG_SECRET, readyThere!)).toBe(true);
      expect(secretsManager.requested).toContain(CONFIG_SECRET_ARN);
      expect(payload(readyThere!).data.workspace).toMatchObject({ id, status: 'ready' });
      const eventId = payload(readyThere!).id;
      expect(readyThere!.headers['webhook-id']).toBe(eventId);

      // The workspace's own receiver was down: one failed attempt recorded, the delivery still pending.
      let [ready] = await events(id);
      expect(ready).toMatchObject({ id: eventId, type: 'workspace.ready' });
      expect(ready!.deliveries.map((d) => [d.hook, d.state])).toEqual([
        ['config:0', 'delivered'],
        ['workspace', 'pending'],
      ]);
      expect(ready!.deliveries[1]!.attempts).toEqual([expect.objectContaining({ error: 'ECONNREFUSED' })]);

      // A janitor run while it is still down: another failed attempt, still pending.
      const stillDown = await janitor({ id: 'sched-1' }, lambdaContext('wsp-janitor'));
      expect(stillDown.webhookEventsAttempted).toBeGreaterThanOrEqual(1);
      [ready] = await events(id);
      expect(ready!.deliveries[1]).toMatchObject({ state: 'pending', attempts: [{}, {}] });
      expect(own.received).toEqual([]);

      // It comes back; the next scheduled janitor invocation delivers the same event.
      await own.listen(ownPort);
      await janitor({ id: 'sched-2' }, lambdaContext('wsp-janitor'));
      const [readyHere] = ofType(own, 'workspace.ready', id);
      expect(readyHere).toBeDefined();
      expect(readyHere!.headers['webhook-id']).toBe(eventId);
      expect(readyHere!.body).toBe(readyThere!.body);
      expect(signatureValid(OWN_SECRET, readyHere!)).toBe(true);
      expect(signatureValid(CONFIG_SECRET, readyHere!)).toBe(false);
      [ready] = await events(id);
      expect(ready!.deliveries[1]).toMatchObject({ state: 'delivered', attempts: [{}, {}, { status: 200 }] });
      // Delivered is delivered: later runs send nothing again.
      await janitor({ id: 'sched-3' }, lambdaContext('wsp-janitor'));
      expect(ofType(own, 'workspace.ready', id)).toHaveLength(1);

      // A command run through the api: its end is reported before the api invocation returns.
      const ran = await call('POST', `/workspaces/${id}/commands`, { command: 'echo hooked; exit 3', waitMs: 20_000 });
      expect(ran.status, ran.text).toBe(201);
      expect(ran.body).toMatchObject({ state: 'exited', exitCode: 3 });
      const finished = ofType(own, 'command.finished', id);
      expect(finished).toHaveLength(1);
      expect(signatureValid(OWN_SECRET, finished[0]!)).toBe(true);
      expect(payload(finished[0]!).data.command).toMatchObject({ id: ran.body.id, state: 'exited', exitCode: 3 });
      expect(ofType(configured, 'command.finished', id)).toHaveLength(1);

      // A command polled to its end (GET …?waitMs): the poll that sees the end reports it before it returns.
      const polled = await call('POST', `/workspaces/${id}/commands`, { command: 'sleep 1; exit 5', waitMs: 0 });
      expect(polled.status, polled.text).toBe(202);
      const seen = await call('GET', `/workspaces/${id}/commands/${polled.body.id}?waitMs=20000`);
      expect(seen.body).toMatchObject({ state: 'exited', exitCode: 5 });
      expect(own.received.filter((r) => payload(r).data.command?.id === polled.body.id)).toHaveLength(1);
      // …and recorded it delivered (read from the table, not through the api: that would observe again).
      const { deps } = await lambdaContainer();
      const polledEvent = WebhookEvents.id(id, 'command.finished', polled.body.id);
      expect((await deps.events.getEvent(id, polledEvent))?.deliveries.map((d) => d.state)).toEqual([
        'delivered',
        'delivered',
      ]);

      // A command nobody polls: the janitor (Lambda's only background) looks; once a run has recorded
      // its end, that run has reported it too.
      const unpolled = await call('POST', `/workspaces/${id}/commands`, { command: 'sleep 1; exit 7', waitMs: 0 });
      expect(unpolled.status, unpolled.text).toBe(202);
      for (let run = 0; ; run++) {
        expect(run).toBeLessThan(200);
        await janitor({ id: `sched-cmd-${run}` }, lambdaContext('wsp-janitor'));
        if ((await deps.state.getCommand(id, unpolled.body.id))?.state !== 'running') break;
      }
      const late = own.received.filter((r) => payload(r).data.command?.id === unpolled.body.id);
      expect(late).toHaveLength(1);
      const lateEvent = WebhookEvents.id(id, 'command.finished', unpolled.body.id);
      expect((await deps.events.getEvent(id, lateEvent))?.deliveries.every((d) => d.state === 'delivered')).toBe(true);
      expect(payload(late[0]!).data.command).toMatchObject({ state: 'exited', exitCode: 7 });

      const deleted = await call('DELETE', `/workspaces/${id}`);
      expect(deleted.status, deleted.text).toBe(200);
      for (const [receiver, secret] of [
        [own, OWN_SECRET],
        [configured, CONFIG_SECRET],
      ] as const) {
        const gone = ofType(receiver, 'workspace.deleted', id);
        expect(gone).toHaveLength(1);
        expect(signatureValid(secret, gone[0]!)).toBe(true);
        expect(payload(gone[0]!).data.workspace).toMatchObject({ id, status: 'deleted' });
      }
      const all = await events(id);
      expect(all.map((e) => e.type)).toEqual([
        'workspace.ready',
        'command.finished',
        'command.finished',
        'command.finished',
        'workspace.deleted',
      ]);
      expect(all.every((e) => e.deliveries.every((d) => d.state === 'delivered'))).toBe(true);

      // Neither secret in any answer or log line (the handlers' logged requests among them).
      expect(logs.some((l) => l.includes('"function_name":"wsp-api"'))).toBe(true);
      for (const text of [...answers, ...logs]) {
        expect(text).not.toContain(CONFIG_SECRET);
        expect(text).not.toContain(OWN_SECRET);
      }
    });
  },
);
