import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  configureLambda,
  LAMBDA_OPERATION_WAIT_MS,
  lambdaContainer,
  type LambdaOverrides,
} from '../../functions/lambda/compose.js';
import { hashApiKey } from '../../functions/lambda/api-keys.js';
import { handler as api } from '../../functions/lambda/api.js';
import { ABANDONED_AFTER_MS, handler as janitor } from '../../functions/lambda/janitor.js';
import { handler as taskEvents } from '../../functions/lambda/task-events.js';
import { handler as worker, TIME_MARGIN_MS } from '../../functions/lambda/worker.js';
import { LambdaInvokeDispatcher } from '../../functions/lambda/invoke-dispatcher.js';
import { unavailableBackend } from '../../functions/lambda/unavailable-backend.js';
import { BackendUnavailableError } from '../../shared/contract/errors.js';
import type { BackendRef, OperationRecord } from '../../shared/contract/workspace.js';
import { createLogger } from '../../shared/log.js';
import { startTcpDynalite, type TcpDynamo } from '../support/dynalite-tcp.js';
import { commandRecord, workspaceRecord } from '../state/fixtures.js';
import { apiEvent, lambdaContext, parseResult } from './events.js';

// The handlers as deployed (no backend injected: mode ecs is not in this build), against a real
// DynamoDB-protocol endpoint (embedded dynalite) — one fresh table per test.

let dynamo: TcpDynamo;
let dataDir: string;
let table = 0;
let logs: string[];
const lambdaMock = mockClient(LambdaClient);

beforeAll(async () => {
  dynamo = await startTcpDynalite();
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-lambda-h-'));
});
afterAll(async () => {
  await configureLambda({});
  await dynamo?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
  lambdaMock.restore();
});
beforeEach(() => {
  lambdaMock.reset();
  logs = [];
});
afterEach(() => configureLambda({}));

/** A container composed exactly as in AWS (settings from env), pointed at dynalite. */
async function deploy(env: Record<string, string> = {}, extra: Partial<LambdaOverrides> = {}): Promise<void> {
  table++;
  await configureLambda({
    env: {
      TABLE_NAME: `wsp-h-${table}`,
      AWS_REGION: 'eu-west-1',
      WSP_DATA_DIR: dataDir,
      WSP_INSTANCE_ID: 'wsp-test-stack',
      ...env,
    },
    dynamoEndpoint: dynamo.endpoint,
    log: createLogger({}, (line) => logs.push(line)),
    ...extra,
  });
}

const call = async (method: string, url: string, options: Parameters<typeof apiEvent>[2] = {}) =>
  parseResult(await api(apiEvent(method, url, options), lambdaContext()));
const json = { 'content-type': 'application/json' };

