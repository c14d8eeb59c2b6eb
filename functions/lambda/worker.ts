import middy from '@middy/core';
import { z } from 'zod';
import { createLogger, errorFields } from '../../shared/log.js';
import type { GitOp, Job } from '../../shared/service/long-work.js';
import { lambdaContainer } from './compose.js';
import { answerGitOp, gitOpSchema, type GitOpAnswer } from './git-ops.js';
import { inInvocation } from './invocation.js';

/**
 * The worker (the provisioner: the only role with the git secrets, the only function with git).
 * Git operations of running workspaces arrive as `{ gitOp }` synchronous invokes from the api function
 * (git-ops.ts) and are answered with their result. Jobs arrive from the api function's async invoke, run with
 * `service.runJob` (provisioning: clone/fetch, setup, cache, baseline). Jobs are idempotent: a
 * re-delivered provision job for a settled workspace does nothing. Provisioning records its own
 * failure on the workspace and does not throw; a throw here (e.g. the state store unreachable)
 * lets Lambda retry the async invocation.
 *
 * Time limit: a Lambda runs at most 15 minutes. When provisioning is still going
 * `TIME_MARGIN_MS` before the function's timeout, the workspace is failed and its compute torn
 * down, and the invocation ends normally — no retry that would start over, nothing left
 * 'provisioning' for ever.
 */

const log = createLogger({ svc: 'wsp-worker' });

/** Kept free before the function timeout to fail the workspace and tear its compute down. */
export const TIME_MARGIN_MS = 30_000;

const jobSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('provision'), workspaceId: z.string().regex(/^ws-[0-9a-f]{24}$/) }).strict(),
]);

export interface WorkerResult {
  ran: boolean;
  reason?: string;
}

export const handler = middy<unknown, WorkerResult | GitOpAnswer>({ timeoutEarlyInMillis: TIME_MARGIN_MS })
  .use({
    onError: async (request) => {
      if (request.error?.name !== 'TimeoutError') return; // rethrown by middy: Lambda retries
      const job = jobSchema.safeParse(request.event);
      if (job.success) await failTimedOut(job.data);
      request.response = { ran: true, reason: 'timed out' };
    },
  })
  // Exec waits in the backend end before the margin this handler keeps to fail a job that ran out of time.
  .handler((event, context) => inInvocation(context, () => work(event), TIME_MARGIN_MS));

async function work(event: unknown): Promise<WorkerResult | GitOpAnswer> {
  // A git operation from the api function (synchronous invoke): run it here, answer with its result.
  if (typeof event === 'object' && event !== null && 'gitOp' in event) {
    const op = gitOpSchema.safeParse((event as { gitOp: unknown }).gitOp);
    if (!op.success) {
      log.error('worker: malformed git op refused', {
        issues: op.error.issues.map((i) => i.path.join('.') || '(root)'),
      });
      return { ok: false, error: { code: 'bad_request', message: 'malformed git operation' } };
    }
    const { service } = await lambdaContainer();
    log.info('worker: git op', { op: op.data.kind, workspaceId: op.data.workspaceId });
    return answerGitOp(service, op.data as GitOp);
  }
  const parsed = jobSchema.safeParse(event);
  if (!parsed.success) {
    // Not retried: a malformed job never becomes valid. Only the field paths are logged, not the payload.
    log.error('worker: malformed job ignored', {
      issues: parsed.error.issues.map((i) => i.path.join('.') || '(root)'),
    });
    return { ran: false, reason: 'malformed job' };
  }
  const job: Job = parsed.data;
  const { service } = await lambdaContainer();
  log.info('worker: job started', { job: job.kind, workspaceId: job.workspaceId });
  await service.runJob(job);
  log.info('worker: job done', { job: job.kind, workspaceId: job.workspaceId });
  return { ran: true };
}

/** The provisioning outlived the function: fail the workspace (if still provisioning) and free its compute. */
async function failTimedOut(job: Job): Promise<void> {
  log.error('worker: job did not finish within the function timeout', { job: job.kind, workspaceId: job.workspaceId });
  try {
    const { service, deps } = await lambdaContainer();
    const record = await deps.state.getWorkspace(job.workspaceId);
    if (record?.status !== 'provisioning') return;
    const failed = await service.records.transition(job.workspaceId, ['provisioning'], 'failed', {
      failure: { step: 'provision', message: 'provisioning did not finish within the worker function time limit' },
    });
    await service.teardown(failed);
  } catch (error) {
    log.error('worker: could not fail the timed-out workspace', {
      workspaceId: job.workspaceId,
      ...errorFields(error),
    });
  }
}
