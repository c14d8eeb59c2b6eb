import http from 'node:http';
import net from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startHttpServer, type StartedHttpServer } from '../../functions/server/http-server.js';
import { createLogger } from '../../shared/log.js';
import { CRASH_MESSAGE, FakeWorkspaceService } from '../support/fake-service.js';

const TOKEN = 'http-test-token-5f2c9a1e7b';
const auth = { authorization: `Bearer ${TOKEN}` };

let fake: FakeWorkspaceService;
let server: StartedHttpServer;
let logs: string[];

beforeEach(async () => {
  fake = new FakeWorkspaceService();
  const lines: string[] = [];
  logs = lines; // each server logs into its own array: a late line from the previous test lands there
  server = await startHttpServer({
    service: fake,
    host: '127.0.0.1',
    port: 0,
    authToken: TOKEN,
    heartbeatMs: 25,
    log: createLogger({}, (line) => lines.push(line)),
  });
});
afterEach(async () => {
  await server.close();
});

/** Reads an SSE response's raw text until `until(text)` holds or the stream ends. */
async function readUntil(res: Response, until: (text: string) => boolean): Promise<string> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  for (;;) {
    if (until(text)) break;
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  reader.releaseLock();
  return text;
}

/** Sends a request with node:http so the test controls framing (Content-Length, chunks). */
function rawRequest(
  options: http.RequestOptions,
  write: (req: http.ClientRequest) => void,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: server.port, ...options }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    // The server may close the connection while we are still sending (that is the point of 413).
    req.on('error', (e) =>
      (e as NodeJS.ErrnoException).code === 'EPIPE' || (e as NodeJS.ErrnoException).code === 'ECONNRESET'
        ? undefined
        : reject(e),
    );
    write(req);
  });
}

describe('http server: auth', () => {
  it('401 JSON with WWW-Authenticate without a token, or with a wrong one', async () => {
    const cases: Array<Record<string, string>> = [
      {},
      { authorization: 'Bearer nope' },
      { authorization: `Basic ${TOKEN}` },
    ];
    for (const headers of cases) {
      const res = await fetch(`${server.url}/workspaces`, { headers });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(await res.json()).toMatchObject({ error: { code: 'unauthorized' } });
    }
    expect(fake.calls).toEqual([]);
  });

  it('200 with the right token; /healthz needs none', async () => {
    expect((await fetch(`${server.url}/workspaces`, { headers: auth })).status).toBe(200);
    const health = await fetch(`${server.url}/healthz`);
    expect([health.status, await health.json()]).toEqual([200, { ok: true }]);
  });
});

describe('http server: errors', () => {
  it('a non-domain error is a bare 500: no message, no stack; the real error is logged server-side', async () => {
    fake.failNext('listWorkspaces', new Error(CRASH_MESSAGE));
    const res = await fetch(`${server.url}/workspaces`, { headers: auth });
    const text = await res.text();
    expect(res.status).toBe(500);
    expect(JSON.parse(text)).toEqual({ error: { code: 'internal', message: 'internal error' } });
    expect(text).not.toContain('SECRET-CANARY');
    expect(text).not.toMatch(/\bat .*\.ts:\d+/);
    expect(logs.some((l) => l.includes(CRASH_MESSAGE))).toBe(true);
  });

  it('a command program that crashes the service gives 500 too', async () => {
    const ws = fake.seedWorkspace();
    const res = await fetch(`${server.url}/workspaces/${ws.id}/commands`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ argv: ['crash'] }),
    });
    expect(res.status).toBe(500);
    expect(await res.text()).not.toContain('SECRET');
  });

  it('unknown route 404 and wrong method 405 in the JSON error shape', async () => {
    const missing = await fetch(`${server.url}/nope`, { headers: auth });
    expect([missing.status, ((await missing.json()) as any).error.code]).toEqual([404, 'not_found']);
    const wrong = await fetch(`${server.url}/healthz`, { method: 'DELETE', headers: auth });
    expect([wrong.status, wrong.headers.get('allow')]).toEqual([405, 'GET']);
  });

  it('bad JSON over the wire → 400, wrong content type → 415', async () => {
    const ws = fake.seedWorkspace();
    const bad = await fetch(`${server.url}/workspaces/${ws.id}/commands`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: '{"argv":',
    });
    expect(bad.status).toBe(400);
    const form = await fetch(`${server.url}/workspaces/${ws.id}/commands`, {
      method: 'POST',
      headers: auth,
      body: new URLSearchParams({ argv: 'ls' }),
    });
    expect(form.status).toBe(415);
    expect(fake.calls).toEqual([]);
  });
});

