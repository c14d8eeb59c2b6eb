import { randomBytes } from 'node:crypto';
import { type CommandSpec, STDIN_PENDING_MAX_BYTES, type TerminalSize } from '../../contract/backend.js';
import type { WorkspacePlan } from '../../contract/plan.js';
import { BackendUnavailableError, ConflictError, NotFoundError, WspError } from '../../contract/errors.js';

/**
 * How one runner.sh request reaches a workspace: the Docker backend's runner channel (falling back
 * to `docker exec`), or the Fargate backend's ECS Exec session. Resolves when the runner answered
 * with status 0; throws BackendUnavailableError naming `what` otherwise.
 */
export interface RunnerTransport {
  call(what: string, argv: readonly string[], options?: { timeoutMs?: number }): Promise<void>;
  /**
   * The same request, answered with the runner's exit status (whatever it is) and its message when the
   * transport carries one; throws BackendUnavailableError only when the runner cannot be reached.
   */
  request(what: string, argv: readonly string[]): Promise<{ status: number; message: string }>;
}

/**
 * A write to a command's open stdin is refused whole beyond what the backend keeps waiting (it could
 * never be held): 413, before anything is sent.
 */
export function checkStdinWrite(data: Buffer): void {
  if (!Buffer.isBuffer(data)) throw new WspError('bad_request', 'stdin data must be bytes');
  if (data.length > STDIN_PENDING_MAX_BYTES)
    throw new WspError(
      'payload_too_large',
      `a stdin write holds at most ${STDIN_PENDING_MAX_BYTES} bytes (this one: ${data.length}); write it in parts`,
    );
}

/** A fresh id for one stdin write: a retried request carries it again, and the runner applies it once. */
export const newStdinWriteId = (): string => randomBytes(12).toString('hex');

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

  /**
   * Start `spec` as the plan's user from its prepared command dir (`guestDir`: the dir as the runner sees
   * it). With `tty`, under a terminal (runner.sh "terminals"; its keyboard is the open stdin): an image
   * without util-linux's `script` is refused with a BackendUnavailableError that says so.
   */
  async start(guestDir: string, plan: WorkspacePlan, spec: CommandSpec): Promise<void> {
    const argv = [
      'start',
      guestDir,
      String(plan.user.uid),
      String(plan.user.gid),
      String(spec.timeoutMs),
      String(spec.maxOutputBytes),
      spec.cwd,
      ...(spec.openStdin || spec.tty ? ['--open-stdin'] : []),
      ...(spec.tty ? ['--tty', String(spec.tty.rows), String(spec.tty.cols)] : []),
      '--',
      ...spec.argv,
    ];
    if (!spec.tty) return this.call('starting the command', argv);
    const { status, message } = await this.transport.request('starting the command', argv);
    if (status === 0) return;
    if (status === 9)
      throw new BackendUnavailableError(
        "terminals (tty) need util-linux's `script` in the workspace image (Debian: package bsdutils), and this image has none",
      );
    throw new BackendUnavailableError(
      `starting the command failed in the workspace (runner status ${status})${message ? `: ${message.slice(0, 300)}` : ''}`,
    );
  }

  /**
   * New size for the terminal of the command in `guestDir` (runner `resize`; no-op once it has ended).
   * NotFoundError: no such command; ConflictError: it was started without a terminal.
   */
  async resize(guestDir: string, commandId: string, size: TerminalSize): Promise<void> {
    const { status, message } = await this.transport.request("resizing the command's terminal", [
      'resize',
      guestDir,
      String(size.rows),
      String(size.cols),
    ]);
    if (status === 0) return;
    if (status === 3) throw new NotFoundError('command', commandId);
    if (status === 4) throw new ConflictError(`command '${commandId}' was not started with a terminal (tty)`);
    throw new BackendUnavailableError(
      `resizing the command's terminal failed in the workspace (runner status ${status})${message ? `: ${message.slice(0, 300)}` : ''}`,
    );
  }

  /**
   * Queue one write to the open stdin of the command in `guestDir` (runner `stdin`): its bytes are
   * `inline` (base64 in the request: only over a channel no `ps` shows, and small), else the file
   * `stdin.in.<writeId>` the backend put into the command dir, else none. Idempotent on `writeId`.
   * The runner keeps at most STDIN_PENDING_MAX_BYTES queued (the pipe itself holds 64 KiB more).
   */
  async writeStdin(guestDir: string, commandId: string, writeId: string, eof: boolean, inline?: Buffer): Promise<void> {
    const argv = ['stdin', guestDir, writeId, eof ? '1' : '0', String(STDIN_PENDING_MAX_BYTES)];
    if (inline !== undefined && inline.length > 0) argv.push(inline.toString('base64'));
    const { status, message } = await this.transport.request("writing to the command's stdin", argv);
    const refused: Record<number, () => Error> = {
      3: () => new NotFoundError('command', commandId),
      4: () => new ConflictError(`command '${commandId}' was not started with openStdin: its stdin is closed`),
      5: () => new ConflictError(`command '${commandId}' has ended: its stdin is closed`),
      6: () =>
        new ConflictError(
          `the stdin of command '${commandId}' is closed already (eof was written, or the command closed it)`,
        ),
      7: () =>
        new ConflictError(
          `stdin is full: the command is not reading (at most ${STDIN_PENDING_MAX_BYTES} bytes wait unread); try again later`,
        ),
    };
    if (status === 0) return;
    const error = refused[status];
    if (error) throw error();
    throw new BackendUnavailableError(
      `writing to the command's stdin failed in the workspace (runner status ${status})${message ? `: ${message.slice(0, 300)}` : ''}`,
    );
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
