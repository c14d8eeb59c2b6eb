import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConfigInput } from '../../shared/config/schema.js';
import { dynamoDbLocalStatus, startDynamoDbLocal, type StartedDynamoDbLocal } from '../support/dynamodb-local.js';
import { commitFiles, createUpstreamRepo, type UpstreamRepo } from '../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../support/git-server.js';
import { tarOf } from '../support/tar.js';
import { httpTarget, lambdaTarget, type Answer, type ApiRequest, type ApiTarget } from './targets.js';

// ONE table of API cases, run in order against (a) the local server over HTTP and (b) the Lambda api
// handler with HTTP API v2 events (local backend + DynamoDB Local, provisioning through the worker
// handler). Each case asserts its status on each target; then every case's answers are compared:
// same status, same body once ids, timestamps, commits and durations are normalised.

const TOKEN_ENV = 'WSP_EQ_GIT_TOKEN';
const gitToken = `wsp-canary-${randomBytes(12).toString('hex')}`;

interface Ctx {
  wsId?: string;
  cmdId?: string;
  /** The upstream commit the fetch case made. */
  newHead?: string;
  /** The snapshot case's snapshot, and the workspaces made from it and forked. */
  snapId?: string;
  /** The shell session the session cases drive. */
  sessId?: string;
  /** The open-stdin command the stdin cases feed. */
  stdinCmd?: string;
  copies?: string[];
  call(request: ApiRequest): Promise<Answer>;
}

interface Case {
  name: string;
  request(ctx: Ctx): ApiRequest;
  status: number;
  /** Runs before the request (e.g. a new upstream commit). */
  before?(ctx: Ctx): void | Promise<void>;
  /** Extra assertions on one target's answer, and capturing ids for later cases. */
  after?(answer: Answer, ctx: Ctx): void | Promise<void>;
}

const ws = (ctx: Ctx): string => ctx.wsId ?? 'ws-000000000000000000000000';
let upstream: UpstreamRepo;

