import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { build, type Metafile } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';

// Every Lambda entry bundles as NodejsFunction would (esbuild, platform node, target node22) — in
// both output formats — and no bundle contains dockerode or the local/docker backends: the backends
// are chosen by mode at run time and must never be pulled in statically.
const root = path.resolve(import.meta.dirname, '..', '..');
const lambdaDir = path.join(root, 'functions', 'lambda');
const ENTRIES = ['api.ts', 'worker.ts', 'task-events.ts', 'janitor.ts', 'authorizer.ts'];
const FORBIDDEN = [/(^|\/)node_modules\/dockerode\//, /(^|\/)node_modules\/docker-modem\//, /^shared\/backends\/local\//, /^shared\/backends\/docker\//];
const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-bundle-'));

afterAll(() => fs.rmSync(outDir, { recursive: true, force: true }));

async function bundle(entry: string, format: 'esm' | 'cjs'): Promise<Metafile> {
  const result = await build({
    entryPoints: [path.join(lambdaDir, entry)],
    bundle: true,
    platform: 'node',
    target: 'node22',
    format,
    // Nothing external (not even @aws-sdk/*, which NodejsFunction may leave to the runtime): the
    // check then sees every module a handler can reach.
    outfile: path.join(outDir, `${format}-${entry.replace(/\.ts$/, format === 'esm' ? '.mjs' : '.cjs')}`),
    metafile: true,
    logLevel: 'silent',
    absWorkingDir: root,
  });
  expect(result.errors).toEqual([]);
  return result.metafile;
}

describe('Lambda bundles', () => {
  it('every entry the CDK stack references exists and exports a handler', async () => {
    expect(fs.readdirSync(lambdaDir)).toEqual(expect.arrayContaining(ENTRIES));
    for (const entry of ENTRIES) {
      const mod = (await import(path.join(lambdaDir, entry))) as { handler?: unknown };
      expect(typeof mod.handler, entry).toBe('function');
    }
  });

  for (const format of ['esm', 'cjs'] as const) {
    for (const entry of ENTRIES) {
      it(`${entry} (${format}) bundles without dockerode or the local/docker backends`, async () => {
        const meta = await bundle(entry, format);
        const inputs = Object.keys(meta.inputs);
        // The check has teeth only if it sees the real module graph: our own handler and shared code are in it.
        expect(inputs).toContain(`functions/lambda/${entry}`);
        expect(inputs.some((i) => i.startsWith('shared/'))).toBe(true);
        const forbidden = inputs.filter((i) => FORBIDDEN.some((re) => re.test(i)));
        expect(forbidden).toEqual([]);
      });
    }
  }

  it('the check would catch a backend: bundling the local server composition does include it', async () => {
    const result = await build({
      entryPoints: [path.join(root, 'functions', 'server', 'provider.ts')],
      bundle: true, platform: 'node', target: 'node22', format: 'esm', write: false, metafile: true, logLevel: 'silent', absWorkingDir: root,
    });
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.filter((i) => FORBIDDEN.some((re) => re.test(i))).length).toBeGreaterThan(0);
  });
});
