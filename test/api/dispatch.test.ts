import { beforeEach, describe, expect, it } from 'vitest';
import { dispatch, type DispatchRequest, type DispatchResponse } from '../../shared/api/dispatch.js';
import { routes } from '../../shared/api/routes.js';
import { BackendUnavailableError, ConflictError, StepFailedError } from '../../shared/contract/errors.js';
import { silentLogger } from '../../shared/log.js';
import { CRASH_MESSAGE, FakeWorkspaceService } from '../support/fake-service.js';

const WS = 'ws-abcdef012345';
const CMD = 'cmd-abcdef012345';
const TOKEN = 'test-token-0123456789abcdef';

let fake: FakeWorkspaceService;
beforeEach(() => {
  fake = new FakeWorkspaceService();
});

interface Req {
  query?: Record<string, string>;
  headers?: Record<string, string>;
  /** An object is sent as JSON; a string or Buffer as is. */
  body?: unknown;
  contentType?: string | null;
  authToken?: string;
}

function call(method: string, path: string, r: Req = {}): Promise<DispatchResponse> {
  let rawBody: Buffer | undefined;
  if (Buffer.isBuffer(r.body)) rawBody = r.body;
  else if (typeof r.body === 'string') rawBody = Buffer.from(r.body);
  else if (r.body !== undefined) rawBody = Buffer.from(JSON.stringify(r.body));
  const headers: Record<string, string> = { ...r.headers };
  const contentType = r.contentType === undefined ? 'application/json' : r.contentType;
  if (rawBody !== undefined && contentType !== null) headers['content-type'] = contentType;
  const request: DispatchRequest = { method, path, query: r.query ?? {}, headers, rawBody };
  return dispatch(routes, fake, request, { log: silentLogger, ...(r.authToken ? { authToken: r.authToken } : {}) });
}

function json(res: DispatchResponse): { status: number; body: any; headers: Record<string, string> } {
  if ('stream' in res) throw new Error(`expected a JSON response, got a stream (${res.status})`);
  if ('bytes' in res) throw new Error(`expected a JSON response, got bytes (${res.status})`);
  return { status: res.status, body: res.body, headers: res.headers };
}

function fill(template: string, values: { id?: string; cid?: string } = {}): string {
  return template
    .replace('{id}', values.id ?? WS)
    .replace('{cid}', values.cid ?? CMD)
    .replace('{sid}', template.includes('/sessions/') ? 'sess-0123456789abcdef01234567' : '{sid}');
}

/** Asserts our error shape and that the service was never reached. */
function expectRejected(res: DispatchResponse, status: number, code: string, paths: string[] = []): void {
  const { status: got, body } = json(res);
  expect({ status: got, code: body?.error?.code }).toEqual({ status, code });
  expect(typeof body.error.message).toBe('string');
  const detailPaths = ((body.error.details ?? []) as Array<{ path: string; message: string }>).map((d) => d.path);
  for (const p of paths) expect(detailPaths).toContain(p);
  for (const d of body.error.details ?? []) expect(typeof d.message).toBe('string');
  expect(fake.calls).toEqual([]);
}

// ---- bad bodies, per route (every route that takes a body must be listed) ----