const CASES: Case[] = [
  { name: 'healthz needs no auth', request: () => ({ method: 'GET', url: '/healthz', auth: 'none' }), status: 200 },
  { name: 'auth missing', request: () => ({ method: 'GET', url: '/workspaces', auth: 'none' }), status: 401 },
  { name: 'auth wrong key', request: () => ({ method: 'GET', url: '/workspaces', auth: 'wrong' }), status: 401 },
  { name: 'unknown route', request: () => ({ method: 'GET', url: '/nope' }), status: 404 },
  { name: 'wrong method', request: () => ({ method: 'PUT', url: '/workspaces' }), status: 405 },
  {
    name: 'create: malformed JSON is 400, not 415',
    request: () => ({ method: 'POST', url: '/workspaces', body: '{"labels":' }),
    status: 400,
    after: (a) =>
      expect(a.body.error).toMatchObject({ code: 'bad_request', message: 'request body is not valid JSON' }),
  },
  {
    name: 'create: body that is not JSON',
    request: () => ({ method: 'POST', url: '/workspaces', body: 'labels=x', contentType: 'text/plain' }),
    status: 415,
  },
  {
    name: 'create: unknown field',
    request: () => ({ method: 'POST', url: '/workspaces', body: { image: 'evil' } }),
    status: 400,
  },
  {
    name: 'create: wrong type',
    request: () => ({ method: 'POST', url: '/workspaces', body: { labels: 'x' } }),
    status: 400,
  },
  {
    name: 'create: refs for an unknown repository',
    request: () => ({ method: 'POST', url: '/workspaces', body: { refs: { nope: 'main' } } }),
    status: 400,
  },
  {
    name: 'get: unknown id',
    request: () => ({ method: 'GET', url: '/workspaces/ws-0123456789abcdef01234567' }),
    status: 404,
  },
  { name: 'get: malformed id', request: () => ({ method: 'GET', url: '/workspaces/..%2Fetc' }), status: 400 },
  {
    name: 'list: empty',
    request: () => ({ method: 'GET', url: '/workspaces' }),
    status: 200,
    after: (a) => expect(a.body.workspaces).toEqual([]),
  },
  {
    name: 'create → 202 provisioning, then ready',
    request: () => ({ method: 'POST', url: '/workspaces', body: { labels: { task: 'eq' } } }),
    status: 202,
    after: async (a, ctx) => {
      expect(a.body.status).toBe('provisioning');
      ctx.wsId = a.body.id;
      const settled = await waitSettled(ctx, a.body.id);
      expect(settled.status, JSON.stringify(settled.failure)).toBe('ready');
    },
  },
  {
    name: 'get: ready workspace',
    request: (ctx) => ({ method: 'GET', url: `/workspaces/${ws(ctx)}` }),
    status: 200,
    after: (a) => {
      expect(a.body.status).toBe('ready');
      expect(a.body.repos.map((r: { name: string }) => r.name).sort()).toEqual(['app', 'proj']);
    },
  },
  {
    name: 'list: one workspace',
    request: () => ({ method: 'GET', url: '/workspaces' }),
    status: 200,
    after: (a) => expect(a.body.workspaces).toHaveLength(1),
  },
  {
    name: 'exec: ends within waitMs',
    request: (ctx) => ({
      method: 'POST',
      url: `/workspaces/${ws(ctx)}/commands`,
      body: { command: 'cat app/README.md proj/tracked.txt', waitMs: 20_000 },
    }),
    status: 201,
    after: (a) =>
      expect(a.body).toMatchObject({ state: 'exited', exitCode: 0, stdout: { data: '# app\nlocal tracked\n' } }),
  },
  {
    name: 'exec: non-zero exit is data, not an error',
    request: (ctx) => ({
      method: 'POST',
      url: `/workspaces/${ws(ctx)}/commands`,
      body: { argv: ['bash', '-c', 'echo out; echo err >&2; exit 3'], waitMs: 20_000 },
    }),
    status: 201,
    after: (a) =>
      expect(a.body).toMatchObject({
        state: 'exited',
        exitCode: 3,
        stdout: { data: 'out\n' },
        stderr: { data: 'err\n' },
      }),
  },
  {
    name: 'exec: still running after waitMs → 202',
    request: (ctx) => ({
      method: 'POST',
      url: `/workspaces/${ws(ctx)}/commands`,
      body: { command: 'sleep 1; echo late', waitMs: 0 },
    }),
    status: 202,
    after: (a, ctx) => {
      expect(a.body.state).toBe('running');
      expect(a.headers['location']).toBe(`/workspaces/${ws(ctx)}/commands/${a.body.id}`);
      ctx.cmdId = a.body.id;
    },
  },
  {
    name: 'exec: poll the 202 command until it ends',
    request: (ctx) => ({ method: 'GET', url: `/workspaces/${ws(ctx)}/commands/${ctx.cmdId}?waitMs=20000` }),
    status: 200,
    after: (a) => expect(a.body).toMatchObject({ state: 'exited', exitCode: 0, stdout: { data: 'late\n' } }),
  },
  {
    name: 'exec: unknown command id',
    request: (ctx) => ({ method: 'GET', url: `/workspaces/${ws(ctx)}/commands/cmd-0123456789abcdef01234567` }),
    status: 404,
  },
  {
    name: 'exec: bad query',
    request: (ctx) => ({ method: 'GET', url: `/workspaces/${ws(ctx)}/commands/${ctx.cmdId}?waitMs=abc` }),
    status: 400,
  },
  {
    name: 'exec: cwd outside the workspace',
    request: (ctx) => ({
      method: 'POST',
      url: `/workspaces/${ws(ctx)}/commands`,
      body: { command: 'pwd', cwd: '/etc' },
    }),
    status: 400,
  },
  {
    name: 'exec: neither argv nor command',
    request: (ctx) => ({ method: 'POST', url: `/workspaces/${ws(ctx)}/commands`, body: {} }),
    status: 400,
  },
  {
    name: 'exec: unknown workspace',
    request: () => ({
      method: 'POST',
      url: '/workspaces/ws-0123456789abcdef01234567/commands',
      body: { command: 'true' },
    }),
    status: 404,
  },
  {
    name: 'list commands',
    request: (ctx) => ({ method: 'GET', url: `/workspaces/${ws(ctx)}/commands` }),
    status: 200,
    after: (a) => expect(a.body.commands).toHaveLength(3),
  },
  // ---- input while a command runs: POST stdin, output by polling (Lambda has no WebSocket) ----
  {
    name: 'stdin: a command started with openStdin waits for its input',
    request: (ctx) => ({
      method: 'POST',
      url: `/workspaces/${ws(ctx)}/commands`,
      body: { argv: ['cat'], openStdin: true, waitMs: 0 },
    }),
    status: 202,
    after: (a, ctx) => {
      expect(a.body.state).toBe('running');
      ctx.stdinCmd = a.body.id;
    },
  },
  {
    name: 'stdin: bytes in (any content type)',
    request: (ctx) => ({
      method: 'POST',
      url: `/workspaces/${ws(ctx)}/commands/${ctx.stdinCmd}/stdin`,
      body: 'hello stdin\n',
      contentType: 'text/plain',
    }),
    status: 204,
  },
  {
    name: 'stdin: resize without a terminal is 409',
    request: (ctx) => ({
      method: 'POST',
      url: `/workspaces/${ws(ctx)}/commands/${ctx.stdinCmd}/resize`,
      body: { rows: 10, cols: 10 },
    }),
    status: 409,
  },
  {
    name: 'stdin: eof ends it; the output is what went in',
    request: (ctx) => ({
      method: 'POST',
      url: `/workspaces/${ws(ctx)}/commands/${ctx.stdinCmd}/stdin?eof=true`,
      body: '',
      contentType: 'application/octet-stream',
    }),
    status: 204,
    after: async (_a, ctx) => {
      const done = await ctx.call({
        method: 'GET',
        url: `/workspaces/${ws(ctx)}/commands/${ctx.stdinCmd}?waitMs=20000`,
      });
      expect(done.body).toMatchObject({ state: 'exited', exitCode: 0 });
      expect(done.body.stdout.data).toBe('hello stdin\n');
    },
  },
  {
    name: 'stdin: after the end is 409',
    request: (ctx) => ({
      method: 'POST',
      url: `/workspaces/${ws(ctx)}/commands/${ctx.stdinCmd}/stdin`,
      body: 'late',
      contentType: 'text/plain',
    }),
    status: 409,
  },
  {
    name: 'attach: no WebSocket on this answer path (400 says what to use)',
    request: (ctx) => ({ method: 'GET', url: `/workspaces/${ws(ctx)}/commands/${ctx.stdinCmd}/attach` }),
    status: 400,
  },
  {
    name: 'files: a raw upload (any content type) is written, parents created',
    request: (ctx) => ({
      method: 'PUT',
      url: `/workspaces/${ws(ctx)}/files?path=${encodeURIComponent('/tmp/eq/a.txt')}`,
      body: 'hello files',
      contentType: 'text/plain',
    }),
    status: 200,
    after: (a) => expect(a.body).toMatchObject({ type: 'file', size: 11, mode: '0644' }),
  },
  {
    name: 'files: the bytes come back as application/octet-stream',
    request: (ctx) => ({ method: 'GET', url: `/workspaces/${ws(ctx)}/files?path=%2Ftmp%2Feq%2Fa.txt` }),
    status: 200,
    after: (a) => {
      expect(a.text).toBe('hello files');
      expect(a.headers['content-type']).toBe('application/octet-stream');
    },
  },
  {
    name: 'files: a path outside the home and /tmp is 400',
    request: (ctx) => ({ method: 'GET', url: `/workspaces/${ws(ctx)}/files?path=%2Fetc%2Fpasswd` }),
    status: 400,
  },
  {
    name: 'archive: a tar in is extracted (the count of its entries answered)',
    request: (ctx) => ({
      method: 'PUT',
      url: `/workspaces/${ws(ctx)}/archive?path=${encodeURIComponent('/tmp/eq/tree')}`,
      body: tarOf([
        { name: 'd/', type: '5' },
        { name: 'd/f.txt', data: 'in a tar' },
      ]),
      contentType: 'application/x-tar',
    }),
    status: 200,
    after: (a) => expect(a.body).toEqual({ path: '/tmp/eq/tree', entries: 2 }),
  },
  {
    name: 'archive: the tar comes back as application/x-tar',
    // Of d, whose entries all carry the tar's own times: the answers compare byte for byte.
    request: (ctx) => ({ method: 'GET', url: `/workspaces/${ws(ctx)}/archive?path=%2Ftmp%2Feq%2Ftree%2Fd` }),
    status: 200,
    after: (a) => {
      expect(a.headers['content-type']).toBe('application/x-tar');
      expect(a.bytes.includes(Buffer.from('in a tar'))).toBe(true);
      expect(a.bytes.includes(Buffer.from('./f.txt'))).toBe(true);
    },
  },
  {
    name: 'archive: a hostile tar is 400 naming the rule',
    request: (ctx) => ({
      method: 'PUT',
      url: `/workspaces/${ws(ctx)}/archive?path=%2Ftmp%2Feq%2Fevil`,
      body: tarOf([{ name: '../escaped', data: 'x' }]),
      contentType: 'application/x-tar',
    }),
    status: 400,
    after: (a) => expect(a.body.error.message).toMatch(/without '\.\.'/),
  },
  {
    name: 'archive: a missing directory is 404',
    request: (ctx) => ({ method: 'GET', url: `/workspaces/${ws(ctx)}/archive?path=%2Ftmp%2Fno-such-dir` }),
    status: 404,
  },
  {
    name: 'files: delete answers 204',
    request: (ctx) => ({ method: 'DELETE', url: `/workspaces/${ws(ctx)}/files?path=%2Ftmp%2Feq&recursive=true` }),
    status: 204,
  },
  {
    name: 'changes: an agent edit shows in the git repo',
    before: async (ctx) => {
      const r = await ctx.call({
        method: 'POST',
        url: `/workspaces/${ws(ctx)}/commands`,
        body: {
          command: 'echo edited >> app/README.md; echo new > app/new.txt; echo x > proj/extra.txt',
          waitMs: 20_000,
        },
      });
      expect(r.body).toMatchObject({ state: 'exited', exitCode: 0 });
    },
    request: (ctx) => ({ method: 'GET', url: `/workspaces/${ws(ctx)}/changes` }),
    status: 200,
    after: (a) => {
      const app = a.body.repos.find((r: { name: string }) => r.name === 'app');
      expect(app.diff).toContain('+edited');
      expect(JSON.stringify(app.status)).toContain('new.txt');
    },
  },
  {
    name: 'usage: what the workspace uses, measured by the backend',
    request: (ctx) => ({ method: 'GET', url: `/workspaces/${ws(ctx)}/usage` }),
    status: 200,
    after: (a, ctx) => {
      expect(a.body).toMatchObject({ workspaceId: ctx.wsId, source: expect.any(String) });
      expect(a.body.disk.usedBytes).toBeGreaterThan(0);
    },
  },
  {
    name: 'usage: an unknown workspace is 404',
    request: () => ({ method: 'GET', url: '/workspaces/ws-000000000000000000000000/usage' }),
    status: 404,
  },
  {
    name: 'fetch: a new upstream commit arrives',
    before: (ctx) => {
      ctx.newHead = commitFiles(upstream, { 'later.txt': `later ${Math.random()}\n` }, 'later');
    },
    request: (ctx) => ({ method: 'POST', url: `/workspaces/${ws(ctx)}/git/fetch`, body: {} }),
    status: 200,
    after: (a, ctx) => {
      const app = a.body.repos.find((r: { name: string }) => r.name === 'app');
      expect(Object.values(app.heads)).toContain(ctx.newHead);
    },
  },
  {
    name: 'fetch: unknown repository',
    request: (ctx) => ({ method: 'POST', url: `/workspaces/${ws(ctx)}/git/fetch`, body: { repos: ['nope'] } }),
    status: 400,
  },
  // ---- persistent shell sessions: state in the store, so each request may land on another Lambda ----
  {
    name: 'session: create → 201 idle',
    request: (ctx) => ({ method: 'POST', url: `/workspaces/${ws(ctx)}/sessions`, body: { cwd: 'app' } }),
    status: 201,
    after: (a, ctx) => {
      expect(a.body).toMatchObject({ state: 'idle', shell: 'bash', workspaceId: ws(ctx) });
      expect(a.headers['location']).toBe(`/workspaces/${ws(ctx)}/sessions/${a.body.id}`);
      ctx.sessId = a.body.id;
    },
  },
  {
    name: 'session: a run sets state for the next',
    request: (ctx) => ({
      method: 'POST',
      url: `/workspaces/${ws(ctx)}/sessions/${ctx.sessId}/run`,
      body: { command: 'cd ..; export EQ=kept; f() { echo "f $1"; }', waitMs: 20_000 },
    }),
    status: 200,
    after: (a) => expect(a.body).toMatchObject({ runId: 'run-1', state: 'exited', exitCode: 0 }),
  },
  {
    name: 'session: the next run sees cwd, variables and functions; stderr apart',
    request: (ctx) => ({
      method: 'POST',
      url: `/workspaces/${ws(ctx)}/sessions/${ctx.sessId}/run`,
      body: { command: 'basename "$PWD"; echo "$EQ"; f x; echo e >&2; (exit 4)', waitMs: 20_000 },
    }),
    status: 200,
    after: (a) => {
      expect(a.body).toMatchObject({ state: 'exited', exitCode: 4 });
      expect(a.body.stdout.data).toMatch(/\nkept\nf x\n$/);
      expect(a.body.stderr.data).toBe('e\n');
    },
  },
  {
    name: 'session: a run still going → 202, interrupted → 130, the shell lives on',
    request: (ctx) => ({
      method: 'POST',
      url: `/workspaces/${ws(ctx)}/sessions/${ctx.sessId}/run`,
      body: { command: 'while true; do sleep 1; done', waitMs: 300 },
    }),
    status: 202,
    after: async (a, ctx) => {
      expect(a.body.state).toBe('running');
      const busy = await ctx.call({
        method: 'POST',
        url: `/workspaces/${ws(ctx)}/sessions/${ctx.sessId}/run`,
        body: { command: 'true' },
      });
      expect(busy.status).toBe(409);
      const i = await ctx.call({ method: 'POST', url: `/workspaces/${ws(ctx)}/sessions/${ctx.sessId}/interrupt` });
      expect(i.body.lastRun).toMatchObject({ runId: a.body.runId, state: 'interrupted', exitCode: 130 });
    },
  },
  {
    name: 'session: get shows the last run',
    request: (ctx) => ({ method: 'GET', url: `/workspaces/${ws(ctx)}/sessions/${ctx.sessId}?waitMs=1000` }),
    status: 200,
    after: (a) => expect(a.body).toMatchObject({ state: 'idle', lastRun: { runId: 'run-3', state: 'interrupted' } }),
  },
  {
    name: 'sessions: listed',
    request: (ctx) => ({ method: 'GET', url: `/workspaces/${ws(ctx)}/sessions` }),
    status: 200,
    after: (a, ctx) => expect(a.body.sessions.map((x: { id: string }) => x.id)).toEqual([ctx.sessId]),
  },
  {
    name: 'session: unknown id',
    request: (ctx) => ({ method: 'GET', url: `/workspaces/${ws(ctx)}/sessions/sess-0123456789abcdef01234567` }),
    status: 404,
  },
  {
    name: 'session: a run without a command',
    request: (ctx) => ({ method: 'POST', url: `/workspaces/${ws(ctx)}/sessions/${ctx.sessId}/run`, body: {} }),
    status: 400,
  },
  {
    name: 'reset: back to the baseline, fingerprint matches',
    request: (ctx) => ({ method: 'POST', url: `/workspaces/${ws(ctx)}/reset`, body: {} }),
    status: 200,
    after: (a) => expect(a.body.matches).toBe(true),
  },
  {
    name: 'changes: clean after reset',
    request: (ctx) => ({ method: 'GET', url: `/workspaces/${ws(ctx)}/changes` }),
    status: 200,
    after: (a) => {
      const app = a.body.repos.find((r: { name: string }) => r.name === 'app');
      expect(app.diff).toBe('');
    },
  },
  {
    name: 'session: lost after the reset, then deleted',
    request: (ctx) => ({ method: 'GET', url: `/workspaces/${ws(ctx)}/sessions/${ctx.sessId}` }),
    status: 200,
    after: async (a, ctx) => {
      expect(a.body.state).toBe('lost');
      const d = await ctx.call({ method: 'DELETE', url: `/workspaces/${ws(ctx)}/sessions/${ctx.sessId}` });
      expect(d.body.state).toBe('closed');
    },
  },
  {
    name: 'reset: refs for an unknown repository',
    request: (ctx) => ({ method: 'POST', url: `/workspaces/${ws(ctx)}/reset`, body: { refs: { nope: 'main' } } }),
    status: 400,
  },
  // ---- fork and snapshots: taken by a 'snapshot' operation (Lambda: the operations workflow) ----
  {
    name: 'snapshot: a named snapshot of the current state',
    before: async (ctx) => {
      const r = await ctx.call({
        method: 'POST',
        url: `/workspaces/${ws(ctx)}/commands`,
        body: { command: 'echo at-snapshot > app/snap.txt', waitMs: 20_000 },
      });
      expect(r.body).toMatchObject({ state: 'exited', exitCode: 0 });
    },
    request: (ctx) => ({ method: 'POST', url: `/workspaces/${ws(ctx)}/snapshots`, body: { name: 'eq' } }),
    status: 201,
    after: (a, ctx) => {
      expect(a.body).toMatchObject({ status: 'ready', kind: 'user', name: 'eq', sourceWorkspaceId: ws(ctx) });
      expect(a.headers['location']).toBe(`/snapshots/${a.body.id}`);
      ctx.snapId = a.body.id;
      ctx.copies = [];
    },
  },
  {
    name: 'snapshots: listed',
    request: () => ({ method: 'GET', url: '/snapshots' }),
    status: 200,
    after: (a, ctx) => expect(a.body.snapshots.map((x: { id: string }) => x.id)).toEqual([ctx.snapId]),
  },
  {
    name: 'create from the snapshot → 202, then ready with its files',
    request: (ctx) => ({ method: 'POST', url: '/workspaces', body: { fromSnapshot: ctx.snapId } }),
    status: 202,
    after: async (a, ctx) => {
      expect(a.body).toMatchObject({ status: 'provisioning', fromSnapshot: ctx.snapId });
      ctx.copies!.push(a.body.id);
      expect((await waitSettled(ctx, a.body.id)).status).toBe('ready');
      const r = await ctx.call({
        method: 'POST',
        url: `/workspaces/${a.body.id}/commands`,
        body: { command: 'cat app/snap.txt', waitMs: 20_000 },
      });
      expect(r.body.stdout.data).toBe('at-snapshot\n');
    },
  },
  {
    name: 'fork: a count over the cap is 400',
    request: (ctx) => ({ method: 'POST', url: `/workspaces/${ws(ctx)}/fork`, body: { count: 1000 } }),
    status: 400,
  },
  {
    name: 'fork: two copies → 202 with the fork point, each then ready',
    request: (ctx) => ({ method: 'POST', url: `/workspaces/${ws(ctx)}/fork`, body: { count: 2 } }),
    status: 202,
    after: async (a, ctx) => {
      expect(a.body.snapshot).toMatchObject({ kind: 'fork', status: 'ready' });
      expect(a.body.workspaces).toHaveLength(2);
      for (const w of a.body.workspaces) {
        expect(w.forkedFrom).toBe(ws(ctx));
        ctx.copies!.push(w.id);
        expect((await waitSettled(ctx, w.id)).status).toBe('ready');
      }
    },
  },
  {
    name: 'snapshot: unknown id',
    request: () => ({ method: 'GET', url: '/snapshots/snap-0123456789abcdef01234567' }),
    status: 404,
  },
  {
    name: 'snapshot: delete',
    request: (ctx) => ({ method: 'DELETE', url: `/snapshots/${ctx.snapId}` }),
    status: 204,
    after: async (_a, ctx) => {
      for (const id of ctx.copies ?? []) {
        const r = await ctx.call({ method: 'DELETE', url: `/workspaces/${id}` });
        expect(r.body.status).toBe('deleted');
      }
    },
  },
  {
    name: 'delete',
    request: (ctx) => ({ method: 'DELETE', url: `/workspaces/${ws(ctx)}` }),
    status: 200,
    after: (a) => expect(a.body.status).toBe('deleted'),
  },
  {
    name: 'delete twice',
    request: (ctx) => ({ method: 'DELETE', url: `/workspaces/${ws(ctx)}` }),
    status: 200,
    after: (a) => expect(a.body.status).toBe('deleted'),
  },
  {
    name: 'exec on a deleted workspace',
    request: (ctx) => ({ method: 'POST', url: `/workspaces/${ws(ctx)}/commands`, body: { command: 'true' } }),
    status: 409,
  },
  {
    name: 'list: deleted workspaces are not listed',
    request: () => ({ method: 'GET', url: '/workspaces' }),
    status: 200,
    after: (a) => expect(a.body.workspaces).toEqual([]),
  },
  {
    name: 'delete: unknown id',
    request: () => ({ method: 'DELETE', url: '/workspaces/ws-0123456789abcdef01234567' }),
    status: 404,
  },
];

