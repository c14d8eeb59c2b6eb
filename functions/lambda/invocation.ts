import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * The current invocation's deadline, for what is composed once per container and outlives
 * invocations (the Fargate backend's ECS Exec sessions): a handler runs inside `inInvocation`, and
 * `invocationRemainingMs()` tells how much of that invocation is left — so no wait deep inside the
 * backend outlasts the function (the api function has 29 s; the HTTP API gives up at 30 s).
 */

interface TimeLeft {
  getRemainingTimeInMillis?: () => number;
}

const deadlines = new AsyncLocalStorage<number>();

/**
 * Runs a handler's work so that it sees the invocation's deadline, `marginMs` earlier (what the
 * handler keeps for itself, e.g. the worker's timeout handling). A context without a clock (tests) sets none.
 */
export function inInvocation<R>(context: TimeLeft | undefined, work: () => Promise<R>, marginMs = 0): Promise<R> {
  const left = context?.getRemainingTimeInMillis?.();
  if (typeof left !== 'number') return work();
  return deadlines.run(Date.now() + left - marginMs, work);
}

/** Milliseconds left of the invocation this code runs for; undefined outside one (or without a clock). */
export function invocationRemainingMs(): number | undefined {
  const at = deadlines.getStore();
  return at === undefined ? undefined : at - Date.now();
}
