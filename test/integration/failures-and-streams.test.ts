import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUpstreamRepo } from '../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../support/git-server.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';

// Failures are reported honestly (step + message, no secret), leave nothing behind; progress and
// output stream as server-sent events from the real service.
const TOKEN = `fail-${randomBytes(10).toString('hex')}`;
let git: GitServer;
let root: string;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-fail-'));
  git = await startGitServer({ token: TOKEN, root });
  createUpstreamRepo(root, 'app', { 'a.txt': 'a\n' });
  process.env.WSP_FAIL_GOOD = TOKEN;
  process.env.WSP_FAIL_BAD = 'not-the-token-0000';
});
afterAll(async () => {
  await git?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

async function settle(wsp: TestProvider, id: string): Promise<any> {
  for (;;) {
    const ws = (await wsp.api('GET', `/workspaces/${id}`)).body;
    if (ws.status !== 'provisioning') return ws;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Read an SSE stream to its end (or until `stop` says so); returns the events. */
async function readEvents(url: string, token: string): Promise<{ event: string; data: any }[]> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' } });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/event-stream');
  const text = await res.text(); // the server ends the stream when the workspace settles / command ends
  return text
    .split('\n\n')
    .filter((b) => b.includes('data:'))
    .map((block) => ({
      event: /^event: (.*)$/m.exec(block)?.[1] ?? 'message',
      data: JSON.parse(
        block
          .split('\n')
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).trimStart())
          .join('\n'),
      ),
    }));
}

describe('failures', () => {
  it('a wrong token fails the setup at the fetch step, without the token anywhere in the answer', async () => {
    const wsp = await startTestProvider({
      repositories: [{ url: git.url('app'), path: 'app', credential: 'env:WSP_FAIL_BAD' }],
    });
    try {
      const created = await wsp.api('POST', '/workspaces', {});
      const ws = await settle(wsp, created.body.id);
      expect(ws.status).toBe('failed');
      expect(ws.failure).toEqual({ step: 'git fetch', message: expect.stringMatching(/authentication failed/) });
      expect(JSON.stringify(ws)).not.toContain('not-the-token-0000');
      expect(wsp.logs.join('\n')).not.toContain('not-the-token-0000');
      expect((await wsp.api('POST', `/workspaces/${ws.id}/commands`, { command: 'true' })).status).toBe(409);
      expect((await wsp.api('DELETE', `/workspaces/${ws.id}`)).body.status).toBe('deleted');
    } finally {
      await wsp.close();
    }
  });

  it('a failing setup script fails the workspace with its exit code and output tail, and leaves nothing behind', async () => {
    const wsp = await startTestProvider({
      repositories: [{ url: git.url('app'), path: 'app', credential: 'env:WSP_FAIL_GOOD' }],
      setup: { script: 'echo preparing; echo "npm ERR! missing thing" >&2; exit 3' },
    });
    try {
      const created = await wsp.api('POST', '/workspaces', {});
      const ws = await settle(wsp, created.body.id);
      expect(ws.status).toBe('failed');
      expect(ws.failure.step).toBe('setup');
      expect(ws.failure.message).toMatch(/exit code 3.*npm ERR! missing thing/s);
      expect(fs.existsSync(path.join(wsp.dataDir, 'local', 'workspaces', ws.id))).toBe(false);
      const setupRun = (await wsp.api('GET', `/workspaces/${ws.id}/commands/${ws.setupCommandId}`)).body;
      expect(setupRun).toMatchObject({ state: 'exited', exitCode: 3 });
      const entries = await wsp.provider.deps.state.listCacheEntries();
      expect(entries.every((e) => e.status !== 'ready')).toBe(true);
    } finally {
      await wsp.close();
    }
  });
});

describe('server-sent events from the real service', () => {
  it("streams provisioning steps, setup output and the final status; then a command's output and end", async () => {
    const wsp = await startTestProvider({
      repositories: [{ url: git.url('app'), path: 'app', credential: 'env:WSP_FAIL_GOOD' }],
      setup: { script: 'for i in 1 2 3; do echo "setup line $i"; sleep 0.1; done' },
    });
    try {
      const created = await wsp.api('POST', '/workspaces', {});
      const events = await readEvents(`${wsp.url}/workspaces/${created.body.id}/events`, wsp.token);
      const steps = events.filter((e) => e.event === 'step').map((e) => e.data.step);
      expect(steps).toEqual(expect.arrayContaining(['resolve', 'cache', 'clone', 'setup', 'baseline', 'ready']));
      const output = events
        .filter((e) => e.event === 'output')
        .map((e) => e.data.data)
        .join('');
      expect(output).toBe('setup line 1\nsetup line 2\nsetup line 3\n');
      expect(events.at(-1)).toMatchObject({ event: 'status', data: { status: 'ready' } });

      const cmd = await wsp.api('POST', `/workspaces/${created.body.id}/commands`, {
        command: 'echo one; sleep 0.3; echo two >&2; exit 4',
        waitMs: 0,
      });
      const cmdEvents = await readEvents(
        `${wsp.url}/workspaces/${created.body.id}/commands/${cmd.body.id}/events`,
        wsp.token,
      );
      const out = cmdEvents.filter((e) => e.event === 'output');
      expect(
        out
          .filter((e) => e.data.stream === 'stdout')
          .map((e) => e.data.data)
          .join(''),
      ).toBe('one\n');
      expect(
        out
          .filter((e) => e.data.stream === 'stderr')
          .map((e) => e.data.data)
          .join(''),
      ).toBe('two\n');
      expect(cmdEvents.at(-1)).toMatchObject({ event: 'end', data: { command: { state: 'exited', exitCode: 4 } } });
    } finally {
      await wsp.close();
    }
  });
});
