import { afterEach, describe, expect, it } from 'vitest';
import { startHttpServer, type StartedHttpServer } from '../../functions/server/http-server.js';
import { BackendUnavailableError } from '../../shared/contract/errors.js';
import { silentLogger } from '../../shared/log.js';
import type { WorkspaceEvent } from '../../shared/contract/views.js';
import { WspApiError, WspClient, WspTimeoutError } from '../../shared/client/client.js';
import { parseSse } from '../../shared/client/sse.js';
import { CRASH_MESSAGE, FakeWorkspaceService, type FakeOptions } from '../support/fake-service.js';

const TOKEN = 'client-test-token-8c1d2e';
let server: StartedHttpServer | undefined;

async function setup(options: FakeOptions = {}): Promise<{ fake: FakeWorkspaceService; client: WspClient }> {
  const fake = new FakeWorkspaceService(options);
  server = await startHttpServer({ service: fake, authToken: TOKEN, log: silentLogger });
  return { fake, client: new WspClient({ baseUrl: `${server.url}/`, token: TOKEN }) };
}
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('WspClient: workspaces', () => {
  it('creates, follows provisioning over SSE and returns the ready workspace', async () => {
    const { fake, client } = await setup();
    const created = await client.createWorkspace({ labels: { team: 'a' } });
    expect(created.status).toBe('provisioning');
    const events: WorkspaceEvent[] = [];
    const ready = await client.waitForWorkspace(created.id, { timeoutMs: 30_000, onEvent: (e) => events.push(e) });
    expect(ready).toMatchObject({ id: created.id, status: 'ready', labels: { team: 'a' } });
    expect(events.filter((e) => e.type === 'step').map((e) => (e as { step: string }).step)).toEqual([
      'clone',
      'setup',
    ]);
    expect(events.some((e) => e.type === 'output')).toBe(true);
    expect(fake.calls.map((c) => c.method)).toContain('watchWorkspace');
    expect((await client.listWorkspaces()).map((w) => w.id)).toEqual([created.id]);
    expect((await client.deleteWorkspace(created.id)).status).toBe('deleted');
  });

  it('returns a failed workspace rather than throwing', async () => {
    const { client } = await setup({ failSetup: true });
    const created = await client.createWorkspace();
    const failed = await client.waitForWorkspace(created.id, { timeoutMs: 30_000 });
    expect(failed).toMatchObject({ status: 'failed', failure: { step: 'setup' } });
  });

  it('falls back to polling when the event stream is not available', async () => {
    const { fake, client } = await setup({ manualProvisioning: true });
    const created = await client.createWorkspace();
    fake.stub('watchWorkspace', () => {
      throw new BackendUnavailableError('streaming unavailable');
    });
    let polls = 0;
    fake.onCall = (call) => {
      // The events route's own existence check is the first call; polls follow. Settle on the second poll.
      if (call.method === 'getWorkspace' && ++polls === 3) fake.finishProvisioning(created.id);
    };
    const ready = await client.waitForWorkspace(created.id, { timeoutMs: 30_000, pollIntervalMs: 5 });
    expect(ready.status).toBe('ready');
    expect(polls).toBeGreaterThanOrEqual(3);
  });

  it('throws WspTimeoutError when the workspace does not settle in time', async () => {
    const { client } = await setup({ manualProvisioning: true });
    const created = await client.createWorkspace();
    await expect(client.waitForWorkspace(created.id, { timeoutMs: 100, pollIntervalMs: 10 })).rejects.toBeInstanceOf(
      WspTimeoutError,
    );
  });

  it('throws WspApiError with the API code, message and details', async () => {
    const { client } = await setup();
    const missing = await client.getWorkspace('ws-000000000000').catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(WspApiError);
    expect(missing).toMatchObject({ status: 404, code: 'not_found' });
    const bad = await client.createWorkspace({ refs: { '../x': 'main' } }).catch((e: unknown) => e);
    expect(bad).toMatchObject({ status: 400, code: 'bad_request', details: [{ path: 'body.refs["../x"]' }] });
    await expect(client.waitForWorkspace('ws-000000000000', { timeoutMs: 5_000 })).rejects.toMatchObject({
      code: 'not_found',
    });
  });

  it('reports a wrong token and an unreachable server as WspApiError', async () => {
    await setup();
    const wrong = new WspClient({ baseUrl: server!.url, token: 'nope' });
    await expect(wrong.listWorkspaces()).rejects.toMatchObject({ status: 401, code: 'unauthorized' });
    const url = server!.url;
    await server!.close();
    await expect(new WspClient({ baseUrl: url }).health()).rejects.toMatchObject({ status: 0, code: 'unreachable' });
  });
});