describe('api handler in mode ecs without its WSP_ECS_* configuration', () => {
  it('workspace creation is a clear 503 and stores nothing; reads still work', async () => {
    await deploy({ WSP_MODE: 'ecs' });
    const created = await call('POST', '/workspaces', { headers: json, body: '{}' });
    expect(created.status).toBe(503);
    expect(created.body).toEqual({
      error: {
        code: 'backend_unavailable',
        message: expect.stringMatching(/^mode ecs is not configured: mode 'ecs' needs ecs\.cluster, .*WSP_ECS_\*/),
      },
    });
    expect((await call('GET', '/workspaces')).body).toEqual({ workspaces: [] });
    expect((await call('GET', '/healthz')).status).toBe(200);
    expect((await call('GET', '/workspaces/ws-0123456789abcdef01234567')).status).toBe(404);
  });

  it('no key hashes configured (IAM auth in front): no bearer needed; with hashes: 401 in our shape', async () => {
    await deploy();
    expect((await call('GET', '/workspaces')).status).toBe(200);
    await deploy({ WSP_API_KEY_HASHES: hashApiKey('the-right-key-123') });
    const denied = await call('GET', '/workspaces');
    expect(denied.status).toBe(401);
    expect(denied.headers['www-authenticate']).toBe('Bearer');
    expect(denied.body.error.code).toBe('unauthorized');
    expect((await call('GET', '/workspaces', { headers: { authorization: 'Bearer the-right-key-123' } })).status).toBe(
      200,
    );
    expect((await call('GET', '/healthz')).status).toBe(200);
  });

  it('strips a named stage from the path and decodes base64 bodies', async () => {
    await deploy();
    expect((await call('GET', '/healthz', { stage: 'prod' })).status).toBe(200);
    expect((await call('GET', '/workspaces', { stage: 'prod' })).body).toEqual({ workspaces: [] });
    // Valid JSON once decoded reaches the service (503 here); the same bytes not decoded would be a 400.
    expect(
      (await call('POST', '/workspaces', { headers: json, body: '{"labels":{"a":"b"}}', base64: true })).status,
    ).toBe(503);
    expect((await call('POST', '/workspaces', { headers: json, body: '{"labels":', base64: true })).status).toBe(400);
  });

  it('SSE routes answer 501 naming the GET to poll, after checking the workspace/command exists', async () => {
    await deploy();
    const { deps } = await lambdaContainer();
    const id = 'ws-00000000000000000000000a';
    await deps.state.createWorkspace(workspaceRecord(id, { status: 'failed', owner: 'wsp-test-stack' }));
    await deps.state.createCommand(commandRecord(id, 'cmd-00000000000000000000000b', { state: 'exited', exitCode: 0 }));
    const events = await call('GET', `/workspaces/${id}/events`);
    expect(events.status).toBe(501);
    expect(events.body.error).toEqual({
      code: 'not_implemented',
      message: `streaming is not available on the Lambda API; poll GET /workspaces/${id}; with Accept: application/json, GET /workspaces/${id}/events lists the workspace's webhook events`,
    });
    const cmdEvents = await call('GET', `/workspaces/${id}/commands/cmd-00000000000000000000000b/events`);
    expect(cmdEvents.status).toBe(501);
    expect(cmdEvents.body.error.message).toBe(
      `streaming is not available on the Lambda API; poll GET /workspaces/${id}/commands/cmd-00000000000000000000000b?waitMs=20000`,
    );
    const op = 'op-00000000000000000000000c';
    await deps.state.createOperation({
      workspaceId: id,
      id: op,
      version: 1,
      kind: 'reset',
      status: 'running',
      input: {},
      owner: 'wsp-test-stack',
      createdAt: new Date().toISOString(),
      updatedAt: new Date().toISOString(),
    });
    const opEvents = await call('GET', `/workspaces/${id}/operations/${op}/events`);
    expect(opEvents.status).toBe(501);
    expect(opEvents.body.error.message).toBe(
      `streaming is not available on the Lambda API; poll GET /workspaces/${id}/operations/${op}?waitMs=20000`,
    );
    // What the 501 names works here: the JSON event list (none recorded for this workspace).
    const listed = await call('GET', `/workspaces/${id}/events`, { headers: { accept: 'application/json' } });
    expect(listed.status).toBe(200);
    expect(listed.body).toEqual({ events: [] });
    expect((await call('GET', '/workspaces/ws-0123456789abcdef01234567/events')).status).toBe(404);
  });

  it('a misconfigured deployment is a 503 (the operator’s fault), never a 400, and the cause is logged', async () => {
    await deploy({ WSP_CONFIG_JSON: '{"repositories": "not a list"}' });
    const r = await call('GET', '/workspaces');
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('backend_unavailable');
    await deploy({ WSP_API_KEY_HASHES: 'abc' });
    expect((await call('GET', '/workspaces')).status).toBe(503);
  });
});

