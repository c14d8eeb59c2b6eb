import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startHttpServer, type StartedHttpServer } from '../../functions/server/http-server.js';
import { silentLogger } from '../../shared/log.js';
import { doneOperation, FakeWorkspaceService, type FakeOptions } from '../support/fake-service.js';

/**
 * The CLI as a user runs it: a child process (node + tsx) against the real HTTP server on
 * 127.0.0.1, backed by the fake service.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'functions', 'cli', 'wsp.ts');
/** tsx's loader by absolute URL: the CLI runs in a scratch cwd, where a bare 'tsx' would not resolve. */
const TSX = import.meta.resolve('tsx');
const TOKEN = 'cli-test-token-3a9f0c2b71';

let fake: FakeWorkspaceService;
let server: StartedHttpServer;
let tmp: string;

async function startWith(options: FakeOptions = {}): Promise<void> {
  await server?.close();
  fake = new FakeWorkspaceService(options);
  server = await startHttpServer({ service: fake, authToken: TOKEN, log: silentLogger });
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-cli-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(async () => {
  await server?.close();
});

interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function spawnCli(
  args: string[],
  options: { env?: Record<string, string>; input?: string; noStdinEnd?: boolean } = {},
): { child: ChildProcess; done: Promise<CliResult> } {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('WSP_')) env[k] = v;
  Object.assign(env, { WSP_URL: server?.url ?? '', WSP_TOKEN: TOKEN }, options.env);
  const child = spawn(process.execPath, ['--import', TSX, CLI, ...args], {
    cwd: tmp,
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  if (!options.noStdinEnd) child.stdin!.end(options.input ?? '');
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

const wsp = (args: string[], options?: Parameters<typeof spawnCli>[1]): Promise<CliResult> =>
  spawnCli(args, options).done;

describe('wsp exec', () => {
  it('propagates the exit code and streams stderr', async () => {
    await startWith();
    const ws = fake.seedWorkspace();
    const r = await wsp(['exec', ws.id, '--', 'exit', '3', 'something', 'failed']);
    expect(r.code).toBe(3);
    expect(r.stderr).toBe('something failed\n');
    expect(r.stdout).toBe('');
  });

  it('runs a shell string with -c and prints its stdout exactly once', async () => {
    await startWith();
    const ws = fake.seedWorkspace();
    const r = await wsp(['exec', ws.id, '-c', 'echo hi there']);
    expect([r.code, r.stdout]).toEqual([0, 'hi there\n']);
    expect(fake.calls.find((c) => c.method === 'runCommand')?.args[1]).toMatchObject({
      command: 'echo hi there',
      waitMs: 0,
    });
  });

  it('streams output of a running command over SSE, nothing doubled or lost', async () => {
    await startWith();
    const ws = fake.seedWorkspace();
    const r = await wsp([
      'exec',
      ws.id,
      '--cwd',
      'sub',
      '--timeout-ms',
      '5000',
      '--env',
      'A=1',
      '--',
      'ticks',
      '4',
      '30',
    ]);
    expect([r.code, r.stdout]).toEqual([0, 'tick 1\ntick 2\ntick 3\ntick 4\n']);
    expect(fake.calls.map((c) => c.method)).toContain('watchCommand');
    expect(fake.calls.find((c) => c.method === 'runCommand')?.args[1]).toMatchObject({
      argv: ['ticks', '4', '30'],
      cwd: 'sub',
      timeoutMs: 5000,
      env: { A: '1' },
    });
  });

  it('pipes stdin when it is not a terminal', async () => {
    await startWith();
    const ws = fake.seedWorkspace();
    const r = await wsp(['exec', ws.id, '--', 'cat'], { input: 'piped data\nline 2\n' });
    expect([r.code, r.stdout]).toEqual([0, 'piped data\nline 2\n']);
  });

  it('--json prints the final command view and still exits with its code', async () => {
    await startWith();
    const ws = fake.seedWorkspace();
    const r = await wsp(['exec', ws.id, '--json', '--', 'exit', '7']);
    expect(r.code).toBe(7);
    expect(JSON.parse(r.stdout)).toMatchObject({ state: 'exited', exitCode: 7 });
  });

  it('Ctrl-C cancels the remote command and exits 130', async () => {
    await startWith();
    const ws = fake.seedWorkspace();
    const watching = new Promise<void>((resolve) => {
      fake.onCall = (call) => call.method === 'watchCommand' && resolve();
    });
    const { child, done } = spawnCli(['exec', ws.id, '--', 'hang']);
    await watching;
    child.kill('SIGINT');
    const r = await done;
    expect(r.code).toBe(130);
    const cancel = fake.calls.find((c) => c.method === 'cancelCommand');
    expect(cancel?.args[0]).toBe(ws.id);
    const listed = await fetch(`${server.url}/workspaces/${ws.id}/commands`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(((await listed.json()) as any).commands[0].state).toBe('killed');
  });

  it('an API error exits 1 with its code and message', async () => {
    await startWith();
    const ws = fake.seedWorkspace();
    fake.finishProvisioning(ws.id, 'failed');
    const r = await wsp(['exec', ws.id, '--', 'echo', 'x']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^wsp: conflict: workspace .* is failed, not ready/);
  });
});

describe('wsp usage errors exit 2', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['no command', [], /missing command/],
    ['unknown command', ['frobnicate'], /unknown command 'frobnicate'/],
    ['missing id', ['show'], /'show' needs <id>/],
    ['exec without argv or -c', ['exec', 'ws-abcdefgh1234'], /either/],
    ['exec with both argv and -c', ['exec', 'ws-abcdefgh1234', '-c', 'ls', '--', 'ls'], /either/],
    ['option of another command', ['ls', '--cwd', 'x'], /--cwd does not apply to 'ls'/],
    ['unknown option', ['ls', '--bogus'], /unknown option '--bogus'/],
    ['command flags without --', ['exec', 'ws-abcdefgh1234', 'ls', '-la'], /unknown option '-l'/],
    ['malformed --ref', ['setup', '--ref', 'main'], /--ref expects KEY=VALUE/],
    [
      'non-numeric --timeout-ms',
      ['exec', 'ws-abcdefgh1234', '--timeout-ms', 'soon', '--', 'ls'],
      /--timeout-ms expects a non-negative integer/,
    ],
    ['extra positional', ['rm', 'ws-abcdefgh1234', 'ws-abcdefgh5678'], /unexpected argument/],
  ];
  it.each(cases)('%s', async (_name, args, message) => {
    await startWith();
    const r = await wsp(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toContain("Run 'wsp --help'");
    expect(fake.calls).toEqual([]);
  });

  it('--help prints usage and exits 0', async () => {
    await startWith();
    const r = await wsp(['--help']);
    expect([r.code, r.stdout.startsWith('Usage: wsp')]).toEqual([0, true]);
  });
});

describe('wsp workspace commands', () => {
  it('setup prints progress and setup output on stderr, the id on stdout', async () => {
    await startWith();
    const r = await wsp([
      'setup',
      '--ref',
      'app=main',
      '--ref',
      '.=v1.0',
      '--env',
      'NODE_ENV=test',
      '--label',
      'team=core',
    ]);
    expect(r.code).toBe(0);
    const id = r.stdout.trim();
    expect(id).toMatch(/^ws-[a-f0-9]+$/);
    expect(r.stderr).toContain('[clone] cloned 1 repository');
    expect(r.stderr).toContain('[setup] running setup script');
    expect(r.stderr).toContain('installing dependencies');
    expect(r.stderr).toContain(`workspace ${id} ready`);
    expect(fake.calls[0]).toEqual({
      method: 'createWorkspace',
      args: [{ refs: { app: 'main', '.': 'v1.0' }, env: { NODE_ENV: 'test' }, labels: { team: 'core' } }],
    });
  });

  it('setup exits 1 when provisioning fails, naming the failed step', async () => {
    await startWith({ failSetup: true });
    const r = await wsp(['setup']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('npm ERR! boom');
    expect(r.stderr).toMatch(/failed: setup: setup exited with code 1/);
  });

  it('setup --no-wait prints the id at once; a schema error is exit 1 with every bad field', async () => {
    await startWith({ manualProvisioning: true });
    const quick = await wsp(['setup', '--no-wait']);
    expect([quick.code, quick.stdout]).toEqual([0, expect.stringMatching(/^ws-[a-f0-9]+\n$/)]);
    const bad = await wsp(['setup', '--ref', '../x=main', '--env', '1BAD=x']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('wsp: bad_request:');
    expect(bad.stderr).toContain('body.refs["../x"]');
    expect(bad.stderr).toContain('body.env["1BAD"]');
  });

  it('ls, show, fetch, reset, changes, rm', async () => {
    await startWith();
    const ws = fake.seedWorkspace({ team: 'core' });
    const ls = await wsp(['ls']);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(
      new RegExp(`^ID\\s+STATUS\\s+CREATED\\s+LABELS\\n${ws.id}\\s+ready\\s+\\S+\\s+team=core\\n$`),
    );
    const lsJson = await wsp(['ls', '--json']);
    expect(JSON.parse(lsJson.stdout).map((w: { id: string }) => w.id)).toEqual([ws.id]);
    const show = await wsp(['show', ws.id]);
    expect(show.stdout).toContain(`id:        ${ws.id}`);
    expect(show.stdout).toContain('cache:     miss (no entry for key)');
    const fetched = await wsp(['fetch', ws.id, '--repo', '.', '--checkout', '.=main']);
    expect(fetched.stdout).toBe(`.: ${'a'.repeat(12)} -> ${'b'.repeat(12)}, checked out main\n`);
    expect(fake.calls.find((c) => c.method === 'fetch')?.args[1]).toEqual({
      repos: ['.'],
      checkout: { repo: '.', ref: 'main' },
    });
    const reset = await wsp(['reset', ws.id, '--ref', '.=v2']);
    expect(reset.code).toBe(0);
    expect(reset.stdout).toMatch(/matches the baseline \(2 restored, 1 removed\)/);
    expect(fake.calls.find((c) => c.method === 'reset')?.args[1]).toEqual({ refs: { '.': 'v2' } });
    expect((await wsp(['events', ws.id])).stdout).toBe('no webhook events\n');
    expect(JSON.parse((await wsp(['events', ws.id, '--json'])).stdout)).toEqual([]);
    const changes = await wsp(['changes', ws.id]);
    expect(changes.stdout).toContain('M  README.md\n');
    expect(changes.stdout).toContain('+new\n');
    const rm = await wsp(['rm', ws.id]);
    expect([rm.code, rm.stdout]).toEqual([0, `${ws.id} deleted\n`]);
  });

  it('usage: one line per resource and its limit, --json the answer; an unknown workspace exits 1', async () => {
    await startWith();
    const ws = fake.seedWorkspace();
    const usage = await wsp(['usage', ws.id]);
    expect(usage.code).toBe(0);
    const lines = usage.stdout.split('\n');
    expect(lines.slice(0, 5)).toEqual([
      'cpu:    1.50 s',
      'memory: 3.0 MiB', // no limit: none shown
      'disk:   5.0 MiB of 1.0 GiB',
      'pids:   4 of 1024',
      'source: fake',
    ]);
    expect(lines[5]).toMatch(/^at: {5}\d{4}-\d\d-\d\dT/);
    expect(JSON.parse((await wsp(['usage', ws.id, '--json'])).stdout)).toMatchObject({
      workspaceId: ws.id,
      memory: { currentBytes: 3 * 1024 * 1024, limitBytes: null },
    });
    const missing = await wsp(['usage', 'ws-000000000000000000000000']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('not_found');
  });

  it('reset exits 1 when the fingerprint does not match the baseline', async () => {
    await startWith();
    const ws = fake.seedWorkspace();
    fake.stub('reset', async () =>
      doneOperation(ws.id, 'reset', { fingerprint: 'a', baselineFingerprint: 'b', matches: false, durationMs: 1 }),
    );
    const r = await wsp(['reset', ws.id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('did not reach the baseline');
  });

  it('reset --recreate asks for mode recreate and says what replaced what', async () => {
    await startWith();
    const ws = fake.seedWorkspace();
    fake.stub('reset', async () =>
      doneOperation(ws.id, 'reset', {
        fingerprint: 'n',
        baselineFingerprint: 'n',
        matches: true,
        recreated: true,
        previousBaselineFingerprint: 'o',
        durationMs: 1,
      }),
    );
    const r = await wsp(['reset', ws.id, '--recreate']);
    expect(r.code).toBe(0);
    expect(fake.calls.filter((c) => c.method === 'reset').at(-1)?.args[1]).toEqual({ mode: 'recreate' });
    expect(r.stdout).toContain('recreated from the cache entry: new baseline n (was o)');
  });

  it('unknown workspace → exit 1 with not_found', async () => {
    await startWith();
    const r = await wsp(['show', 'ws-000000000000']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("wsp: not_found: workspace 'ws-000000000000' not found\n");
  });
});

describe('wsp connection settings', () => {
  it('reads the token from <data dir>/auth-token when none is given', async () => {
    await startWith();
    const dataDir = path.join(tmp, 'data');
    fs.mkdirSync(dataDir, { recursive: true });
    fs.writeFileSync(path.join(dataDir, 'auth-token'), `${TOKEN}\n`, { mode: 0o600 });
    const viaFlag = await wsp(['ls', '--data-dir', dataDir, '--json'], { env: { WSP_TOKEN: '' } });
    expect(viaFlag.code).toBe(0);
    const viaEnv = await wsp(['ls', '--json'], { env: { WSP_TOKEN: '', WSP_DATA_DIR: dataDir } });
    expect(viaEnv.code).toBe(0);
  });

  it('a wrong token is exit 1 unauthorized; --url and --token override the env', async () => {
    await startWith();
    const wrong = await wsp(['ls'], { env: { WSP_TOKEN: 'wrong-token' } });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('wsp: unauthorized:');
    const flags = await wsp(['ls', '--json', '--url', server.url, '--token', TOKEN], {
      env: { WSP_URL: 'http://127.0.0.1:9', WSP_TOKEN: 'wrong' },
    });
    expect(flags.code).toBe(0);
  });

  it('an unreachable server is exit 1 with a clear message', async () => {
    await startWith();
    const url = server.url;
    await server.close();
    const r = await wsp(['ls'], { env: { WSP_URL: url } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`wsp: unreachable: cannot reach ${url}`);
  });
});

/** `wsp serve` runs the real provider (functions/server/main.ts → startProvider). */

describe('wsp serve', () => {
  it('starts the provider; other commands find it with the token file; SIGINT stops it', async () => {
    fs.chmodSync(tmp, 0o711); // workspace uids must traverse to their dirs under the data dir
    const dataDir = path.join(tmp, 'serve-data');
    const { child, done } = spawnCli(['serve', '--host', '127.0.0.1', '--port', '0', '--data-dir', dataDir], {
      env: { WSP_TOKEN: '' },
    });
    const url = await new Promise<string>((resolve, reject) => {
      let seen = '';
      child.stdout!.on('data', (chunk: string) => {
        seen += chunk;
        const match = /serving on (http:\/\/\S+)/.exec(seen);
        if (match) resolve(match[1]!);
      });
      void done.then((r) => reject(new Error(`serve exited ${r.code}: ${r.stderr}`)));
    });
    try {
      const ls = await wsp(['ls', '--json', '--url', url, '--data-dir', dataDir], { env: { WSP_TOKEN: '' } });
      expect([ls.code, JSON.parse(ls.stdout)]).toEqual([0, []]);
      const anonymous = await wsp(['ls', '--url', url, '--data-dir', path.join(tmp, 'elsewhere')], {
        env: { WSP_TOKEN: '' },
      });
      expect(anonymous.code).toBe(1);
      expect(anonymous.stderr).toContain('unauthorized');
    } finally {
      child.kill('SIGINT');
    }
    expect((await done).code).toBe(0);
  });
});

describe('wsp cp and wsp files', () => {
  it('copies a file in and out byte for byte (ID:PATH either side, - for stdin/stdout)', async () => {
    await startWith();
    const ws = fake.seedWorkspace();
    const bytes = Buffer.from([0, 1, 2, 0xff, 0x0a, 0, 0x80]);
    fs.writeFileSync(path.join(tmp, 'in.bin'), bytes);
    const put = await wsp(['cp', 'in.bin', `${ws.id}:sub/`, '--mode', '0600']);
    expect(put.code, put.stderr).toBe(0);
    expect(fake.calls.find((c) => c.method === 'writeFile')?.args[1]).toEqual({ path: 'sub/in.bin', mode: '0600' });
    const out = await wsp(['cp', `${ws.id}:sub/in.bin`, 'out.bin']);
    expect(out.code, out.stderr).toBe(0);
    expect(fs.readFileSync(path.join(tmp, 'out.bin')).equals(bytes)).toBe(true);
    // Into a local directory: the remote name is kept. From stdin, to stdout.
    fs.mkdirSync(path.join(tmp, 'dir'), { recursive: true });
    expect((await wsp(['cp', `${ws.id}:sub/in.bin`, 'dir'])).code).toBe(0);
    expect(fs.readFileSync(path.join(tmp, 'dir', 'in.bin')).equals(bytes)).toBe(true);
    expect((await wsp(['cp', '-', `${ws.id}:/tmp/t.txt`], { input: 'text in\n' })).code).toBe(0);
    const cat = await wsp(['cp', `${ws.id}:/tmp/t.txt`, '-']);
    expect([cat.code, cat.stdout]).toEqual([0, 'text in\n']);
  });

  it('cp -r copies a directory in and out through the archive routes (the local tar packs and unpacks)', async () => {
    await startWith();
    const ws = fake.seedWorkspace();
    const src = path.join(tmp, 'tree-src');
    fs.mkdirSync(path.join(src, 'sub', 'empty'), { recursive: true });
    fs.writeFileSync(path.join(src, 'sub', 'bin.dat'), Buffer.from([0, 0xff, 0x0a, 0]));
    fs.writeFileSync(path.join(src, 'run.sh'), 'echo hi\n', { mode: 0o755 });
    fs.symlinkSync('run.sh', path.join(src, 'link'));
    const put = await wsp(['cp', '-r', 'tree-src', `${ws.id}:dest`]);
    expect(put.code, put.stderr).toBe(0);
    expect(put.stderr).toMatch(/tree-src -> ws-\w+:\/home\/node\/workspace\/dest \(6 entries/);
    const call = fake.calls.find((c) => c.method === 'writeArchive');
    expect(call?.args[1]).toEqual({ path: 'dest' });
    const out = await wsp(['cp', '-r', `${ws.id}:dest`, 'tree-out/nested']);
    expect(out.code, out.stderr).toBe(0);
    const dst = path.join(tmp, 'tree-out', 'nested');
    expect(fs.readFileSync(path.join(dst, 'sub', 'bin.dat')).equals(Buffer.from([0, 0xff, 0x0a, 0]))).toBe(true);
    expect(fs.statSync(path.join(dst, 'run.sh')).mode & 0o111).not.toBe(0);
    expect(fs.readlinkSync(path.join(dst, 'link'))).toBe('run.sh');
    expect(fs.statSync(path.join(dst, 'sub', 'empty')).isDirectory()).toBe(true);
    // `-`: the tar itself on stdout (no local tar involved).
    const raw = await wsp(['cp', '-r', `${ws.id}:dest`, '-']);
    expect(raw.stdout).toContain('./sub/bin.dat');
    expect((await wsp(['cp', '-r', 'tree-src', `${ws.id}:x`, '--mode', '0644'])).code).toBe(2);
    const missing = await wsp(['cp', '-r', `${ws.id}:nowhere`, 'x']);
    expect([missing.code, missing.stderr]).toEqual([1, expect.stringMatching(/not_found/)]);
  });

  it('lists, stats and removes; errors are the API answer (exit 1), misuse is a usage error (exit 2)', async () => {
    await startWith();
    const ws = fake.seedWorkspace();
    await wsp(['cp', '-', `${ws.id}:a/one.txt`], { input: '1' });
    await wsp(['cp', '-', `${ws.id}:a/b/two.txt`], { input: '22' });
    const flat = await wsp(['files', 'ls', ws.id, 'a']);
    expect(flat.code, flat.stderr).toBe(0);
    expect(flat.stdout).toMatch(/^-0644 +1 \S+ one\.txt\n$/);
    const deep = await wsp(['files', 'ls', ws.id, 'a', '-r', '--json']);
    expect(JSON.parse(deep.stdout).entries.map((e: any) => e.name)).toEqual(['two.txt', 'one.txt']);
    const stat = await wsp(['files', 'stat', ws.id, 'a/b/two.txt', '--json']);
    expect(JSON.parse(stat.stdout)).toMatchObject({ type: 'file', size: 2 });
    expect((await wsp(['files', 'rm', ws.id, 'a/one.txt'])).code).toBe(0);
    const gone = await wsp(['files', 'stat', ws.id, 'a/one.txt']);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/not_found/);
    const outside = await wsp(['cp', `${ws.id}:/etc/passwd`, '-']);
    expect(outside.code).toBe(1);
    expect(outside.stderr).toMatch(/bad_request: .*outside/);
    expect((await wsp(['cp', 'a', 'b'])).code).toBe(2);
    expect((await wsp(['files', 'chmod', ws.id, 'x'])).code).toBe(2);
    expect((await wsp(['files', 'stat', ws.id])).code).toBe(2);
  });
});
