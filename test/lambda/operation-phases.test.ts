import { describe, expect, it } from 'vitest';
import { configureLambda, lambdaContainer, type LambdaOverrides } from '../../functions/lambda/compose.js';
import { handler as worker } from '../../functions/lambda/worker.js';
import { StepFunctionsHandOff } from '../../functions/lambda/workflow-hand-off.js';
import type { OperationPhase } from '../../shared/contract/workspace.js';
import type { ResetResult } from '../../shared/contract/views.js';
import { FakeStateMachine } from '../support/fake-state-machine.js';
import { commitFiles } from '../support/git-fixtures.js';
import { phaseHarness, waitUntil } from '../support/phase-harness.js';
import { lambdaContext } from './events.js';

// Fetch and reset as the operations state machine runs them on AWS: each phase in its own "invocation"
// (a freshly composed Lambda container), a phase cut short run again, and a workflow that gives up
// failing the work truthfully. No operation is one invocation any more, so none is bounded by
// Lambda's 15 minutes.

const h = phaseHarness('op-phases');
const { trap, record, computeOf } = h;

async function provisioned(d: LambdaOverrides): Promise<string> {
  const id = await h.create(d);
  await (await lambdaContainer()).service.provisioner.provision(id);
  expect((await record(id)).status).toBe('ready');
  return id;
}

/** Start an operation as the api does, without waiting (its job is handed off, not run). */
async function startOp(d: LambdaOverrides, id: string, kind: 'fetch' | 'reset', input: object): Promise<string> {
  await configureLambda(d);
  const { service } = await lambdaContainer();
  const view =
    kind === 'fetch' ? await service.fetch(id, input, { waitMs: 0 }) : await service.reset(id, input, { waitMs: 0 });
  expect(view).toMatchObject({ status: 'running', phase: 'begin' });
  return view.id;
}

/** A fresh container (a new worker "invocation"), then one phase in it. */
async function invoke(d: LambdaOverrides, id: string, oid: string, phase: OperationPhase) {
  await configureLambda(d);
  return (await lambdaContainer()).service.operations.runPhase(id, oid, phase);
}

/** Phases like the state machine runs them, each in a fresh container; the phases run. */
async function runToEnd(d: LambdaOverrides, id: string, oid: string, from: OperationPhase = 'begin') {
  const ran: OperationPhase[] = [];
  let phase = from;
  for (let i = 0; i < 50; i++) {
    ran.push(phase);
    const outcome = await invoke(d, id, oid, phase);
    if (outcome.done) return ran;
    phase = outcome.next;
  }
  throw new Error(`no end after ${ran.length} phases`);
}

const operation = async (id: string, oid: string) =>
  (await (await lambdaContainer()).deps.state.getOperation(id, oid))!;

/** Leave a mark in the workspace's repository (what an agent did), through a command. */
async function dirty(d: LambdaOverrides, id: string): Promise<void> {
  await configureLambda(d);
  const { service } = await lambdaContainer();
  const cmd = await service.runCommand(id, {
    command: 'echo agent > app/agent.txt; echo changed >> app/a.txt',
    stdinEncoding: 'utf8',
    waitMs: 10_000,
  });
  expect(cmd.exitCode).toBe(0);
}

async function hasFile(d: LambdaOverrides, id: string, file: string): Promise<boolean> {
  await configureLambda(d);
  const cmd = await (await lambdaContainer()).service.runCommand(id, {
    command: `test -e ${file}`,
    stdinEncoding: 'utf8',
    waitMs: 10_000,
  });
  return cmd.exitCode === 0;
}

