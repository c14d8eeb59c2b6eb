import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { build, type Metafile } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { hashApiKey } from '../../functions/lambda/api-keys.js';
import { startTcpDynalite } from '../support/dynalite-tcp.js';
import { apiEvent } from './events.js';

// Every Lambda entry bundles as NodejsFunction would (esbuild, platform node, target node22) — in
// both output formats — and no bundle contains dockerode or the local/docker backends: the backends
// are chosen by mode at run time and must never be pulled in statically.
const root = path.resolve(import.meta.dirname, '..', '..');
const lambdaDir = path.join(root, 'functions', 'lambda');
const ENTRIES = ['api.ts', 'worker.ts', 'task-events.ts', 'janitor.ts', 'authorizer.ts'];
const FORBIDDEN = [
  /(^|\/)node_modules\/dockerode\//,
  /(^|\/)node_modules\/docker-modem\//,
  /^shared\/backends\/local\//,
  /^shared\/backends\/docker\//,
];
const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-bundle-'));

afterAll(() => fs.rmSync(outDir, { recursive: true, force: true }));

/**
 * The settings of infra/constructs/wsp-function.ts (BUNDLING) for ESM — one file, CommonJS
 * dependencies given a `require` through createRequire — and NodejsFunction's default CommonJS.
 */
const ESM_BANNER =
  "import { createRequire as __wspCreateRequire } from 'node:module'; const require = __wspCreateRequire(import.meta.url);";
const bundlePath = (entry: string, format: 'esm' | 'cjs') =>
  path.join(outDir, `${format}-${entry.replace(/\.ts$/, format === 'esm' ? '.mjs' : '.cjs')}`);

async function bundle(entry: string, format: 'esm' | 'cjs'): Promise<Metafile> {
  const result = await build({
    entryPoints: [path.join(lambdaDir, entry)],
    bundle: true,
    platform: 'node',
    target: 'node22',
    format,
    ...(format === 'esm' ? { mainFields: ['module', 'main'], banner: { js: ESM_BANNER } } : {}),
    minify: true,
    keepNames: true,
    // Nothing external (not even @aws-sdk/*, which NodejsFunction may leave to the runtime): the
    // check then sees every module a handler can reach.
    outfile: bundlePath(entry, format),
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
      bundle: true,
      platform: 'node',
      target: 'node22',
      format: 'esm',
      write: false,
      metafile: true,
      logLevel: 'silent',
      absWorkingDir: root,
      // dockerode's optional native addons (ssh2, cpu-features) cannot be bundled; only the inputs matter here.
      loader: { '.node': 'empty' },
    });
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.filter((i) => FORBIDDEN.some((re) => re.test(i))).length).toBeGreaterThan(0);
  });

  // What was bundled also runs: a fresh Node process loads the bundle (no tsx, no node_modules
  // resolution from the repo) and invokes its handler, as the Lambda runtime would.
  for (const format of ['esm', 'cjs'] as const) {
    it(`the ${format} api and authorizer bundles run: routes answer from a real DynamoDB endpoint, keys are checked`, async () => {
      await bundle('api.ts', format);
      await bundle('authorizer.ts', format);
      const dynamo = await startTcpDynalite();
      try {
        const env = {
          PATH: process.env.PATH ?? '',
          HOME: os.tmpdir(),
          AWS_REGION: 'eu-west-1',
          TABLE_NAME: 'wsp-bundle',
          WSP_DYNAMODB_ENDPOINT: dynamo.endpoint,
          WSP_ENSURE_TABLE: '1',
          WSP_DATA_DIR: path.join(outDir, `data-${format}`),
          WSP_API_KEY_HASHES: hashApiKey('bundle-key-0123456789'),
        };
        const auth = { authorization: 'Bearer bundle-key-0123456789' };
        const answers = await invokeBundle(bundlePath('api.ts', format), env, [
          apiEvent('GET', '/healthz'),
          apiEvent('GET', '/workspaces', { headers: auth }),
          apiEvent('GET', '/workspaces'),
          apiEvent('POST', '/workspaces', {
            headers: { ...auth, 'content-type': 'application/json' },
            body: '{"labels":',
          }),
          apiEvent('POST', '/workspaces', { headers: { ...auth, 'content-type': 'application/json' }, body: '{}' }),
        ]);
        expect(answers.map((a: any) => a.statusCode)).toEqual([200, 200, 401, 400, 503]);
        expect(JSON.parse(answers[1].body)).toEqual({ workspaces: [] });
        expect(JSON.parse(answers[4].body).error.message).toMatch(
          /^mode ecs is not configured: mode 'ecs' needs ecs\.cluster, /,
        );
        const decisions = await invokeBundle(bundlePath('authorizer.ts', format), env, [
          { headers: auth },
          { headers: { authorization: 'Bearer wrong' } },
          { headers: {} },
        ]);
        expect(decisions).toEqual([{ isAuthorized: true }, { isAuthorized: false }, { isAuthorized: false }]);
      } finally {
        await dynamo.close();
      }
    });
  }
});

/** Load a bundle in a fresh `node` and call its handler with each event in turn; returns the results. */
async function invokeBundle(file: string, env: Record<string, string>, events: unknown[]): Promise<any[]> {
  const runner = `
    const mod = await import(${JSON.stringify(pathToFileURL(file).href)});
    const handler = mod.handler ?? mod.default?.handler;
    const out = [];
    for (const event of JSON.parse(process.env.WSP_TEST_EVENTS)) out.push(await handler(event, {}));
    process.stdout.write('RESULT ' + JSON.stringify(out) + '\\n');
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', runner], {
    cwd: outDir,
    env: { ...env, WSP_TEST_EVENTS: JSON.stringify(events) },
    maxBuffer: 8 * 1024 * 1024,
  });
  const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`no result from ${file}: ${stdout}`);
  return JSON.parse(line.slice('RESULT '.length)) as any[];
}
