import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { CommandSpec, CommandStatus, WorkspaceBackend } from '../../shared/contract/backend.js';
import type { WorkspacePlan } from '../../shared/contract/plan.js';
import type { BackendRef, SnapshotRef } from '../../shared/contract/workspace.js';
import { configSchema, type ConfigInput } from '../../shared/config/schema.js';
import { resolveWorkspacePlan } from '../../shared/plan/resolve.js';

/** What a backend test needs from one backend kind. */
export interface BackendHandle {
  backend: WorkspaceBackend;
  /** Remove whatever the instance holds beyond its workspaces (data dir, daemons). */
  cleanup(): Promise<void>;
  /** A second instance over the same state: a simulated provider restart. */
  reopen?(): Promise<WorkspaceBackend>;
  /** Make a running command's supervisor vanish without leaving a result (→ state 'lost'). */
  loseCommand?(ref: BackendRef, commandId: string): Promise<void>;
  /**
   * What the backend still keeps for one command, looked at from outside the port: the files of its
   * dir (host or task) and its blob-store objects; [] when nothing.
   */
  commandLeftovers?(ref: BackendRef, commandId: string): Promise<string[]>;
}

export type MakeBackend = () => Promise<BackendHandle>;

/**
 * What the shared contract suite needs: every backend in it can be reopened, can lose a command and
 * shows what it keeps of a command (nothing is skipped).
 */
export type ContractHandle = BackendHandle &
  Required<Pick<BackendHandle, 'reopen' | 'loseCommand' | 'commandLeftovers'>>;

export interface RunOptions {
  commandId?: string;
  cwd?: string;
  env?: Record<string, string>;
  stdin?: Buffer | string;
  /** CommandSpec.openStdin: stdin stays open for writeStdin until eof. */
  openStdin?: boolean;
  /** CommandSpec.tty: under a terminal of this size. */
  tty?: { rows: number; cols: number };
  timeoutMs?: number;
  maxOutputBytes?: number;
  /** How long to wait for the end (default 60 s; the result may still be 'running' after it). */
  waitMs?: number;
}

export interface RunResult {
  commandId: string;
  status: CommandStatus;
  stdout: string;
  stderr: string;
}

export interface BackendFixture {
  readonly handle: BackendHandle;
  readonly backend: WorkspaceBackend;
  /** Default plan: resolveWorkspacePlan of the default config (no repositories). */
  readonly plan: WorkspacePlan;
  /** Create a workspace that is destroyed after the test. */
  create(options?: {
    plan?: WorkspacePlan;
    from?: SnapshotRef;
    labels?: Record<string, string>;
    workspaceId?: string;
  }): Promise<BackendRef>;
  /** Delete this snapshot after the test. */
  trackSnapshot(snapshot: SnapshotRef): SnapshotRef;
  /** Start a command (argv) and return its id without waiting. */
  start(ref: BackendRef, argv: string[], options?: RunOptions, plan?: WorkspacePlan): Promise<string>;
  /** Start a command, wait for it, read both streams whole (up to maxOutputBytes). */
  run(ref: BackendRef, argv: string[], options?: RunOptions, plan?: WorkspacePlan): Promise<RunResult>;
  /** `sh -c script` — script text is test-chosen, arguments go as $1… */
  sh(ref: BackendRef, script: string, args?: string[], options?: RunOptions, plan?: WorkspacePlan): Promise<RunResult>;
}

export function planFor(config: ConfigInput = {}): WorkspacePlan {
  return resolveWorkspacePlan(configSchema.parse(config));
}

export const newId = (prefix: string): string => `${prefix}-${randomBytes(6).toString('hex')}`;

/**
 * Register hooks that make one backend for the describe block and destroy every workspace and
 * snapshot a test made, whether it passed or not (afterEach), then clean the backend up (afterAll).
 */
export function useBackendFixture(make: MakeBackend, config: ConfigInput = {}): BackendFixture {
  let handle: BackendHandle | undefined;
  const refs: BackendRef[] = [];
  const snaps: SnapshotRef[] = [];
  const plan = planFor(config);
  const need = (): BackendHandle => {
    if (!handle) throw new Error('backend fixture used outside a test');
    return handle;
  };

  beforeAll(async () => {
    handle = await make();
  });
  afterEach(async () => {
    const b = need().backend;
    const errors: unknown[] = [];
    for (const ref of refs.splice(0)) await b.destroy(ref).catch((e: unknown) => errors.push(e));
    for (const snap of snaps.splice(0)) await b.snapshots.delete(snap).catch((e: unknown) => errors.push(e));
    if (errors.length > 0) throw new AggregateError(errors, 'fixture cleanup failed');
  });
  afterAll(async () => {
    await handle?.cleanup();
  });

  const start = async (
    ref: BackendRef,
    argv: string[],
    options: RunOptions = {},
    p: WorkspacePlan = plan,
  ): Promise<string> => {
    const spec: CommandSpec = {
      commandId: options.commandId ?? newId('cmd'),
      argv,
      cwd: options.cwd ?? p.workdir,
      env: { ...p.env, ...(options.env ?? {}) },
      timeoutMs: options.timeoutMs ?? 120_000,
      maxOutputBytes: options.maxOutputBytes ?? 4 * 1024 * 1024,
      ...(options.stdin !== undefined ? { stdin: Buffer.from(options.stdin) } : {}),
      ...(options.openStdin ? { openStdin: true } : {}),
      ...(options.tty ? { tty: options.tty } : {}),
    };
    await need().backend.open(ref, p).commands.start(spec);
    return spec.commandId;
  };

  const run = async (
    ref: BackendRef,
    argv: string[],
    options: RunOptions = {},
    p: WorkspacePlan = plan,
  ): Promise<RunResult> => {
    const b = need().backend;
    const commandId = await start(ref, argv, options, p);
    const status = await b.open(ref, plan).commands.wait(commandId, options.waitMs ?? 60_000);
    const max = options.maxOutputBytes ?? 4 * 1024 * 1024;
    const stdout = (await b.open(ref, plan).commands.read(commandId, 'stdout', 0, max)).data.toString('utf8');
    const stderr = (await b.open(ref, plan).commands.read(commandId, 'stderr', 0, max)).data.toString('utf8');
    return { commandId, status, stdout, stderr };
  };

  return {
    get handle() {
      return need();
    },
    get backend() {
      return need().backend;
    },
    plan,
    async create(options = {}) {
      const workspaceId = options.workspaceId ?? newId('ws');
      const ref = await need().backend.create(options.plan ?? plan, {
        workspaceId,
        labels: { 'wsp.workspace': workspaceId, 'wsp.test': 'contract', ...(options.labels ?? {}) },
        ...(options.from ? { from: options.from } : {}),
      });
      refs.push(ref);
      return ref;
    },
    trackSnapshot(snapshot) {
      snaps.push(snapshot);
      return snapshot;
    },
    start,
    run,
    sh: (ref, script, args = [], options, p) => run(ref, ['sh', '-c', script, 'sh', ...args], options, p),
  };
}

/** The files of a host command dir (local, Docker), as `file:<name>`; [] when the dir is gone. */
export function hostDirLeftovers(dir: string): string[] {
  try {
    return fs.readdirSync(dir).map((name) => `file:${name}`);
  } catch {
    return [];
  }
}
