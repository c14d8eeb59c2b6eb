import fs from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { routes } from '../../shared/api/routes.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';

// Every route of the API, fuzzed over real HTTP against a real provider (local backend, embedded state
// store): random and half-valid path parameters, queries, bodies, methods and content types. The
// provider must answer every one of them with an honest status — never a 5xx, never a stack trace.
// FUZZ_RUNS (default 10,000, the figure the hostile review reached) and FUZZ_SEED replay a run.

const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

let wsp: TestProvider;
let realId: string;
let realCid: string;

beforeAll(async () => {
  wsp = await startTestProvider({ setup: { script: 'echo ready > state.txt' }, workspace: { network: 'none' } });
  realId = (await wsp.setup()).id;
  realCid = (await wsp.exec(realId, 'echo hi')).id;
}, 60_000);

afterAll(async () => {
  await wsp?.close();
  if (wsp) fs.rmSync(wsp.dataDir, { recursive: true, force: true });
});

/** Strings an attacker tries in a path segment or a query value. */
const nasty = fc.oneof(
  fc.string(),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.constantFrom(
    '',
    '..',
    '.',
    '%2e%2e',
    '%00',
    '\u0000',
    '/',
    '//',
    '%2F',
    `ws-${'0'.repeat(24)}`,
    'null',
    'undefined',
    '-1',
    '1e309',
    'NaN',
    '0x10',
    ' 1',
    '[]',
    '{}',
  ),
  fc.string({ minLength: 300, maxLength: 3000 }),
  fc.integer().map(String),
);

/** Path parameters: mostly the live workspace/command (reaching deep logic), sometimes junk. */
const idParam = fc.oneof({ weight: 3, arbitrary: fc.constant('REAL') }, { weight: 2, arbitrary: nasty });
const cidParam = fc.oneof({ weight: 3, arbitrary: fc.constant('REAL') }, { weight: 2, arbitrary: nasty });

/** Bodies: arbitrary JSON, objects with the API's field names and wrong-typed values, or raw bytes. */
const fieldNames = [
  'refs',
  'env',
  'labels',
  'ttlSeconds',
  'idempotencyKey',
  'argv',
  'command',
  'cwd',
  'stdin',
  'stdinEncoding',
  'timeoutMs',
  'waitMs',
  'repos',
  'checkout',
  'mode',
  'ref',
  'repo',
];
const smallJson = fc.jsonValue({ maxDepth: 3 });
const body = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.dictionary(fc.constantFrom(...fieldNames), fc.oneof(smallJson, nasty)).map((o) => JSON.stringify(o)),
  },
  { weight: 2, arbitrary: smallJson.map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: fc.string() },
  { weight: 1, arbitrary: fc.constant(undefined) },
);
const query = fc.dictionary(
  fc.constantFrom('waitMs', 'stdoutOffset', 'stderrOffset', 'limit', 'x', '__proto__', 'constructor'),
  nasty,
  { maxKeys: 4 },
);
const contentType = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'text/plain',
  'application/x-www-form-urlencoded',
  '',
  'application/json; charset=latin1',
);

const request = fc.record({
  route: fc.constantFrom(...routes),
  method: fc.oneof({ weight: 5, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom(...METHODS) }),
  id: idParam,
  cid: cidParam,
  body,
  query,
  contentType,
});

function buildPath(template: string, id: string, cid: string): string {
  return template
    .replace('{id}', id === 'REAL' ? realId : encodeURIComponent(id))
    .replace('{cid}', cid === 'REAL' ? realCid : encodeURIComponent(cid));
}

/** A workspace-creating body gets one fixed idempotency key: the fuzz creates at most one more workspace. */
function boundCreates(path: string, method: string, raw: string | undefined): string | undefined {
  if (path !== '/workspaces' || method !== 'POST' || raw === undefined) return raw;
  try {
    const parsed = JSON.parse(raw);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed))
      return JSON.stringify({ ...parsed, idempotencyKey: 'fuzz-bounded' });
  } catch {
    // not JSON: sent as is
  }
  return raw;
}

describe('fuzzing every route over HTTP', () => {
  it(`${RUNS} requests: no 5xx, every error the JSON error shape, no stack trace (seed ${SEED})`, async () => {
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const method = r.method || r.route.method;
        const path = buildPath(r.route.path, r.id, r.cid);
        const qs = new URLSearchParams(r.query).toString();
        const payload = method === 'GET' || method === 'HEAD' ? undefined : boundCreates(r.route.path, method, r.body);
        const controller = new AbortController();
        const timer = setTimeout(() => controller.abort(), 30_000);
        try {
          const res = await fetch(`${wsp.url}${path}${qs ? `?${qs}` : ''}`, {
            method,
            headers: {
              authorization: `Bearer ${wsp.token}`,
              ...(r.contentType ? { 'content-type': r.contentType } : {}),
            },
            ...(payload !== undefined ? { body: payload } : {}),
            signal: controller.signal,
          });
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          // An event stream that opened is fine; do not wait for it to end.
          const text = res.headers.get('content-type')?.startsWith('text/event-stream') ? '' : await res.text();
          if (res.status >= 500) throw new Error(`${method} ${path}?${qs} → ${res.status}: ${text.slice(0, 500)}`);
          expect(text).not.toMatch(/\n\s+at .+:\d+:\d+/);
          if (res.status >= 400 && method !== 'HEAD') expect(JSON.parse(text)).toHaveProperty('error.code');
        } finally {
          clearTimeout(timer);
          controller.abort();
        }
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    );
    // Not vacuous: the fuzz reached both successes and refusals.
    const ok = [...statuses].filter(([s]) => s < 300).reduce((n, [, c]) => n + c, 0);
    const refused = [...statuses].filter(([s]) => s >= 400).reduce((n, [, c]) => n + c, 0);
    console.log(`fuzz: ${RUNS} requests, seed ${SEED}, statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
    expect(ok).toBeGreaterThan(RUNS / 50);
    expect(refused).toBeGreaterThan(RUNS / 10);
  }, 600_000);
});