describe('http server: body cap', () => {
  it('413 for a declared Content-Length over 1 MiB, without reading it', async () => {
    const res = await rawRequest(
      {
        method: 'POST',
        path: '/workspaces',
        headers: { ...auth, 'content-type': 'application/json', 'content-length': String(2 * 1024 * 1024) },
      },
      (req) => req.end(),
    );
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'payload_too_large' } });
    expect(fake.calls).toEqual([]);
  });

  it('413 for a chunked body that grows past 1 MiB while being read', async () => {
    const chunk = Buffer.alloc(256 * 1024, 0x20);
    const res = await rawRequest(
      { method: 'POST', path: '/workspaces', headers: { ...auth, 'content-type': 'application/json' } },
      (req) => {
        req.write('{"labels":{"a":"');
        for (let i = 0; i < 6; i++) req.write(chunk);
        req.end('"}}');
      },
    );
    expect(res.status).toBe(413);
    expect(fake.calls).toEqual([]);
  });

  it('a body just under the cap is read and validated', async () => {
    const res = await fetch(`${server.url}/workspaces`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ labels: { a: 'x'.repeat(1000 * 1000) } }),
    });
    expect(res.status).toBe(400); // label value too long: validation ran, the cap did not trip
    expect(((await res.json()) as any).error.details[0].path).toBe('body.labels.a');
  });
});

describe('http server: SSE', () => {
  it('frames events as `event: <type>\\ndata: <json>\\n\\n` and ends after the command ends', async () => {
    const ws = fake.seedWorkspace();
    const run = await fetch(`${server.url}/workspaces/${ws.id}/commands`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ argv: ['ticks', '3', '5'] }),
    });
    expect(run.status).toBe(202);
    const { id } = (await run.json()) as { id: string };
    const res = await fetch(`${server.url}/workspaces/${ws.id}/commands/${id}/events`, { headers: auth });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const text = await res.text(); // the server ends the stream after the `end` event
    const frames = text.split('\n\n').filter((f) => f !== '' && !f.startsWith(':'));
    const events = frames.map((f) => {
      const match = /^event: (\w+)\ndata: (.*)$/.exec(f);
      if (!match) throw new Error(`bad frame: ${JSON.stringify(f)}`);
      return { event: match[1], data: JSON.parse(match[2]!) };
    });
    expect(events.map((e) => e.event)).toEqual(['output', 'output', 'output', 'end']);
    expect(
      events
        .slice(0, 3)
        .map((e) => e.data.data)
        .join(''),
    ).toBe('tick 1\ntick 2\ntick 3\n');
    expect(events[3]?.data.command).toMatchObject({ id, state: 'exited', exitCode: 0 });
  });

  it('sends heartbeats, and a client disconnect aborts the service watch', async () => {
    const ws = fake.seedWorkspace();
    const run = await fetch(`${server.url}/workspaces/${ws.id}/commands`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ argv: ['hang'] }),
    });
    const { id } = (await run.json()) as { id: string };
    const client = new AbortController();
    const res = await fetch(`${server.url}/workspaces/${ws.id}/commands/${id}/events`, {
      headers: auth,
      signal: client.signal,
    });
    const text = await readUntil(res, (t) => t.includes(': heartbeat\n\n'));
    expect(text).toContain(': heartbeat\n\n');
    expect(fake.watchAborts).toBe(0);
    client.abort();
    await fake.waitForWatchAbort(1); // resolves only through the AbortSignal the server passed in
    expect(fake.watchAborts).toBe(1);
  });

  it('unknown workspace on an SSE route is a JSON 404, not a stream', async () => {
    const res = await fetch(`${server.url}/workspaces/ws-000000000000/events`, { headers: auth });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  });

  it('close() ends open streams', async () => {
    const ws = fake.seedWorkspace();
    const run = await fetch(`${server.url}/workspaces/${ws.id}/commands`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ argv: ['hang'] }),
    });
    const { id } = (await run.json()) as { id: string };
    const res = await fetch(`${server.url}/workspaces/${ws.id}/commands/${id}/events`, { headers: auth });
    await readUntil(res, (t) => t.includes(': stream open'));
    await server.close();
    await fake.waitForWatchAbort(1);
  });
});

