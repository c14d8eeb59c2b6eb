import { spawn, type StdioOptions } from 'node:child_process';
import fs from 'node:fs/promises';
import { StepFailedError } from '../../contract/errors.js';

/** A fixed, minimal environment for host tools: the provider's own env (tokens!) never leaks. */
export const TOOL_ENV: Readonly<Record<string, string>> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  LANG: 'C.UTF-8',
};

export interface ToolResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  /** Last 4 KB. */
  stderr: string;
}

export interface ToolOptions {
  /** Run as this host uid/gid (the provider must be root); supplementary groups are dropped. */
  uid?: number;
  gid?: number;
  /** Working directory (default '/'): only ever a provider-made, root-owned directory. */
  cwd?: string;
}

/**
 * Run a host tool with argv (never through a shell) and collect its output. Never throws for a
 * non-zero exit; throws StepFailedError only when the tool cannot be started. Callers pass paths
 * and ids in argv, never secret values.
 */
export function runTool(argv: readonly string[], options: ToolOptions = {}): Promise<ToolResult> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return Promise.reject(new StepFailedError('local tool', 'empty argv'));
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: TOOL_ENV,
      cwd: options.cwd ?? '/',
      ...(options.uid !== undefined ? { uid: options.uid } : {}),
      ...(options.gid !== undefined ? { gid: options.gid } : {}),
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      err = (err + d).slice(-4096);
    });
    child.on('error', (cause) => reject(new StepFailedError('local tool', `cannot run ${cmd}: ${cause.message}`)));
    child.on('close', (code, signal) =>
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: err }),
    );
  });
}

/** runTool, but a non-zero exit throws StepFailedError(step) carrying the exit code and stderr tail. */
export async function runToolChecked(
  step: string,
  argv: readonly string[],
  options: ToolOptions = {},
): Promise<ToolResult> {
  const result = await runTool(argv, options);
  if (result.code !== 0) {
    throw new StepFailedError(
      step,
      `${argv[0]} exited ${result.code ?? result.signal}: ${result.stderr.trim().slice(-1000)}`,
      {
        code: result.code,
        signal: result.signal,
      },
    );
  }
  return result;
}

/** O_CLOEXEC as shown in /proc/<pid>/fdinfo `flags:` (octal). */
const O_CLOEXEC = 0o2000000;

/**
 * stdio for a child that runs workspace code: 0-2 on /dev/null, and every descriptor the provider
 * itself inherited WITHOUT close-on-exec (a supervisor's pipe, say) overwritten with /dev/null in the
 * child — otherwise it would pass through bwrap into the sandbox. `devNull` is an fd of /dev/null
 * the caller keeps open (Node opens files close-on-exec, so it does not leak itself).
 * It scans before the spawn, so a descriptor opened meanwhile by native code (LevelDB) slips through:
 * nothing that enters a sandbox is spawned this way (the supervisor spawns those, and drops what it
 * inherited: supervisor/inherited-fds.ts).
 */
export async function sealedStdio(devNull: number): Promise<StdioOptions> {
  const leaked: number[] = [];
  for (const name of await fs.readdir('/proc/self/fdinfo').catch(() => [] as string[])) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd < 3) continue;
    const info = await fs.readFile(`/proc/self/fdinfo/${name}`, 'utf8').catch(() => undefined);
    const flags = info === undefined ? undefined : /^flags:\s+([0-7]+)/m.exec(info)?.[1];
    if (flags !== undefined && (parseInt(flags, 8) & O_CLOEXEC) === 0) leaked.push(fd);
  }
  const stdio: Array<'ignore' | number> = ['ignore', 'ignore', 'ignore'];
  const max = Math.max(2, ...leaked);
  for (let fd = 3; fd <= max; fd++) stdio.push(leaked.includes(fd) ? devNull : 'ignore');
  return stdio;
}
