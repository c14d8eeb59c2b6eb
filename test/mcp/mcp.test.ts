import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitFiles, createUpstreamRepo, type UpstreamRepo } from '../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../support/git-server.js';
import { closeTestProvider } from '../support/hostile-backends.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';

// `wsp mcp` as an agent's MCP client runs it: a child process (node + tsx) spoken to over stdio by the
// SDK's own Client + StdioClientTransport, forwarding to a real provider (local backend, a token-checking
// git server) started in this process. One workspace for the file; the tests run in order.

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'functions', 'cli', 'wsp.ts');
/** tsx's loader by absolute URL: the CLI runs in a scratch cwd, where a bare 'tsx' would not resolve. */
const TSX = import.meta.resolve('tsx');
const GIT_TOKEN = `wsp-mcp-${randomBytes(12).toString('hex')}`;

const TOOL_NAMES = [
  'create_workspace',
  'list_workspaces',
  'get_workspace',
  'delete_workspace',
  'run_command',
  'session_create',
  'session_run',
  'session_interrupt',
  'session_delete',
  'read_file',
  'write_file',
  'list_files',
  'fetch',
  'reset',
  'changes',
  'usage',
  'fork',
];

let git: GitServer;
let app: UpstreamRepo;
let hostRoot: string;
let cwd: string;
let wsp: TestProvider;
let client: Client;
let stderr = '';

beforeAll(async () => {
  process.env.WSP_MCP_GIT_TOKEN = GIT_TOKEN;
  hostRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-mcp-git-'));
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-mcp-cwd-'));
  git = await startGitServer({ token: GIT_TOKEN, root: hostRoot });
  app = createUpstreamRepo(hostRoot, 'app', { 'README.md': '# app\n', 'src/index.js': 'console.log(1)\n' });
  wsp = await startTestProvider({
    repositories: [{ url: git.url('app'), path: 'app', credential: 'env:WSP_MCP_GIT_TOKEN' }],
    workspace: { network: 'none' },
  });
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: ['--import', TSX, CLI, 'mcp', '--url', wsp.url, '--token', wsp.token],
    cwd,
    // A heartbeat every 300 ms instead of 15 s, so the progress test need not wait long.
    env: { ...getDefaultEnvironment(), WSP_MCP_HEARTBEAT_MS: '300' },
    stderr: 'pipe',
  });
  transport.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  client = new Client({ name: 'wsp-mcp-test', version: '0.0.0' });
  await client.connect(transport);
});

afterAll(async () => {
  await client?.close();
  await closeTestProvider(wsp);
  await git?.close();
  if (hostRoot) fs.rmSync(hostRoot, { recursive: true, force: true });
  if (cwd) fs.rmSync(cwd, { recursive: true, force: true });
  delete process.env.WSP_MCP_GIT_TOKEN;
});

interface Answer {
  isError: boolean;
  text: string;
  data: any;
}

async function call(
  name: string,
  args: Record<string, unknown> = {},
  options: { onprogress?: (p: { progress: number; message?: string }) => void; timeout?: number } = {},
): Promise<Answer> {
  const result = (await client.callTool({ name, arguments: args }, undefined, {
    timeout: 240_000,
    ...options,
    ...(options.onprogress ? { resetTimeoutOnProgress: true } : {}),
  })) as CallToolResult;
  const text = result.content.map((c) => (c.type === 'text' ? c.text : '')).join('');
  return { isError: result.isError === true, text, data: result.structuredContent };
}

async function ok(
  name: string,
  args: Record<string, unknown> = {},
  options: Parameters<typeof call>[2] = {},
): Promise<any> {
  const answer = await call(name, args, options);
  if (answer.isError) throw new Error(`${name} failed: ${answer.text}`);
  // The text is the same result as JSON (for clients that do not read structuredContent).
  expect(JSON.parse(answer.text)).toEqual(answer.data);
  return answer.data;
}