describe('provisioning hand-off (Step Functions, the SDK client the deployed api uses)', () => {
  const sfnMock = mockClient(SFNClient);
  afterEach(() => sfnMock.reset());
  afterAll(() => sfnMock.restore());
  const MACHINE = 'arn:aws:states:eu-west-1:111111111111:stateMachine:wsp-dev-provision';

  it('POST /workspaces starts one execution named after the workspace, and invokes no worker', async () => {
    sfnMock.on(StartExecutionCommand).resolves({ executionArn: `${MACHINE}:x`, startDate: new Date() });
    await deploy(
      { WSP_WORKER_FUNCTION: 'wsp-worker-fn', WSP_PROVISION_STATE_MACHINE: MACHINE },
      { backend: async () => unavailableBackend('test') },
    );
    const created = await call('POST', '/workspaces', { headers: json, body: '{}' });
    expect(created.status).toBe(202);
    const calls = sfnMock.commandCalls(StartExecutionCommand);
    expect(calls.map((c) => c.args[0].input)).toEqual([
      { stateMachineArn: MACHINE, name: created.body.id, input: JSON.stringify({ workspaceId: created.body.id }) },
    ]);
    expect(lambdaMock.commandCalls(InvokeCommand)).toHaveLength(0);
  });

  it('an execution of that name that exists already is a hand-off done; any other failure is a 503', async () => {
    const exists = Object.assign(new Error('exists'), { name: 'ExecutionAlreadyExists' });
    sfnMock.on(StartExecutionCommand).rejectsOnce(exists).rejectsOnce(new Error('throttled'));
    await deploy(
      { WSP_WORKER_FUNCTION: 'wsp-worker-fn', WSP_PROVISION_STATE_MACHINE: MACHINE },
      { backend: async () => unavailableBackend('test') },
    );
    expect((await call('POST', '/workspaces', { headers: json, body: '{}' })).status).toBe(202);
    const failed = await call('POST', '/workspaces', { headers: json, body: '{}' });
    expect(failed.status).toBe(503);
    expect(failed.body.error.message).toBe('could not start the provisioning workflow');
  });

  it('a fetch or reset starts one operations execution named after the operation, and invokes no worker', async () => {
    const OPS = 'arn:aws:states:eu-west-1:111111111111:stateMachine:wsp-dev-operation';
    sfnMock.on(StartExecutionCommand).resolves({ executionArn: `${OPS}:x`, startDate: new Date() });
    await deploy(
      { WSP_PROVISION_STATE_MACHINE: MACHINE, WSP_OPERATION_STATE_MACHINE: OPS },
      { backend: async () => unavailableBackend('test') },
    );
    const created = await call('POST', '/workspaces', { headers: json, body: '{}' });
    const fetched = await call('POST', `/workspaces/${created.body.id}/git/fetch?waitMs=0`, {
      headers: json,
      body: '{}',
    });
    expect(fetched.status).toBe(202);
    expect(fetched.body).toMatchObject({ kind: 'fetch', status: 'running', phase: 'begin' });
    const calls = sfnMock.commandCalls(StartExecutionCommand).map((c) => c.args[0].input);
    expect(calls.at(-1)).toEqual({
      stateMachineArn: OPS,
      name: fetched.body.id,
      input: JSON.stringify({ workspaceId: created.body.id, operationId: fetched.body.id }),
    });
    expect(lambdaMock.commandCalls(InvokeCommand)).toHaveLength(0);
  });
});

describe('provisioning hand-off (async invoke of the worker)', () => {
  it('POST /workspaces invokes the worker with InvocationType Event and answers 202', async () => {
    lambdaMock.on(InvokeCommand).resolves({ StatusCode: 202 });
    await deploy({ WSP_WORKER_FUNCTION: 'wsp-worker-fn' }, { backend: async () => unavailableBackend('test') });
    const created = await call('POST', '/workspaces', { headers: json, body: '{}' });
    expect(created.status).toBe(202);
    const calls = lambdaMock.commandCalls(InvokeCommand);
    expect(calls).toHaveLength(1);
    const input = calls[0]!.args[0].input;
    expect(input).toMatchObject({ FunctionName: 'wsp-worker-fn', InvocationType: 'Event' });
    expect(JSON.parse(new TextDecoder().decode(input.Payload as Uint8Array))).toEqual({
      kind: 'provision',
      workspaceId: created.body.id,
    });
  });

  it('a failed hand-off is a 503 and the workspace is failed, not left provisioning', async () => {
    lambdaMock.on(InvokeCommand).rejects(new Error('throttled'));
    await deploy({ WSP_WORKER_FUNCTION: 'wsp-worker-fn' }, { backend: async () => unavailableBackend('test') });
    const created = await call('POST', '/workspaces', { headers: json, body: '{}' });
    expect(created.status).toBe(503);
    expect(created.body.error.message).toBe('could not hand the provision job to the worker function');
    const [ws] = (await call('GET', '/workspaces')).body.workspaces;
    expect(ws).toMatchObject({ status: 'failed', failure: { step: 'dispatch' } });
  });

  it('no worker function configured → 503 naming the setting', async () => {
    await deploy({}, { backend: async () => unavailableBackend('test') });
    const created = await call('POST', '/workspaces', { headers: json, body: '{}' });
    expect(created.status).toBe(503);
    expect(created.body.error.message).toContain('WSP_WORKER_FUNCTION');
  });

  it('LambdaInvokeDispatcher refuses a non-202 answer', async () => {
    lambdaMock.on(InvokeCommand).resolves({ StatusCode: 200 });
    const dispatcher = new LambdaInvokeDispatcher(new LambdaClient({ region: 'eu-west-1' }), 'fn');
    await expect(dispatcher.dispatch({ kind: 'provision', workspaceId: 'ws-1' })).rejects.toBeInstanceOf(
      BackendUnavailableError,
    );
  });
});