const BODY_CASES: Record<string, Array<{ name: string; body: unknown; paths: string[] }>> = {
  createWorkspace: [
    { name: "refs key with '..'", body: { refs: { '../escape': 'main' } }, paths: ['body.refs["../escape"]'] },
    { name: 'absolute refs key', body: { refs: { '/etc': 'main' } }, paths: ['body.refs["/etc"]'] },
    { name: 'ref starting with -', body: { refs: { app: '--upload-pack=evil' } }, paths: ['body.refs.app'] },
    { name: "ref with '..'", body: { refs: { app: 'a..b' } }, paths: ['body.refs.app'] },
    { name: 'refs not an object', body: { refs: 'main' }, paths: ['body.refs'] },
    { name: 'bad env name', body: { env: { '1BAD': 'x' } }, paths: ['body.env["1BAD"]'] },
    { name: 'env value not a string', body: { env: { GOOD: 1 } }, paths: ['body.env.GOOD'] },
    { name: 'bad label key', body: { labels: { 'has space': 'x' } }, paths: ['body.labels["has space"]'] },
    { name: 'ttl too small', body: { ttlSeconds: 1 }, paths: ['body.ttlSeconds'] },
    { name: 'ttl not an integer', body: { ttlSeconds: 90.5 }, paths: ['body.ttlSeconds'] },
    { name: 'ttl a string', body: { ttlSeconds: '600' }, paths: ['body.ttlSeconds'] },
    { name: 'empty idempotency key', body: { idempotencyKey: '' }, paths: ['body.idempotencyKey'] },
    { name: 'idempotency key with space', body: { idempotencyKey: 'a b' }, paths: ['body.idempotencyKey'] },
    { name: 'body is an array', body: [], paths: ['body'] },
    { name: 'body is null', body: null, paths: ['body'] },
    { name: 'fromSnapshot not a snapshot id', body: { fromSnapshot: '../x' }, paths: ['body.fromSnapshot'] },
  ],
  runCommand: [
    { name: 'empty body', body: {}, paths: ['body'] },
    { name: 'argv and command', body: { argv: ['ls'], command: 'ls' }, paths: ['body'] },
    { name: 'empty argv', body: { argv: [] }, paths: ['body.argv'] },
    { name: 'argv element not a string', body: { argv: ['ls', 7] }, paths: ['body.argv[1]'] },
    { name: 'argv a string', body: { argv: 'ls -la' }, paths: ['body.argv'] },
    { name: 'empty command', body: { command: '' }, paths: ['body.command'] },
    { name: 'negative timeout', body: { argv: ['ls'], timeoutMs: -1 }, paths: ['body.timeoutMs'] },
    { name: 'waitMs over 25 s', body: { argv: ['ls'], waitMs: 30_000 }, paths: ['body.waitMs'] },
    { name: 'tty without cols', body: { argv: ['sh'], tty: { rows: 24 } }, paths: ['body.tty.cols'] },
    { name: 'tty of 0 rows', body: { argv: ['sh'], tty: { rows: 0, cols: 80 } }, paths: ['body.tty.rows'] },
    { name: 'openStdin a string', body: { argv: ['cat'], openStdin: 'yes' }, paths: ['body.openStdin'] },
    {
      name: 'bad stdin encoding',
      body: { argv: ['cat'], stdin: 'x', stdinEncoding: 'hex' },
      paths: ['body.stdinEncoding'],
    },
    { name: 'bad env name', body: { argv: ['ls'], env: { 'A-B': 'x' } }, paths: ['body.env["A-B"]'] },
    { name: 'empty cwd', body: { argv: ['ls'], cwd: '' }, paths: ['body.cwd'] },
    {
      name: 'every bad field at once',
      body: { argv: [1, 2], timeoutMs: 'x', bogus: true },
      paths: ['body.argv[0]', 'body.argv[1]', 'body.timeoutMs', 'body.bogus'],
    },
  ],
  gitFetch: [
    { name: 'empty repos', body: { repos: [] }, paths: ['body.repos'] },
    { name: "repo with '..'", body: { repos: ['../other'] }, paths: ['body.repos[0]'] },
    {
      name: 'checkout ref is an option',
      body: { checkout: { repo: '.', ref: '--upload-pack=x' } },
      paths: ['body.checkout.ref'],
    },
    { name: 'checkout without ref', body: { checkout: { repo: '.' } }, paths: ['body.checkout.ref'] },
    {
      name: 'checkout unknown field',
      body: { checkout: { repo: '.', ref: 'main', force: true } },
      paths: ['body.checkout.force'],
    },
  ],
  resetWorkspace: [
    { name: "refs key with '..'", body: { refs: { 'a/../..': 'main' } }, paths: ['body.refs["a/../.."]'] },
    { name: 'ref with ..', body: { refs: { '.': 'x..y' } }, paths: ['body.refs["."]'] },
    { name: 'refs an array', body: { refs: ['main'] }, paths: ['body.refs'] },
  ],
  resizeCommand: [
    { name: 'no cols', body: { rows: 24 }, paths: ['body.cols'] },
    { name: 'rows 0', body: { rows: 0, cols: 80 }, paths: ['body.rows'] },
    { name: 'cols over 1000', body: { rows: 24, cols: 1001 }, paths: ['body.cols'] },
    { name: 'rows not an integer', body: { rows: 2.5, cols: 80 }, paths: ['body.rows'] },
    { name: 'unknown field', body: { rows: 24, cols: 80, x: 1 }, paths: ['body.x'] },
  ],
  // ---- fork and snapshots ----
  forkWorkspace: [
    { name: 'no count', body: {}, paths: ['body.count'] },
    { name: 'count 0', body: { count: 0 }, paths: ['body.count'] },
    { name: 'count not an integer', body: { count: 1.5 }, paths: ['body.count'] },
    { name: 'count a string', body: { count: '4' }, paths: ['body.count'] },
    { name: 'count far too large', body: { count: 100_000 }, paths: ['body.count'] },
    { name: 'bad label key', body: { count: 1, labels: { 'a b': 'x' } }, paths: ['body.labels["a b"]'] },
    { name: 'ttl too small', body: { count: 1, ttlSeconds: 1 }, paths: ['body.ttlSeconds'] },
  ],
  createSnapshot: [
    { name: 'empty name', body: { name: '' }, paths: ['body.name'] },
    { name: 'name with a newline', body: { name: 'a\nb' }, paths: ['body.name'] },
    { name: 'labels not an object', body: { labels: 'x' }, paths: ['body.labels'] },
  ],
  createSession: [
    { name: 'an unknown shell', body: { shell: 'zsh' }, paths: ['body.shell'] },
    { name: 'empty cwd', body: { cwd: '' }, paths: ['body.cwd'] },
    { name: 'env not an object', body: { env: 'x' }, paths: ['body.env'] },
  ],
  runInSession: [
    { name: 'no command', body: {}, paths: ['body.command'] },
    { name: 'empty command', body: { command: '' }, paths: ['body.command'] },
    { name: 'negative timeout', body: { command: 'true', timeoutMs: -1 }, paths: ['body.timeoutMs'] },
    { name: 'waitMs over the cap', body: { command: 'true', waitMs: 60_000 }, paths: ['body.waitMs'] },
  ],
};