describe('http server: access log', () => {
  it('one line per request with method, path, status, ms — no headers, query or body', async () => {
    const ws = fake.seedWorkspace();
    await fetch(`${server.url}/workspaces/${ws.id}/commands?secretish=QUERYVALUE`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ argv: ['echo', 'BODYVALUE'] }),
    });
    const access = logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request');
    expect(access).toHaveLength(1);
    expect(access[0]).toMatchObject({ method: 'POST', path: `/workspaces/${ws.id}/commands`, status: 400 });
    expect(typeof access[0].ms).toBe('number');
    const all = logs.join('\n');
    for (const secret of [TOKEN, 'QUERYVALUE', 'BODYVALUE']) expect(all).not.toContain(secret);
  });
});

describe('files routes over the wire', () => {
  const files = (id: string, query: string) => `${server.url}/workspaces/${id}/files${query}`;

  it('PUT takes a raw body of any content type; GET answers octet-stream bytes with Accept-Ranges', async () => {
    const ws = fake.seedWorkspace();
    const bytes = Buffer.from([0, 0xff, 0, 0x0a, 0x7b]); // not UTF-8, not JSON
    const put = await fetch(files(ws.id, '?path=a.bin&mode=600'), {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'image/png' },
      body: bytes,
    });
    expect(put.status).toBe(200);
    expect(await put.json()).toMatchObject({ type: 'file', size: 5, mode: '0600' });
    const get = await fetch(files(ws.id, '?path=a.bin'), { headers: auth });
    expect(get.status).toBe(200);
    expect(get.headers.get('content-type')).toBe('application/octet-stream');
    expect(get.headers.get('accept-ranges')).toBe('bytes');
    expect(get.headers.get('content-length')).toBe('5');
    expect(Buffer.from(await get.arrayBuffer()).equals(bytes)).toBe(true);
  });

  it('a Range header reaches the service: 206 with Content-Range; 416 with bytes */size', async () => {
    const ws = fake.seedWorkspace();
    await fetch(files(ws.id, '?path=r.txt'), { method: 'PUT', headers: auth, body: '0123456789' });
    const part = await fetch(files(ws.id, '?path=r.txt'), { headers: { ...auth, range: 'bytes=2-4' } });
    expect([part.status, part.headers.get('content-range'), await part.text()]).toEqual([206, 'bytes 2-4/10', '234']);
    const past = await fetch(files(ws.id, '?path=r.txt'), { headers: { ...auth, range: 'bytes=10-' } });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe('bytes */10');
    expect(((await past.json()) as any).error.code).toBe('range_not_satisfiable');
  });

  it('a file body may exceed the JSON body cap (its own cap is maxRawBodyBytes): 413 only beyond that', async () => {
    await server.close();
    server = await startHttpServer({
      service: fake,
      authToken: TOKEN,
      maxBodyBytes: 1024,
      maxRawBodyBytes: 4096,
      log: createLogger({}, () => undefined),
    });
    const ws = fake.seedWorkspace();
    const ok = await fetch(files(ws.id, '?path=big'), { method: 'PUT', headers: auth, body: Buffer.alloc(4096) });
    expect(ok.status).toBe(200);
    const big = await fetch(files(ws.id, '?path=big'), { method: 'PUT', headers: auth, body: Buffer.alloc(4097) });
    expect(big.status).toBe(413);
    expect(((await big.json()) as any).error.code).toBe('payload_too_large');
    // JSON routes keep their own cap.
    const json = await fetch(`${server.url}/workspaces/${ws.id}/commands`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ command: 'x'.repeat(2000) }),
    });
    expect(json.status).toBe(413);
  });

  it('an upload without the token is refused before its body is read: 401 at once, connection closed', async () => {
    await server.close();
    server = await startHttpServer({
      service: fake,
      authToken: TOKEN,
      maxRawBodyBytes: 64 * 1024 * 1024,
      log: createLogger({}, () => undefined),
    });
    const ws = fake.seedWorkspace();
    for (const authorization of [undefined, 'Bearer wrong-token']) {
      // Headers announcing 64 MiB and a few bytes of it; the socket stays open, the rest never comes.
      const socket = net.connect(server.port, '127.0.0.1');
      let answer = '';
      socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
      const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      socket.on('error', () => undefined);
      socket.write(
        [
          `PUT /workspaces/${ws.id}/files?path=big.bin HTTP/1.1`,
          'Host: localhost',
          'Content-Type: application/octet-stream',
          `Content-Length: ${64 * 1024 * 1024}`,
          ...(authorization ? [`Authorization: ${authorization}`] : []),
          '',
          'only a few bytes',
        ].join('\r\n'),
      );
      // The server answers and closes the connection without waiting for the body.
      let timer: NodeJS.Timeout | undefined;
      const waited = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer in 5 s (so far: ${answer || 'nothing'})`)), 5_000);
      });
      await Promise.race([ended, waited]).finally(() => clearTimeout(timer));
      expect(answer).toMatch(/^HTTP\/1\.1 401 /);
      expect(answer).toMatch(/\r\nwww-authenticate: Bearer\r\n/i);
      expect(answer).toMatch(/\r\nconnection: close\r\n/i);
      expect(answer).toContain('"code":"unauthorized"');
    }
    expect(fake.calls).toEqual([]);
    // With the token, the same route still takes a body over the JSON cap.
    const ok = await fetch(files(ws.id, '?path=big.bin'), {
      method: 'PUT',
      headers: auth,
      body: Buffer.alloc(2 * 1024 * 1024, 1),
    });
    expect([ok.status, ((await ok.json()) as any).size]).toEqual([200, 2 * 1024 * 1024]);
  });

  it('DELETE answers 204 with no body and no content type; errors keep the JSON shape and statuses', async () => {
    const ws = fake.seedWorkspace();
    await fetch(files(ws.id, '?path=gone.txt'), { method: 'PUT', headers: auth, body: 'x' });
    const del = await fetch(files(ws.id, '?path=gone.txt'), { method: 'DELETE', headers: auth });
    expect(del.status).toBe(204);
    expect(del.headers.get('content-type')).toBeNull();
    expect(await del.text()).toBe('');
    const missing = await fetch(files(ws.id, '?path=gone.txt'), { headers: auth });
    expect(missing.status).toBe(404);
    const outside = await fetch(files(ws.id, '?path=/etc/passwd'), { headers: auth });
    expect(outside.status).toBe(400);
    expect(((await outside.json()) as any).error.message).toMatch(/outside/);
    const noPath = await fetch(files(ws.id, ''), { headers: auth });
    expect(noPath.status).toBe(400);
    const badMode = await fetch(files(ws.id, '?path=a&mode=4755'), { method: 'PUT', headers: auth, body: 'x' });
    expect(badMode.status).toBe(400);
    const unknown = await fetch(files('ws-00000000000000000000', '?path=a'), { headers: auth });
    expect(unknown.status).toBe(404);
    const stat = await fetch(`${server.url}/workspaces/${ws.id}/files/stat?path=nope`, { headers: auth });
    expect(stat.status).toBe(404);
    const list = await fetch(`${server.url}/workspaces/${ws.id}/files/list?recursive=maybe`, { headers: auth });
    expect(list.status).toBe(400);
    const noAuth = await fetch(files(ws.id, '?path=a'));
    expect(noAuth.status).toBe(401);
  });
});