describe('worker handler', () => {
  it('ignores a malformed job without throwing (no pointless retries)', async () => {
    await deploy();
    expect(await worker({ kind: 'provision' }, lambdaContext())).toEqual({ ran: false, reason: 'malformed job' });
    expect(await worker({ kind: 'format-disk', workspaceId: 'ws-0123456789abcdef01234567' }, lambdaContext())).toEqual({
      ran: false,
      reason: 'malformed job',
    });
  });

  it('a re-delivered job for a settled workspace changes nothing', async () => {
    await deploy();
    const { deps } = await lambdaContainer();
    const id = 'ws-00000000000000000000000c';
    await deps.state.createWorkspace(workspaceRecord(id, { status: 'ready', owner: 'wsp-test-stack' }));
    expect(await worker({ kind: 'provision', workspaceId: id }, lambdaContext())).toEqual({ ran: true });
    expect(await deps.state.getWorkspace(id)).toMatchObject({ status: 'ready', version: 1 });
  });

  it('a provisioning job whose backend is unavailable fails the workspace with the reason', async () => {
    await deploy({ WSP_MODE: 'ecs' });
    const { deps } = await lambdaContainer();
    const id = 'ws-00000000000000000000000d';
    await deps.state.createWorkspace(
      workspaceRecord(id, {
        status: 'provisioning',
        owner: 'wsp-test-stack',
        plan: { ...workspaceRecord(id).plan, repos: [] },
      }),
    );
    await worker({ kind: 'provision', workspaceId: id }, lambdaContext());
    const after = await deps.state.getWorkspace(id);
    expect(after?.status).toBe('failed');
    expect(after?.failure?.message).toContain('mode ecs is not configured');
  });
});

describe('worker time limit', () => {
  it('provisioning still running just before the function timeout fails the workspace instead of leaving it provisioning', async () => {
    const hanging = {
      ...unavailableBackend('test'),
      baseIdentity: async () => 'test-base',
      create: () => new Promise<never>(() => undefined),
    };
    await deploy({}, { backend: async () => hanging });
    const { deps } = await lambdaContainer();
    const id = 'ws-00000000000000000000000f';
    await deps.state.createWorkspace(
      workspaceRecord(id, {
        status: 'provisioning',
        owner: 'wsp-test-stack',
        plan: { ...workspaceRecord(id).plan, repos: [] },
      }),
    );
    const context = { ...lambdaContext(), getRemainingTimeInMillis: () => TIME_MARGIN_MS + 300 };
    expect(await worker({ kind: 'provision', workspaceId: id }, context)).toEqual({ ran: true, reason: 'timed out' });
    expect(await deps.state.getWorkspace(id)).toMatchObject({
      status: 'failed',
      failure: { step: 'provision', message: 'provisioning did not finish within the worker function time limit' },
    });
  });
});

describe('task-events handler', () => {
  const stopped = (taskArn: string, lastStatus = 'STOPPED') => ({
    version: '0',
    id: 'e1',
    'detail-type': 'ECS Task State Change',
    source: 'aws.ecs',
    account: '111111111111',
    time: new Date().toISOString(),
    region: 'eu-west-1',
    resources: [taskArn],
    detail: {
      taskArn,
      lastStatus,
      desiredStatus: 'STOPPED',
      stoppedReason: 'Essential container in task exited',
      stopCode: 'EssentialContainerExited',
      clusterArn: 'arn:c',
    },
  });

  it("marks the stopped task's running commands lost, leaves ended ones and other workspaces alone", async () => {
    await deploy();
    const { deps } = await lambdaContainer();
    const arn = 'arn:aws:ecs:eu-west-1:111111111111:task/wsp/abc';
    const a = 'ws-0000000000000000000000a1';
    const b = 'ws-0000000000000000000000b1';
    await deps.state.createWorkspace(workspaceRecord(a, { status: 'ready', backend: { kind: 'ecs', taskArn: arn } }));
    await deps.state.createWorkspace(
      workspaceRecord(b, { status: 'ready', backend: { kind: 'ecs', taskArn: `${arn}-other` } }),
    );
    await deps.state.createCommand(commandRecord(a, 'cmd-1'));
    await deps.state.createCommand(commandRecord(a, 'cmd-2', { state: 'exited', exitCode: 0 }));
    await deps.state.createCommand(commandRecord(b, 'cmd-3'));

    expect(await taskEvents(stopped(arn, 'RUNNING'), lambdaContext())).toMatchObject({ commandsLost: 0 });
    expect((await deps.state.getCommand(a, 'cmd-1'))?.state).toBe('running');

    expect(await taskEvents(stopped(arn), lambdaContext())).toEqual({
      taskArn: arn,
      lastStatus: 'STOPPED',
      workspaces: [a],
      commandsLost: 1,
    });
    expect(await deps.state.getCommand(a, 'cmd-1')).toMatchObject({
      state: 'lost',
      reason: 'workspace task stopped: Essential container in task exited',
    });
    expect((await deps.state.getCommand(a, 'cmd-2'))?.state).toBe('exited');
    expect((await deps.state.getCommand(b, 'cmd-3'))?.state).toBe('running');
  });

  it('ignores events that are not ECS task state changes', async () => {
    await deploy();
    expect(await taskEvents({ 'detail-type': 'Something Else', detail: {} }, lambdaContext())).toEqual({
      workspaces: [],
      commandsLost: 0,
    });
  });
});

