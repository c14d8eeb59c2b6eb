import {
  DescribeTasksCommand,
  ExecuteCommandCommand,
  type DescribeTasksCommandOutput,
  type ECSClient,
  type ExecuteCommandCommandOutput,
} from '@aws-sdk/client-ecs';
import { BackendUnavailableError } from '../../contract/errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { RunnerRpc, type PtyLike } from '../runner/rpc.js';
import { SsmSession } from './ssm/session.js';
import type { SsmTransport } from './ssm/transport.js';
import { openWsTransport } from './ssm/ws-transport.js';
import { defaultRetryPolicy, isRetryable, withRetry, type RetryPolicy } from './retry.js';

/**
 * The provider's way into a Fargate task: ECS Exec (`ExecuteCommand`, interactive — the only mode)
 * of `runner.sh rpc`, spoken over our SSM data-channel client. One persistent session per task is kept
 * (the 1 s ExecuteCommand floor is paid once, not per request); when it dies (20 min idle timeout,
 * network, agent restart) the next request opens a new one. A result never travels only in the
 * session: the runner keeps everything in files, so a retried request is safe.
 *
 * Time: a session kept across Lambda invocations may have died while the function was frozen, with
 * nothing to show for it (no FIN ever arrived). Such a session is found dead when the input of the next
 * request gets no sign of life within `ackTimeoutMs` (the agent acks input at once), and replaced once.
 * And nothing waits past the invocation: with `remainingMs`, every wait is cut to what is left of it
 * (minus a reserve to answer), and no attempt starts without enough time to finish.
 */

/** The task is gone (stopped, or unknown to ECS): nothing in it can answer again. */
export class TaskGoneError extends BackendUnavailableError {
  constructor(
    readonly taskArn: string,
    readonly why: string,
  ) {
    super(`workspace task is gone: ${why}`);
  }
}

export interface ExecChannelOptions {
  cluster: string;
  container: string;
  /** Shell command ECS Exec runs in the task. Default `sh /opt/wsp/runner.sh rpc`. */
  command?: string;
  /** Opens the websocket of `session.streamUrl` (tests: the same `ws` transport against a loopback agent). */
  openTransport?: (streamUrl: string) => Promise<SsmTransport>;
  retry?: RetryPolicy;
  /** A request that gets no answer within this time fails the session. Default 120 s. */
  requestTimeoutMs?: number;
  /** Input without any sign of life from the agent for this long fails the session (then one reconnect). Default 10 s. */
  ackTimeoutMs?: number;
  /**
   * What is left of the current invocation in ms (Lambda: `context.getRemainingTimeInMillis()`), read
   * at every attempt and request; undefined (default): no deadline (the local server).
   */
  remainingMs?: () => number | undefined;
  log?: Logger;
}

const DEFAULT_COMMAND = 'sh /opt/wsp/runner.sh rpc';
/** Kept free at the end of an invocation to answer (an error, if it comes to that). */
const ANSWER_RESERVE_MS = 1_000;
/** No attempt (connect + request) starts with less than this left after the reserve. */
const MIN_ATTEMPT_MS = 2_000;

/** The runner's bytes come as Output (1) or, for some agents, StdErr (11) payloads: both are the PTY. */
function ptyOverSession(session: SsmSession): PtyLike {
  return {
    write: (data) => session.write(data),
    onData: (cb) =>
      session.onOutput((chunk, type) => {
        if (type === 1 || type === 11) cb(chunk);
      }),
    onClose: (cb) => {
      session.ended.then(
        () => cb(),
        (error: Error) => cb(error),
      );
    },
    close: () => session.close(),
  };
}

export class ExecChannels {
  private readonly open = new Map<string, Promise<RunnerRpc>>();
  private readonly retry: RetryPolicy;
  private readonly log: Logger;

  constructor(
    private readonly ecs: ECSClient,
    private readonly options: ExecChannelOptions,
  ) {
    this.retry = options.retry ?? defaultRetryPolicy;
    this.log = options.log ?? silentLogger;
  }

