import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { invokeWorkerGitOp } from '../../functions/lambda/git-ops.js';
import { BackendUnavailableError } from '../../shared/contract/errors.js';

// The api function's hand-off of git operations to the worker, at the Lambda SDK boundary. The whole
// path (api handler → worker handler → answer) runs in test/lambda/equivalence.test.ts.
const lambda = new LambdaClient({ region: 'eu-west-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' } });
const mock = mockClient(lambda);
const op = { kind: 'fetch' as const, workspaceId: `ws-${'a'.repeat(24)}`, input: { repos: ['app'] } };
const payload = (v: unknown) => new TextEncoder().encode(JSON.stringify(v)) as never;

beforeEach(() => mock.reset());

describe('git operations handed to the worker', () => {
  it('is a synchronous invoke carrying only the op (ids and the request body)', async () => {
    mock.on(InvokeCommand).resolves({ StatusCode: 200, Payload: payload({ ok: true, result: { repos: [] } }) });
    expect(await invokeWorkerGitOp(lambda, 'wsp-worker')(op)).toEqual({ ok: true, result: { repos: [] } });
    const input = mock.commandCalls(InvokeCommand)[0]!.args[0].input;
    expect(input.FunctionName).toBe('wsp-worker');
    expect(input.InvocationType).toBe('RequestResponse');
    expect(JSON.parse(new TextDecoder().decode(input.Payload as Uint8Array))).toEqual({ gitOp: op });
  });

  it('passes the worker’s domain error through as data', async () => {
    const error = { code: 'step_failed', message: 'fetch failed: authentication failed' };
    mock.on(InvokeCommand).resolves({ StatusCode: 200, Payload: payload({ ok: false, error }) });
    expect(await invokeWorkerGitOp(lambda, 'wsp-worker')(op)).toEqual({ ok: false, error });
  });

  it.each([
    ['an invoke that fails', () => mock.on(InvokeCommand).rejects(new Error('throttled'))],
    [
      'a worker that crashed',
      () =>
        mock
          .on(InvokeCommand)
          .resolves({ StatusCode: 200, FunctionError: 'Unhandled', Payload: payload({ errorMessage: 'boom' }) }),
    ],
    [
      'a worker that answered nonsense',
      () => mock.on(InvokeCommand).resolves({ StatusCode: 200, Payload: payload({ ran: true }) }),
    ],
  ])('%s is a 503', async (_name, arrange) => {
    arrange();
    await expect(invokeWorkerGitOp(lambda, 'wsp-worker')(op)).rejects.toBeInstanceOf(BackendUnavailableError);
  });
});
