import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ConfigInput } from '../../shared/config/schema.js';
import { parseConfig } from '../../shared/config/load.js';
import { createLocalBackend } from '../../shared/backends/local/index.js';
import { createLogger } from '../../shared/log.js';
import type { Job } from '../../shared/service/long-work.js';
import type { JobHandOff } from '../../functions/lambda/invoke-dispatcher.js';
import { configureLambda } from '../../functions/lambda/compose.js';
import { hashApiKey, parseKeyHashes } from '../../functions/lambda/api-keys.js';
import { authorize } from '../../functions/lambda/authorizer.js';
import { handler as apiHandler } from '../../functions/lambda/api.js';
import { handler as workerHandler } from '../../functions/lambda/worker.js';
import { FakeStateMachine } from '../support/fake-state-machine.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';
import { apiEvent, lambdaContext, parseResult } from './events.js';

/**
 * The two ways to reach the API that must answer alike: the local server over real HTTP, and the
 * Lambda `api` handler invoked with HTTP API v2 events (local backend, DynamoDB Local, provisioning
 * handed to the `worker` handler as the async invoke would).
 */

export type Auth = 'ok' | 'none' | 'wrong';

export interface ApiRequest {
  method: string;
  url: string;
  /** An object is sent as JSON; a string or a Buffer is sent as-is (a Buffer: base64 in a Lambda event, as API Gateway does for binary types). */
  body?: unknown;
  auth?: Auth;
  /** Content-Type for the body; default application/json when there is a body; null: none. */
  contentType?: string | null;
}

export interface Answer {
  status: number;
  headers: Record<string, string>;
  body: any;
  text: string;
  bytes: Buffer;
  /** Lambda target only: the authorizer handler's decision for the same request. */
  authorizerAllowed?: boolean;
}

export interface ApiTarget {
  name: string;
  call(request: ApiRequest): Promise<Answer>;
  /** Every response text and log line, for the secret scan. */
  transcript(): string[];
  close(): Promise<void>;
}

function headersFor(
  request: ApiRequest,
  token: string,
): { headers: Record<string, string>; body: string | Buffer | undefined } {
  const headers: Record<string, string> = {};
  const auth = request.auth ?? 'ok';
  if (auth === 'ok') headers['authorization'] = `Bearer ${token}`;
  if (auth === 'wrong') headers['authorization'] = `Bearer not-the-${token.slice(0, 4)}-key`;
  const body =
    request.body === undefined
      ? undefined
      : typeof request.body === 'string' || Buffer.isBuffer(request.body)
        ? request.body
        : JSON.stringify(request.body);
  if (body !== undefined && request.contentType !== null)
    headers['content-type'] = request.contentType ?? 'application/json';
  return { headers, body };
}

export async function httpTarget(config: ConfigInput): Promise<ApiTarget & { wsp: TestProvider }> {
  const wsp = await startTestProvider(config);
  return {
    name: 'local server (HTTP)',
    wsp,
    async call(request) {
      const { headers, body } = headersFor(request, wsp.token);
      const res = await fetch(wsp.url + request.url, {
        method: request.method,
        headers,
        ...(body !== undefined ? { body } : {}),
      });
      const bytes = Buffer.from(await res.arrayBuffer());
      const text = bytes.toString('utf8');
      wsp.responses.push(text);
      let parsed: unknown;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        parsed = text;
      }
      return { status: res.status, headers: Object.fromEntries(res.headers.entries()), body: parsed, text, bytes };
    },
    transcript: () => [...wsp.responses, ...wsp.logs],
    async close() {
      await wsp.close();
      fs.rmSync(wsp.dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * The Lambda api handler, composed through the compose.ts seam: the same config, the LOCAL backend
 * (injected: the Lambda build has none), DynamoDB Local, and a job dispatcher that runs the worker
 * handler in the background with the JSON the async invoke would carry.
 */
export async function lambdaTarget(config: ConfigInput, dynamoEndpoint: string, token: string): Promise<ApiTarget> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-lambda-'));
  const logs: string[] = [];
  const responses: string[] = [];
  const log = createLogger({ svc: 'wsp-lambda-test' }, (line) => logs.push(line));
  const background = new Set<Promise<void>>();
  const jobs: JobHandOff = {
    async dispatch(job: Job) {
      const payload = JSON.parse(JSON.stringify(job)) as unknown;
      const run = workerHandler(payload, lambdaContext('wsp-worker')).then((result) => {
        if (!result.ran) logs.push(`worker refused a job: ${result.reason}`);
      });
      const tracked = run
        .catch((e: unknown) => void logs.push(`worker failed: ${String(e)}`))
        .finally(() => background.delete(tracked));
      background.add(tracked);
    },
  };
  // Provisioning runs as the deployed state machine runs it: one worker invocation per phase.
  const stateMachine = new FakeStateMachine((payload) => workerHandler(payload, lambdaContext('wsp-worker')));
  const keyHashes = parseKeyHashes(hashApiKey(token));
  const parsed = parseConfig({
    ...config,
    dataDir,
    state: { tableName: 'wsp-eq', embedded: false },
    auth: { disabled: true },
  });
  await configureLambda({
    env: {
      ...process.env,
      WSP_API_KEY_HASHES: hashApiKey(token),
      WSP_INSTANCE_ID: 'wsp-eq-lambda',
      WSP_MODE: 'local',
      WSP_PROVISION_STATE_MACHINE: 'arn:aws:states:eu-west-1:111111111111:stateMachine:wsp-provision',
    },
    config: parsed,
    dynamoEndpoint,
    backend: ({ dataDir: dir, instanceId, log: backendLog }) =>
      createLocalBackend({ dataDir: dir, owner: instanceId, log: backendLog }),
    // Provisioning (the state machine) and the operations (fetch, reset) go through the worker handler as deployed.
    jobs,
    startExecution: stateMachine,
    log,
  });
  return {
    name: 'Lambda api handler (HTTP API v2 events)',
    async call(request) {
      const { headers, body } = headersFor(request, token);
      const event = apiEvent(request.method, request.url, {
        headers,
        ...(body !== undefined ? { body, base64: Buffer.isBuffer(body) } : {}),
      });
      const result = parseResult(await apiHandler(event, lambdaContext('wsp-api')));
      responses.push(result.text);
      return { ...result, authorizerAllowed: authorize(event, keyHashes).isAuthorized };
    },
    transcript: () => [...responses, ...logs],
    async close() {
      await stateMachine.drain();
      while (background.size > 0) await Promise.allSettled([...background]);
      await configureLambda({});
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
