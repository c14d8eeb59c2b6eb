import { afterAll, describe, expect, it } from 'vitest';
import { StepFailedError } from '../../shared/contract/errors.js';
import {
  authEnv,
  baseGitEnv,
  basicCredential,
  runGit,
  runGitChecked,
  scrub,
  secretForms,
} from '../../shared/git/git-env.js';
import { removeDirs, tempDir } from './helpers.js';

const TOKEN = 'ghp_canaryEnvToken0123456789';
const dirs: string[] = [];
afterAll(() => removeDirs(dirs));

describe('authEnv', () => {
  it('gives the token as a Basic extra header with user x-access-token, through GIT_CONFIG_* only', () => {
    const env = authEnv(TOKEN);
    expect(env).toEqual({
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: 'http.extraHeader',
      GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`x-access-token:${TOKEN}`).toString('base64')}`,
    });
    expect(basicCredential(TOKEN)).toBe(Buffer.from(`x-access-token:${TOKEN}`).toString('base64'));
  });
});

describe('baseGitEnv', () => {
  it('reads no host config, disables prompts and inherits only PATH, proxies and CA settings', () => {
    const env = baseGitEnv('/srv/empty-home', {
      PATH: '/usr/bin',
      https_proxy: 'http://proxy:3128',
      AWS_SECRET_ACCESS_KEY: 'nope',
      GIT_TRACE: '1',
      GIT_DIR: '/elsewhere',
    });
    expect(env).toMatchObject({
      PATH: '/usr/bin',
      https_proxy: 'http://proxy:3128',
      HOME: '/srv/empty-home',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_TERMINAL_PROMPT: '0',
      GIT_ASKPASS: '',
    });
    expect(env).not.toHaveProperty('AWS_SECRET_ACCESS_KEY');
    expect(env).not.toHaveProperty('GIT_TRACE');
    expect(env).not.toHaveProperty('GIT_DIR');
  });
});

describe('scrub', () => {
  it('removes the raw token and its base64 forms', () => {
    const forms = secretForms(TOKEN);
    const text = `a ${TOKEN} b ${basicCredential(TOKEN)} c ${Buffer.from(TOKEN).toString('base64')} d ${encodeURIComponent(TOKEN)}`;
    const clean = scrub(text, forms);
    for (const form of forms) expect(clean).not.toContain(form);
    expect(clean).toBe('a *** b *** c *** d ***');
  });

  it('has no forms for an empty token', () => {
    expect(secretForms('')).toEqual([]);
  });
});

describe('runGit', () => {
  const env = baseGitEnv('/nonexistent');

  async function gitRepo(): Promise<string> {
    const cwd = tempDir('rungit');
    dirs.push(cwd);
    await runGitChecked('git init', ['init', '--quiet'], { cwd, env });
    return cwd;
  }

  it('returns a non-zero exit as data and scrubs secrets from its output', async () => {
    const cwd = await gitRepo();
    // The token as a (bogus) revision makes git echo it in stderr.
    const result = await runGit(['rev-parse', '--git-dir', TOKEN], { cwd, env, secrets: secretForms(TOKEN) });
    expect(result.code).not.toBe(0);
    expect(result.stderr.length).toBeGreaterThan(0);
    expect(result.stderr).toContain('***');
    expect(result.stderr).not.toContain(TOKEN);
  });

  it('runGitChecked throws StepFailedError with the scrubbed stderr', async () => {
    const cwd = await gitRepo();
    const error = await runGitChecked('git probe', ['show', TOKEN], { cwd, env, secrets: secretForms(TOKEN) }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StepFailedError);
    const failed = error as StepFailedError;
    expect(failed.step).toBe('git probe');
    expect(failed.message).toMatch(/^git probe failed: /);
    expect(failed.message).toContain('***');
    expect(`${failed.message} ${JSON.stringify(failed.result)}`).not.toContain(TOKEN);
  });

  it('kills the process group on timeout and reports timedOut', async () => {
    // `sleep` stands in for a hung git: the runner only cares about the executable path.
    const result = await runGit(['30'], { env, timeoutMs: 100, gitPath: 'sleep' });
    expect(result.timedOut).toBe(true);
    expect(result.code).toBeNull();
    expect(result.signal).toBe('SIGKILL');
  });

  it('rejects with StepFailedError when git cannot be started', async () => {
    const error = await runGit(['version'], { env, gitPath: '/nonexistent/git' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StepFailedError);
    expect((error as Error).cause).toBeDefined();
    // A provider without git (the Lambda runtime) is told how to fix it.
    expect((error as Error).message).toMatch(/git is not installed .*provisioner\.gitLayerArn/);
  });
});
