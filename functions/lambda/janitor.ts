import middy from '@middy/core';
import { sweep, type SweepReport } from '../../shared/service/janitor.js';
import { lambdaContainer } from './compose.js';
import { inInvocation } from './invocation.js';
import { settleWrites } from './settle-writes.js';
import { eventField, lambdaLogger, observed } from './powertools.js';
import { powertoolsLog } from './powertools-log.js';

/**
 * Scheduled (EventBridge Scheduler / rule): one janitor sweep — tear down this deployment's
 * workspaces past their TTL or idle timeout, fail those whose worker was lost mid-work, apply the
 * cache limits and keep the warm pools (shared/service/janitor.ts).
 * "This deployment" is the shared `WSP_INSTANCE_ID`, so workspaces created by any api container count.
 * The event's content is not used.
 */

const log = powertoolsLog(lambdaLogger);

/**
 * A worker Lambda lives at most 15 minutes and records progress as it goes: a workspace whose work has
 * not moved for longer than that has no worker any more (killed hard: out of memory, a crash).
 */
export const ABANDONED_AFTER_MS = 16 * 60_000;

export const handler = middy<unknown, SweepReport>()
  // The schedule's event id (EventBridge), else the Lambda request id.
  .use(observed<unknown, SweepReport>((event) => eventField(event, 'id')))
  .handler((_event, context) => inInvocation(context, sweepOnce));

async function sweepOnce(): Promise<SweepReport> {
  const { deps, service } = await lambdaContainer();
  const report = await sweep(deps, service, new Date(), { abandonedAfterMs: ABANDONED_AFTER_MS, orphans: true });
  // The sweep looks at running commands (an end it sees owes a command.finished): let those writes land.
  await settleWrites(service, log);
  log.info('janitor sweep done', {
    expired: report.expired.length,
    idle: report.idle.length,
    cacheEvicted: report.cacheEvicted,
    abandoned: report.abandoned.length,
    orphansDestroyed: report.orphansDestroyed.length,
  });
  return report;
}
