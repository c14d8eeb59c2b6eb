import type { StartExecutionClient } from '../../functions/lambda/provision-workflow.js';
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
 * Runs provisioning executions the way the state machine of infra/constructs/provision-workflow.ts
 * does: invoke the worker with `{kind:'provision-phase', workspaceId, phase}`; Choice on the answer —
 * `done` ends, `next` waits `waitSeconds` and invokes that phase; an invocation that throws is retried,
 * and when the retries are spent (or the answer has neither) the Catch invokes `provision-failed`.
 * Executions are named by workspace id: a second start of a running one is harmless, of an ended one
 * `ExecutionAlreadyExists`.
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
    const { workspaceId } = JSON.parse(input.input) as { workspaceId: string };
    const execution = { input: input.input, run: Promise.resolve(), ended: false };
    execution.run = this.run(workspaceId).finally(() => {
      execution.ended = true;
    });
    this.executions.set(input.name, execution);
  }

  /** Waits for every execution to end. */
  async drain(): Promise<void> {
    while ([...this.executions.values()].some((e) => !e.ended))
      await Promise.allSettled([...this.executions.values()].map((e) => e.run));
  }

  private async run(workspaceId: string): Promise<void> {
    let phase = 'start';
    for (;;) {
      let answer: WorkerResult;
      try {
        answer = await this.withRetry({ kind: 'provision-phase', workspaceId, phase });
      } catch (error) {
        await this.call({ kind: 'provision-failed', workspaceId, error: (error as Error).name });
        return;
      }
      if (answer.done) return;
      if (!answer.next) {
        await this.call({ kind: 'provision-failed', workspaceId, error: 'NoOutcome' });
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