const bodyRoutes = routes.filter((r) => r.body);
const noBodyRoutes = routes.filter((r) => !r.body && !r.rawBody);
const idRoutes = routes.filter((r) => r.path.includes('{id}'));
const cidRoutes = routes.filter((r) => r.path.includes('{cid}'));

describe('dispatch: bad input never reaches the service', () => {
  it('has body cases for every route that takes a body', () => {
    expect(Object.keys(BODY_CASES).sort()).toEqual(bodyRoutes.map((r) => r.operationId).sort());
  });

  for (const route of bodyRoutes) {
    describe(`${route.method} ${route.path}`, () => {
      for (const c of BODY_CASES[route.operationId] ?? []) {
        it(`400 for ${c.name}`, async () => {
          expectRejected(await call(route.method, fill(route.path), { body: c.body }), 400, 'bad_request', c.paths);
        });
      }
      it('400 for an unknown field', async () => {
        expectRejected(await call(route.method, fill(route.path), { body: { bogusField: 1 } }), 400, 'bad_request', [
          'body.bogusField',
        ]);
      });
      it('400 for malformed JSON', async () => {
        expectRejected(await call(route.method, fill(route.path), { body: '{"argv": [' }), 400, 'bad_request');
      });
      it('400 for a body that is not UTF-8', async () => {
        expectRejected(
          await call(route.method, fill(route.path), { body: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]) }),
          400,
          'bad_request',
        );
      });
      it('415 for a non-JSON content type', async () => {
        expectRejected(
          await call(route.method, fill(route.path), {
            body: 'argv=ls',
            contentType: 'application/x-www-form-urlencoded',
          }),
          415,
          'unsupported_media_type',
        );
        expectRejected(
          await call(route.method, fill(route.path), { body: '{}', contentType: 'text/plain' }),
          415,
          'unsupported_media_type',
        );
      });
      it('415 for a body without a content type', async () => {
        expectRejected(
          await call(route.method, fill(route.path), { body: '{}', contentType: null }),
          415,
          'unsupported_media_type',
        );
      });
      it('413 for a body over 1 MiB', async () => {
        const big = JSON.stringify({ command: 'x'.repeat(1024 * 1024) });
        expectRejected(await call(route.method, fill(route.path), { body: big }), 413, 'payload_too_large');
      });
    });
  }

  for (const route of noBodyRoutes) {
    it(`${route.method} ${route.path}: 400 for a body on a route that takes none`, async () => {
      expectRejected(await call(route.method, fill(route.path), { body: { a: 1 } }), 400, 'bad_request');
    });
  }

  for (const route of routes) {
    it(`${route.method} ${route.path}: 400 for an unknown query parameter`, async () => {
      const body = route.operationId === 'runCommand' ? { argv: ['ls'] } : undefined;
      expectRejected(await call(route.method, fill(route.path), { query: { bogus: '1' }, body }), 400, 'bad_request', [
        'query.bogus',
      ]);
    });
  }

  const badIds = [
    'nope',
    'WS-ABCDEFGH',
    'ws-short',
    '..',
    '%2e%2e',
    'ws-abcdefgh%2Fx',
    'ws-abcdefgh%00',
    'cmd-abcdef012345',
  ];
  for (const route of idRoutes) {
    for (const id of badIds) {
      it(`${route.method} ${route.path}: 400 for workspace id '${id}'`, async () => {
        const body = route.body ? (route.operationId === 'runCommand' ? { argv: ['ls'] } : {}) : undefined;
        expectRejected(await call(route.method, fill(route.path, { id }), { body }), 400, 'bad_request', ['params.id']);
      });
    }
  }
  for (const route of cidRoutes) {
    for (const cid of ['cmd-1', 'ws-abcdef012345', 'cmd-ABCDEFGHIJ', '..']) {
      it(`${route.method} ${route.path}: 400 for command id '${cid}'`, async () => {
        expectRejected(await call(route.method, fill(route.path, { cid })), 400, 'bad_request', ['params.cid']);
      });
    }
  }

  it('400 for a malformed percent escape in the path', async () => {
    expectRejected(await call('GET', '/workspaces/%E0%A4%A'), 400, 'bad_request');
  });

  const QUERY_CASES: Array<[Record<string, string>, string]> = [
    [{ limit: 'abc' }, 'query.limit'],
    [{ limit: '1.5' }, 'query.limit'],
    [{ stdoutOffset: '-1' }, 'query.stdoutOffset'],
    [{ stderrOffset: 'x' }, 'query.stderrOffset'],
    [{ waitMs: '99999' }, 'query.waitMs'],
  ];
  for (const [query, path] of QUERY_CASES) {
    it(`GET command: 400 for query ${JSON.stringify(query)}`, async () => {
      expectRejected(await call('GET', `/workspaces/${WS}/commands/${CMD}`, { query }), 400, 'bad_request', [path]);
    });
  }

  it('404 in our error shape for unknown routes', async () => {
    for (const path of [
      '/',
      '/nope',
      '/workspaces/',
      `/workspaces/${WS}/nope`,
      `/workspaces/${WS}/commands/${CMD}/events/x`,
      '/workspaces//commands',
      '/healthz/',
    ]) {
      expectRejected(await call('GET', path), 404, 'not_found');
    }
  });

  const paths = [...new Set(routes.map((r) => r.path))];
  for (const path of paths) {
    const allowed = routes.filter((r) => r.path === path).map((r) => r.method);
    for (const method of ['GET', 'POST', 'DELETE', 'PUT', 'PATCH'].filter((m) => !allowed.includes(m as never))) {
      it(`405 for ${method} ${path}`, async () => {
        const res = await call(method, fill(path));
        expectRejected(res, 405, 'method_not_allowed');
        expect(json(res).headers['allow']?.split(', ').sort()).toEqual([...allowed].sort());
      });
    }
  }
});

