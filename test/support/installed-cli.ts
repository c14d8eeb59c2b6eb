import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * The CLI as a package: built (functions/cli/build.mjs) into a staging copy of the package, packed with
 * `npm pack`, and installed from that tarball into a prefix the way `npm install -g --prefix` lays it
 * out (`<prefix>/lib/node_modules/<name>`, `<prefix>/bin/wsp` → the package's `bin`). The install is
 * done by hand because npm cannot resolve the dependencies offline (its cache holds tarballs, not the
 * registry's metadata): the package's node_modules links the checkout's *production* dependencies
 * only (the lockfile's non-dev entries), so what is left out of `dependencies` — tsx above all — is
 * missing there, as on a user's machine.
 */

const ROOT = path.resolve(import.meta.dirname, '..', '..');

export interface InstalledCli {
  /** The staging package (package.json, README.md, dist/) that was packed. */
  staging: string;
  tarball: string;
  /** `<prefix>/lib/node_modules/<name>`: the installed package. */
  packageDir: string;
  /** `<prefix>/bin`: put it first on PATH. */
  binDir: string;
}

export function buildAndInstall(tmp: string): InstalledCli {
  const staging = path.join(tmp, 'staging');
  fs.mkdirSync(staging, { recursive: true });
  for (const f of ['package.json', 'README.md']) fs.copyFileSync(path.join(ROOT, f), path.join(staging, f));
  execFileSync(process.execPath, [path.join(ROOT, 'functions/cli/build.mjs'), '--outdir', path.join(staging, 'dist')], {
    stdio: 'ignore',
  });
  // --ignore-scripts: `prepare` would build again, from sources the staging copy does not have.
  const packed = JSON.parse(
    execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], {
      cwd: staging,
      encoding: 'utf8',
    }),
  ) as Array<{ name: string; filename: string }>;
  const { name, filename } = packed[0]!;
  const tarball = path.join(tmp, filename);

  const prefix = path.join(tmp, 'prefix');
  const packageDir = path.join(prefix, 'lib', 'node_modules', name);
  fs.mkdirSync(packageDir, { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', packageDir, '--strip-components=1']);
  const modules = path.join(packageDir, 'node_modules');
  fs.mkdirSync(modules);
  for (const dep of productionPackages()) {
    const from = path.join(ROOT, 'node_modules', dep);
    if (!fs.existsSync(from)) continue; // an optional one for another platform
    fs.mkdirSync(path.dirname(path.join(modules, dep)), { recursive: true });
    fs.symlinkSync(from, path.join(modules, dep));
  }
  const binDir = path.join(prefix, 'bin');
  fs.mkdirSync(binDir);
  const bin = (JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8')) as { bin: { wsp: string } })
    .bin.wsp;
  fs.symlinkSync(path.relative(binDir, path.join(packageDir, bin)), path.join(binDir, 'wsp'));
  return { staging, tarball, packageDir, binDir };
}

/** Top-level packages the lockfile installs for production (dependencies and theirs, hoisted). */
function productionPackages(): string[] {
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean }>;
  };
  return Object.entries(lock.packages)
    .filter(([key, entry]) => /^node_modules\/(@[^/]+\/)?[^/]+$/.test(key) && entry.dev !== true)
    .map(([key]) => key.slice('node_modules/'.length));
}

/**
 * A clean environment for the installed `wsp`: PATH with its bin dir first, HOME, and nothing of
 * this process (no NODE_OPTIONS — vitest's own loaders stay out — and no WSP_* settings).
 */
export function cleanEnv(binDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: `${binDir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
    HOME: process.env.HOME ?? '/root',
    NODE_OPTIONS: '',
    ...extra,
  };
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `wsp …` found on PATH (spawned by name, as a shell would). */
export function runWsp(env: Record<string, string>, args: string[], cwd: string): Promise<Run> {
  return finished(startWsp(env, args, cwd));
}

function startWsp(env: Record<string, string>, args: string[], cwd: string): ChildProcess {
  const child = spawn('wsp', args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.setEncoding('utf8');
  child.stderr!.setEncoding('utf8');
  return child;
}

function finished(child: ChildProcess): Promise<Run> {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: string) => (stdout += c));
  child.stderr!.on('data', (c: string) => (stderr += c));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export interface ServedProvider {
  url: string;
  dataDir: string;
  /** SIGINT, and wait for it to exit. */
  stop(): Promise<void>;
}

/** `wsp serve` of the installed package on 127.0.0.1 (any port), its data dir under `tmp`. */
export async function serveInstalled(
  env: Record<string, string>,
  tmp: string,
  flags: string[] = [],
): Promise<ServedProvider> {
  fs.chmodSync(tmp, 0o711); // workspace uids traverse to their dirs under the data dir
  const dataDir = path.join(tmp, 'data');
  const server = startWsp(env, ['serve', '--host', '127.0.0.1', '--port', '0', '--data-dir', dataDir, ...flags], tmp);
  const exited = finished(server);
  const url = await new Promise<string>((resolve, reject) => {
    let seen = '';
    server.stdout!.on('data', (chunk: string) => {
      seen += chunk;
      const match = /serving on (http:\/\/\S+)/.exec(seen);
      if (match) resolve(match[1]!);
    });
    void exited.then((r) => reject(new Error(`serve exited ${r.code}: ${seen}${r.stderr}`)));
  });
  return {
    url,
    dataDir,
    async stop() {
      if (server.exitCode !== null || server.signalCode !== null) return;
      server.kill('SIGINT');
      await exited;
    },
  };
}
