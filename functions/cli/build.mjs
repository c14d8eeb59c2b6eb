// `npm run build`: the installed CLI as plain JavaScript (no tsx at run time). Plain Node ESM.
//
// Compiled, not bundled: every source file the CLI can reach (its lazy imports included: `wsp serve`,
// `wsp mcp`, each backend) and the local command supervisor — started by path as a process of its own
// (shared/backends/local/supervisor/client.ts runs daemon.js when it sits beside it) — is transpiled to
// the same relative path under the output dir. So every lookup relative to a module's own URL
// (`new URL('./runner.sh', import.meta.url)`, forker.py, idmap-mount.py, net-egress.sh, the daemon)
// finds its file exactly as it does in the source tree, once the non-TypeScript files beside those
// modules are copied along. npm packages stay external: the package's `dependencies` provide them.
//
//   node functions/cli/build.mjs [--outdir DIR]      default: dist/ (package.json `bin` and `files` name it)
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const SELF = fileURLToPath(import.meta.url);
const ROOT = resolve(dirname(SELF), '..', '..');
/** The CLI (package.json `bin`) and the processes the provider starts from a file of its own. */
export const ENTRY_POINTS = ['functions/cli/wsp.ts', 'shared/backends/local/supervisor/daemon.ts'];
const TARGET = 'node20';

/** Builds into `outdir`; answers the files written, relative to it. */
export async function buildCli(outdir = join(ROOT, 'dist')) {
  // 1. What the entry points reach: a bundle's metafile (written nowhere) lists every source file.
  const graph = await build({
    absWorkingDir: ROOT,
    entryPoints: ENTRY_POINTS,
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: TARGET,
    write: false,
    metafile: true,
    outdir: 'unused',
    logLevel: 'silent',
  });
  const sources = Object.keys(graph.metafile.inputs).filter((f) => f.endsWith('.ts'));

  // 2. Each of them compiled to its own .js at the same relative path.
  rmSync(outdir, { recursive: true, force: true });
  await build({
    absWorkingDir: ROOT,
    entryPoints: sources,
    outbase: ROOT,
    outdir,
    bundle: false,
    platform: 'node',
    format: 'esm',
    target: TARGET,
    logLevel: 'warning',
  });
  const written = sources.map((f) => f.replace(/\.ts$/, '.js'));

  // 3. The helpers the code reads or runs from beside itself (*.sh, *.py): every non-TypeScript file
  //    of a directory that holds a compiled module (not this build script, which lives beside the CLI).
  for (const dir of new Set(sources.map((f) => dirname(f)))) {
    for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      if (!entry.isFile() || entry.name.endsWith('.ts') || join(ROOT, dir, entry.name) === SELF) continue;
      const from = join(ROOT, dir, entry.name);
      mkdirSync(join(outdir, dir), { recursive: true });
      copyFileSync(from, join(outdir, dir, entry.name));
      written.push(join(dir, entry.name));
    }
  }

  // 4. The CLI runs by its shebang (`bin`), so it is executable; the source's tsx shebang becomes node's.
  const cli = join(outdir, 'functions/cli/wsp.js');
  const text = readFileSync(cli, 'utf8').replace(/^#!.*\n/, '');
  writeFileSync(cli, `#!/usr/bin/env node\n${text}`);
  chmodSync(cli, 0o755);
  return written.sort();
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { outdir: { type: 'string' } } });
  const outdir = resolve(values.outdir ?? join(ROOT, 'dist'));
  const files = await buildCli(outdir);
  console.log(`build: ${files.length} files in ${relative(process.cwd(), outdir) || '.'}`);
}
