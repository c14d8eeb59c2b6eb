import type { CommandSpec } from '../../contract/backend.js';
import type { WorkspacePlan } from '../../contract/plan.js';

/**
 * How one runner.sh request reaches a workspace: the Docker backend's runner channel (falling back
 * to `docker exec`), or the Fargate backend's ECS Exec session. Resolves when the runner answered
 * with status 0; throws BackendUnavailableError naming `what` otherwise.
 */
export interface RunnerTransport {
  call(what: string, argv: readonly string[], options?: { timeoutMs?: number }): Promise<void>;
}

/** Requests that move or copy a whole tree: they may take minutes (the default request timeout is 2 min). */
const SLOW_OPS = new Set(['fetch-url', 'put-url', 'put-parts', 'pack', 'unpack', 'pristine-save', 'pristine-restore']);
export const SLOW_OP_TIMEOUT_MS = 30 * 60_000;

/**
 * The runner's protocol, spelled out once (runner.sh's header documents each subcommand): the argv
 * of every request the provider sends to a workspace's runner, over whichever transport reaches it.
 */
export class RunnerClient {
  constructor(private readonly transport: RunnerTransport) {}

  /** The workspace user (its passwd/group entries, home and repository root), made as root. */
  init(plan: WorkspacePlan): Promise<void> {
    const { user } = plan;
    return this.call('preparing the workspace user', [
      'init',
      String(user.uid),
      String(user.gid),
      user.name,
      plan.home,
      plan.root,
    ]);
  }

  /** Start `spec` as the plan's user from its prepared command dir (`guestDir`: the dir as the runner sees it). */
  start(guestDir: string, plan: WorkspacePlan, spec: CommandSpec): Promise<void> {
    return this.call('starting the command', [
      'start',
      guestDir,
      String(plan.user.uid),
      String(plan.user.gid),
      String(spec.timeoutMs),
      String(spec.maxOutputBytes),
      spec.cwd,
      '--',
      ...spec.argv,
    ]);
  }

  /** Kill one command's process group; its supervisor records `reason`. */
  kill(guestDir: string, reason: string): Promise<void> {
    return this.call('killing the command', ['kill', guestDir, reason || 'killed']);
  }

  /** Send SIGINT or SIGTERM to one command's process group (no-op once it ended). */
  signal(guestDir: string, signal: 'SIGINT' | 'SIGTERM'): Promise<void> {
    return this.call('signalling the command', ['signal', guestDir, signal.slice(3)]);
  }

  /** Kill every command under `cmdRoot` (recorded as killed with `reason`) and every process of the user. */
  killAll(cmdRoot: string, reason: string, user: { uid: number; gid: number }): Promise<void> {
    return this.call('killing all processes', ['killall', cmdRoot, reason, String(user.uid), String(user.gid)]);
  }

  /** Any other runner subcommand; tree-sized ones get the long timeout. */
  call(what: string, argv: readonly string[]): Promise<void> {
    return this.transport.call(what, argv, SLOW_OPS.has(argv[0] ?? '') ? { timeoutMs: SLOW_OP_TIMEOUT_MS } : {});
  }
}