describe('wsp mcp over stdio', () => {
  let id: string;

  it('lists every tool with a description and an input schema from the API schemas', async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual([...TOOL_NAMES].sort());
    for (const tool of tools) {
      expect(tool.description?.length, tool.name).toBeGreaterThan(20);
      expect(tool.inputSchema.type, tool.name).toBe('object');
    }
    const byName = new Map(tools.map((t) => [t.name, t]));
    const run = byName.get('run_command')!.inputSchema;
    expect(Object.keys(run.properties ?? {}).sort()).toEqual(
      ['workspaceId', 'argv', 'command', 'cwd', 'env', 'stdin', 'stdinEncoding', 'timeoutMs'].sort(),
    );
    expect(run.required).toEqual(['workspaceId']);
    // The API's own constraints, carried over (runCommandBody: argv has ≥ 1 element).
    expect((run.properties as any).argv).toMatchObject({ type: 'array', minItems: 1 });
    const create = byName.get('create_workspace')!.inputSchema;
    expect(Object.keys(create.properties ?? {})).toEqual(
      expect.arrayContaining(['refs', 'env', 'labels', 'ttlSeconds', 'fromSnapshot', 'waitTimeoutMs']),
    );
    expect((create.properties as any).ttlSeconds).toMatchObject({ type: 'integer', minimum: 60 });
    expect(Object.keys(byName.get('fork')!.inputSchema.properties ?? {})).toEqual(
      expect.arrayContaining(['workspaceId', 'count', 'labels', 'ttlSeconds']),
    );
    expect(Object.keys(byName.get('session_run')!.inputSchema.properties ?? {}).sort()).toEqual(
      ['workspaceId', 'sessionId', 'command', 'timeoutMs'].sort(),
    );
    expect(stderr).toContain('wsp mcp: serving');
  });

  it('creates a workspace and waits until it is ready, reporting its provisioning steps as progress', async () => {
    const progress: string[] = [];
    const created = await ok(
      'create_workspace',
      { labels: { via: 'mcp' } },
      { onprogress: (p) => progress.push(p.message ?? '') },
    );
    expect(progress[0]).toBe(`${created.id}: provisioning`);
    // The steps the workspace's own record lists, as they happened (the stream may start after the first).
    expect(progress.some((m) => m.startsWith(`${created.id}: baseline`))).toBe(true);
    expect(created).toMatchObject({ status: 'ready', labels: { via: 'mcp' } });
    expect(created.id).toMatch(/^ws-/);
    id = created.id;
    const listed = await ok('list_workspaces');
    expect(listed.workspaces.map((w: any) => w.id)).toContain(id);
    expect((await ok('get_workspace', { workspaceId: id })).status).toBe('ready');
  });

  it('writes and reads files (text and binary, ranges) and lists them', async () => {
    const written = await ok('write_file', { workspaceId: id, path: 'app/notes.txt', content: 'hello from mcp\n' });
    expect(written).toMatchObject({ type: 'file', size: 15 });
    expect(await ok('read_file', { workspaceId: id, path: 'app/notes.txt' })).toMatchObject({
      encoding: 'utf8',
      content: 'hello from mcp\n',
      size: 15,
    });
    expect(await ok('read_file', { workspaceId: id, path: 'app/notes.txt', offset: 6, length: 4 })).toMatchObject({
      content: 'from',
      size: 15,
      range: { first: 6, last: 9 },
    });
    const bytes = Buffer.from([0xff, 0x00, 0xfe, 0x41]);
    await ok('write_file', {
      workspaceId: id,
      path: 'bin/blob',
      content: bytes.toString('base64'),
      encoding: 'base64',
      mode: '0755',
    });
    const blob = await ok('read_file', { workspaceId: id, path: 'bin/blob' });
    expect(blob).toMatchObject({ encoding: 'base64', content: bytes.toString('base64') });
    const listed = await ok('list_files', { workspaceId: id, path: 'app' });
    expect(listed.entries.map((e: any) => e.name)).toEqual(expect.arrayContaining(['README.md', 'notes.txt', 'src']));
  });

  it('runs commands (argv and shell string) and answers exit code, stdout and stderr', async () => {
    const cat = await ok('run_command', { workspaceId: id, argv: ['cat', 'notes.txt'], cwd: 'app' });
    expect(cat).toMatchObject({
      state: 'exited',
      exitCode: 0,
      stdout: 'hello from mcp\n',
      stderr: '',
      stdoutTruncated: false,
      stderrTruncated: false,
    });
    const failing = await ok('run_command', {
      workspaceId: id,
      command: 'echo "$GREETING" && echo oops >&2 && exit 3',
      env: { GREETING: 'hi' },
    });
    expect(failing).toMatchObject({ state: 'exited', exitCode: 3, stdout: 'hi\n', stderr: 'oops\n' });
  });

  it('a call longer than the client’s timeout lives on through heartbeats, when progress was asked for', async () => {
    const progress: Array<{ progress: number; message?: string }> = [];
    // 3 s of work against a 1.5 s client timeout: only the heartbeats (every 300 ms here) keep it alive.
    const r = await ok(
      'run_command',
      { workspaceId: id, command: 'sleep 3; echo done' },
      { timeout: 1500, onprogress: (p) => progress.push(p) },
    );
    expect(r).toMatchObject({ state: 'exited', exitCode: 0, stdout: 'done\n' });
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.every((p) => /^run_command: still working \(\d+ s\)$/.test(p.message ?? ''))).toBe(true);
    // Progress values only grow (the spec's rule).
    expect(progress.map((p) => p.progress)).toEqual([...progress.map((p) => p.progress)].sort((a, b) => a - b));
    // Without the token, no notification and the call times out like any other.
    const timedOut = await call('run_command', { workspaceId: id, command: 'sleep 3' }, { timeout: 1000 }).catch(
      (e: Error) => e,
    );
    expect(String(timedOut)).toMatch(/timed out/i);
  });

  it('answers what the workspace uses', async () => {
    const usage = await ok('usage', { workspaceId: id });
    expect(usage).toMatchObject({ workspaceId: id, source: expect.any(String) });
    expect(usage.disk.usedBytes).toEqual(expect.any(Number));
  });

  it('shows the changes since the baseline', async () => {
    await ok('run_command', { workspaceId: id, command: 'echo "console.log(2)" > app/src/index.js' });
    const changes = await ok('changes', { workspaceId: id });
    const app = changes.repos.find((r: any) => r.name === 'app');
    expect(app.status).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ path: 'notes.txt', code: '??' }),
        expect.objectContaining({ path: 'src/index.js' }),
      ]),
    );
    expect(app.diff).toContain('+console.log(2)');
  });

  it('answers a bad input as an error result naming the problem', async () => {
    const neither = await call('run_command', { workspaceId: id, cwd: 'app' });
    expect(neither.isError).toBe(true);
    expect(neither.text).toContain('bad_request');
    expect(neither.text).toContain('exactly one of argv or command is required');
    expect(neither.data.error.code).toBe('bad_request');
    // A field the tool's schema refuses before any request (the SDK's own validation, same zod object).
    const badId = await call('get_workspace', { workspaceId: 'not-an-id' });
    expect(badId.isError).toBe(true);
    expect(badId.text).toContain('is not a workspace id');
    const unknownField = await call('run_command', { workspaceId: id, argv: ['true'], tty: { rows: 1, cols: 1 } });
    expect(unknownField.isError).toBe(true);
  });

  it('answers an unknown workspace as an isError result with not_found', async () => {
    const missing = await call('get_workspace', { workspaceId: 'ws-0000000000nothere' });
    expect(missing.isError).toBe(true);
    expect(missing.data.error.code).toBe('not_found');
    expect(missing.text).toMatch(/^not_found: /);
    const run = await call('run_command', { workspaceId: 'ws-0000000000nothere', argv: ['true'] });
    expect(run).toMatchObject({ isError: true, data: { error: { code: 'not_found' } } });
  });

  it('keeps a session’s cwd and variables between session_run calls', async () => {
    const session = await ok('session_create', { workspaceId: id, cwd: 'app' });
    expect(session.sessionId).toMatch(/^sess-/);
    const sessionArgs = { workspaceId: id, sessionId: session.sessionId };
    const first = await ok('session_run', { ...sessionArgs, command: 'cd src && export MARK=kept' });
    expect(first).toMatchObject({ state: 'exited', exitCode: 0 });
    const second = await ok('session_run', { ...sessionArgs, command: 'pwd; echo "$MARK"; ls' });
    expect(second).toMatchObject({ state: 'exited', exitCode: 0 });
    expect(second.stdout).toMatch(/\/app\/src\nkept\nindex\.js\n$/);
    expect((await ok('session_interrupt', sessionArgs)).sessionId).toBe(session.sessionId);
    expect(await ok('session_delete', sessionArgs)).toMatchObject({ state: 'closed' });
  });

  it('fetches new upstream commits through the provider', async () => {
    const next = commitFiles(app, { 'CHANGELOG.md': 'v2\n' }, 'second commit');
    const fetched = await ok('fetch', { workspaceId: id, checkout: { repo: 'app', ref: 'main' } });
    expect(fetched.repos).toEqual([expect.objectContaining({ name: 'app', before: app.head, after: next })]);
    const log = await ok('run_command', { workspaceId: id, argv: ['git', '-C', 'app', 'rev-parse', 'HEAD'] });
    expect(log.stdout).toBe(`${next}\n`);
  });

  it('forks the workspace and waits for the copy', async () => {
    const forked = await ok('fork', { workspaceId: id, count: 1, labels: { fork: 'yes' } });
    expect(forked.snapshotId).toMatch(/^snap-/);
    expect(forked.workspaces).toHaveLength(1);
    const copy = forked.workspaces[0];
    expect(copy).toMatchObject({ status: 'ready', labels: { fork: 'yes' } });
    const read = await ok('read_file', { workspaceId: copy.id, path: 'app/notes.txt' });
    expect(read.content).toBe('hello from mcp\n');
    expect((await ok('delete_workspace', { workspaceId: copy.id })).id).toBe(copy.id);
  });

  it('resets to the baseline', async () => {
    const reset = await ok('reset', { workspaceId: id });
    expect(reset.matches).toBe(true);
    const changes = await ok('changes', { workspaceId: id });
    expect(changes.repos.every((r: any) => r.status.length === 0)).toBe(true);
  });

  it('deletes the workspace', async () => {
    const deleted = await ok('delete_workspace', { workspaceId: id });
    expect(deleted.id).toBe(id);
    expect(['deleting', 'deleted']).toContain(deleted.status);
  });
});
