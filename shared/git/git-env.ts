/**
 * Environment builders and a runner for the provider's own git processes (the mirror side).
 *
 * The token reaches git ONLY through the environment of the one process that needs it
 * (`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_0`/`GIT_CONFIG_VALUE_0` → `http.extraHeader`): never argv,
 * never a URL, never a config file. Nothing of the host's git config is read, and prompts are off,
 * so a missing/wrong token fails fast instead of hanging on a terminal prompt.
 */
import { spawn } from 'node:child_process';
import { StepFailedError } from '../contract/errors.js';

/** User name paired with the token in Basic auth (what GitHub/GitLab/Gitea accept for tokens). */
const TOKEN_USER = 'x-access-token';

/** Env giving one git process the token as an `Authorization: Basic` extra header. */
export function authEnv(token: string): Record<string, string> {
  return {
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'http.extraHeader',
    GIT_CONFIG_VALUE_0: `Authorization: Basic ${basicCredential(token)}`,
  };
}

/** base64("x-access-token:<token>") — the form the token takes on the wire and in authEnv. */
export function basicCredential(token: string): string {
  return Buffer.from(`${TOKEN_USER}:${token}`, 'utf8').toString('base64');
}

/** Variables passed through from the provider's env: lookup, proxies and CA bundles only. */
const INHERITED = [
  'PATH',
  'http_proxy',
  'https_proxy',
  'no_proxy',
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'NO_PROXY',
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
  'GIT_SSL_CAINFO',
];

/**
 * Base env for provider-side git: no system/global config, HOME (and XDG config) at `home`
 * (an empty dir the caller owns), no prompts, no askpass, C locale for stable messages.
 * Built from scratch — the provider's own env (which may hold other secrets or GIT_* settings)
 * is not inherited beyond the INHERITED list.
 */
export function baseGitEnv(home: string, inherit: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of INHERITED) {
    const value = inherit[name];
    if (value !== undefined) env[name] = value;
  }
  return {
    ...env,
    HOME: home,
    XDG_CONFIG_HOME: home,
    LC_ALL: 'C',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    // Empty (not unset): git then skips SSH_ASKPASS too and goes straight to the disabled prompt.
    GIT_ASKPASS: '',
  };
}

/** Every form in which a token could show up in git output: raw, URL-encoded, base64 variants. */
export function secretForms(token: string): string[] {
  if (token === '') return [];
  const forms = [
    token,
    encodeURIComponent(token),
    basicCredential(token),
    Buffer.from(token, 'utf8').toString('base64'),
    Buffer.from(`${TOKEN_USER}:${token}`, 'utf8').toString('base64url'),
  ];
  return [...new Set(forms)].sort((a, b) => b.length - a.length);
}

/** Replace every occurrence of every secret form with `***`. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret !== '') out = out.split(secret).join('***');
  return out;
}

export interface GitResult {
  /** Exit code; null when killed by a signal (e.g. on timeout). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface RunGitOptions {
  cwd?: string;
  /** The complete environment (baseGitEnv + authEnv as needed); nothing else is inherited. */
  env: Record<string, string>;
  /** 0 or undefined = no limit. On expiry git's whole process group is SIGKILLed. */
  timeoutMs?: number;
  stdin?: string;
  /** Secret forms (see secretForms) scrubbed from stdout/stderr before they are returned. */
  secrets?: readonly string[];
  /** The git executable; default 'git' looked up on env.PATH. */
  gitPath?: string;
}

/**
 * Run git without a shell. Never throws for a non-zero exit (the result is data); rejects with
 * StepFailedError('git', …) only if git cannot be started.
 */
export function runGit(args: readonly string[], options: RunGitOptions): Promise<GitResult> {
  const secrets = options.secrets ?? [];
  return new Promise((resolve, reject) => {
    const child = spawn(options.gitPath ?? 'git', args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ['pipe', 'pipe', 'pipe'],
      // Own process group, so a timeout also kills git-remote-http and friends.
      detached: true,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer =
      options.timeoutMs && options.timeoutMs > 0
        ? setTimeout(() => {
            timedOut = true;
            killGroup(child.pid);
          }, options.timeoutMs)
        : undefined;
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.stdin.on('error', () => undefined); // git may exit before reading stdin
    child.on('error', (cause) => {
      if (timer) clearTimeout(timer);
      // No git at all is a deployment problem with one fix; say it (the Lambda runtime has no git).
      const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
      const message = missing
        ? 'git is not installed where the provider runs (on AWS Lambda: deploy the worker with a git layer, stage config provisioner.gitLayerArn; see docs/deploy.md)'
        : `cannot run git: ${scrub(cause.message, secrets)}`;
      const error = new StepFailedError('git', message);
      error.cause = cause;
      reject(error);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: scrub(Buffer.concat(out).toString('utf8'), secrets),
        stderr: scrub(Buffer.concat(err).toString('utf8'), secrets),
        timedOut,
      });
    });
    child.stdin.end(options.stdin ?? '');
  });
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Last meaningful stderr lines, for error messages (already scrubbed by runGit). */
export function stderrSummary(result: GitResult, maxLines = 5): string {
  const lines = result.stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('hint:'));
  if (result.timedOut) lines.push('timed out');
  const text = lines.slice(-maxLines).join('; ');
  return text === '' ? `exit ${result.code ?? result.signal}` : text;
}

/** A failed git step as a StepFailedError carrying the (scrubbed) result. */
export function gitStepError(step: string, message: string, result: GitResult): StepFailedError {
  return new StepFailedError(step, message, {
    code: result.code,
    signal: result.signal,
    timedOut: result.timedOut,
    stderr: result.stderr,
  });
}

/** runGit that throws StepFailedError(step, <stderr summary>) on a non-zero exit or timeout. */
export async function runGitChecked(step: string, args: readonly string[], options: RunGitOptions): Promise<GitResult> {
  const result = await runGit(args, options);
  if (result.code !== 0 || result.timedOut) throw gitStepError(step, stderrSummary(result), result);
  return result;
}
