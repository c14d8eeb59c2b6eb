import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { APIGatewayRequestAuthorizerEventV2, Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { handler as apiHandler } from '../../functions/lambda/api.js';
import { hashApiKey } from '../../functions/lambda/api-keys.js';
import { handler as authorizerHandler } from '../../functions/lambda/authorizer.js';
import { configureLambda, lambdaContainer } from '../../functions/lambda/compose.js';
import { handler as janitorHandler } from '../../functions/lambda/janitor.js';
import { handler as taskEventsHandler } from '../../functions/lambda/task-events.js';
import { handler as workerHandler } from '../../functions/lambda/worker.js';
import type { StartExecutionClient } from '../../functions/lambda/workflow-hand-off.js';
import { createLocalBackend } from '../../shared/backends/local/index.js';
import { parseConfig } from '../../shared/config/load.js';
import { startTcpDynalite, type TcpDynamo } from '../support/dynalite-tcp.js';
import { FakeStateMachine } from '../support/fake-state-machine.js';
import { commitFiles, createUpstreamRepo, type UpstreamRepo } from '../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../support/git-server.js';
import { apiEvent, lambdaContext, parseResult } from './events.js';

// The Lambda handlers as deployed log and count through Powertools: this drives them (api, the worker
// through the provisioning and operations state machines, janitor, task-events, authorizer) with the
// local backend, embedded dynalite and a token-checking git server, reads everything they write to
// stdout, and checks the EMF metric lines (names, values, dimensions), the Lambda context and the
// correlation id on the log lines, and that neither the git token nor the API key is in any line.
// Invocations run one at a time, as in a Lambda execution environment: hand-offs are queued during an
// api invocation and their state machine is run after it.

// Set before the handlers' modules load. The Logger must not log events even when told to (an API
// event carries the bearer key); the runtime's initialization type, which Powertools reads to know a
// cold start (Lambda sets it; elsewhere there is none).
vi.hoisted(() => {
  process.env.POWERTOOLS_LOGGER_LOG_EVENT = 'true';
  process.env.AWS_LAMBDA_INITIALIZATION_TYPE = 'on-demand';
});

const GIT_TOKEN = `wsp-canary-${randomBytes(12).toString('hex')}`;
const API_KEY = `wsp-key-canary-${randomBytes(12).toString('hex')}`;
const SETUP = 'if [ -f app/fail-setup ]; then echo "setup refuses" >&2; exit 3; fi; echo ok > ~/setup-done';

let dynamo: TcpDynamo;
let git: GitServer;
let app: UpstreamRepo;
let root: string;
const lines: string[] = [];
const pending: Parameters<StartExecutionClient['startExecution']>[0][] = [];
/** Every worker invocation's context, by the workspace or operation it worked for. */
const workerContexts: { payload: Record<string, unknown>; context: Context }[] = [];
const stateMachine = new FakeStateMachine((payload) => {
  const context = lambdaContext('wsp-worker');
  workerContexts.push({ payload, context });
  return workerHandler(payload, context);
});

beforeAll(async () => {
  // Every JSON line the handlers write (Powertools: info and EMF on stdout, warn and error on
  // stderr), kept off the test output.
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write.bind(stream);
    vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array, ...rest: unknown[]) => {
      const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      if (text.startsWith('{')) {
        lines.push(...text.split('\n').filter((l) => l !== ''));
        return true;
      }
      return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
    });
  }
  process.env.WSP_PT_GIT_TOKEN = GIT_TOKEN;
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-pt-'));
  git = await startGitServer({ token: GIT_TOKEN, root: path.join(root, 'git') });
  app = createUpstreamRepo(path.join(root, 'git'), 'app', { 'README.md': '# app\n', 'deps.lock': 'a@1\n' });
  dynamo = await startTcpDynalite();
  const dataDir = path.join(root, 'data');
  await configureLambda({
    env: {
      ...process.env,
      WSP_API_KEY_HASHES: hashApiKey(API_KEY),
      WSP_INSTANCE_ID: 'wsp-pt-lambda',
      WSP_MODE: 'local',
      WSP_PROVISION_STATE_MACHINE: 'arn:aws:states:eu-west-1:111111111111:stateMachine:wsp-provision',
      WSP_OPERATION_STATE_MACHINE: 'arn:aws:states:eu-west-1:111111111111:stateMachine:wsp-operation',
    },
    config: parseConfig({
      dataDir,
      repositories: [
        { url: git.url('app'), path: 'app', credential: 'env:WSP_PT_GIT_TOKEN', cacheKeyFiles: ['deps.lock'] },
      ],
      setup: { script: SETUP },
      workspace: { network: 'none' },
      // A reset answers 202 at once; its state machine runs after the api invocation.
      operations: { maxWaitMs: 0 },
      state: { tableName: 'wsp-pt', embedded: false },
      auth: { disabled: true },
    }),
    dynamoEndpoint: dynamo.endpoint,
    backend: ({ dataDir: dir, instanceId, log }) => createLocalBackend({ dataDir: dir, owner: instanceId, log }),
    startExecution: { startExecution: async (input) => void pending.push(input) },
    jobs: { dispatch: async (job) => Promise.reject(new Error(`unexpected job hand-off: ${job.kind}`)) },
  });
});

