import { InvokeCommand, type InvokeCommandOutput, type LambdaClient } from '@aws-sdk/client-lambda';
import { z } from 'zod';
import { BackendUnavailableError, WspError, type ErrorCode } from '../../shared/contract/errors.js';
import type { GitOp } from '../../shared/service/long-work.js';
import type { DefaultWorkspaceService } from '../../shared/service/workspace-service.js';

/**
 * Git operations of a running workspace (`POST …/git/fetch`, `POST …/reset`, which may move to other
 * refs) need the provider's git and the git secrets — which only the worker (provisioner) role may
 * read, and only the worker has git (its layer). So the api function hands them to the worker with a
 * SYNCHRONOUS invoke and answers with its result: same API, same answers, no token in the api role.
 * The payload is ids and the request body only; the answer is the result or a domain error by code.
 */

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
export async function answerGitOp(service: Pick<DefaultWorkspaceService, 'runGitOp'>, op: GitOp): Promise<GitOpAnswer> {
  try {
    return { ok: true, result: await service.runGitOp(op) };
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

/** The api's side: the worker's answer as the operation's result, or its domain error rebuilt (same code → same HTTP status). */
export function fromAnswer(answer: GitOpAnswer): unknown {
  if (answer.ok) return answer.result;
  const e = answer.error;
  const error = new WspError(e.code, e.message, e.details !== undefined ? { details: e.details } : undefined);
  error.name = 'WorkerGitOpError';
  throw error;
}

/** A synchronous invoke of the worker with a git op (RequestResponse: the api waits for the answer). */
export function invokeWorkerGitOp(
  client: Pick<LambdaClient, 'send'>,
  functionName: string,
): (op: GitOp) => Promise<GitOpAnswer> {
  return async (op) => {
    let out: InvokeCommandOutput;
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
