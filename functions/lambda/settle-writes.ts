import type { Logger } from '../../shared/log.js';
import { invocationRemainingMs } from './invocation.js';

/** Kept for the answer itself after the wait is cut short. */
const MARGIN_MS = 1_000;

/**
 * Before a handler returns: wait for the writes the service made off the answer's path — a command end
 * observed, and its `command.finished` (the first delivery attempt runs in that write). The local
 * server lets them finish in the background; a Lambda is frozen once it answers, and they would sit
 * there until the container's next invocation, if any. Bounded by the invocation's time: what is cut
 * short is caught by the janitor (an ended command whose event is missing; a delivery claim that lapses).
 */
export async function settleWrites(service: { settleWrites(): Promise<void> }, log: Logger): Promise<void> {
  const left = invocationRemainingMs();
  if (left === undefined) return service.settleWrites();
  let timer: NodeJS.Timeout | undefined;
  const cut = new Promise<'cut'>((resolve) => {
    timer = setTimeout(() => resolve('cut'), Math.max(0, left - MARGIN_MS));
  });
  try {
    if ((await Promise.race([service.settleWrites(), cut])) === 'cut')
      log.warn('background writes still running as the invocation ends; the janitor will finish them');
  } finally {
    clearTimeout(timer);
  }
}