describe('operation phases across invocations', () => {
  it('a reset runs begin → restore → verify, each in its own invocation, and shows its phase while running', async () => {
    const d = h.deployment('echo set > set.txt');
    const id = await provisioned(d);
    await dirty(d, id);
    const oid = await startOp(d, id, 'reset', {});
    expect(await invoke(d, id, oid, 'begin')).toEqual({ done: false, next: 'restore', waitSeconds: 0 });
    expect(await record(id)).toMatchObject({ status: 'resetting', resetBy: oid });
    // A re-delivered phase does nothing new and answers where the operation is.
    expect(await invoke(d, id, oid, 'begin')).toEqual({ done: false, next: 'restore', waitSeconds: 0 });
    const view = await (await lambdaContainer()).service.getOperation(id, oid, { waitMs: 0 });
    expect(view).toMatchObject({ status: 'running', phase: 'restore' });
    // Commands are refused meanwhile (the record says resetting, in every process).
    await expect(
      (await lambdaContainer()).service.runCommand(id, { command: 'true', stdinEncoding: 'utf8' }),
    ).rejects.toMatchObject({
      code: 'conflict',
    });
    expect(await runToEnd(d, id, oid, 'restore')).toEqual(['restore', 'verify']);
    const done = await operation(id, oid);
    expect(done).toMatchObject({ status: 'succeeded', result: { matches: true } });
    expect(done.phase).toBe('verify');
    const ready = await record(id);
    expect(ready.status).toBe('ready');
    expect(ready.resetBy).toBeUndefined();
    expect(await hasFile(d, id, 'app/agent.txt')).toBe(false);
    // Any phase re-delivered to an ended operation: done, nothing touched.
    for (const phase of ['begin', 'restore', 'verify'] as const)
      expect(await invoke(d, id, oid, phase)).toEqual({ done: true });
    expect((await record(id)).version).toBe(ready.version);
  });

  it('a recreate runs begin → replace → sync → verify; a sync killed mid-way is run again and ends truthfully', async () => {
    const d = h.deployment('echo set > set.txt');
    const id = await provisioned(d);
    const before = await record(id);
    await dirty(d, id);
    const oid = await startOp(d, id, 'reset', { mode: 'recreate' });
    expect(await invoke(d, id, oid, 'begin')).toEqual({ done: false, next: 'replace', waitSeconds: 0 });
    expect(await invoke(d, id, oid, 'replace')).toEqual({ done: false, next: 'sync', waitSeconds: 0 });
    const replaced = await record(id);
    // New compute (a local ref is named by the workspace, so it reads the same): no baseline yet.
    expect(replaced.backend).toBeDefined();
    expect(replaced.baseline).toBeUndefined();
    expect(await computeOf(id)).toBe(1);
    // The worker dies while taking the new baseline.
    trap.at = 'snapshots.take';
    await configureLambda(d);
    void (await lambdaContainer()).service.operations.runPhase(id, oid, 'sync');
    await waitUntil(async () => trap.at === undefined);
    expect((await operation(id, oid)).phase).toBe('sync');

    expect(await runToEnd(d, id, oid, 'sync')).toEqual(['sync', 'verify']);
    const done = await operation(id, oid);
    expect(done.status).toBe('succeeded');
    const result = done.result as unknown as ResetResult;
    expect(result).toMatchObject({ matches: true, recreated: true });
    expect(result.previousBaselineFingerprint).toBe(before.baselineFingerprint);
    const ready = await record(id);
    expect(ready).toMatchObject({ status: 'ready', backend: replaced.backend });
    expect(ready.baselineFingerprint).toBe(result.baselineFingerprint);
    expect(await computeOf(id)).toBe(1);
    expect(await hasFile(d, id, 'app/agent.txt')).toBe(false);
    expect(await hasFile(d, id, 'set.txt')).toBe(true); // from the cache entry: setup not re-run
  });

  it('a replace killed after making compute it did not record is run again: one compute, the recorded one', async () => {
    const d = h.deployment('echo set > set.txt');
    const id = await provisioned(d);
    const oid = await startOp(d, id, 'reset', { mode: 'recreate' });
    await invoke(d, id, oid, 'begin');
    const ws = await record(id);
    // What the killed run did: the recorded compute destroyed, new compute made, the record not updated.
    const { deps } = await lambdaContainer();
    await deps.backend.destroy(ws.backend!);
    const unrecorded = await deps.backend.create(ws.plan, { workspaceId: id, labels: { 'wsp.workspace': id } });
    expect(await computeOf(id)).toBe(1);
    expect((await record(id)).backend).toEqual(ws.backend);
    await runToEnd(d, id, oid, 'replace');
    expect((await operation(id, oid)).status).toBe('succeeded');
    expect((await record(id)).status).toBe('ready');
    expect(await computeOf(id)).toBe(1);
    const listed = (await deps.backend.listResources()).filter((r) => r.workspaceId === id);
    expect(listed.map((r) => r.ref)).toEqual([(await record(id)).backend]);
    expect(unrecorded).toBeDefined();
  });

  it('a reset with refs runs begin → restore → move → verify and makes the refs the baseline', async () => {
    const d = h.deployment('echo set > set.txt');
    const id = await provisioned(d);
    const next = commitFiles(h.app, { 'b.txt': 'b\n' }, 'second');
    const oid = await startOp(d, id, 'reset', { refs: { app: next } });
    expect(await runToEnd(d, id, oid)).toEqual(['begin', 'restore', 'move', 'verify']);
    expect(await operation(id, oid)).toMatchObject({ status: 'succeeded', result: { matches: true } });
    const ready = await record(id);
    expect(ready.repos.find((r) => r.name === 'app')?.commit).toBe(next);
    expect(await hasFile(d, id, 'app/b.txt')).toBe(true);
  });

  it('bad input is refused at begin: the operation fails with the 400, the workspace stays ready', async () => {
    const d = h.deployment('');
    const id = await provisioned(d);
    const oid = await startOp(d, id, 'reset', { refs: { nope: 'main' } });
    expect(await invoke(d, id, oid, 'begin')).toEqual({ done: true });
    expect(await operation(id, oid)).toMatchObject({ status: 'failed', error: { code: 'bad_request' } });
    expect((await record(id)).status).toBe('ready');
  });

  it('the workflow giving up (operation-failed) fails the reset and its workspace, never leaves it resetting', async () => {
    const d = h.deployment('');
    const id = await provisioned(d);
    const oid = await startOp(d, id, 'reset', {});
    await invoke(d, id, oid, 'begin');
    await configureLambda(d);
    const out = await worker(
      { kind: 'operation-failed', workspaceId: id, operationId: oid, error: 'States.Timeout' },
      lambdaContext('w'),
    );
    expect(out).toMatchObject({ ran: true, done: true });
    expect(await operation(id, oid)).toMatchObject({
      status: 'failed',
      error: { code: 'backend_unavailable', message: expect.stringMatching(/gave up \(States\.Timeout\)/) },
    });
    expect(await record(id)).toMatchObject({ status: 'failed', failure: { step: 'reset' } });
  });

  it('through the api, the worker handler and the fake state machine: a fetch and a reset, phase by phase', async () => {
    const base = h.deployment('');
    const machine = new FakeStateMachine((payload) => worker(payload, lambdaContext('w')));
    const handOff = new StepFunctionsHandOff(machine, {
      operation: 'arn:aws:states:eu-west-1:111111111111:stateMachine:o',
    });
    const d: LambdaOverrides = {
      ...base,
      jobs: { dispatch: (job) => (handOff.takes(job) ? handOff : base.jobs!).dispatch(job) },
    };
    const id = await provisioned(d);
    const upstream = commitFiles(h.app, { 'c.txt': 'c\n' }, 'third');
    await configureLambda(d);
    const { service } = await lambdaContainer();
    const fetched = await service.fetch(id, { checkout: { repo: 'app', ref: 'main' } }, { waitMs: 15_000 });
    expect(fetched).toMatchObject({ status: 'succeeded', result: { repos: [{ name: 'app', checkedOut: upstream }] } });
    await dirty(d, id);
    const reset = await service.reset(id, {}, { waitMs: 15_000 });
    expect(reset).toMatchObject({ status: 'succeeded', result: { matches: true } });
    await machine.drain();
    expect(machine.executions.size).toBe(2);
    expect(machine.invocations.map((p) => `${String(p['kind'])}:${String(p['phase'])}`)).toEqual([
      'operation-phase:begin',
      'operation-phase:begin',
      'operation-phase:restore',
      'operation-phase:verify',
    ]);
  });
});