async function waitSettled(ctx: Ctx, id: string): Promise<any> {
  for (let i = 0; i < 1200; i++) {
    const r = await ctx.call({ method: 'GET', url: `/workspaces/${id}` });
    if (r.status !== 200) throw new Error(`GET ${id}: ${r.status} ${r.text}`);
    // The provisioner writes status 'ready' and then, separately, its 'ready' step: wait for both,
    // or the next GET may see one more step than this one did (on either target).
    const last = r.body.steps?.[r.body.steps.length - 1]?.step;
    if (r.body.status === 'failed' || (r.body.status === 'ready' && last === 'ready')) return r.body;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`workspace ${id} still provisioning`);
}

/** Ids, timestamps, commits, hashes and durations → placeholders; everything else must be equal. */
export function normalise(value: unknown, key = ''): unknown {
  if (Array.isArray(value)) return value.map((v) => normalise(v));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalise(v, k)]));
  }
  // Sizes, durations, times — and what a workspace uses now (usage: *Bytes, *Seconds, pids).
  if (typeof value === 'number' && /(Ms|At|^expiresAt|Bytes|Seconds|^current|^limit)$/.test(key)) return '<number>';
  if (typeof value !== 'string') return value;
  return value
    .replace(/\b(ws|cmd|sys|snap|op|sess)-[0-9a-f]{24}\b/g, '$1-<id>')
    .replace(/\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z\b/g, '<time>')
    .replace(/\b[0-9a-f]{64}\b/g, '<hash>')
    .replace(/\b[0-9a-f]{40}\b/g, '<sha>')
    .replace(/\b[0-9a-f]{7,12}\.\.[0-9a-f]{7,12}\b/g, '<sha>..<sha>')
    .replace(/\b[0-9a-f]{12}\b/g, '<short>')
    .replace(/\b\d+ ?ms\b/g, '<n> ms');
}