describe('janitor handler', () => {
  it("tears down this deployment's expired workspaces only", async () => {
    await deploy();
    const { deps } = await lambdaContainer();
    const past = Math.floor(Date.now() / 1000) - 60;
    const now = new Date().toISOString();
    await deps.state.createWorkspace(
      workspaceRecord('ws-0000000000000000000000e1', {
        status: 'failed',
        owner: 'wsp-test-stack',
        expiresAt: past,
        updatedAt: now,
      }),
    );
    await deps.state.createWorkspace(
      workspaceRecord('ws-0000000000000000000000e2', {
        status: 'failed',
        owner: 'someone-else',
        expiresAt: past,
        updatedAt: now,
      }),
    );
    await deps.state.createWorkspace(
      workspaceRecord('ws-0000000000000000000000e3', {
        status: 'failed',
        owner: 'wsp-test-stack',
        expiresAt: past + 3600,
        updatedAt: now,
      }),
    );
    const report = await janitor({ source: 'aws.scheduler' }, lambdaContext());
    expect(report).toMatchObject({ expired: ['ws-0000000000000000000000e1'], idle: [] });
    expect((await deps.state.getWorkspace('ws-0000000000000000000000e1'))?.status).toBe('deleted');
    expect((await deps.state.getWorkspace('ws-0000000000000000000000e2'))?.status).toBe('failed');
    expect((await deps.state.getWorkspace('ws-0000000000000000000000e3'))?.status).toBe('failed');
  });
});

describe('janitor handler: work whose worker was lost', () => {
  it('fails provisioning/resetting workspaces with no progress beyond the worker time limit, and only those', async () => {
    await deploy();
    const { deps } = await lambdaContainer();
    const stale = new Date(Date.now() - ABANDONED_AFTER_MS - 60_000).toISOString();
    const fresh = new Date(Date.now() - 60_000).toISOString();
    const ids = {
      lostProvision: 'ws-0000000000000000000000a1',
      lostReset: 'ws-0000000000000000000000a2',
      working: 'ws-0000000000000000000000a3',
      other: 'ws-0000000000000000000000a4',
    };
    await deps.state.createWorkspace(
      workspaceRecord(ids.lostProvision, { status: 'provisioning', owner: 'wsp-test-stack', updatedAt: stale }),
    );
    await deps.state.createWorkspace(
      workspaceRecord(ids.lostReset, { status: 'resetting', owner: 'wsp-test-stack', updatedAt: stale }),
    );
    await deps.state.createWorkspace(
      workspaceRecord(ids.working, { status: 'provisioning', owner: 'wsp-test-stack', updatedAt: fresh }),
    );
    await deps.state.createWorkspace(
      workspaceRecord(ids.other, { status: 'provisioning', owner: 'someone-else', updatedAt: stale }),
    );
    const report = await janitor({ source: 'aws.scheduler' }, lambdaContext());
    expect(report.abandoned.sort()).toEqual([ids.lostProvision, ids.lostReset]);
    const lost = await deps.state.getWorkspace(ids.lostProvision);
    expect(lost).toMatchObject({
      status: 'failed',
      failure: { step: 'provision', message: expect.stringMatching(/no progress for 16 min/) },
    });
    expect(await deps.state.getWorkspace(ids.lostReset)).toMatchObject({
      status: 'failed',
      failure: { step: 'reset' },
    });
    expect((await deps.state.getWorkspace(ids.working))?.status).toBe('provisioning');
    expect((await deps.state.getWorkspace(ids.other))?.status).toBe('provisioning');
  });
});

describe('janitor handler: operations whose worker was lost', () => {
  it('fails running operations with no progress beyond the worker time limit, and only those', async () => {
    await deploy();
    const { deps } = await lambdaContainer();
    const stale = new Date(Date.now() - ABANDONED_AFTER_MS - 60_000).toISOString();
    const fresh = new Date(Date.now() - 60_000).toISOString();
    const ws = 'ws-0000000000000000000000b1';
    await deps.state.createWorkspace(workspaceRecord(ws, { status: 'ready', owner: 'wsp-test-stack' }));
    await deps.state.createOperation(operationRecord(ws, 'op-0000000000000000000000b1', stale));
    await deps.state.createOperation(operationRecord(ws, 'op-0000000000000000000000b2', fresh));
    const report = await janitor({ source: 'aws.scheduler' }, lambdaContext());
    expect(report.abandoned).toEqual(['op-0000000000000000000000b1']);
    expect(await deps.state.getOperation(ws, 'op-0000000000000000000000b1')).toMatchObject({
      status: 'failed',
      error: { code: 'backend_unavailable', message: expect.stringMatching(/no progress for 16 min/) },
    });
    expect((await deps.state.getOperation(ws, 'op-0000000000000000000000b2'))?.status).toBe('running');
  });
});

