import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { statusForCode } from '../../shared/api/errors.js';
import { WspClient } from '../../shared/client/client.js';
import { reconcile } from '../../shared/service/reconciler.js';
import { commitFiles, createUpstreamRepo, type UpstreamRepo } from '../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../support/git-server.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';

// fetch and reset as operations over real HTTP (local backend): a request waits a bounded time,
// then hands back the operation to poll — the same API on every mode (on Lambda the wait is capped
// below API Gateway's 30 s: test/lambda/handlers.test.ts).
const TOKEN = `wsp-op-${randomBytes(12).toString('hex')}`;

let git: GitServer;
let app: UpstreamRepo;
let wsp: TestProvider;
let hostRoot: string;
let ws: any;

beforeAll(async () => {
  process.env.WSP_OP_TOKEN = TOKEN;
  hostRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-op-git-'));
  git = await startGitServer({ token: TOKEN, root: hostRoot });
  app = createUpstreamRepo(hostRoot, 'app', { 'README.md': '# app\n' });
  wsp = await startTestProvider({
    repositories: [{ url: git.url('app'), path: 'app', credential: 'env:WSP_OP_TOKEN' }],
    workspace: { network: 'none' },
  });
  ws = await wsp.setup();
});

afterAll(async () => {
  await wsp?.close();
  await git?.close();
  fs.rmSync(hostRoot, { recursive: true, force: true });
  delete process.env.WSP_OP_TOKEN;
});

async function poll(id: string, operationId: string): Promise<any> {
  for (;;) {
    const r = await wsp.api('GET', `/workspaces/${id}/operations/${operationId}?waitMs=20000`);
    expect(r.status).toBe(200);
    if (r.body.status !== 'running') return r.body;
  }
}

