import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';

// Invariant 6 against the real service over HTTP: every bad request gets a 4xx in our error shape,
// and nothing already stored changes. Also: a local-directory source arrives whole (seed parity).
let wsp: TestProvider;
let source: string;
let ws: any;

beforeAll(async () => {
  source = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-local-src-'));
  const g = (...args: string[]) =>
    execFileSync('git', ['-C', source, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args]);
  g('init', '-q', '-b', 'main');
  fs.writeFileSync(path.join(source, 'tracked.txt'), 'committed\n');
  fs.writeFileSync(path.join(source, 'run.sh'), '#!/bin/sh\necho run\n', { mode: 0o755 });
  g('add', '.');
  g('commit', '-q', '-m', 'init');
  fs.writeFileSync(path.join(source, 'tracked.txt'), 'committed\nuncommitted change\n');
  fs.writeFileSync(path.join(source, 'untracked.txt'), 'untracked\n');
  fs.writeFileSync(path.join(source, '.env.local'), 'DOT=1\n');
  fs.symlinkSync('tracked.txt', path.join(source, 'link'));
  wsp = await startTestProvider({ repositories: [{ localPath: source, path: 'proj' }], setup: { script: 'echo ok' } });
  ws = await wsp.setup();
});

afterAll(async () => {
  await wsp?.close();
  fs.rmSync(source, { recursive: true, force: true });
});

describe('a local-directory source', () => {
  it('arrives whole: uncommitted changes, untracked files, dotfiles, symlinks, modes and .git, owned by the workspace user', async () => {
    const r = await wsp.exec(
      ws.id,
      [
        'cd proj',
        'cat tracked.txt untracked.txt .env.local',
        'readlink link',
        'test -x run.sh && echo exec-ok',
        'git status --porcelain',
        'find . -not -user "$(id -u)" | wc -l',
      ].join('; '),
    );
    expect(r.exitCode).toBe(0);
    const host = execFileSync('git', ['-C', source, 'status', '--porcelain'], { encoding: 'utf8' });
    expect(r.stdout.data).toBe(`committed\nuncommitted change\nuntracked\nDOT=1\ntracked.txt\nexec-ok\n${host}0\n`);
  });
});