describe('operations (fetch, reset) on Lambda', () => {
  it('a request waits at most LAMBDA_OPERATION_WAIT_MS for one, whatever the config says', async () => {
    await deploy({ WSP_CONFIG_JSON: JSON.stringify({ operations: { maxWaitMs: 3_600_000 } }) });
    const { deps } = await lambdaContainer();
    expect(LAMBDA_OPERATION_WAIT_MS).toBeLessThan(29_000);
    expect(deps.config.operations.maxWaitMs).toBe(LAMBDA_OPERATION_WAIT_MS);
  });

  it('an operation still running just before the function timeout is failed, not left running', async () => {
    await deploy({}, { backend: async () => hangingBackend() });
    const { deps } = await lambdaContainer();
    const id = 'ws-0000000000000000000000b3';
    await deps.state.createWorkspace(
      workspaceRecord(id, {
        status: 'ready',
        owner: 'wsp-test-stack',
        backend: { kind: 'test', workspaceId: id },
        baseline: { kind: 'test', name: id },
      }),
    );
    const operationId = 'op-0000000000000000000000b3';
    await deps.state.createOperation({ ...operationRecord(id, operationId, new Date().toISOString()), kind: 'reset' });
    const context = { ...lambdaContext(), getRemainingTimeInMillis: () => TIME_MARGIN_MS + 300 };
    expect(await worker({ kind: 'operation', workspaceId: id, operationId }, context)).toEqual({
      ran: true,
      reason: 'timed out',
    });
    expect(await deps.state.getOperation(id, operationId)).toMatchObject({
      status: 'failed',
      error: { code: 'backend_unavailable', message: expect.stringMatching(/worker function time limit/) },
    });
  });

  it('an operation phase still running at the margin is rethrown, so the state machine runs it again; nothing is failed', async () => {
    await deploy({}, { backend: async () => hangingBackend() });
    const { deps } = await lambdaContainer();
    const id = 'ws-0000000000000000000000b4';
    const operationId = 'op-0000000000000000000000b4';
    await deps.state.createWorkspace(
      workspaceRecord(id, {
        status: 'resetting',
        resetBy: operationId,
        owner: 'wsp-test-stack',
        backend: { kind: 'test', workspaceId: id },
        baseline: { kind: 'test', name: id },
      }),
    );
    await deps.state.createOperation({
      ...operationRecord(id, operationId, new Date().toISOString()),
      kind: 'reset',
      phase: 'restore',
    });
    const context = { ...lambdaContext(), getRemainingTimeInMillis: () => TIME_MARGIN_MS + 300 };
    await expect(
      worker({ kind: 'operation-phase', workspaceId: id, operationId, phase: 'restore' }, context),
    ).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(await deps.state.getOperation(id, operationId)).toMatchObject({ status: 'running', phase: 'restore' });
    expect(await deps.state.getWorkspace(id)).toMatchObject({ status: 'resetting', resetBy: operationId });
  });
});

/** A backend whose every workspace call never returns (a worker stuck in it until its time is up). */
function hangingBackend() {
  const never = () => new Promise<never>(() => undefined);
  return {
    ...unavailableBackend('test'),
    baseIdentity: async () => 'test-base',
    open: (ref: BackendRef) => ({
      ref,
      commands: {
        start: never,
        status: never,
        wait: never,
        read: never,
        kill: never,
        killAll: never,
        writeStdin: never,
        signal: never,
        resize: never,
      },
      files: { putTransferFile: never, removeTransferFile: never, putDirectory: never },
      snapshots: { take: never, restore: never },
      usage: never,
    }),
  };
}

function operationRecord(workspaceId: string, id: string, updatedAt: string): OperationRecord {
  return {
    workspaceId,
    id,
    version: 1,
    kind: 'fetch',
    status: 'running',
    input: {},
    owner: 'wsp-test-stack',
    createdAt: updatedAt,
    updatedAt,
  };
}

describe('container lifetime', () => {
  it('is composed once per execution environment and reused across invocations', async () => {
    await deploy();
    const first = await lambdaContainer();
    await call('GET', '/workspaces');
    await call('GET', '/healthz');
    expect(await lambdaContainer()).toBe(first);
  });
});

