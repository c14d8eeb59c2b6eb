import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { optionsOf, parseCli, SUBCOMMANDS, type Subcommand } from '../../functions/cli/args.js';
import {
  buildAndInstall,
  cleanEnv,
  runWsp,
  serveInstalled,
  type Run,
  type ServedProvider,
} from '../support/installed-cli.js';

// `--json` everywhere (issue 14): every subcommand of the parser's own table (the one completion is
// made from) run with --json by the installed CLI against a real provider (local backend): stdout is
// one JSON document, stderr stays empty (no progress unless --progress), errors are the API's error
// body on stderr with the usual exit codes.

let tmp: string;
let served: ServedProvider;
let env: Record<string, string>;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-json-'));
  const installed = buildAndInstall(tmp);
  env = cleanEnv(installed.binDir);
  served = await serveInstalled(env, tmp, ['--setup', 'echo "setup ran"']);
  env = { ...env, WSP_URL: served.url, WSP_DATA_DIR: served.dataDir };
});
afterAll(async () => {
  // Whatever a failed run left (a workspace's home can be a mount: delete before the provider stops).
  for (const w of JSON.parse((await wsp(['ls', '--json'])).stdout || '[]') as Array<{ id: string }>)
    await wsp(['rm', w.id]);
  await served?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const wsp = (args: string[]): Promise<Run> => runWsp(env, args, tmp);

/** What the JSON runs share: a workspace, a snapshot and a session made along the way. */
interface Made {
  id: string;
  snapshot: string;
  session: string;
  fork: string;
}

/**
 * One invocation per subcommand, in the order they run (later ones use what earlier ones made). Typed
 * over every Subcommand but mcp, so a new subcommand does not compile until it has its JSON check.
 * mcp is the exception: its stdout is the MCP protocol itself (JSON-RPC messages, test/mcp).
 */
const SAMPLES: Record<Exclude<Subcommand, 'mcp'>, (made: Made) => string[]> = {
  create: () => ['create'],
  setup: () => ['setup', '--no-wait'],
  ls: () => ['ls'],
  show: (m) => ['show', m.id],
  exec: (m) => ['exec', m.id, '--no-stdin', '-c', 'echo out; echo err >&2'],
  // Its stdin is /dev/null here: the eof it sends ends the read, once attached.
  shell: (m) => ['shell', m.id, '--', 'sh', '-c', 'read line; echo on the screen'],
  fetch: (m) => ['fetch', m.id],
  changes: (m) => ['changes', m.id],
  events: (m) => ['events', m.id],
  usage: (m) => ['usage', m.id],
  reset: (m) => ['reset', m.id], // before the session: a reset ends every process of the workspace
  cp: (m) => ['cp', path.join(tmp, 'local.txt'), `${m.id}:copied.txt`],
  files: (m) => ['files', 'stat', m.id, 'copied.txt'],
  snapshot: (m) => ['snapshot', 'create', m.id, '--name', 'json'],
  session: (m) => ['session', 'create', m.id],
  fork: (m) => ['fork', m.id, '-n', '1'],
  smoke: () => ['smoke'],
  rm: (m) => ['rm', m.fork],
};

describe('--json on every subcommand', () => {
  it('the parser accepts --json for each subcommand completion knows, and each has a JSON run below', () => {
    for (const name of Object.keys(SUBCOMMANDS) as Subcommand[]) {
      expect(optionsOf(name), name).toContain('--json');
      if (name !== 'mcp') expect(Object.keys(SAMPLES), `no --json check for '${name}'`).toContain(name);
    }
    expect(parseCli(['mcp', '--json']).values.json).toBe(true);
  });

  it('each prints one JSON document on stdout and nothing on stderr', async () => {
    fs.writeFileSync(path.join(tmp, 'local.txt'), 'local bytes\n');
    const made: Made = { id: '', snapshot: '', session: '', fork: '' };
    const answers = new Map<string, any>();
    for (const [name, sample] of Object.entries(SAMPLES)) {
      const [subcommand, ...rest] = sample(made);
      const r = await wsp([subcommand!, '--json', ...rest]); // before any `--`
      expect(r.code, `${name}: ${r.stderr}`).toBe(0);
      // `shell --json` draws the terminal on stderr: the screen is not the answer.
      if (name === 'shell') expect(r.stderr).toContain('on the screen');
      else expect(r.stderr, name).toBe('');
      const answer = JSON.parse(r.stdout);
      answers.set(name, answer);
      if (name === 'create') made.id = answer.id;
      if (name === 'snapshot') made.snapshot = answer.id;
      if (name === 'session') made.session = answer.id;
      if (name === 'fork') made.fork = answer.workspaces[0].id;
    }
    expect(answers.get('create')).toMatchObject({ status: 'ready', id: expect.stringMatching(/^ws-/) });
    expect(answers.get('ls').map((w: { id: string }) => w.id)).toContain(made.id);
    expect(answers.get('exec')).toMatchObject({ state: 'exited', exitCode: 0 });
    expect(answers.get('shell')).toMatchObject({ state: 'exited', exitCode: 0 });
    expect(answers.get('cp')).toMatchObject({ type: 'file', size: 12 });
    expect(answers.get('files')).toMatchObject({ type: 'file', size: 12 });
    expect(answers.get('snapshot')).toMatchObject({ id: expect.stringMatching(/^snap-/) });
    expect(answers.get('fork').workspaces).toHaveLength(1);
    expect(answers.get('reset')).toMatchObject({ matches: true });
    expect(answers.get('smoke')).toMatchObject({ ok: true });
    expect(answers.get('rm')).toMatchObject({ id: made.fork });

    // The other actions of the subcommands that have several.
    const more = [
      ['session', 'run', made.id, made.session, '-c', 'echo ran'],
      ['session', 'ls', made.id],
      ['snapshot', 'ls'],
      ['snapshot', 'rm', made.snapshot],
      ['files', 'ls', made.id, '.'],
      ['files', 'rm', made.id, 'copied.txt'],
    ];
    for (const args of more) {
      const r = await wsp([...args, '--json']);
      expect([r.code, r.stderr], args.join(' ')).toEqual([0, '']);
      expect(() => JSON.parse(r.stdout), args.join(' ')).not.toThrow();
    }
    // Copied out to a local file: what was written where.
    expect((await wsp(['cp', path.join(tmp, 'local.txt'), `${made.id}:`])).code).toBe(0);
    const out = await wsp(['cp', `${made.id}:local.txt`, path.join(tmp, 'back.txt'), '--json']);
    expect(JSON.parse(out.stdout)).toEqual({ destination: path.join(tmp, 'back.txt'), bytes: 12 });
    expect((await wsp(['rm', made.id, '--json'])).code).toBe(0);
  });

  it('errors are the API error body on stderr, exit codes unchanged; --progress brings progress back', async () => {
    const missing = await wsp(['show', 'ws-000000000000', '--json']);
    expect([missing.code, missing.stdout]).toEqual([1, '']);
    expect(JSON.parse(missing.stderr)).toEqual({
      error: { code: 'not_found', message: "workspace 'ws-000000000000' not found" },
    });
    const usage = await wsp(['show', '--json']);
    expect(usage.code).toBe(2);
    expect(JSON.parse(usage.stderr).error).toMatchObject({ code: 'usage', message: "'show' needs <id>" });
    const invalid = await wsp(['create', '--ref', '../x=main', '--json']);
    expect(invalid.code).toBe(1);
    expect(JSON.parse(invalid.stderr).error).toMatchObject({ code: 'bad_request', details: expect.any(Array) });

    const shown = await wsp(['create', '--json', '--progress']);
    expect(shown.code, shown.stderr).toBe(0);
    // Plain lines (stderr is a pipe): the steps of a cache hit (setup ran for the first create).
    expect(shown.stderr).toMatch(/^wsp: workspace ws-\w+ provisioning\n/);
    expect(shown.stderr).toContain('[ready] ready');
    const view = JSON.parse(shown.stdout);
    expect(view.status).toBe('ready');
    expect((await wsp(['rm', view.id])).code).toBe(0);
  });
});
