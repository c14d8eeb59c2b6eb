import middy from '@middy/core';
import { z } from 'zod';
import { errorFields } from '../../shared/log.js';
import type { Job } from '../../shared/service/long-work.js';
import { lambdaContainer } from './compose.js';
import { inInvocation } from './invocation.js';
import { settleWrites } from './settle-writes.js';
import { eventField, lambdaLogger, observed } from './powertools.js';
import { powertoolsLog } from './powertools-log.js';

/**
 * The worker (the provisioner: the only role with the git secrets, the only function with git). Jobs
 * run with `service.runJob`: provisioning's phases, invoked one at a time by the provisioning state
 * machine (`provision-phase`: the answer says what comes next; `provision-failed` when it gave up),
 * and the operations fetch and reset, phase by phase from the operations state machine
 * (`operation-phase`, `operation-failed`; their outcome is written on the operation's record, which
 * the api reads) — or whole, from the api's async invoke where no state machine is configured.
 * Jobs are idempotent: a re-delivered job for a
 * settled workspace or an ended operation does nothing. Both record their own failure and do not
 * throw; a throw here (e.g. the state store unreachable) lets Lambda retry the async invocation.
 *
 * Time limit: a Lambda runs at most 15 minutes. A phase is short by design (the setup is awaited in
 * bounded looks, not in one invocation; a reset's restore, replacement, sync and verification are
 * each a phase); one still going `TIME_MARGIN_MS` before the
 * function's timeout is rethrown as TimeoutError, and the state machine runs the phase again (phases
 * are idempotent) or, its retries spent, fails the workspace. Any other job still going then is failed
 * here (a provisioning workspace failed and its compute torn down; an operation failed, its workspace
 * left to the janitor's stuck-reset check) and the invocation ends normally — no retry that would
 * start over, nothing left running for ever.
 */

const log = powertoolsLog(lambdaLogger);

/** Kept free before the function timeout to fail the workspace and tear its compute down. */
export const TIME_MARGIN_MS = 30_000;

const workspaceId = z.string().regex(/^ws-[0-9a-f]{24}$/);
const operationId = z.string().regex(/^op-[0-9a-f]{8,40}$/);
const jobSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('provision'), workspaceId }).strict(),
  z
    .object({ kind: z.literal('provision-phase'), workspaceId, phase: z.enum(['start', 'await-setup', 'finish']) })
    .strict(),
  // `error`: the Step Functions error name (States.TaskFailed, TimeoutError, …), bounded.
  z.object({ kind: z.literal('provision-failed'), workspaceId, error: z.string().max(200) }).strict(),
  z.object({ kind: z.literal('operation'), workspaceId, operationId }).strict(),
  z
    .object({
      kind: z.literal('operation-phase'),
      workspaceId,
      operationId,
      phase: z.enum(['begin', 'restore', 'replace', 'sync', 'move', 'verify']),
    })
    .strict(),
  z.object({ kind: z.literal('operation-failed'), workspaceId, operationId, error: z.string().max(200) }).strict(),
]);

/** What the worker answers; for a provisioning phase, what comes next (read by the state machine's Choice). */
export interface WorkerResult {
  ran: boolean;
  reason?: string;
  /** The workspace is settled (ready or failed): the workflow ends. */
  done?: boolean;
  /** The phase to run next, after `waitSeconds`. */
  next?: string;
  waitSeconds?: number;
}

export const handler = middy<unknown, WorkerResult>({ timeoutEarlyInMillis: TIME_MARGIN_MS })
  // A job has no request id of its own: its correlation_id is the work's id — the operation's, else the
  // workspace's — the id the api answered with, so a request and every worker phase it caused share it.
  .use(observed<unknown, WorkerResult>((event) => eventField(event, 'operationId') ?? eventField(event, 'workspaceId')))
  .use({
    onError: async (request) => {
      if (request.error?.name !== 'TimeoutError') return; // rethrown by middy: Lambda retries
      const job = jobSchema.safeParse(request.event);
      // A phase is idempotent: the state machine retries it (and fails the work when it gives up).
      if (job.success && (job.data.kind.startsWith('provision-') || job.data.kind.startsWith('operation-'))) return;
      if (job.success) await failTimedOut(job.data);
      request.response = { ran: true, reason: 'timed out' };
    },
  })
  // Exec waits in the backend end before the margin this handler keeps to fail a job that ran out of time.
  .handler((event, context) => inInvocation(context, () => work(event), TIME_MARGIN_MS));

async function work(event: unknown): Promise<WorkerResult> {
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
  const outcome = await service.runJob(job);
  await settleWrites(service, log);
  log.info('worker: job done', { job: job.kind, workspaceId: job.workspaceId, ...(outcome ?? {}) });
  return { ran: true, ...(outcome ?? {}) };
}

/**
 * The job outlived the function. Provisioning: fail the workspace (if still provisioning) and free its
 * compute. An operation: fail it (a reset leaves its workspace 'resetting': the janitor fails it once
 * no worker can still be running it).
 */
async function failTimedOut(job: Job): Promise<void> {
  log.error('worker: job did not finish within the function timeout', { job: job.kind, workspaceId: job.workspaceId });
  try {
    const { service, deps } = await lambdaContainer();
    if (job.kind === 'operation') {
      await service.operations.failRunning(
        job.workspaceId,
        job.operationId,
        'the operation did not finish within the worker function time limit',
      );
      return;
    }
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
