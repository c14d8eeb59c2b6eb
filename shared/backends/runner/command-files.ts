import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CommandSpec, CommandStatus, TerminalSize } from '../../contract/backend.js';
import type { WorkspacePlan } from '../../contract/plan.js';
import { BackendUnavailableError, BadRequestError, ConflictError, NotFoundError } from '../../contract/errors.js';
import { shellQuote } from '../../lib/shell-quote.js';
import { readExit, readSpec, readText, statusFromRecord, streamBytes, type StoredSpec } from './command-record.js';

/**
 * The provider's side of runner.sh's command directory (see the header of runner.sh for the files):
 * what the provider writes before a start, and how a status is read back — from the files only, by
 * any provider process, also after a restart. Backend-neutral: whoever can see the directory (a bind
 * mount for Docker) uses this; backends that cannot (Fargate) ask the runner instead.
 */

/** Absolute host path of runner.sh (shipped with the code; put into the workspace by the backend). */
// Bundled into a CommonJS Lambda there is no import.meta.url and no runner.sh on disk — nor a need for
// one: Fargate tasks carry the runner in their image. Only the Docker backend and tests read this path.
export const RUNNER_SCRIPT =
  typeof import.meta.url === 'string' ? fileURLToPath(new URL('./runner.sh', import.meta.url)) : '';

type FileName =
  | 'spec.json'
  | 'stdin'
  | 'env'
  | 'stdout'
  | 'stderr'
  | 'alive'
  | 'pid'
  | 'pgid'
  | 'kill'
  | 'exit'
  | 'claim'
  // the local backend's supervisor (local/supervisor/daemon.ts): its launch descriptor
  | 'fd3';
export const commandFile = (dir: string, name: FileName): string => path.join(dir, name);

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Throws BadRequestError for what no process can be given: NUL bytes in argv/env, bad env names. */
export function checkCommandSpec(spec: CommandSpec): void {
  if (!Array.isArray(spec.argv) || spec.argv.length === 0)
    throw new BadRequestError('argv must not be empty', { field: 'argv' });
  if (spec.argv.some((a) => typeof a !== 'string' || a.includes('\0')))
    throw new BadRequestError('argv must not contain NUL bytes', { field: 'argv' });
  if (typeof spec.cwd !== 'string' || !spec.cwd.startsWith('/') || spec.cwd.includes('\0'))
    throw new BadRequestError('cwd must be an absolute path', { field: 'cwd' });
  for (const [name, value] of Object.entries(spec.env)) {
    if (!ENV_NAME.test(name)) throw new BadRequestError('invalid environment variable name', { field: 'env' });
    if (typeof value !== 'string' || value.includes('\0'))
      throw new BadRequestError('environment values must not contain NUL bytes', { field: 'env' });
  }
  if (!Number.isInteger(spec.timeoutMs) || spec.timeoutMs < 0)
    throw new BadRequestError('timeoutMs must be an integer >= 0', { field: 'timeoutMs' });
  if (!Number.isInteger(spec.maxOutputBytes) || spec.maxOutputBytes < 0)
    throw new BadRequestError('maxOutputBytes must be an integer >= 0', { field: 'maxOutputBytes' });
  if (spec.tty !== undefined) checkTerminalSize(spec.tty, 'tty');
}

/** A terminal's size (CommandSpec.tty, resize): rows and cols integers 1..1000. */
export function checkTerminalSize(size: TerminalSize, field: string): void {
  const ok = (n: unknown) => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 1000;
  if (typeof size !== 'object' || size === null || !ok(size.rows) || !ok(size.cols))
    throw new BadRequestError('a terminal size is {rows, cols}, integers 1..1000', { field });
}

/** A terminal's keyboard is its open stdin: a tty spec is an openStdin one (CommandSpec.tty). */
export function withTerminalStdin(spec: CommandSpec): CommandSpec {
  return spec.tty !== undefined && !spec.openStdin ? { ...spec, openStdin: true } : spec;
}

/** The basics every command gets, under spec.env (which wins). PATH/HOME/USER as a login would set them. */
export function commandEnv(plan: WorkspacePlan, spec: CommandSpec): Record<string, string> {
  return {
    HOME: plan.home,
    USER: plan.user.name,
    LOGNAME: plan.user.name,
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    LANG: 'C.UTF-8',
    ...spec.env,
  };
}

/** The env script the command's shell evals: one `export NAME='value'` line per variable. */
export function envScript(env: Record<string, string>): string {
  return Object.entries(env)
    .map(([name, value]) => `export ${name}=${shellQuote(value)}\n`)
    .join('');
}

/**
 * Create the command dir and its input files (root-only): stdin, empty stdout/stderr, `env` when
 * given and `extra` files. Returns false when the dir exists already (a start is idempotent on the
 * command id). spec.json is written last: its presence means the dir is complete.
 */