describe('dispatch: auth', () => {
  it('401 with WWW-Authenticate without a token, before validating anything', async () => {
    const res = await call('POST', `/workspaces/${WS}/commands`, { body: { bogus: 1 }, authToken: TOKEN });
    expectRejected(res, 401, 'unauthorized');
    expect(json(res).headers['www-authenticate']).toBe('Bearer');
  });
  it('401 for a wrong token, a different scheme or a token prefix', async () => {
    for (const authorization of [
      'Bearer wrong',
      `Basic ${TOKEN}`,
      `Bearer ${TOKEN.slice(0, -1)}`,
      `Bearer ${TOKEN}x`,
      'Bearer',
      '',
    ]) {
      expectRejected(
        await call('GET', '/workspaces', { headers: { authorization }, authToken: TOKEN }),
        401,
        'unauthorized',
      );
    }
  });
  it('accepts the right token (scheme case-insensitive)', async () => {
    const res = json(
      await call('GET', '/workspaces', { headers: { Authorization: `bearer ${TOKEN}` }, authToken: TOKEN }),
    );
    expect(res.status).toBe(200);
    expect(fake.calls.map((c) => c.method)).toEqual(['listWorkspaces']);
  });
  it('leaves /healthz open', async () => {
    expect(json(await call('GET', '/healthz', { authToken: TOKEN }))).toMatchObject({
      status: 200,
      body: { ok: true },
    });
  });
});

