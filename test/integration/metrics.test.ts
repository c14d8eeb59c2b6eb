import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitFiles, createUpstreamRepo, type UpstreamRepo } from '../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../support/git-server.js';
import { parsePrometheusText } from '../support/prometheus-text.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';

// GET /metrics on the local server: a real provider (local backend, embedded dynalite, a
// token-checking git server on 127.0.0.1) driven through a known sequence — cold create, commands
// ending three ways, a reset, a warm create, a create whose setup fails — then the Prometheus text is
// parsed and every counter checked exactly. Tests run in order on one provider.

const CANARY = `wsp-canary-${randomBytes(12).toString('hex')}`;
// Fails once the repository has the marker, so a later commit makes a failing setup on purpose.
const SETUP = 'if [ -f app/fail-setup ]; then echo "setup refuses" >&2; exit 3; fi; echo ok > ~/setup-done';

let git: GitServer;
let app: UpstreamRepo;
let wsp: TestProvider;
let hostRoot: string;

beforeAll(async () => {
  process.env.WSP_METRICS_IT_TOKEN = CANARY;
  hostRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-metrics-git-'));
  git = await startGitServer({ token: CANARY, root: hostRoot });
  app = createUpstreamRepo(hostRoot, 'app', { 'README.md': '# app\n', 'deps.lock': 'left-pad@1\n' });
  wsp = await startTestProvider({
    repositories: [
      { url: git.url('app'), path: 'app', credential: 'env:WSP_METRICS_IT_TOKEN', cacheKeyFiles: ['deps.lock'] },
    ],
    setup: { script: SETUP },
    workspace: { network: 'none' },
  });
});

afterAll(async () => {
  await wsp?.close();
  await git?.close();
  fs.rmSync(hostRoot, { recursive: true, force: true });
  delete process.env.WSP_METRICS_IT_TOKEN;
});

/** GET /metrics with the given Authorization (default: the provider's token). */
async function scrape(authorization: string | null = `Bearer ${wsp.token}`): Promise<Response> {
  return fetch(`${wsp.url}/metrics`, { headers: authorization === null ? {} : { authorization } });
}

/** The samples once every command end the service observed is written (ends are recorded off the answer's path). */
async function samples(): Promise<Map<string, number>> {
  await wsp.provider.service.drain();
  const res = await scrape();
  expect(res.status).toBe(200);
  const text = await res.text();
  wsp.responses.push(text);
  return parsePrometheusText(text);
}

async function settle(id: string): Promise<any> {
  for (;;) {
    const ws = (await wsp.api('GET', `/workspaces/${id}`)).body;
    if (ws.status !== 'provisioning' && ws.status !== 'resetting') return ws;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('GET /metrics (local server, Prometheus text)', () => {
  it('needs the bearer token: 401 in the API error shape without it or with a wrong one', async () => {
    for (const authorization of [null, 'Bearer not-the-token', `Basic ${wsp.token}`]) {
      const res = await scrape(authorization);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
      expect(await res.json()).toEqual({ error: { code: 'unauthorized', message: 'missing or invalid bearer token' } });
    }
    const wrongMethod = await fetch(`${wsp.url}/metrics`, {
      method: 'POST',
      headers: { authorization: `Bearer ${wsp.token}` },
    });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('GET');
  });

  it('answers Prometheus text 0.0.4 with every counter at zero before anything happened', async () => {
    const res = await scrape();
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await res.text();
    expect(text).toContain('# TYPE wsp_workspaces_created_total counter');
    expect(text).toContain('# TYPE wsp_setup_duration_seconds histogram');
    const m = parsePrometheusText(text);
    for (const name of [
      'wsp_workspaces_created_total',
      'wsp_cache_hits_total',
      'wsp_cache_misses_total',
      'wsp_commands_started_total',
      'wsp_resets_total',
      'wsp_setup_duration_seconds_count',
    ])
      expect(m.get(name), name).toBe(0);
  });

  it('counts a cold create, commands by final state and a reset', async () => {
    const ws = await wsp.setup();
    expect(ws.cache).toMatchObject({ hit: false });
    expect(await wsp.exec(ws.id, 'true')).toMatchObject({ state: 'exited', exitCode: 0 });
    expect(await wsp.exec(ws.id, 'exit 3')).toMatchObject({ state: 'exited', exitCode: 3 });
    expect(await wsp.exec(ws.id, 'sleep 300', { timeoutMs: 500 })).toMatchObject({ state: 'killed' });
    // Reading a command again does not count its end again.
    const list = await wsp.api('GET', `/workspaces/${ws.id}/commands`);
    expect(list.body.commands).toHaveLength(3);
    const reset = await wsp.api('POST', `/workspaces/${ws.id}/reset`, {});
    expect([200, 202]).toContain(reset.status);
    expect((await settle(ws.id)).status).toBe('ready');

    const m = await samples();
    expect(m.get('wsp_workspaces_created_total')).toBe(1);
    expect(m.get('wsp_cache_misses_total')).toBe(1);
    expect(m.get('wsp_cache_hits_total')).toBe(0);
    expect(m.get('wsp_setup_duration_seconds_count')).toBe(1);
    expect(m.get('wsp_setup_duration_seconds_sum')).toBeGreaterThan(0);
    expect(m.get('wsp_commands_started_total')).toBe(3);
    expect(m.get('wsp_commands_finished_total{state="exited"}')).toBe(2);
    expect(m.get('wsp_commands_finished_total{state="killed"}')).toBe(1);
    expect(m.get('wsp_commands_finished_total{state="lost"}')).toBeUndefined();
    expect(m.get('wsp_resets_total')).toBe(1);
    expect([...m.keys()].filter((k) => k.startsWith('wsp_workspace_failures_total'))).toEqual([]);
  });

  it('counts a warm create as a cache hit', async () => {
    const ws = await wsp.setup();
    expect(ws.cache).toMatchObject({ hit: true });
    const m = await samples();
    expect(m.get('wsp_workspaces_created_total')).toBe(2);
    expect(m.get('wsp_cache_hits_total')).toBe(1);
    expect(m.get('wsp_cache_misses_total')).toBe(1);
    expect(m.get('wsp_setup_duration_seconds_count')).toBe(2);
  });

  it('counts a failed setup under its step', async () => {
    // A new cacheKeyFiles content: a miss, setup re-run — and it fails on the marker.
    commitFiles(app, { 'deps.lock': 'left-pad@2\n', 'fail-setup': 'yes\n' }, 'break setup');
    const created = await wsp.api('POST', '/workspaces', {});
    expect(created.status).toBe(202);
    const ws = await settle(created.body.id);
    expect(ws.status).toBe('failed');
    expect(ws.failure.step).toBe('setup');
    const m = await samples();
    expect(m.get('wsp_workspaces_created_total')).toBe(3);
    expect(m.get('wsp_cache_misses_total')).toBe(2);
    expect(m.get('wsp_workspace_failures_total{step="setup"}')).toBe(1);
    expect([...m.keys()].filter((k) => k.startsWith('wsp_workspace_failures_total'))).toEqual([
      'wsp_workspace_failures_total{step="setup"}',
    ]);
    // Setup duration is accepted → ready: a failed setup is not one.
    expect(m.get('wsp_setup_duration_seconds_count')).toBe(2);
  });

  it('the git token appears in no metric, log line or answer', () => {
    const leaks = [...wsp.responses, ...wsp.logs].filter((line) => line.includes(CANARY));
    expect(leaks).toEqual([]);
    expect(wsp.responses.some((r) => r.includes('wsp_workspaces_created_total 3'))).toBe(true);
  });
});