describe('function timeout', () => {
  it('a request cut short by the Lambda timeout answers 503 in our error shape, not a 500', async () => {
    // A DynamoDB endpoint that accepts connections and never answers: composition hangs.
    const net = await import('node:net');
    const sockets = new Set<import('node:net').Socket>();
    const silent = net.createServer((s) => void sockets.add(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      await configureLambda({
        env: { TABLE_NAME: 'wsp-hang', WSP_DATA_DIR: dataDir },
        dynamoEndpoint: `http://127.0.0.1:${(silent.address() as import('node:net').AddressInfo).port}`,
        log: createLogger({}, (line) => logs.push(line)),
      });
      const context = { ...lambdaContext(), getRemainingTimeInMillis: () => 300 };
      const r = parseResult(await api(apiEvent('GET', '/workspaces'), context));
      expect(r.status).toBe(503);
      expect(r.body.error).toEqual({
        code: 'backend_unavailable',
        message: 'the request did not finish within the function timeout; retry, or long-poll with a shorter waitMs',
      });
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});

describe('invocation deadline', () => {
  it('the backend (composed once per container) sees what is left of the CURRENT invocation; none without a clock', async () => {
    const seen: Array<number | undefined> = [];
    await deploy(
      {},
      {
        backend: async ({ remainingMs }) => ({
          ...unavailableBackend('ecs'),
          // Called on every read of a record with a backend ref: a window into the request's context.
          refBelongsTo: () => {
            seen.push(remainingMs?.());
            return true;
          },
        }),
      },
    );
    const { deps } = await lambdaContainer();
    const id = 'ws-00000000000000000000000c';
    await deps.state.createWorkspace(
      workspaceRecord(id, { status: 'ready', owner: 'wsp-test-stack', backend: { kind: 'ecs', taskArn: 'arn:x' } }),
    );
    const get = (context: ReturnType<typeof lambdaContext>) => api(apiEvent('GET', `/workspaces/${id}`), context);
    expect(parseResult(await get({ ...lambdaContext(), getRemainingTimeInMillis: () => 29_000 })).status).toBe(200);
    expect(parseResult(await get({ ...lambdaContext(), getRemainingTimeInMillis: () => 7_000 })).status).toBe(200);
    expect(parseResult(await get(lambdaContext())).status).toBe(200);
    expect(seen).toHaveLength(3);
    expect(seen[0]).toBeGreaterThan(25_000);
    expect(seen[0]).toBeLessThanOrEqual(29_000);
    expect(seen[1]).toBeGreaterThan(3_000);
    expect(seen[1]).toBeLessThanOrEqual(7_000);
    expect(seen[2]).toBeUndefined();
  });
});

describe('payload limits (Lambda: 6 MB each way)', () => {
  const LAMBDA_PAYLOAD = 6_291_456;
  const id = 'ws-00000000000000000000000d';
  const cid = 'cmd-00000000000000000000000e';
  const MiB = 1024 * 1024;

  /** A workspace whose one command printed `stdout` and `stderr` (served by an in-memory backend). */
  async function deployWithOutput(stdout: Buffer, stderr: Buffer): Promise<void> {
    const streams = { stdout, stderr };
    const reject = () => Promise.reject(new BackendUnavailableError('not in this test'));
    await deploy(
      {},
      {
        backend: async () => ({
          ...unavailableBackend('ecs'),
          refBelongsTo: () => true,
          open: (ref) => ({
            ref,
            commands: {
              start: reject,
              status: reject,
              wait: reject,
              kill: reject,
              killAll: reject,
              writeStdin: reject,
              signal: reject,
              resize: reject,
              read: async (_cid, stream, offset, limit) => {
                const data = streams[stream].subarray(offset, offset + limit);
                return { data: Buffer.from(data), nextOffset: offset + data.length };
              },
            },
            files: { putTransferFile: reject, removeTransferFile: reject, putDirectory: reject },
            snapshots: { take: reject, restore: reject },
            usage: reject,
          }),
        }),
      },
    );
    const { deps } = await lambdaContainer();
    await deps.state.createWorkspace(
      workspaceRecord(id, { status: 'ready', owner: 'wsp-test-stack', backend: { kind: 'ecs', taskArn: 'arn:x' } }),
    );
    await deps.state.createCommand(
      commandRecord(id, cid, {
        state: 'exited',
        exitCode: 0,
        stdout: { bytes: stdout.length, truncated: false },
        stderr: { bytes: stderr.length, truncated: false },
      }),
    );
  }

  /** The function's result exactly as Lambda serializes it. */
  const read = async (query: string) => {
    const result = await api(apiEvent('GET', `/workspaces/${id}/commands/${cid}?${query}`), lambdaContext());
    return { bytes: Buffer.byteLength(JSON.stringify(result)), parsed: parseResult(result) };
  };

  it('a maximal read (8 MiB per stream of the costliest JSON) answers in < 6 MB; offsets go on exactly', async () => {
    // \x01 is 7 bytes once the JSON body sits in the result's JSON, '"' 4: the worst UTF-8 there is.
    const stdout = Buffer.alloc(8 * MiB, 0x01);
    const stderr = Buffer.alloc(8 * MiB, '"');
    await deployWithOutput(stdout, stderr);
    const first = await read(`limit=${8 * MiB}`);
    expect(first.parsed.status).toBe(200);
    expect(first.bytes).toBeLessThan(LAMBDA_PAYLOAD);
    const { stdout: out, stderr: err } = first.parsed.body;
    expect(out).toMatchObject({ offset: 0, bytes: 8 * MiB, truncated: false, encoding: 'utf8' });
    expect(out.nextOffset).toBe(Buffer.byteLength(out.data));
    expect(err.nextOffset).toBe(Buffer.byteLength(err.data));
    expect(out.nextOffset).toBeGreaterThan(100_000); // cut to fit, not to nothing
    expect(err.nextOffset).toBeGreaterThan(100_000);
  });

  it('reading on from nextOffset reassembles every byte (text and base64), each answer < 6 MB', async () => {
    const text = Buffer.from('a "quoted" line\twith\x01controls ✓\n'.repeat(60_000)); // ~2 MiB
    const binary = Buffer.from(Array.from({ length: 3 * MiB }, (_, i) => (i * 7919) % 256)); // not UTF-8: base64
    await deployWithOutput(text, binary);
    const got = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
    const at = { stdout: 0, stderr: 0 };
    for (let round = 0; at.stdout < text.length || at.stderr < binary.length; round++) {
      expect(round).toBeLessThan(20);
      const r = await read(`limit=${8 * MiB}&stdoutOffset=${at.stdout}&stderrOffset=${at.stderr}`);
      expect(r.bytes).toBeLessThan(LAMBDA_PAYLOAD);
      for (const s of ['stdout', 'stderr'] as const) {
        const v = r.parsed.body[s];
        expect(v.offset).toBe(at[s]);
        const data = Buffer.from(v.data, v.encoding === 'base64' ? 'base64' : 'utf8');
        expect(v.nextOffset).toBe(at[s] + data.length);
        got[s].push(data);
        at[s] = v.nextOffset;
      }
    }
    expect(Buffer.concat(got.stdout).equals(text)).toBe(true);
    expect(Buffer.concat(got.stderr).equals(binary)).toBe(true);
  });

  it('an answer no route can fit (many commands with long argv) is a clear 503 naming its size, never over 6 MB', async () => {
    await deployWithOutput(Buffer.alloc(0), Buffer.alloc(0));
    const { deps } = await lambdaContainer();
    // DynamoDB keeps an item under 400 KB: 20 commands of 350 KB of argv are 7 MB together.
    for (let i = 0; i < 20; i++)
      await deps.state.createCommand(
        commandRecord(id, `cmd-0000000000000000000000${String(i).padStart(2, '0')}`, {
          state: 'exited',
          exitCode: 0,
          argv: ['x'.repeat(350 * 1024)],
        }),
      );
    const result = await api(apiEvent('GET', `/workspaces/${id}/commands`), lambdaContext());
    expect(Buffer.byteLength(JSON.stringify(result))).toBeLessThan(LAMBDA_PAYLOAD);
    const r = parseResult(result);
    expect(r.status).toBe(503);
    expect(r.body.error.message).toMatch(/^the answer \(\d+ bytes\) exceeds the Lambda API's 6 MB payload limit/);
    // One by one they fit.
    expect(
      parseResult(
        await api(apiEvent('GET', `/workspaces/${id}/commands/cmd-000000000000000000000000`), lambdaContext()),
      ).status,
    ).toBe(200);
  });

  it('refuses a request body the 6 MB payload could not carry back (413), whatever the config allows', async () => {
    await deployWithOutput(Buffer.alloc(0), Buffer.alloc(0));
    const body = JSON.stringify({ argv: ['cat'], stdin: 'x'.repeat(3 * MiB) });
    const r = parseResult(
      await api(apiEvent('POST', `/workspaces/${id}/commands`, { headers: json, body }), lambdaContext()),
    );
    expect(r.status).toBe(413);
    expect(r.body.error.code).toBe('payload_too_large');
  });
});
