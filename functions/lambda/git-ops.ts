import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import { z } from 'zod';
import type { FetchParams, ResetParams } from '../../shared/contract/inputs.js';
import type { FetchResult, ResetResult } from '../../shared/contract/views.js';
import { BackendUnavailableError, WspError, type ErrorCode } from '../../shared/contract/errors.js';
import { DefaultWorkspaceService } from '../../shared/service/workspace-service.js';
import type { ServiceDeps } from '../../shared/service/deps.js';

/**
 * Git operations of a running workspace (`POST …/git/fetch`, `POST …/reset`, which may move to other
 * refs) need the provider's git and the git secrets — which only the worker (provisioner) role may
 * read, and only the worker has git (its layer). So the api function hands them to the worker with a
 * SYNCHRONOUS invoke and answers with its result: same API, same answers, no token in the api role.
 * The payload is ids and the request body only; the answer is the result or a domain error by code.
 */

export type GitOp =
  | { kind: 'fetch'; workspaceId: string; input: FetchParams }
  | { kind: 'reset'; workspaceId: string; input: ResetParams };

export type GitOpAnswer =
  | { ok: true; result: unknown }
  | { ok: false; error: { code: ErrorCode; message: string; details?: unknown } };

export const gitOpSchema = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('fetch'),
      workspaceId: z.string().regex(/^ws-[0-9a-f]{24}$/),
      input: z.record(z.string(), z.unknown()),
    })
    .strict(),
  z
    .object({
      kind: z.literal('reset'),
      workspaceId: z.string().regex(/^ws-[0-9a-f]{24}$/),
      input: z.record(z.string(), z.unknown()),
    })
    .strict(),
]);

/** The worker's side: run the op here and answer (domain errors become data, anything else throws). */
export async function runGitOp(service: DefaultWorkspaceService, op: GitOp): Promise<GitOpAnswer> {
  try {
    // Always here: a worker sharing its container with an api handler (tests) must not hand it on again.
    const local = service instanceof WorkerGitOpsService ? service.locally : service;
    const result =
      op.kind === 'fetch' ? await local.fetch(op.workspaceId, op.input) : await local.reset(op.workspaceId, op.input);
    return { ok: true, result };
  } catch (error) {
    if (error instanceof WspError)
      return {
        ok: false,
        error: {
          code: error.code,
          message: error.message,
          ...(error.details !== undefined ? { details: error.details } : {}),
        },
      };
    throw error;
  }
}

/** Rebuild the worker's domain error on the api side (same code → same HTTP status). */
function toError(e: { code: ErrorCode; message: string; details?: unknown }): WspError {
  const error = new WspError(e.code, e.message, e.details !== undefined ? { details: e.details } : undefined);
  error.name = 'WorkerGitOpError';
  return error;
}

/** The api function's service: everything local, except the git operations, which the worker runs. */
export class WorkerGitOpsService extends DefaultWorkspaceService {
  constructor(
    deps: ServiceDeps,
    private readonly invoke: (op: GitOp) => Promise<GitOpAnswer>,
  ) {
    super(deps);
  }

  /** The operations run in this process (what the worker does with a handed-over op). */
  readonly locally = {
    fetch: (workspaceId: string, input: FetchParams): Promise<FetchResult> => super.fetch(workspaceId, input),
    reset: (workspaceId: string, input: ResetParams): Promise<ResetResult> => super.reset(workspaceId, input),
  };

  override async fetch(workspaceId: string, input: FetchParams): Promise<FetchResult> {
    return (await this.delegate({ kind: 'fetch', workspaceId, input })) as FetchResult;
  }

  override async reset(workspaceId: string, input: ResetParams): Promise<ResetResult> {
    return (await this.delegate({ kind: 'reset', workspaceId, input })) as ResetResult;
  }

  private async delegate(op: GitOp): Promise<unknown> {
    const answer = await this.invoke(op);
    if (answer.ok) return answer.result;
    throw toError(answer.error);
  }
}

/** A synchronous invoke of the worker with a git op (RequestResponse: the api waits for the answer). */
export function invokeWorkerGitOp(
  client: Pick<LambdaClient, 'send'>,
  functionName: string,
): (op: GitOp) => Promise<GitOpAnswer> {
  return async (op) => {
    let out;
    try {
      out = await client.send(
        new InvokeCommand({
          FunctionName: functionName,
          InvocationType: 'RequestResponse',
          Payload: new TextEncoder().encode(JSON.stringify({ gitOp: op })),
        }),
      );
    } catch (cause) {
      throw new BackendUnavailableError(`could not hand the ${op.kind} to the worker function`, cause);
    }
    const text = out.Payload ? new TextDecoder().decode(out.Payload) : '';
    if (out.FunctionError)
      throw new BackendUnavailableError(`the worker function failed running the ${op.kind} (${out.FunctionError})`);
    try {
      const answer = JSON.parse(text) as GitOpAnswer;
      if (typeof answer?.ok === 'boolean') return answer;
    } catch {
      // fall through
    }
    throw new BackendUnavailableError(`the worker function gave no answer to the ${op.kind}`);
  };
}