describe('dispatch: valid requests', () => {
  it('POST /workspaces → 202 + view (empty body allowed), idempotent repeat → 200', async () => {
    const first = json(await call('POST', '/workspaces'));
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ status: 'provisioning' });
    expect(first.headers['location']).toBe(`/workspaces/${first.body.id}`);
    const a = json(await call('POST', '/workspaces', { body: { idempotencyKey: 'key-1', labels: { team: 'x' } } }));
    const b = json(await call('POST', '/workspaces', { body: { idempotencyKey: 'key-1', labels: { team: 'x' } } }));
    expect([a.status, b.status]).toEqual([202, 200]);
    expect(b.body.id).toBe(a.body.id);
    expect(fake.calls[0]).toEqual({ method: 'createWorkspace', args: [{}] });
  });

  it('POST commands → 201 when it ended within waitMs, 202 while running; defaults applied', async () => {
    const ws = fake.seedWorkspace();
    const done = json(
      await call('POST', `/workspaces/${ws.id}/commands`, { body: { argv: ['echo', 'hi'], waitMs: 1000 } }),
    );
    expect(done.status).toBe(201);
    expect(done.body).toMatchObject({ state: 'exited', exitCode: 0, stdout: { data: 'hi\n' } });
    expect(fake.calls[0]?.args[1]).toEqual({ argv: ['echo', 'hi'], waitMs: 1000, stdinEncoding: 'utf8' });
    const running = json(await call('POST', `/workspaces/${ws.id}/commands`, { body: { command: 'hang' } }));
    expect(running.status).toBe(202);
    expect(running.body.state).toBe('running');
    expect(running.headers['location']).toBe(`/workspaces/${ws.id}/commands/${running.body.id}`);
  });

  it('GET command coerces the query', async () => {
    const ws = fake.seedWorkspace();
    const cmd = json(
      await call('POST', `/workspaces/${ws.id}/commands`, { body: { argv: ['echo', 'hello'], waitMs: 1000 } }),
    ).body;
    const res = json(
      await call('GET', `/workspaces/${ws.id}/commands/${cmd.id}`, { query: { stdoutOffset: '2', limit: '2' } }),
    );
    expect(res.body.stdout).toMatchObject({ data: 'll', offset: 2, nextOffset: 4 });
    expect(fake.calls.at(-1)?.args[2]).toEqual({ stdoutOffset: 2, stderrOffset: 0, limit: 2, waitMs: 0 });
  });

  it('every other route answers with the service result', async () => {
    const ws = fake.seedWorkspace();
    const cmd = json(await call('POST', `/workspaces/${ws.id}/commands`, { body: { argv: ['hang'] } })).body;
    expect(json(await call('GET', '/workspaces')).body.workspaces).toHaveLength(1);
    expect(json(await call('GET', `/workspaces/${ws.id}`)).body.id).toBe(ws.id);
    expect(json(await call('GET', `/workspaces/${ws.id}/commands`)).body.commands).toHaveLength(1);
    expect(json(await call('DELETE', `/workspaces/${ws.id}/commands/${cmd.id}`)).body).toMatchObject({
      state: 'killed',
      signal: 'SIGTERM',
    });
    expect(json(await call('POST', `/workspaces/${ws.id}/git/fetch`)).body.repos).toHaveLength(1);
    expect(
      json(
        await call('POST', `/workspaces/${ws.id}/git/fetch`, {
          body: { repos: ['.'], checkout: { repo: '.', ref: 'main' } },
        }),
      ).body.repos[0].checkedOut,
    ).toBe('main');
    expect(
      json(await call('POST', `/workspaces/${ws.id}/reset`, { body: { refs: { '.': 'v1.2' } } })).body.matches,
    ).toBe(true);
    expect(json(await call('GET', `/workspaces/${ws.id}/changes`)).body.repos[0].status).toHaveLength(1);
    expect(json(await call('GET', '/openapi.json')).body.openapi).toBe('3.1.0');
    const deleted = json(await call('DELETE', `/workspaces/${ws.id}`));
    expect([deleted.status, deleted.body.status]).toEqual([200, 'deleted']);
  });

  it('DELETE answers 202 while deletion is still in progress', async () => {
    const ws = fake.seedWorkspace();
    fake.stub('deleteWorkspace', async () => ({ ...ws, status: 'deleting' }));
    expect(json(await call('DELETE', `/workspaces/${ws.id}`)).status).toBe(202);
  });

  it('SSE routes return a stream of typed events, 404 first for unknown ids', async () => {
    const ws = fake.seedWorkspace();
    const cmd = json(
      await call('POST', `/workspaces/${ws.id}/commands`, { body: { argv: ['echo', 'x'], waitMs: 1000 } }),
    ).body;
    const res = await call('GET', `/workspaces/${ws.id}/commands/${cmd.id}/events`);
    if (!('stream' in res)) throw new Error('expected a stream');
    const events = [];
    for await (const e of res.stream) events.push(e);
    expect(events.map((e) => e.event)).toEqual(['output', 'end']);
    expect(events[1]?.data).toMatchObject({ type: 'end', command: { id: cmd.id, exitCode: 0 } });
    expect(json(await call('GET', `/workspaces/ws-000000000000/events`)).status).toBe(404);
  });

  it('an error after the stream started becomes an error event without internals', async () => {
    const ws = fake.seedWorkspace();
    fake.stub('watchWorkspace', async function* () {
      yield { type: 'step', at: 'now', step: 'clone', message: 'x' };
      throw new Error(CRASH_MESSAGE);
    });
    const res = await call('GET', `/workspaces/${ws.id}/events`);
    if (!('stream' in res)) throw new Error('expected a stream');
    const events = [];
    for await (const e of res.stream) events.push(e);
    expect(events.map((e) => e.event)).toEqual(['step', 'error']);
    expect(events[1]?.data).toEqual({ error: { code: 'internal', message: 'internal error' } });
  });
});

