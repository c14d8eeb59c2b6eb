import { ConflictError } from '../contract/errors.js';

/** What an exclusive operation is doing to the workspace; commands are refused with it (409). */
export type ExclusiveOp = 'resetting' | 'deleting' | 'fetching' | 'snapshotting';

interface GateState {
  /** Command starts in flight (between the ready check and the backend's start returning). */
  starting: number;
  /** The exclusive operation running now, if any. */
  op?: ExclusiveOp;
  /** Whether the running op refuses command starts (reset and delete do; fetch does not). */
  blocksCommands: boolean;
  /** Exclusive operations queued or running. */
  pending: number;
  /** Wakes an op that waits for the starts in flight to finish. */
  idle: (() => void)[];
  /** The tail of the queue of exclusive operations. */
  tail: Promise<unknown>;
}

/**
 * Per workspace, in this process: command starts against operations that rewrite or remove the
 * workspace's content (reset, delete; later fork and snapshot). Once such an operation begins, no
 * command starts (409 naming what runs) and the starts already in flight finish first — so the
 * operation's kill-all, which comes after, catches every command this process started, and none
 * can start while the content is rewritten. Exclusive operations run one at a time, in order.
 *
 * Across processes (several Lambdas on one record) the record's status is the guard: a command
 * re-reads it after its start and kills itself if an operation began meanwhile (Commands.run).
 */
export class WorkspaceGate {
  private readonly states = new Map<string, GateState>();

  /** Run a command start; ConflictError (409) while a reset or delete of the workspace runs. */
  async start<T>(workspaceId: string, fn: () => Promise<T>): Promise<T> {
    const s = this.state(workspaceId);
    if (s.op !== undefined && s.blocksCommands) {
      throw new ConflictError(`workspace '${workspaceId}' is ${s.op}; commands can start when that ends`, {
        details: { status: s.op },
      });
    }
    s.starting += 1;
    try {
      return await fn();
    } finally {
      s.starting -= 1;
      if (s.starting === 0) for (const wake of s.idle.splice(0)) wake();
      this.forget(workspaceId, s);
    }
  }

  /**
   * Run `fn` as the workspace's one exclusive operation. With `blocksCommands`, new starts are
   * refused from the moment it begins and it waits for the starts in flight before `fn` runs.
   */
  async exclusive<T>(workspaceId: string, op: ExclusiveOp, blocksCommands: boolean, fn: () => Promise<T>): Promise<T> {
    const s = this.state(workspaceId);
    const run = async (): Promise<T> => {
      s.op = op;
      s.blocksCommands = blocksCommands;
      try {
        if (blocksCommands && s.starting > 0) await new Promise<void>((wake) => s.idle.push(wake));
        return await fn();
      } finally {
        s.op = undefined;
        s.blocksCommands = false;
      }
    };
    // Nothing queued: begin now, so starts are refused from this very call on (not a tick later).
    const next = s.pending === 0 ? run() : s.tail.catch(() => undefined).then(run);
    s.pending += 1;
    s.tail = next;
    try {
      return await next;
    } finally {
      s.pending -= 1;
      this.forget(workspaceId, s);
    }
  }

  /** The operation running on the workspace now (for tests and views). */
  current(workspaceId: string): ExclusiveOp | undefined {
    return this.states.get(workspaceId)?.op;
  }

  private state(workspaceId: string): GateState {
    let s = this.states.get(workspaceId);
    if (s === undefined) {
      s = { starting: 0, pending: 0, blocksCommands: false, idle: [], tail: Promise.resolve() };
      this.states.set(workspaceId, s);
    }
    return s;
  }

  /** Drop an idle workspace's state so the map does not grow with every workspace ever seen. */
  private forget(workspaceId: string, s: GateState): void {
    if (s.starting === 0 && s.pending === 0 && this.states.get(workspaceId) === s) this.states.delete(workspaceId);
  }
}
