import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { z } from 'zod';
import { BadRequestError } from '../contract/errors.js';
import { configSchema, type ConfigInput, type ProviderConfig } from './schema.js';

export interface LoadedConfig {
  config: ProviderConfig;
  /** Directory relative `localPath`s and `dataDir` resolve against (the config file's, else the cwd). */
  baseDir: string;
  /** Where each top-level value came from, for the start-up log. */
  sources: string[];
}

/**
 * Read the provider configuration once: flags override env, env overrides the file, the file
 * overrides the schema defaults. Every invalid field is reported by its path in one BadRequestError.
 *
 * Flags: --config FILE, --mode, --data-dir, --host, --port, --repo PATH=URL|DIR (repeatable),
 * --setup SCRIPT, --setup-file FILE, --dynamodb-endpoint URL, --no-auth.
 * Env: WSP_CONFIG, WSP_MODE, WSP_DATA_DIR, WSP_HOST, WSP_PORT, WSP_DYNAMODB_ENDPOINT, WSP_AUTH_TOKEN.
 */
export function loadConfig(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  cwd = process.cwd(),
): LoadedConfig {
  const { values } = parseFlags(argv);
  const sources: string[] = [];
  const configPath = values.config ?? env.WSP_CONFIG;
  let input: Record<string, unknown> = {};
  let baseDir = cwd;
  if (configPath !== undefined) {
    const file = path.resolve(cwd, configPath);
    input = readConfigFile(file);
    baseDir = path.dirname(file);
    sources.push(`file ${file}`);
  }
  const set = (keys: string[], value: unknown, from: string): void => {
    if (value === undefined) return;
    let node = input as Record<string, unknown>;
    for (const key of keys.slice(0, -1)) {
      if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    node[keys[keys.length - 1]!] = value;
    sources.push(`${keys.join('.')} from ${from}`);
  };
  const num = (v: string | undefined): number | string | undefined =>
    v === undefined ? undefined : /^\d+$/.test(v) ? Number(v) : v; // a non-number stays a string so zod names the field

  set(['mode'], env.WSP_MODE, 'WSP_MODE');
  set(['dataDir'], env.WSP_DATA_DIR, 'WSP_DATA_DIR');
  set(['listen', 'host'], env.WSP_HOST, 'WSP_HOST');
  set(['listen', 'port'], num(env.WSP_PORT), 'WSP_PORT');
  set(['state', 'endpoint'], env.WSP_DYNAMODB_ENDPOINT, 'WSP_DYNAMODB_ENDPOINT');
  set(['auth', 'token'], env.WSP_AUTH_TOKEN, 'WSP_AUTH_TOKEN');

  set(['mode'], values.mode, '--mode');
  set(['dataDir'], values['data-dir'], '--data-dir');
  set(['listen', 'host'], values.host, '--host');
  set(['listen', 'port'], num(values.port), '--port');
  set(['state', 'endpoint'], values['dynamodb-endpoint'], '--dynamodb-endpoint');
  if (values['no-auth'] === true) set(['auth', 'disabled'], true, '--no-auth');
  if (values.repo !== undefined && values.repo.length > 0)
    set(['repositories'], values.repo.map(parseRepoFlag), '--repo');
  if (values['setup-file'] !== undefined)
    set(['setup', 'script'], fs.readFileSync(path.resolve(cwd, values['setup-file']), 'utf8'), '--setup-file');
  set(['setup', 'script'], values.setup, '--setup');

  const config = parseConfig(input);
  config.dataDir = path.resolve(baseDir, config.dataDir);
  return { config, baseDir, sources };
}

/** Validate a config object; every bad field is named in the error's details. */
export function parseConfig(input: unknown): ProviderConfig {
  const result = configSchema.safeParse(input);
  if (!result.success) throw configError(result.error);
  return result.data;
}

function configError(error: z.ZodError): BadRequestError {
  const details = error.issues.map((i) => ({ path: formatPath(i.path), message: i.message }));
  return new BadRequestError(
    `invalid configuration: ${details.map((d) => `${d.path || '(root)'}: ${d.message}`).join('; ')}`,
    details,
  );
}

function formatPath(p: readonly PropertyKey[]): string {
  return p.map((k, i) => (typeof k === 'number' ? `[${k}]` : `${i === 0 ? '' : '.'}${String(k)}`)).join('');
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (cause) {
    throw new BadRequestError(`cannot read config file ${file}: ${(cause as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    return parsed as Record<string, unknown>;
  } catch (cause) {
    throw new BadRequestError(`config file ${file} is not a JSON object: ${(cause as Error).message}`);
  }
}

/** `--repo PATH=URL` or `--repo PATH=/local/dir`; a value without '=' lands at the root ('.'). */
function parseRepoFlag(value: string): ConfigInput['repositories'] extends (infer R)[] | undefined ? R : never {
  const eq = value.indexOf('=');
  const [where, what] =
    eq > 0 && !value.slice(0, eq).includes(':') ? [value.slice(0, eq), value.slice(eq + 1)] : ['.', value];
  const isUrl = /^[a-z][a-z0-9+.-]*:\/\//i.test(what) || /^[\w.-]+@[\w.-]+:/.test(what);
  return isUrl ? { path: where, url: what } : { path: where, localPath: what };
}

function parseFlags(argv: readonly string[]) {
  try {
    return parseArgs({
      args: [...argv],
      allowPositionals: false,
      strict: true,
      options: {
        config: { type: 'string' },
        mode: { type: 'string' },
        'data-dir': { type: 'string' },
        host: { type: 'string' },
        port: { type: 'string' },
        repo: { type: 'string', multiple: true },
        setup: { type: 'string' },
        'setup-file': { type: 'string' },
        'dynamodb-endpoint': { type: 'string' },
        'no-auth': { type: 'boolean' },
      },
    });
  } catch (cause) {
    throw new BadRequestError(`invalid flags: ${(cause as Error).message}`);
  }
}