/** Commands are listed in id order, and ids are random: compare them as a set. */
function sortLists(body: any): unknown {
  if (body && Array.isArray(body.commands))
    return { ...body, commands: [...body.commands].sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y))) };
  return body;
}

const summary = (a: Answer) => ({
  status: a.status,
  body: sortLists(normalise(a.body)),
  location: a.headers['location'] === undefined ? undefined : normalise(a.headers['location']),
});

// ---- fixtures: one git server + upstream repo, one local directory; both targets use the same config ----

let git: GitServer;
let gitRoot: string;
let localSource: string;
let dynamo: StartedDynamoDbLocal | undefined;
const dynamoStatus = dynamoDbLocalStatus();
if (dynamoStatus.state === 'skipped') console.warn(`\n!!!!!!!!!! ${dynamoStatus.message} !!!!!!!!!!\n`);
const answers = new Map<string, Map<string, Answer>>();

function config(): ConfigInput {
  return {
    repositories: [
      { url: git.url('app'), path: 'app', credential: `env:${TOKEN_ENV}` },
      { localPath: localSource, path: 'proj' },
    ],
    setup: { script: 'echo "setup ran"; mkdir -p app/build && echo built > app/build/out.txt' },
    workspace: { network: 'none' },
  };
}

beforeAll(async () => {
  process.env[TOKEN_ENV] = gitToken;
  gitRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-eq-git-'));
  git = await startGitServer({ token: gitToken, root: gitRoot });
  upstream = createUpstreamRepo(gitRoot, 'app', { 'README.md': '# app\n', '.gitignore': 'build/\n' });
  localSource = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-eq-src-'));
  const g = (...args: string[]) =>
    execFileSync('git', ['-C', localSource, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args]);
  g('init', '-q', '-b', 'main');
  fs.writeFileSync(path.join(localSource, 'tracked.txt'), 'local tracked\n');
  g('add', '.');
  g('commit', '-q', '-m', 'init');
  if (dynamoStatus.state === 'present') dynamo = await startDynamoDbLocal();
});

