import middy from '@middy/core';
import { z } from 'zod';
import { createLogger } from '../../shared/log.js';
import type { Job } from '../../shared/service/jobs.js';
import { lambdaContainer } from './compose.js';

/**
 * The worker: receives a job from the api function's async invoke and runs it with
 * `service.runJob` (provisioning: clone/fetch, setup, cache, baseline). Jobs are idempotent: a
 * re-delivered provision job for a settled workspace does nothing. Provisioning records its own
 * failure on the workspace and does not throw; a throw here (e.g. the state store unreachable)
 * lets Lambda retry the async invocation.
 */

const log = createLogger({ svc: 'wsp-worker' });

const jobSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('provision'), workspaceId: z.string().regex(/^ws-[0-9a-f]{24}$/) }).strict(),
]);

export interface WorkerResult {
  ran: boolean;
  reason?: string;
}

export const handler = middy<unknown, WorkerResult>().handler(async (event) => {
  const parsed = jobSchema.safeParse(event);
  if (!parsed.success) {
    // Not retried: a malformed job never becomes valid. Only the field paths are logged, not the payload.
    log.error('worker: malformed job ignored', { issues: parsed.error.issues.map((i) => i.path.join('.') || '(root)') });
    return { ran: false, reason: 'malformed job' };
  }
  const job: Job = parsed.data;
  const { service } = await lambdaContainer();
  log.info('worker: job started', { job: job.kind, workspaceId: job.workspaceId });
  await service.runJob(job);
  log.info('worker: job done', { job: job.kind, workspaceId: job.workspaceId });
  return { ran: true };
});
