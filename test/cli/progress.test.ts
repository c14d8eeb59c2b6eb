import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpServer, type StartedHttpServer } from '../../functions/server/http-server.js';
import { shellQuote } from '../../shared/lib/shell-quote.js';
import { silentLogger } from '../../shared/log.js';
import { FakeWorkspaceService } from '../support/fake-service.js';
import { localPty } from '../support/pty.js';

// Progress of setup, fork and cp (issue 14) as a user sees it: plain lines on a pipe, a status line
// redrawn in place on a terminal (a real pty: `script`), always on stderr, never on stdout. Against the
// real HTTP server backed by the fake service (its setup emits two steps and a line of output).

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const CLI = path.join(ROOT, 'functions', 'cli', 'wsp.ts');
const TSX = import.meta.resolve('tsx');
const TOKEN = 'cli-progress-token-81c2';
const CLEAR_LINE = '\r\x1b[2K';

let fake: FakeWorkspaceService;
let server: StartedHttpServer;
let tmp: string;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-cli-progress-'));
  fake = new FakeWorkspaceService();
  server = await startHttpServer({ service: fake, authToken: TOKEN, log: silentLogger });
});
afterAll(async () => {
  await server?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const argv = (args: string[]) => [process.execPath, '--import', TSX, CLI, ...args];

/** stderr a pipe. */
function piped(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [cmd, ...rest] = argv(args);
  const child = spawn(cmd!, rest, { cwd: tmp, env: { ...process.env, WSP_URL: server.url, WSP_TOKEN: TOKEN } });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  child.stdin.end();
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

/** stderr a terminal (stdout to a file, so the screen shows stderr alone): the screen and stdout. */
async function onTerminal(args: string[]): Promise<{ screen: string; stdout: string }> {
  const out = path.join(tmp, `stdout-${Math.random().toString(16).slice(2)}`);
  // 200 columns: the status lines checked here fit (a longer one is cut to the terminal's width).
  const pty = localPty(
    `stty cols 200; cd ${shellQuote(tmp)} && ${argv(args).map(shellQuote).join(' ')} > ${shellQuote(out)}`,
    {
      WSP_URL: server.url,
      WSP_TOKEN: TOKEN,
    },
  );
  let screen = '';
  pty.onData((d) => (screen += d.toString()));
  await new Promise<void>((resolve) => pty.onClose(() => resolve()));
  return { screen, stdout: fs.readFileSync(out, 'utf8') };
}

describe('progress on a pipe: plain lines', () => {
  it('fork -n 3 says N of M ready as each settles; stdout has only the ids', async () => {
    const ws = fake.seedWorkspace();
    const r = await piped(['fork', ws.id, '-n', '3']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('wsp: fork:'));
    expect(lines.map((l) => /(\d) of 3 ready/.exec(l)?.[1])).toEqual(['1', '2', '3']);
    expect(r.stdout.trim().split('\n')).toHaveLength(3);
    expect(r.stderr).not.toContain('\r');
  });

  it('cp of a large file: a line at each quarter, bytes of the total, both ways', async () => {
    const ws = fake.seedWorkspace();
    fs.writeFileSync(path.join(tmp, 'big.bin'), Buffer.alloc(1024 * 1024, 7)); // the server's body limit
    const up = await piped(['cp', 'big.bin', `${ws.id}:big.bin`]);
    expect(up.code, JSON.stringify(up.stderr)).toBe(0);
    const quarters = up.stderr.split('\n').filter((l) => / \/ 1\.0 MiB \(\d+%\)$/.test(l));
    expect(quarters.map((l) => /\((\d+)%\)/.exec(l)?.[1])).toEqual(['25', '50', '75', '100']);
    const down = await piped(['cp', `${ws.id}:big.bin`, 'back.bin']);
    expect(down.code, down.stderr).toBe(0);
    expect(down.stderr).toContain('1.0 MiB / 1.0 MiB (100%)\n');
    expect(fs.readFileSync(path.join(tmp, 'back.bin')).equals(fs.readFileSync(path.join(tmp, 'big.bin')))).toBe(true);
    // A small file: no progress lines, only the summary.
    fs.writeFileSync(path.join(tmp, 'small.txt'), 'x');
    const small = await piped(['cp', 'small.txt', `${ws.id}:small.txt`]);
    expect(small.stderr).toBe(`wsp: 1 bytes -> ${ws.id}:small.txt\n`);
  });
});

describe('progress on a terminal: one status line, redrawn', () => {
  it('setup: the step count, step and latest setup output on the status line; stdout only the id', async () => {
    const { screen, stdout } = await onTerminal(['setup']);
    expect(stdout).toMatch(/^ws-[0-9a-f]+\n$/);
    const id = stdout.trim();
    expect(screen).toContain(`${CLEAR_LINE}wsp: ${id} [step 1] clone: cloned 1 repository`);
    expect(screen).toContain(`${CLEAR_LINE}wsp: ${id} [step 2] setup: running setup script | installing dependencies`);
    // Steps and output are not printed as lines of their own; the status line is cleared at the end.
    expect(screen).not.toMatch(/^\[clone\]/m);
    expect(screen).toContain(`${CLEAR_LINE}wsp: workspace ${id} ready`);
  });

  it('fork: N of M ready on the status line', async () => {
    const ws = fake.seedWorkspace();
    const { screen, stdout } = await onTerminal(['fork', ws.id, '-n', '2']);
    expect(stdout.trim().split('\n')).toHaveLength(2);
    expect(screen).toContain(`${CLEAR_LINE}wsp: fork: 0 of 2 ready`);
    expect(screen).toContain(`${CLEAR_LINE}wsp: fork: 2 of 2 ready (ws-`);
  });

  it('a failed setup shows the last lines of its output after all', async () => {
    await server.close();
    fake = new FakeWorkspaceService({ failSetup: true });
    server = await startHttpServer({ service: fake, authToken: TOKEN, log: silentLogger });
    const { screen } = await onTerminal(['setup']);
    expect(screen).toContain('wsp: the last 2 line(s) of setup output:');
    expect(screen).toMatch(/ {2}installing dependencies\r?\n.* {2}npm ERR! boom/s);
    expect(screen).toMatch(/failed: setup: setup exited with code 1/);
  });
});