  /**
   * Run `fn` with the task's runner session; on a channel failure, once more with a new session.
   * Throws TaskGoneError when the task has stopped (the caller reports its commands lost).
   */
  async with<T>(taskArn: string, what: string, fn: (rpc: RunnerRpc) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      this.checkTimeLeft(what);
      let rpc = await this.session(taskArn, what);
      if (rpc.closed) {
        // It ended while idle (agent restart, 20 min idle timeout): replace it without spending the retry.
        await this.forget(taskArn, rpc);
        rpc = await this.session(taskArn, what);
      }
      try {
        return await fn(rpc);
      } catch (error) {
        if (!(error instanceof BackendUnavailableError) || error instanceof TaskGoneError) throw error;
        // Awaited: the next attempt must not pick the failed session up again.
        await this.forget(taskArn, rpc);
        if (attempt >= 2) {
          await this.throwIfGone(taskArn);
          throw new BackendUnavailableError(`${what}: the exec session to the workspace task failed twice`, error);
        }
        this.log.warn('ecs exec session failed; opening a new one', { taskArn, what, error: error.message });
        this.checkTimeLeft(what, error);
      }
    }
  }

  /** What this invocation may still spend on exec (its remaining time less the answer reserve); undefined: unbounded. */
  private budgetMs(): number | undefined {
    const left = this.options.remainingMs?.();
    return left === undefined ? undefined : left - ANSWER_RESERVE_MS;
  }

  /** Another ExecuteCommand attempt fits: the longest backoff and one attempt are left in the invocation. */
  private canAffordRetry(): boolean {
    const budget = this.budgetMs();
    return budget === undefined || budget >= this.retry.capMs + MIN_ATTEMPT_MS;
  }

  private checkTimeLeft(what: string, cause?: Error): void {
    const budget = this.budgetMs();
    if (budget === undefined || budget >= MIN_ATTEMPT_MS) return;
    throw new BackendUnavailableError(
      `${what}: no time left in this invocation for the exec session${cause ? ` (it failed: ${cause.message})` : ''}`,
      cause,
    );
  }

  /**
   * Close and drop the task's session (only if it is `rpc`, when given). The session is dropped from
   * the map at once without `rpc`, else once the returned promise settles.
   */
  forget(taskArn: string, rpc?: RunnerRpc): Promise<void> {
    const current = this.open.get(taskArn);
    if (!current) return Promise.resolve();
    const done = current.then(
      (r) => {
        if (rpc === undefined || r === rpc) {
          if (this.open.get(taskArn) === current) this.open.delete(taskArn);
          r.close();
        }
      },
      () => {
        if (this.open.get(taskArn) === current) this.open.delete(taskArn);
      },
    );
    if (rpc === undefined) this.open.delete(taskArn);
    return done;
  }

  closeAll(): void {
    for (const taskArn of [...this.open.keys()]) void this.forget(taskArn);
  }

  private session(taskArn: string, what: string): Promise<RunnerRpc> {
    let pending = this.open.get(taskArn);
    if (!pending) {
      pending = this.connect(taskArn, what);
      this.open.set(taskArn, pending);
      pending.catch(() => {
        if (this.open.get(taskArn) === pending) this.open.delete(taskArn);
      });
    }
    return pending;
  }

  private async connect(taskArn: string, what: string): Promise<RunnerRpc> {
    const { cluster, container } = this.options;
    let out: ExecuteCommandCommandOutput;
    try {
      out = await withRetry(
        () =>
          this.ecs.send(
            new ExecuteCommandCommand({
              cluster,
              task: taskArn,
              container,
              interactive: true,
              command: this.options.command ?? DEFAULT_COMMAND,
            }),
          ),
        this.retry,
        // The agent can lag the task by a moment right after start: TargetNotConnected is worth a retry —
        // unless the invocation cannot afford the longest backoff plus one more attempt.
        (e) =>
          (isRetryable(e) || (e as { name?: string }).name === 'TargetNotConnectedException') && this.canAffordRetry(),
      );
    } catch (error) {
      await this.throwIfGone(taskArn);
      throw new BackendUnavailableError(`${what}: ECS ExecuteCommand failed: ${(error as Error).message}`, error);
    }
    const session = out.session;
    if (!session?.streamUrl || !session.tokenValue)
      throw new BackendUnavailableError(`${what}: ECS ExecuteCommand returned no session`);
    const transport = await (this.options.openTransport ?? openWsTransport)(session.streamUrl);
    const budget = this.budgetMs();
    const ssm = new SsmSession(transport, {
      tokenValue: session.tokenValue,
      ackTimeoutMs: this.options.ackTimeoutMs ?? 10_000,
      ...(budget === undefined ? {} : { handshakeTimeoutMs: Math.max(0, Math.min(15_000, budget)) }),
      log: this.log,
    });
    ssm.start();
    const rpc = new RunnerRpc(ptyOverSession(ssm), {
      requestTimeoutMs: this.options.requestTimeoutMs ?? 120_000,
      remainingMs: () => this.budgetMs(),
    });
    try {
      await ssm.handshake;
      await rpc.ready();
    } catch (error) {
      rpc.close();
      throw error instanceof BackendUnavailableError
        ? error
        : new BackendUnavailableError(`${what}: the runner did not answer in the workspace task`, error);
    }
    return rpc;
  }

  /** Throws TaskGoneError when ECS says the task is stopped or unknown; returns otherwise (also when ECS cannot be asked). */
  async throwIfGone(taskArn: string): Promise<void> {
    let out: DescribeTasksCommandOutput;
    try {
      out = await withRetry(
        () => this.ecs.send(new DescribeTasksCommand({ cluster: this.options.cluster, tasks: [taskArn] })),
        this.retry,
      );
    } catch {
      return;
    }
    const task = out.tasks?.find((t) => t.taskArn === taskArn);
    if (!task) throw new TaskGoneError(taskArn, out.failures?.[0]?.reason ?? 'MISSING');
    if (
      task.lastStatus === 'STOPPED' ||
      task.desiredStatus === 'STOPPED' ||
      task.lastStatus === 'DEPROVISIONING' ||
      task.lastStatus === 'STOPPING'
    ) {
      throw new TaskGoneError(taskArn, task.stoppedReason ?? task.lastStatus ?? 'stopped');
    }
  }
}
