import type { StartExecutionClient, WorkflowExecutionInput } from '../../functions/lambda/workflow-hand-off.js';
import type { WorkerResult } from '../../functions/lambda/worker.js';
import { sleep } from '../../shared/lib/sleep.js';

/** One worker invocation with a job's JSON, as the state machine's LambdaInvoke makes it. */
export type InvokeWorker = (payload: Record<string, unknown>) => Promise<WorkerResult>;

export interface FakeStateMachineOptions {
  /** Multiplies every Wait (default 0.01: a 5 s wait takes 50 ms). */
  waitScale?: number;
  /** Attempts of a phase whose invocation throws, before the Catch (default 3, like the Retry's). */
  attempts?: number;
}

/**
 * Runs executions the way the state machines of infra/constructs/phase-workflow.ts do — provisioning
 * (input `{workspaceId}`) and operations (`{workspaceId, operationId}`): invoke the worker with
 * `{kind:'<work>-phase', …ids, phase}` from the first phase (`start`, `begin`); Choice on the answer —
 * `done` ends, `next` waits `waitSeconds` and invokes that phase; an invocation that throws is retried,
 * and when the retries are spent (or the answer has neither) the Catch invokes `<work>-failed`.
 * Executions are named (workspace or operation id): a second start of a running one is harmless, of an
 * ended one `ExecutionAlreadyExists`.
 */
export class FakeStateMachine implements StartExecutionClient {
  readonly executions = new Map<string, { input: string; run: Promise<void>; ended: boolean }>();
  /** Every payload the worker was invoked with, in order. */
  readonly invocations: Record<string, unknown>[] = [];

  constructor(
    private readonly invoke: InvokeWorker,
    private readonly options: FakeStateMachineOptions = {},
  ) {}

  async startExecution(input: { stateMachineArn: string; name: string; input: string }): Promise<void> {
    const existing = this.executions.get(input.name);
    if (existing) {
      if (!existing.ended && existing.input === input.input) return;
      throw Object.assign(new Error(`execution ${input.name} already exists`), { name: 'ExecutionAlreadyExists' });
    }
    const ids = JSON.parse(input.input) as WorkflowExecutionInput;
    const execution = { input: input.input, run: Promise.resolve(), ended: false };
    execution.run = this.run(ids).finally(() => {
      execution.ended = true;
    });
    this.executions.set(input.name, execution);
  }

  /** Waits for every execution to end. */
  async drain(): Promise<void> {
    while ([...this.executions.values()].some((e) => !e.ended))
      await Promise.allSettled([...this.executions.values()].map((e) => e.run));
  }

  private async run(ids: WorkflowExecutionInput): Promise<void> {
    const work = ids.operationId === undefined ? 'provision' : 'operation';
    let phase = work === 'provision' ? 'start' : 'begin';
    for (;;) {
      let answer: WorkerResult;
      try {
        answer = await this.withRetry({ kind: `${work}-phase`, ...ids, phase });
      } catch (error) {
        await this.call({ kind: `${work}-failed`, ...ids, error: (error as Error).name });
        return;
      }
      if (answer.done) return;
      if (!answer.next) {
        await this.call({ kind: `${work}-failed`, ...ids, error: 'NoOutcome' });
        return;
      }
      await sleep((answer.waitSeconds ?? 0) * 1000 * (this.options.waitScale ?? 0.01));
      phase = answer.next;
    }
  }

  private async withRetry(payload: Record<string, unknown>): Promise<WorkerResult> {
    const attempts = this.options.attempts ?? 3;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.call(payload);
      } catch (error) {
        if (attempt >= attempts) throw error;
        await sleep(10 * 2 ** attempt);
      }
    }
  }

  private call(payload: Record<string, unknown>): Promise<WorkerResult> {
    this.invocations.push(payload);
    return this.invoke(JSON.parse(JSON.stringify(payload)) as Record<string, unknown>);
  }
}