afterAll(async () => {
  await dynamo?.close();
  await git?.close();
  fs.rmSync(gitRoot, { recursive: true, force: true });
  fs.rmSync(localSource, { recursive: true, force: true });
  delete process.env[TOKEN_ENV];
});

const TARGETS: Array<{ key: string; start(): Promise<ApiTarget> }> = [
  { key: 'http', start: () => httpTarget(config()) },
  {
    key: 'lambda',
    start: () => {
      if (!dynamo)
        throw new Error(dynamoStatus.state === 'present' ? 'DynamoDB Local did not start' : dynamoStatus.message);
      return lambdaTarget(config(), dynamo.endpoint, `eq-api-key-${randomBytes(12).toString('hex')}`);
    },
  },
];

for (const target of TARGETS) {
  const skip = target.key === 'lambda' && dynamoStatus.state === 'skipped';
  (skip ? describe.skip : describe)(`API cases against the ${target.key} target`, () => {
    let api: ApiTarget;
    const ctx: Ctx = { call: (r) => api.call(r) };
    const mine = new Map<string, Answer>();
    answers.set(target.key, mine);
    beforeAll(async () => {
      api = await target.start();
    });
    afterAll(async () => {
      await api?.close();
    });
    for (const c of CASES) {
      it(c.name, async () => {
        await c.before?.(ctx);
        const request = c.request(ctx);
        const answer = await api.call(request);
        mine.set(c.name, answer);
        expect(answer.status, answer.text).toBe(c.status);
        if (answer.status >= 400)
          expect(answer.body.error).toEqual(
            expect.objectContaining({ code: expect.any(String), message: expect.any(String) }),
          );
        // The authorizer in front of the api (same key hashes) lets exactly these requests through.
        if (answer.authorizerAllowed !== undefined)
          expect(answer.authorizerAllowed).toBe((request.auth ?? 'ok') === 'ok');
        await c.after?.(answer, ctx);
      });
    }
    it('no response or log line carries the git token', () => {
      const leaks = api.transcript().filter((line) => line.includes(gitToken));
      expect(leaks).toEqual([]);
    });
  });
}

(dynamoStatus.state === 'skipped' ? describe.skip : describe)(
  'the Lambda handler answers like the local server',
  () => {
    for (const c of CASES) {
      it(c.name, () => {
        const http = answers.get('http')?.get(c.name);
        const lambda = answers.get('lambda')?.get(c.name);
        expect(http, 'no answer from the local server').toBeDefined();
        expect(lambda, 'no answer from the Lambda handler').toBeDefined();
        expect(summary(lambda!)).toEqual(summary(http!));
      });
    }
  },
);
