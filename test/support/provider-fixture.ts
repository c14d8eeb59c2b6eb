import { unmountAll } from '../../shared/backends/local/overlay/index.js';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ConfigInput } from '../../shared/config/schema.js';
import type { WorkspaceBackend } from '../../shared/contract/backend.js';
import { parseConfig } from '../../shared/config/load.js';
import { createLogger, type Logger } from '../../shared/log.js';
import { startHttpServer } from '../../functions/server/http-server.js';
import { composeProvider, type Provider } from '../../functions/server/provider.js';

export interface ApiAnswer<T = any> {
  status: number;
  body: T;
  text: string;
}

export interface TestProvider {
  url: string;
  token: string;
  dataDir: string;
  provider: Provider;
  /** Every log line the provider wrote (for the canary scan). */
  logs: string[];
  /** Every response body the tests received (for the canary scan). */
  responses: string[];
  api<T = any>(method: string, route: string, body?: unknown, headers?: Record<string, string>): Promise<ApiAnswer<T>>;
  /** POST /workspaces and poll until it settles; throws with the failure if it did not become ready. */
  setup(body?: Record<string, unknown>): Promise<any>;
  /** Run a shell command and wait for its end (long-polls). */
  exec(id: string, command: string, extra?: Record<string, unknown>): Promise<any>;
  close(): Promise<void>;
}

export interface TestProviderOptions {
  dataDir?: string;
  /** A backend to use instead of the one `mode` selects, given the provider's logger (so its lines land in `logs`). */
  backend?: (log: Logger) => WorkspaceBackend;
  /** How often `setup` looks at a provisioning workspace (default 100 ms; the benches use 10). */
  pollMs?: number;
}

/** A real provider (backend per `mode`, embedded dynalite, real HTTP on 127.0.0.1) in this process. */
export async function startTestProvider(config: ConfigInput, options: TestProviderOptions = {}): Promise<TestProvider> {
  const dataDir = options.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-it-'));
  const token = randomBytes(18).toString('hex');
  const logs: string[] = [];
  const responses: string[] = [];
  const log = createLogger({ svc: 'wsp-test' }, (line) => logs.push(line));
  const parsed = parseConfig({
    ...config,
    dataDir,
    listen: { ...(config.listen ?? {}), host: '127.0.0.1', port: 0 },
    auth: { token },
  });
  const backend = options.backend?.(log.child({ part: 'backend' }));
  const provider = await composeProvider(
    { config: parsed, baseDir: process.cwd(), sources: [] },
    log,
    backend ? { backend } : {},
  );
  const server = await startHttpServer({
    service: provider.service,
    host: '127.0.0.1',
    port: 0,
    authToken: token,
    log,
    metrics: provider.scrapeMetrics,
    maxBodyBytes: parsed.listen.maxBodyBytes,
    maxRawBodyBytes: parsed.files.maxBytes,
  });

  const api = async <T = any>(
    method: string,
    route: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<ApiAnswer<T>> => {
    const res = await fetch(server.url + route, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    responses.push(text);
    let parsedBody: any;
    try {
      parsedBody = text ? JSON.parse(text) : undefined;
    } catch {
      parsedBody = text;
    }
    return { status: res.status, body: parsedBody as T, text };
  };

  const waitSettled = async (id: string): Promise<any> => {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const r = await api('GET', `/workspaces/${id}`);
      if (r.status !== 200) throw new Error(`GET workspace ${id}: ${r.status} ${r.text}`);
      if (r.body.status !== 'provisioning') return r.body;
      if (Date.now() > deadline) throw new Error(`workspace ${id} still provisioning`);
      await new Promise((res) => setTimeout(res, options.pollMs ?? 100));
    }
  };

  return {
    url: server.url,
    token,
    dataDir,
    provider,
    logs,
    responses,
    api,
    async setup(body = {}) {
      const created = await api('POST', '/workspaces', body);
      if (created.status !== 202 && created.status !== 200) throw new Error(`setup: ${created.status} ${created.text}`);
      const ws = await waitSettled(created.body.id);
      if (ws.status !== 'ready')
        throw new Error(`setup ended ${ws.status}: ${JSON.stringify(ws.failure)} steps=${JSON.stringify(ws.steps)}`);
      return ws;
    },
    async exec(id, command, extra = {}) {
      let r = await api('POST', `/workspaces/${id}/commands`, { command, waitMs: 20_000, ...extra });
      if (r.status >= 400) throw new Error(`exec: ${r.status} ${r.text}`);
      while (r.body.state === 'running' && extra.waitMs === undefined) {
        r = await api('GET', `/workspaces/${id}/commands/${r.body.id}?waitMs=20000`);
      }
      return r.body;
    },
    async close() {
      await server.close();
      await provider.close();
      // Overlay homes stay mounted across a provider's restart; a test's data dir is removed after
      // close, so they are detached here (a provider started again on it mounts them again).
      await unmountAll(dataDir);
    },
  };
}