describe('dispatch: error mapping', () => {
  const cases: Array<[string, unknown, number, string]> = [
    ['conflict', new ConflictError('workspace is resetting'), 409, 'conflict'],
    [
      'backend unavailable',
      new BackendUnavailableError('docker daemon not reachable', new Error('ECONNREFUSED')),
      503,
      'backend_unavailable',
    ],
    // A failed step's message is shown (messages are scrubbed of secrets where they are made).
    [
      'step failed',
      new StepFailedError('clone', 'authentication failed for https://git.example/app.git', { exitCode: 128 }),
      502,
      'step_failed',
    ],
    ['plain Error', new Error(CRASH_MESSAGE), 500, 'internal'],
    ['a thrown string', 'oops', 500, 'internal'],
  ];
  for (const [name, error, status, code] of cases) {
    it(`${name} → ${status}`, async () => {
      fake.failNext('listWorkspaces', error);
      const res = json(await call('GET', '/workspaces'));
      expect({ status: res.status, code: res.body.error.code }).toEqual({ status, code });
      if (status === 500) expect(res.body).toEqual({ error: { code: 'internal', message: 'internal error' } });
      else expect(res.body.error.message).toBe((error as Error).message);
    });
  }

  it('unknown workspace → 404 not_found', async () => {
    expect(json(await call('GET', `/workspaces/${WS}`))).toMatchObject({
      status: 404,
      body: { error: { code: 'not_found' } },
    });
  });
});
