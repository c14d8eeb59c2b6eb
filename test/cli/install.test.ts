import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildAndInstall,
  cleanEnv,
  runWsp,
  serveInstalled,
  type InstalledCli,
  type ServedProvider,
} from '../support/installed-cli.js';
import { processesWith } from '../support/wait.js';

// The CLI as users get it (issue 14): compiled JavaScript in a packed tarball, installed into a prefix,
// `wsp` found on PATH, run with a clean environment — no tsx anywhere (it is not even installed). The
// provider it serves runs the local backend from the compiled package: its command supervisor
// (daemon.js, a process of its own), the in-sandbox forker (forker.py) and setup's egress script.

const ROOT = path.resolve(import.meta.dirname, '..', '..');

let tmp: string;
let installed: InstalledCli;
let env: Record<string, string>;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-install-'));
  installed = buildAndInstall(tmp);
  env = cleanEnv(installed.binDir);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Every file a directory tree holds, relative to it. */
function filesUnder(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true, withFileTypes: true }) as fs.Dirent[])
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

describe('the packed CLI', () => {
  it('npm pack lists the compiled CLI, the supervisor and every helper script the code runs', () => {
    const [packed] = JSON.parse(
      execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
        cwd: installed.staging,
        encoding: 'utf8',
      }),
    ) as Array<{ files: Array<{ path: string; mode: number }> }>;
    const files = new Map(packed!.files.map((f) => [f.path, f.mode]));
    const bin = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { bin: { wsp: string } }).bin
      .wsp;
    expect(bin).toBe('dist/functions/cli/wsp.js');
    expect(files.get(bin)! & 0o111).not.toBe(0);
    expect(files.has('dist/shared/backends/local/supervisor/daemon.js')).toBe(true);
    // Each helper of the source tree (shell and python scripts beside the modules) ships at its place.
    const helpers = filesUnder(path.join(ROOT, 'shared')).filter((f) => /\.(sh|py)$/.test(f));
    expect(helpers).toEqual(
      expect.arrayContaining(['backends/local/supervisor/forker.py', 'backends/runner/runner.sh']),
    );
    for (const helper of helpers) expect([...files.keys()]).toContain(`dist/shared/${helper}`);
    // No TypeScript and nothing of the tests or infrastructure.
    expect([...files.keys()].filter((f) => !/^(dist\/.*\.(js|sh|py)|package\.json|README\.md)$/.test(f))).toEqual([]);
  });

  it('is plain JavaScript that never loads tsx, and tsx is not installed with it', () => {
    const js = filesUnder(path.join(installed.packageDir, 'dist')).filter((f) => f.endsWith('.js'));
    expect(js.length).toBeGreaterThan(50);
    const head = fs.readFileSync(path.join(installed.packageDir, 'dist/functions/cli/wsp.js'), 'utf8').split('\n')[0];
    expect(head).toBe('#!/usr/bin/env node');
    for (const f of js) {
      const text = fs.readFileSync(path.join(installed.packageDir, 'dist', f), 'utf8');
      expect(text, f).not.toMatch(/(from\s*|import\s*\(\s*|require\s*\(\s*)["']tsx/);
    }
    expect(fs.existsSync(path.join(installed.packageDir, 'node_modules', 'tsx'))).toBe(false);
    expect(fs.existsSync(path.join(installed.packageDir, 'node_modules', 'ws'))).toBe(true);
  });

  it('wsp --help runs from PATH with a clean environment', async () => {
    const r = await runWsp(env, ['--help'], tmp);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Usage: wsp <command>/);
    const completion = await runWsp(env, ['completion', 'bash'], tmp);
    expect(completion.stdout).toContain('complete -o default -F _wsp wsp');
  });
});

describe('wsp serve from the installed package', () => {
  let served: ServedProvider;
  const cli = (args: string[]) => runWsp({ ...env, WSP_URL: served.url, WSP_DATA_DIR: served.dataDir }, args, tmp);

  beforeAll(async () => {
    served = await serveInstalled(env, tmp, ['--setup', 'echo "setup ran"']);
  });
  afterAll(() => served?.stop());

  it('create, exec and rm through the PATH binary: the compiled supervisor and forker run the commands', async () => {
    const created = await cli(['create']);
    expect(created.code, created.stderr).toBe(0);
    const id = created.stdout.trim();
    expect(id).toMatch(/^ws-[0-9a-f]+$/);
    expect(created.stderr).toContain('setup ran');

    const hello = await cli(['exec', id, '-c', 'echo hello from $(id -un)']);
    expect([hello.code, hello.stdout, hello.stderr]).toEqual([0, 'hello from node\n', '']);
    // The supervisor the provider started is the compiled one, run by node without a loader.
    const daemon = path.join(installed.packageDir, 'dist/shared/backends/local/supervisor/daemon.js');
    expect(processesWith(daemon)).toBeGreaterThan(0);
    // Where the host can run forkers (root, bwrap, cgroups, python3), the workspace's commands come
    // from forker.py — copied from the package into the workspace's channel dir.
    if (process.getuid?.() === 0 && fs.existsSync('/usr/bin/python3') && hasBwrap()) {
      const ps = await cli(['exec', id, '--', 'ps', '-eo', 'args']);
      expect(ps.stdout).toContain('/run/wsp-forker/forker.py');
    }
    const rm = await cli(['rm', id]);
    expect(rm.code, rm.stderr).toBe(0);
  });
});

function hasBwrap(): boolean {
  try {
    execFileSync('bwrap', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
