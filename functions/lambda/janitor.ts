import middy from '@middy/core';
import { createLogger } from '../../shared/log.js';
import { sweep, type SweepReport } from '../../shared/service/janitor.js';
import { lambdaContainer } from './compose.js';

/**
 * Scheduled (EventBridge Scheduler / rule): one janitor sweep — tear down this deployment's
 * workspaces past their TTL or idle timeout, and apply the cache limits (shared/service/janitor.ts).
 * "This deployment" is the shared `WSP_INSTANCE_ID`, so workspaces created by any api container count.
 * The event's content is not used.
 */

const log = createLogger({ svc: 'wsp-janitor' });

export const handler = middy<unknown, SweepReport>().handler(async () => {
  const { deps, service } = await lambdaContainer();
  const report = await sweep(deps, service);
  log.info('janitor sweep done', { expired: report.expired.length, idle: report.idle.length, cacheEvicted: report.cacheEvicted });
  return report;
});