describe('WspClient: commands', () => {
  it('runCommand long-polls a 202 until the end and returns the full output', async () => {
    const { fake, client } = await setup();
    const ws = fake.seedWorkspace();
    const result = await client.runCommand(ws.id, { argv: ['ticks', '3', '20'], waitMs: 0 });
    expect(result).toMatchObject({
      state: 'exited',
      exitCode: 0,
      stdout: { data: 'tick 1\ntick 2\ntick 3\n', offset: 0 },
    });
    const polls = fake.calls.filter((c) => c.method === 'getCommand').map((c) => c.args[2]);
    expect(polls[0]).toMatchObject({ waitMs: 25_000, limit: 0 });
    expect(polls.at(-1)).toMatchObject({ waitMs: 0, stdoutOffset: 0 });
  });

  it('runCommand with wait:false returns the running view; cancel kills it', async () => {
    const { fake, client } = await setup();
    const ws = fake.seedWorkspace();
    const running = await client.runCommand(ws.id, { command: 'hang' }, { wait: false });
    expect(running.state).toBe('running');
    expect((await client.listCommands(ws.id)).map((c) => c.id)).toEqual([running.id]);
    expect(await client.cancelCommand(ws.id, running.id)).toMatchObject({ state: 'killed' });
  });

  it('watchCommand yields output then the end', async () => {
    const { fake, client } = await setup();
    const ws = fake.seedWorkspace();
    const cmd = await client.runCommand(ws.id, { argv: ['ticks', '2', '10'] }, { wait: false });
    const events = [];
    for await (const e of client.watchCommand(ws.id, cmd.id)) events.push(e);
    expect(events.map((e) => e.type)).toEqual(['output', 'output', 'end']);
    expect(events[1]).toMatchObject({ type: 'output', stream: 'stdout', data: 'tick 2\n', offset: 7 });
  });

  it('an error event in the stream is thrown as WspApiError without internals', async () => {
    const { fake, client } = await setup();
    const ws = fake.seedWorkspace();
    const cmd = await client.runCommand(ws.id, { command: 'hang' }, { wait: false });
    fake.stub('watchCommand', async function* () {
      yield { type: 'output', stream: 'stdout', data: 'x', offset: 0 };
      throw new Error(CRASH_MESSAGE);
    });
    const seen: string[] = [];
    const error = await (async () => {
      for await (const e of client.watchCommand(ws.id, cmd.id)) seen.push(e.type);
    })().catch((e: unknown) => e);
    expect(seen).toEqual(['output']);
    expect(error).toMatchObject({ status: 500, code: 'internal', message: 'internal error' });
  });

  it('fetch, reset and changes', async () => {
    const { fake, client } = await setup();
    const ws = fake.seedWorkspace();
    expect((await client.fetch(ws.id, { repos: ['.'] })).repos[0]?.name).toBe('.');
    expect((await client.reset(ws.id)).matches).toBe(true);
    expect((await client.changes(ws.id)).repos[0]?.status[0]).toEqual({ code: 'M', path: 'README.md' });
  });
});

describe('parseSse', () => {
  function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
    const encoder = new TextEncoder();
    return new ReadableStream({
      start(controller) {
        for (const c of chunks) controller.enqueue(encoder.encode(c));
        controller.close();
      },
    });
  }
  async function all(chunks: string[]) {
    const out = [];
    for await (const m of parseSse(streamOf(chunks))) out.push(m);
    return out;
  }

  it('handles comments, multi-line data, CRLF and chunk boundaries anywhere', async () => {
    const text =
      ': open\r\n\r\nevent: output\r\ndata: {"a":1}\r\n\r\ndata: line1\ndata: line2\n\nevent:end\rdata:{}\r\r';
    const expected = [
      { event: 'output', data: '{"a":1}' },
      { event: 'message', data: 'line1\nline2' },
      { event: 'end', data: '{}' },
    ];
    expect(await all([text])).toEqual(expected);
    for (let cut = 1; cut < text.length; cut++)
      expect(await all([text.slice(0, cut), text.slice(cut)])).toEqual(expected);
  });

  it('drops an unterminated last event', async () => {
    expect(await all(['event: x\ndata: 1\n\nevent: y\ndata: 2'])).toEqual([{ event: 'x', data: '1' }]);
  });
});