describe('bad input changes nothing', () => {
  const big = 'x'.repeat(13 * 1024 * 1024);
  const cases: Array<[string, string, () => string, unknown, number, string?]> = [
    ['create: malformed JSON', 'POST', () => '/workspaces', '{"refs":', 400],
    ['create: wrong type', 'POST', () => '/workspaces', { labels: 'x' }, 400],
    ['create: unknown field', 'POST', () => '/workspaces', { image: 'evil' }, 400],
    ['create: refs for an unknown repo', 'POST', () => '/workspaces', { refs: { nope: 'main' } }, 400],
    ['create: traversal in refs key', 'POST', () => '/workspaces', { refs: { '../x': 'main' } }, 400],
    ['create: option-like ref', 'POST', () => '/workspaces', { refs: { proj: '--upload-pack=x' } }, 400],
    ['create: oversized body', 'POST', () => '/workspaces', { labels: { a: big } }, 413],
    [
      'exec: cwd escapes upward',
      'POST',
      () => `/workspaces/${ws.id}/commands`,
      { command: 'pwd', cwd: '../../..' },
      400,
      'body.cwd',
    ],
    [
      'exec: absolute cwd outside',
      'POST',
      () => `/workspaces/${ws.id}/commands`,
      { command: 'pwd', cwd: '/etc' },
      400,
      'body.cwd',
    ],
    ['exec: neither argv nor command', 'POST', () => `/workspaces/${ws.id}/commands`, { cwd: '.' }, 400],
    [
      'exec: both argv and command',
      'POST',
      () => `/workspaces/${ws.id}/commands`,
      { argv: ['true'], command: 'true' },
      400,
    ],
    ['exec: empty argv', 'POST', () => `/workspaces/${ws.id}/commands`, { argv: [] }, 400],
    ['exec: negative timeout', 'POST', () => `/workspaces/${ws.id}/commands`, { command: 'true', timeoutMs: -1 }, 400],
    [
      'exec: waitMs above the API cap',
      'POST',
      () => `/workspaces/${ws.id}/commands`,
      { command: 'true', waitMs: 60_000 },
      400,
    ],
    [
      'exec: bad env name',
      'POST',
      () => `/workspaces/${ws.id}/commands`,
      { command: 'true', env: { 'A=B': 'x' } },
      400,
    ],
    [
      'exec: unknown workspace',
      'POST',
      () => '/workspaces/ws-000000000000000000000000/commands',
      { command: 'true' },
      404,
    ],
    ['read: malformed workspace id', 'GET', () => '/workspaces/..%2F..%2Fetc', undefined, 400],
    [
      'read: unknown command',
      'GET',
      () => `/workspaces/${ws.id}/commands/cmd-000000000000000000000000`,
      undefined,
      404,
    ],
    [
      'read: negative offset',
      'GET',
      () => `/workspaces/${ws.id}/commands/cmd-000000000000000000000000?stdoutOffset=-5`,
      undefined,
      400,
    ],
    ['fetch: traversal in repos', 'POST', () => `/workspaces/${ws.id}/git/fetch`, { repos: ['../x'] }, 400],
    ['fetch: unknown repo', 'POST', () => `/workspaces/${ws.id}/git/fetch`, { repos: ['nope'] }, 400],
    ['reset: unknown repo in refs', 'POST', () => `/workspaces/${ws.id}/reset`, { refs: { nope: 'main' } }, 400],
    ['reset: wrong type', 'POST', () => `/workspaces/${ws.id}/reset`, { refs: 'main' }, 400],
    ['delete: unknown workspace', 'DELETE', () => '/workspaces/ws-000000000000000000000000', undefined, 404],
    ['unknown route', 'GET', () => '/nope', undefined, 404],
  ];

  it.each(cases)('%s → 4xx in the error shape', async (_name, method, route, body, status, field) => {
    const before = (await wsp.api('GET', `/workspaces/${ws.id}`)).body;
    const commandsBefore = (await wsp.api('GET', `/workspaces/${ws.id}/commands`)).body;
    const r = await wsp.api(method, route(), body);
    expect(r.status).toBe(status);
    expect(r.body).toEqual({
      error: expect.objectContaining({ code: expect.any(String), message: expect.any(String) }),
    });
    expect(r.text).not.toMatch(/\bat .*\.(ts|js):\d+/); // no stack trace
    if (field) expect(JSON.stringify(r.body.error.details)).toContain(field);
    expect((await wsp.api('GET', `/workspaces/${ws.id}`)).body).toEqual(before);
    expect((await wsp.api('GET', `/workspaces/${ws.id}/commands`)).body).toEqual(commandsBefore);
  });

  it('refuses requests without the bearer token', async () => {
    const res = await fetch(`${wsp.url}/workspaces`);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: expect.objectContaining({ code: 'unauthorized' }) });
  });
});

describe('isolation through the API', () => {
  it('a command in workspace A cannot read workspace B or the provider data dir', async () => {
    const b = await wsp.setup();
    const marker = `b-private-${Date.now().toString(36)}`;
    await wsp.exec(b.id, `echo ${marker} > ~/b.txt`);
    const bHome = path.join(wsp.dataDir, 'local', 'workspaces', b.id, 'home');
    expect(fs.readFileSync(path.join(bHome, 'b.txt'), 'utf8')).toBe(`${marker}\n`); // the path is right
    const probe = await wsp.exec(
      ws.id,
      `cat ${bHome}/b.txt; ls ${wsp.dataDir}; cat ${wsp.dataDir}/auth-token; grep -rlsF -f <(echo ${[...marker].reverse().join('')} | rev) / --exclude-dir=proc --exclude-dir=sys --exclude-dir=usr | head -20`,
    );
    expect(probe.stdout.data).toBe('');
    expect(probe.stderr.data).toMatch(/No such file or directory/);
  });
});