afterAll(async () => {
  await stateMachine.drain();
  await configureLambda({});
  await git?.close();
  await dynamo?.close();
  vi.restoreAllMocks();
  fs.rmSync(root, { recursive: true, force: true });
  delete process.env.WSP_PT_GIT_TOKEN;
  delete process.env.POWERTOOLS_LOGGER_LOG_EVENT;
  delete process.env.AWS_LAMBDA_INITIALIZATION_TYPE;
});

/** One api invocation; then the state machines it started, one worker invocation at a time. */
async function call(method: string, url: string, body?: unknown) {
  const event = apiEvent(method, url, {
    headers: {
      authorization: `Bearer ${API_KEY}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const context = lambdaContext('wsp-api');
  const result = parseResult(await apiHandler(event, context));
  for (const start of pending.splice(0)) {
    await stateMachine.startExecution(start);
    await stateMachine.drain();
  }
  // A command's end is written after the answer (Commands.observe): counted once it lands.
  await (await lambdaContainer()).service.drain();
  return { ...result, requestId: event.requestContext.requestId, awsRequestId: context.awsRequestId };
}

const records = () => lines.map((l) => JSON.parse(l) as Record<string, any>);
const emf = () => records().filter((r) => r['_aws'] !== undefined);
const logs = () => records().filter((r) => r['_aws'] === undefined);

/** Sum of a metric's values over every EMF line whose dimensions match `where`. */
function total(name: string, where: Record<string, string> = {}): number {
  let sum = 0;
  for (const r of emf()) {
    const declared = r['_aws'].CloudWatchMetrics[0].Metrics.some((m: { Name: string }) => m.Name === name);
    if (!declared || Object.entries(where).some(([k, v]) => r[k] !== v)) continue;
    const value = r[name];
    sum += Array.isArray(value) ? value.reduce((a: number, b: number) => a + b, 0) : value;
  }
  return sum;
}

let wsId: string;
let failedId: string;

describe('Lambda handlers log and count through Powertools', () => {
  it('create, run, reset, a failed setup: the EMF lines count each once', async () => {
    const created = await call('POST', '/workspaces', {});
    expect(created.status).toBe(202);
    wsId = created.body.id;
    expect((await call('GET', `/workspaces/${wsId}`)).body).toMatchObject({ status: 'ready', cache: { hit: false } });
    const ran = await call('POST', `/workspaces/${wsId}/commands`, { command: 'exit 4', waitMs: 20_000 });
    expect(ran.body).toMatchObject({ state: 'exited', exitCode: 4 });
    expect((await call('POST', `/workspaces/${wsId}/reset`, {})).status).toBe(202);
    expect((await call('GET', `/workspaces/${wsId}`)).body.status).toBe('ready');
    commitFiles(app, { 'deps.lock': 'a@2\n', 'fail-setup': 'yes\n' }, 'break setup');
    failedId = (await call('POST', '/workspaces', {})).body.id;
    expect((await call('GET', `/workspaces/${failedId}`)).body).toMatchObject({
      status: 'failed',
      failure: { step: 'setup' },
    });

    expect(total('WorkspacesCreated')).toBe(2);
    expect(total('CacheMisses')).toBe(2);
    expect(total('CacheHits')).toBe(0);
    expect(total('CommandsStarted')).toBe(1);
    expect(total('CommandsFinished', { state: 'exited' })).toBe(1);
    expect(total('CommandsFinished')).toBe(1);
    expect(total('Resets')).toBe(1);
    expect(total('WorkspaceFailures', { step: 'setup' })).toBe(1);
    expect(total('WorkspaceFailures')).toBe(1);
    const setup = emf().filter((r) => r['SetupDuration'] !== undefined);
    expect(setup).toHaveLength(1);
    expect(setup[0]!['SetupDuration']).toBeGreaterThan(0);
    expect(setup[0]!['_aws'].CloudWatchMetrics[0].Metrics).toContainEqual({ Name: 'SetupDuration', Unit: 'Seconds' });
  });

  it('every EMF line is in namespace wsp with the service dimension; dimensioned counters carry theirs', () => {
    expect(emf().length).toBeGreaterThan(0);
    for (const r of emf()) {
      const [directive] = r['_aws'].CloudWatchMetrics;
      expect(directive.Namespace).toBe('wsp');
      expect(r['service']).toBe('wsp');
      expect(directive.Dimensions[0]).toContain('service');
    }
    const finished = emf().find((r) => r['CommandsFinished'] !== undefined)!;
    expect(finished['_aws'].CloudWatchMetrics[0].Dimensions).toEqual([['service', 'state']]);
    const failed = emf().find((r) => r['WorkspaceFailures'] !== undefined)!;
    expect(failed['_aws'].CloudWatchMetrics[0].Dimensions).toEqual([['service', 'step']]);
  });

  it('one ColdStart metric for the environment, with the function name', () => {
    const cold = emf().filter((r) => r['ColdStart'] !== undefined);
    expect(cold).toHaveLength(1);
    expect(cold[0]).toMatchObject({ ColdStart: 1, function_name: 'wsp-api', service: 'wsp' });
    // The Logger knows it too: the first line of the first invocation says cold_start, later ones not.
    const api = logs().filter((l) => l['function_name'] === 'wsp-api');
    expect(api[0]!['cold_start']).toBe(true);
    expect(api.at(-1)!['cold_start']).toBe(false);
  });

  it("api lines carry the Lambda context and API Gateway's request id as correlation_id", async () => {
    const answer = await call('GET', `/workspaces/${wsId}`);
    const request = logs().find((l) => l['function_request_id'] === answer.awsRequestId && l['message'] === 'request');
    expect(request).toMatchObject({
      level: 'INFO',
      service: 'wsp',
      function_name: 'wsp-api',
      function_arn: 'arn:aws:lambda:eu-west-1:111111111111:function:wsp-api',
      function_memory_size: '1024',
      correlation_id: answer.requestId,
      method: 'GET',
      path: `/workspaces/${wsId}`,
      status: 200,
    });
    expect(typeof request!['cold_start']).toBe('boolean');
  });

  it("worker lines (and the service code's) carry the worker's context and the work's id", () => {
    const provisionIds = new Set(
      workerContexts.filter((w) => w.payload['workspaceId'] === wsId && w.payload['operationId'] === undefined),
    );
    const requestIds = new Set([...provisionIds].map((w) => w.context.awsRequestId));
    expect(requestIds.size).toBeGreaterThan(0);
    const ready = logs().find((l) => l['message'] === 'workspace ready' && l['workspaceId'] === wsId);
    expect(ready).toMatchObject({ function_name: 'wsp-worker', correlation_id: wsId });
    expect(requestIds.has(ready!['function_request_id'])).toBe(true);
    const started = logs().filter((l) => l['message'] === 'worker: job started' && l['workspaceId'] === wsId);
    expect(started.length).toBeGreaterThan(0);
    // Reset phases are the operation's: correlated by its id.
    const resetJob = workerContexts.find((w) => w.payload['workspaceId'] === wsId && w.payload['operationId']);
    const resetLine = started.find((l) => l['job'] === 'operation-phase');
    expect(resetLine?.['correlation_id']).toBe(resetJob!.payload['operationId']);
    expect(resetLine?.['function_request_id']).toMatch(/^[0-9a-f]{16}$/);
  });

  it('janitor and task-events lines carry the EventBridge event id; the authorizer the request id', async () => {
    await janitorHandler({ id: 'evt-janitor-1', 'detail-type': 'Scheduled Event' }, lambdaContext('wsp-janitor'));
    expect(logs().find((l) => l['message'] === 'janitor sweep done')).toMatchObject({
      function_name: 'wsp-janitor',
      correlation_id: 'evt-janitor-1',
    });
    await taskEventsHandler({ id: 'evt-task-1', 'detail-type': 'Something Else' }, lambdaContext('wsp-task-events'));
    expect(logs().find((l) => l['message']?.startsWith('task-events: not an ECS Task State Change'))).toMatchObject({
      function_name: 'wsp-task-events',
      correlation_id: 'evt-task-1',
    });
    // No hashes in this process's environment: the authorizer denies and says why, in the request's context.
    const event = apiEvent('GET', '/workspaces', { headers: { authorization: `Bearer ${API_KEY}` } });
    const authEvent = {
      ...event,
      type: 'REQUEST',
      routeArn: 'arn',
      identitySource: [],
    } as unknown as APIGatewayRequestAuthorizerEventV2;
    expect(await authorizerHandler(authEvent, lambdaContext('wsp-authorizer'))).toEqual({ isAuthorized: false });
    expect(logs().find((l) => l['function_name'] === 'wsp-authorizer')).toMatchObject({
      level: 'WARN',
      correlation_id: event.requestContext.requestId,
    });
  });

  it('no line holds the git token, the API key, or an event', () => {
    expect(lines.length).toBeGreaterThan(20);
    expect(lines.filter((l) => l.includes(GIT_TOKEN) || l.includes(API_KEY))).toEqual([]);
    expect(logs().filter((l) => l['event'] !== undefined || l['message'] === 'Lambda invocation event')).toEqual([]);
  });
});