export async function writeCommandDir(
  dir: string,
  spec: CommandSpec,
  env: Record<string, string> | undefined,
  extra: Partial<Record<FileName, string | Buffer>> = {},
): Promise<boolean> {
  try {
    await fs.mkdir(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new BackendUnavailableError('cannot create the command directory', error);
  }
  const stored: StoredSpec = {
    commandId: spec.commandId,
    timeoutMs: spec.timeoutMs,
    maxOutputBytes: spec.maxOutputBytes,
    startedAt: new Date().toISOString(),
    ...(spec.openStdin || spec.tty ? { openStdin: true } : {}),
    ...(spec.tty ? { tty: { rows: spec.tty.rows, cols: spec.tty.cols } } : {}),
  };
  const files: Partial<Record<FileName, string | Buffer>> = {
    stdin: spec.stdin ?? Buffer.alloc(0),
    stdout: '',
    stderr: '',
    ...(env ? { env: envScript(env) } : {}),
    ...extra,
  };
  await Promise.all(
    Object.entries(files).map(([name, data]) =>
      fs.writeFile(commandFile(dir, name as FileName), data, { mode: 0o600 }),
    ),
  );
  await fs.writeFile(commandFile(dir, 'spec.json'), JSON.stringify(stored), { mode: 0o600 });
  return true;
}

/**
 * Is the supervisor alive? It holds the `alive` FIFO open for reading for exactly its lifetime; a
 * non-blocking open for writing fails with ENXIO when no reader has it. Works across pid namespaces
 * and needs no process table.
 */
export async function supervisorAlive(dir: string): Promise<boolean> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(commandFile(dir, 'alive'), constants.O_WRONLY | constants.O_NONBLOCK);
    return true;
  } catch {
    return false;
  } finally {
    await handle?.close();
  }
}

/** Started (claimed by the runner) and no exit record yet, with a live supervisor. */
export async function isRunning(dir: string): Promise<boolean> {
  return (await readExit(dir)) === undefined && (await supervisorAlive(dir));
}

/**
 * The status as the files tell it (statusFromRecord: exit record → ended; live supervisor → running;
 * else lost). The exit file is read after the liveness check, so a supervisor that ends in between is
 * seen with its record, never as lost.
 */
export async function readStatus(dir: string, spec: StoredSpec): Promise<CommandStatus> {
  const exitBefore = await readText(commandFile(dir, 'exit'));
  const alive = exitBefore === undefined ? await supervisorAlive(dir) : false;
  const exit = exitBefore ?? (await readText(commandFile(dir, 'exit')));
  const [stdoutBytes, stderrBytes, kill] = await Promise.all([
    streamBytes(commandFile(dir, 'stdout')),
    streamBytes(commandFile(dir, 'stderr')),
    readText(commandFile(dir, 'kill')),
  ]);
  return statusFromRecord({ spec, exit, kill, alive, stdoutBytes, stderrBytes });
}

/** Where a backend keeps its workspaces' command dirs on the host (Docker bind-mounts them in). */
export interface HostCommandDirs {
  workspaceDir(workspaceId: string): string;
  commandsDir(workspaceId: string): string;
  commandDir(workspaceId: string, commandId: string): string;
}

/** A complete command dir and its spec; NotFoundError for the command, or for the workspace when it is gone. */
export async function findCommandDir(
  dirs: HostCommandDirs,
  workspaceId: string,
  commandId: string,
): Promise<{ dir: string; spec: StoredSpec }> {
  const dir = dirs.commandDir(workspaceId, commandId);
  const spec = await readSpec(dir);
  if (spec === undefined) {
    const workspaceExists = await fs.stat(dirs.workspaceDir(workspaceId)).then(
      () => true,
      () => false,
    );
    throw workspaceExists ? new NotFoundError('command', commandId) : new NotFoundError('workspace', workspaceId);
  }
  return { dir, spec };
}

/** The command dirs of a workspace whose command is still running (by the backend's `isRunning`). */
export async function runningCommandDirs(
  dirs: HostCommandDirs,
  workspaceId: string,
  isRunning: (dir: string) => Promise<boolean>,
): Promise<string[]> {
  const names = await fs.readdir(dirs.commandsDir(workspaceId)).catch(() => [] as string[]);
  const all = names.map((n) => dirs.commandDir(workspaceId, n));
  const running = await Promise.all(all.map(async (d) => ((await isRunning(d)) ? d : undefined)));
  return running.filter((d): d is string => d !== undefined);
}

/**
 * Remove an ended command's dir (WorkspaceCommands.forget); ConflictError while it runs (by the backend's
 * `isRunning`), nothing when there is no such dir. The dir is the provider's own (root-only, written by
 * the provider and the supervisor; a workspace never sees it — Docker binds it where only the runner,
 * as root, writes), its path is built from checked names only, and fs.rm never follows a symlink (it
 * unlinks the link), so no path the workspace controls is followed.
 */
export async function forgetCommandDir(
  dirs: HostCommandDirs,
  workspaceId: string,
  commandId: string,
  isRunning: (dir: string) => Promise<boolean>,
): Promise<void> {
  const dir = dirs.commandDir(workspaceId, commandId);
  const there = await fs.lstat(dir).then(
    (st) => st.isDirectory(),
    () => false,
  );
  if (!there) return;
  if (await isRunning(dir))
    throw new ConflictError(`command '${commandId}' is still running: kill it before forgetting it`);
  await fs.rm(dir, { recursive: true, force: true });
}