describe('long operations (local backend)', () => {
  it('a reset that does not end within ?waitMs answers 202 with the operation; polling it gives the result', async () => {
    await wsp.exec(ws.id, 'echo dirt > app/dirt.txt');
    const started = await wsp.api('POST', `/workspaces/${ws.id}/reset?waitMs=0`, {});
    expect(started.status).toBe(202);
    expect(started.body).toMatchObject({ workspaceId: ws.id, kind: 'reset', status: 'running', input: {} });
    expect(started.body.id).toMatch(/^op-[0-9a-f]+$/);
    const done = await poll(ws.id, started.body.id);
    expect(done).toMatchObject({ status: 'succeeded', result: { matches: true, fingerprint: ws.baselineFingerprint } });
    expect(done.endedAt).toEqual(expect.any(String));
    expect((await wsp.exec(ws.id, 'test -e app/dirt.txt; echo $?')).stdout.data).toBe('1\n');
    const list = await wsp.api('GET', `/workspaces/${ws.id}/operations`);
    expect(list.body.operations.map((o: any) => o.id)).toContain(started.body.id);
  });

  it('within the wait the request answers 200 with the result itself (the same body as the operation’s result)', async () => {
    const r = await wsp.api('POST', `/workspaces/${ws.id}/reset`, {});
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ matches: true, fingerprint: ws.baselineFingerprint });
  });

  it('a failed operation carries the error the request would have answered (same code, same status)', async () => {
    const body = { checkout: { repo: 'app', ref: 'no-such-branch' } };
    const inline = await wsp.api('POST', `/workspaces/${ws.id}/git/fetch`, body);
    expect(inline.status).toBeGreaterThanOrEqual(400);
    const started = await wsp.api('POST', `/workspaces/${ws.id}/git/fetch?waitMs=0`, body);
    expect(started.status).toBe(202);
    const done = await poll(ws.id, started.body.id);
    expect(done.status).toBe('failed');
    expect(done.error.code).toBe(inline.body.error.code);
    expect(statusForCode(done.error.code)).toBe(inline.status);
    expect(JSON.stringify(done)).not.toContain(TOKEN);
  });

  it('the client waits for an operation past the server’s wait, and reports it was handed back', async () => {
    const head = commitFiles(app, { 'NEW.md': 'new\n' }, 'new file');
    const client = new WspClient({ baseUrl: wsp.url, token: wsp.token });
    const accepted: string[] = [];
    const result = await client.fetch(ws.id, {}, { waitMs: 0, onAccepted: (op) => accepted.push(op.id) });
    expect(accepted).toHaveLength(1);
    expect(result.repos[0]).toMatchObject({ name: 'app', heads: { main: head } });
    const op = await client.getOperation(ws.id, accepted[0]!);
    expect(op).toMatchObject({ status: 'succeeded', kind: 'fetch' });
  });

  it('an operation can be followed as server-sent events: the reset steps, then its end with the result', async () => {
    await wsp.exec(ws.id, 'echo dirt > app/dirt.txt');
    const started = await wsp.api('POST', `/workspaces/${ws.id}/reset?waitMs=0`, {});
    expect(started.status).toBe(202);
    const client = new WspClient({ baseUrl: wsp.url, token: wsp.token });
    const events: any[] = [];
    for await (const event of client.watchOperation(ws.id, started.body.id)) events.push(event);
    const end = events.at(-1);
    expect(end).toMatchObject({ type: 'end', operation: { id: started.body.id, status: 'succeeded' } });
    expect(end.operation.result).toMatchObject({ matches: true });
    expect(events.slice(0, -1).every((e) => e.type === 'step')).toBe(true);
  });

  it('unknown operations and workspaces are 404; a malformed operation id is 400', async () => {
    expect((await wsp.api('GET', `/workspaces/${ws.id}/operations/op-${'0'.repeat(24)}`)).status).toBe(404);
    expect((await wsp.api('GET', `/workspaces/ws-${'0'.repeat(24)}/operations`)).status).toBe(404);
    expect((await wsp.api('GET', `/workspaces/${ws.id}/operations/nope`)).status).toBe(400);
    expect((await wsp.api('GET', `/workspaces/${ws.id}/operations/op-${'0'.repeat(24)}/events`)).status).toBe(404);
    expect((await wsp.api('POST', `/workspaces/${ws.id}/reset?waitMs=-1`, {})).status).toBe(400);
  });

  it('at start-up, a reset this instance was running goes on at its recorded phase; one its workspace no longer allows is failed', async () => {
    const { deps, service } = wsp.provider;
    await wsp.exec(ws.id, 'echo dirt > app/dirt.txt');
    const at = new Date().toISOString();
    const op = (id: string, kind: 'fetch' | 'reset', phase: 'begin' | 'restore') => ({
      workspaceId: ws.id,
      id,
      version: 1,
      kind,
      status: 'running' as const,
      input: {},
      owner: deps.instanceId,
      phase,
      createdAt: at,
      updatedAt: at,
    });
    // What the dead provider left: its reset past `begin` (the workspace resetting by it), and a fetch
    // queued behind it that never began.
    const reset = `op-${'e'.repeat(24)}`;
    const fetch = `op-${'f'.repeat(24)}`;
    await deps.state.createOperation(op(reset, 'reset', 'restore'));
    await deps.state.createOperation(op(fetch, 'fetch', 'begin'));
    await service.records.transition(ws.id, ['ready'], 'resetting', { resetBy: reset });

    const report = await reconcile(deps, service);
    expect(report.resumedOperations).toEqual([{ workspaceId: ws.id, operationId: reset }]);
    expect(report.operationsFailed).toEqual([fetch]);
    expect(report.resumedResets).toEqual([]);
    const done = await poll(ws.id, reset);
    expect(done).toMatchObject({ status: 'succeeded', result: { matches: true, fingerprint: ws.baselineFingerprint } });
    expect((await wsp.exec(ws.id, 'test -e app/dirt.txt; echo $?')).stdout.data).toBe('1\n');
    expect((await wsp.api('GET', `/workspaces/${ws.id}`)).body.status).toBe('ready');
    const failed = (await wsp.api('GET', `/workspaces/${ws.id}/operations/${fetch}`)).body;
    expect(failed).toMatchObject({ status: 'failed', error: { message: expect.stringMatching(/provider restarted/) } });
  });

  it('at start-up, a fetch this instance was running on a ready workspace goes on and ends', async () => {
    const { deps, service } = wsp.provider;
    const at = new Date().toISOString();
    const operationId = `op-${'d'.repeat(24)}`;
    await deps.state.createOperation({
      workspaceId: ws.id,
      id: operationId,
      version: 1,
      kind: 'fetch',
      status: 'running',
      input: {},
      owner: deps.instanceId,
      createdAt: at, // written before operations had phases: it starts at `begin`
      updatedAt: at,
    });
    const report = await reconcile(deps, service);
    expect(report.resumedOperations).toEqual([{ workspaceId: ws.id, operationId }]);
    expect(report.operationsFailed).toEqual([]);
    expect(await poll(ws.id, operationId)).toMatchObject({ status: 'succeeded', result: { repos: [{ name: 'app' }] } });
  });
});
