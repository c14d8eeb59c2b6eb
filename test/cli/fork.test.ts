import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpServer, type StartedHttpServer } from '../../functions/server/http-server.js';
import { silentLogger } from '../../shared/log.js';
import { FakeWorkspaceService } from '../support/fake-service.js';

// `wsp fork`, `wsp snapshot …` and `wsp create --from-snapshot` as a user runs them: a child process
// against the real HTTP server, backed by the fake service (the real fork is test/integration/fork.test.ts).

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'functions', 'cli', 'wsp.ts');
const TSX = import.meta.resolve('tsx');
const TOKEN = 'cli-fork-token-5d1e';

let fake: FakeWorkspaceService;
let server: StartedHttpServer;
let tmp: string;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-cli-fork-'));
  fake = new FakeWorkspaceService();
  server = await startHttpServer({ service: fake, authToken: TOKEN, log: silentLogger });
});
afterAll(async () => {
  await server?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function wsp(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('WSP_')) env[k] = v;
  Object.assign(env, { WSP_URL: server.url, WSP_TOKEN: TOKEN });
  const child = spawn(process.execPath, ['--import', TSX, CLI, ...args], { cwd: tmp, env });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  child.stdin.end();
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('wsp fork and wsp snapshot', () => {
  it('fork -n 3 prints the three new workspaces once ready, with their labels', async () => {
    const ws = fake.seedWorkspace();
    const r = await wsp(['fork', ws.id, '-n', '3', '--label', 'rollout=a']);
    expect(r.code, r.stderr).toBe(0);
    const ids = r.stdout.trim().split('\n');
    expect(ids).toHaveLength(3);
    for (const id of ids) {
      expect(id).toMatch(/^ws-[0-9a-f]+$/);
      expect(await fake.getWorkspace(id)).toMatchObject({
        status: 'ready',
        forkedFrom: ws.id,
        labels: { rollout: 'a' },
      });
    }
    expect(fake.calls.find((c) => c.method === 'fork')?.args.slice(0, 2)).toEqual([
      ws.id,
      { count: 3, labels: { rollout: 'a' } },
    ]);
  });

  it('snapshot create | ls | show | rm, and create --from-snapshot', async () => {
    const ws = fake.seedWorkspace();
    const made = await wsp(['snapshot', 'create', ws.id, '--name', 'step 7']);
    expect(made.code, made.stderr).toBe(0);
    const sid = made.stdout.trim();
    expect(sid).toMatch(/^snap-[0-9a-f]+$/);
    const ls = await wsp(['snapshot', 'ls']);
    expect(ls.stdout).toContain(`${sid}  ready`);
    expect(ls.stdout).toContain('"step 7"');
    const shown = await wsp(['snapshot', 'show', sid, '--json']);
    expect(JSON.parse(shown.stdout)).toMatchObject({ id: sid, kind: 'user', sourceWorkspaceId: ws.id });
    const created = await wsp(['create', '--from-snapshot', sid, '--no-wait']);
    expect(created.code, created.stderr).toBe(0);
    expect(fake.calls.find((c) => c.method === 'createWorkspace')?.args[0]).toEqual({ fromSnapshot: sid });
    expect((await wsp(['snapshot', 'rm', sid])).stdout).toBe(`${sid} deleted\n`);
    const gone = await wsp(['snapshot', 'show', sid]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('not_found');
  });

  it('usage errors exit 2; an API refusal (count over the cap) exits 1 with the reason', async () => {
    const ws = fake.seedWorkspace();
    expect((await wsp(['fork'])).code).toBe(2);
    expect((await wsp(['fork', ws.id, '-n', 'many'])).code).toBe(2);
    expect((await wsp(['snapshot', 'frobnicate'])).code).toBe(2);
    expect((await wsp(['snapshot', 'rm'])).code).toBe(2);
    const over = await wsp(['fork', ws.id, '-n', '17']);
    expect(over.code).toBe(1);
    expect(over.stderr).toContain('count must be between 1 and 16');
  });
});
