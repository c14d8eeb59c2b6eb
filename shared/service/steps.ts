import type { CommandStatus, WorkspaceBackend } from '../contract/backend.js';
import type { NetworkPolicy, WorkspacePlan } from '../contract/plan.js';
import type { BackendRef } from '../contract/workspace.js';
import { StepFailedError } from '../contract/errors.js';
import { newSystemCommandId } from './ids.js';

export interface StepResult {
  status: CommandStatus;
  stdout: string;
  stderr: string;
}

export interface StepOptions {
  step: string;
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
  commandId?: string;
  /** Bytes of output kept (default 16 MiB: fingerprints and diffs of big trees). */
  maxOutputBytes?: number;
  /** Throw StepFailedError on a non-zero exit (default true). */
  check?: boolean;
  stdin?: Buffer;
  /** Network of this step instead of plan.network (setup: plan.setupNetwork). */
  network?: NetworkPolicy;
}

/**
 * Run one internal step (git, fingerprint, setup) inside the workspace through the backend executor,
 * as the workspace user, and wait for it. Internal steps check their result and raise an error that
 * carries it (style.md §6); agent commands never do.
 */
export async function runStep(
  backend: WorkspaceBackend,
  ref: BackendRef,
  plan: WorkspacePlan,
  argv: string[],
  options: StepOptions,
): Promise<StepResult> {
  const commandId = options.commandId ?? newSystemCommandId();
  const maxOutputBytes = options.maxOutputBytes ?? 16 * 1024 * 1024;
  const { commands } = backend.open(ref, plan);
  await commands.start({
    commandId,
    argv,
    cwd: options.cwd ?? plan.home,
    env: { ...plan.env, GIT_TERMINAL_PROMPT: '0', ...(options.env ?? {}) },
    timeoutMs: options.timeoutMs ?? 10 * 60_000,
    maxOutputBytes,
    ...(options.stdin ? { stdin: options.stdin } : {}),
    ...(options.network ? { network: options.network } : {}),
  });
  let status = await commands.wait(commandId, 25_000);
  while (status.state === 'running') status = await commands.wait(commandId, 25_000);
  return stepResult(backend, ref, plan, status, { ...options, maxOutputBytes }, commandId);
}

/**
 * The result of a step that has ended (`status` not running): its output read back, and with `check`
 * (default) a StepFailedError carrying it unless it exited 0. For a step started earlier and awaited
 * by someone else (the setup script, awaited across provisioning phases).
 */
export async function stepResult(
  backend: WorkspaceBackend,
  ref: BackendRef,
  plan: WorkspacePlan,
  status: CommandStatus,
  options: Pick<StepOptions, 'step' | 'maxOutputBytes' | 'check'>,
  commandId = status.commandId,
): Promise<StepResult> {
  const maxOutputBytes = options.maxOutputBytes ?? 16 * 1024 * 1024;
  const { commands } = backend.open(ref, plan);
  const stdout = (await commands.read(commandId, 'stdout', 0, maxOutputBytes)).data.toString('utf8');
  const stderr = (await commands.read(commandId, 'stderr', 0, maxOutputBytes)).data.toString('utf8');
  const result = { status, stdout, stderr };
  if ((options.check ?? true) && !(status.state === 'exited' && status.exitCode === 0)) {
    const how =
      status.state === 'exited'
        ? `exit code ${status.exitCode}`
        : `${status.state}${status.reason ? ` (${status.reason})` : ''}`;
    throw new StepFailedError(options.step, `${how}: ${tail(stderr || stdout, 2000)}`, {
      commandId,
      state: status.state,
      exitCode: status.exitCode,
    });
  }
  return result;
}

function tail(text: string, max: number): string {
  const t = text.trimEnd();
  return t.length <= max ? t : `…${t.slice(t.length - max)}`;
}
