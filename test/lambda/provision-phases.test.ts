import { describe, expect, it } from 'vitest';
import { configureLambda, lambdaContainer, type LambdaOverrides } from '../../functions/lambda/compose.js';
import { ABANDONED_AFTER_MS } from '../../functions/lambda/janitor.js';
import { StepFunctionsHandOff } from '../../functions/lambda/workflow-hand-off.js';
import { handler as worker } from '../../functions/lambda/worker.js';
import { BackendUnavailableError } from '../../shared/contract/errors.js';
import type { ProvisionPhase } from '../../shared/contract/workspace.js';
import { sweep } from '../../shared/service/janitor.js';
import { FakeStateMachine } from '../support/fake-state-machine.js';
import { phaseHarness, waitUntil } from '../support/phase-harness.js';
import { lambdaContext } from './events.js';

// Provisioning as the state machine runs it on AWS: each phase in its own "invocation" — a freshly
// composed Lambda container, so nothing but the state store and the workspace carries over — and a
// phase cut short (its process gone mid-way) simply run again.

const h = phaseHarness('phases');
const { handedOff, trap, record, computeOf, create } = h;
const deployment = (setup: string): LambdaOverrides => h.deployment(setup);

/** A fresh container (a new worker "invocation"), then one phase in it. */
async function invoke(d: LambdaOverrides, id: string, phase: ProvisionPhase, waitMs = 150) {
  await configureLambda(d);
  const { service } = await lambdaContainer();
  return service.provisioner.runPhase(id, phase, { waitMs });
}

/** Runs phases like the state machine, each in a fresh container; returns the phases run. */
async function runToEnd(d: LambdaOverrides, id: string, from: ProvisionPhase = 'start'): Promise<ProvisionPhase[]> {
  const ran: ProvisionPhase[] = [];
  let phase = from;
  for (let i = 0; i < 200; i++) {
    ran.push(phase);
    const outcome = await invoke(d, id, phase);
    if (outcome.done) return ran;
    phase = outcome.next;
  }
  throw new Error(`no end after ${ran.length} phases`);
}

describe('provisioning phases across invocations', () => {
  it('a setup that outlives one invocation is awaited across many and ends ready; its build lease is renewed', async () => {
    // Long enough to outlive two starts and a look, each in a freshly composed container (~0.3–0.7 s).
    const d = deployment('sleep 4; echo built > built.txt');
    const id = await create(d);
    expect(handedOff.at(-1)).toEqual({ kind: 'provision', workspaceId: id });

    expect(await invoke(d, id, 'start')).toEqual({ done: false, next: 'await-setup', waitSeconds: 0 });
    // A re-delivered `start` does nothing new: no second compute, no second setup.
    expect(await invoke(d, id, 'start')).toEqual({ done: false, next: 'await-setup', waitSeconds: 0 });
    expect(await computeOf(id)).toBe(1);
    const started = await record(id);
    const key = started.cache!.key;
    const leaseAtStart = (await (await lambdaContainer()).deps.state.getCacheEntry(key))!.lease!.expiresAt;

    const first = await invoke(d, id, 'await-setup');
    expect(first).toEqual({ done: false, next: 'await-setup', waitSeconds: 5 });
    const polled = await record(id);
    expect(polled.provisioning?.setupCheckedAt).toBeDefined();
    expect(Date.parse(polled.updatedAt)).toBeGreaterThan(Date.parse(started.updatedAt)); // progress for the janitor
    const entry = (await (await lambdaContainer()).deps.state.getCacheEntry(key))!;
    expect(entry).toMatchObject({ status: 'building', builder: id });
    expect(entry.lease!.expiresAt).toBeGreaterThanOrEqual(leaseAtStart);

    const ran = await runToEnd(d, id, 'await-setup');
    expect(ran.filter((p) => p === 'await-setup').length).toBeGreaterThanOrEqual(3);
    expect(ran.at(-1)).toBe('finish');
    const ready = await record(id);
    expect(ready.status).toBe('ready');
    expect(ready.provisioning).toBeUndefined();
    const { deps } = await lambdaContainer();
    expect(await deps.state.getCommand(id, ready.setupCommandId!)).toMatchObject({ state: 'exited', exitCode: 0 });
    expect(await deps.state.getCacheEntry(key)).toMatchObject({ status: 'ready' });
    expect(await computeOf(id)).toBe(1);
    // Any phase re-delivered to a settled workspace: done, nothing touched.
    for (const phase of ['start', 'await-setup', 'finish'] as const)
      expect(await invoke(d, id, phase)).toEqual({ done: true });
    expect((await record(id)).version).toBe(ready.version);
  });

  it('a start killed after its compute was recorded is re-run: the compute is reused, and it ends ready', async () => {
    const d = deployment('echo set > set.txt');
    const id = await create(d);
    trap.at = 'files.putTransferFile'; // the clone's bundle: the worker dies mid-clone
    await configureLambda(d);
    const { service } = await lambdaContainer();
    void service.provisioner.runPhase(id, 'start'); // never returns
    await waitUntil(async () => (await record(id)).backend !== undefined && trap.at === undefined);
    const ref = (await record(id)).backend;
    expect(await computeOf(id)).toBe(1);

    await runToEnd(d, id, 'start');
    const ready = await record(id);
    expect(ready.status).toBe('ready');
    expect(ready.backend).toEqual(ref); // the same compute
    expect(await computeOf(id)).toBe(1);
  });

  it('a start killed between creating the compute and recording it leaves no second compute behind', async () => {
    const d = deployment('echo set > set.txt');
    const id = await create(d);
    // The killed run: it recorded its progress (every run does, before it creates anything), then
    // created the compute and died before the record named it.
    trap.at = 'backend.create';
    await configureLambda(d);
    const { service, deps } = await lambdaContainer();
    void service.provisioner.runPhase(id, 'start'); // never returns
    await waitUntil(async () => (await record(id)).provisioning !== undefined && trap.at === undefined);
    const ws = await record(id);
    await deps.backend.create(ws.plan, { workspaceId: id, labels: { 'wsp.workspace': id } });
    expect(await computeOf(id)).toBe(1);
    await runToEnd(d, id);
    expect((await record(id)).status).toBe('ready');
    expect(await computeOf(id)).toBe(1);
  });

  it('a finish killed after keeping the cache entry is re-run: one entry, kept once, workspace ready', async () => {
    const d = deployment('echo set > set.txt');
    const id2 = await create(d);
    let phase: ProvisionPhase = 'start';
    while (phase !== 'finish') {
      const o = await invoke(d, id2, phase);
      if (o.done) throw new Error('settled before finish');
      phase = o.next;
    }
    const key = (await record(id2)).cache!.key;
    // finish dies while taking the baseline: the second snapshot, after the cache entry's was kept
    trap.at = 'snapshots.take';
    trap.skip = 1;
    await configureLambda(d);
    void (await lambdaContainer()).service.provisioner.runPhase(id2, 'finish');
    await waitUntil(async () => trap.at === undefined);
    expect((await record(id2)).status).toBe('provisioning');
    const kept = (await (await lambdaContainer()).deps.state.getCacheEntry(key))!;
    expect(kept.status).toBe('ready');

    expect(await invoke(d, id2, 'finish')).toEqual({ done: true });
    const ready = await record(id2);
    expect(ready.status).toBe('ready');
    const { deps } = await lambdaContainer();
    const entries = (await deps.state.listCacheEntries()).filter((e) => e.key === key);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ status: 'ready', version: kept.version, snapshot: kept.snapshot });
    expect(await computeOf(id2)).toBe(1);
  });

  it('a setup that fails ends the workspace failed with the step, its compute freed and the entry released', async () => {
    const d = deployment('echo broken >&2; exit 3');
    const id = await create(d);
    await runToEnd(d, id);
    const failed = await record(id);
    expect(failed.status).toBe('failed');
    expect(failed.failure).toMatchObject({ step: 'setup', message: expect.stringMatching(/exit code 3/) });
    expect(await computeOf(id)).toBe(0);
    const entry = await (await lambdaContainer()).deps.state.getCacheEntry(failed.cache!.key);
    expect(entry?.status).toBe('failed');
  });

  it('the workflow giving up (provision-failed) fails the workspace truthfully and frees its compute', async () => {
    const d = deployment('sleep 30');
    const id = await create(d);
    await invoke(d, id, 'start');
    expect(await computeOf(id)).toBe(1);
    await configureLambda(d);
    const out = await worker(
      { kind: 'provision-failed', workspaceId: id, error: 'States.Timeout' },
      lambdaContext('w'),
    );
    expect(out).toMatchObject({ ran: true, done: true });
    const failed = await record(id);
    expect(failed.status).toBe('failed');
    expect(failed.failure?.message).toMatch(/gave up \(States\.Timeout\)/);
    expect(await computeOf(id)).toBe(0);
  });

  it("the janitor's abandoned rule spares a setup being awaited, and fails one nobody looks at any more", async () => {
    const d = deployment('sleep 30');
    const id = await create(d);
    await invoke(d, id, 'start');
    await invoke(d, id, 'await-setup', 50);
    const { deps, service } = await lambdaContainer();
    const seen = Date.parse((await record(id)).updatedAt);
    // The state machine looks every few seconds; within 16 min of the last look nothing is abandoned.
    const spared = await sweep(deps, service, new Date(seen + ABANDONED_AFTER_MS - 60_000), {
      abandonedAfterMs: ABANDONED_AFTER_MS,
    });
    expect(spared.abandoned).not.toContain(id);
    const reaped = await sweep(deps, service, new Date(seen + ABANDONED_AFTER_MS + 60_000), {
      abandonedAfterMs: ABANDONED_AFTER_MS,
    });
    expect(reaped.abandoned).toContain(id);
    expect((await record(id)).status).toBe('failed');
  });

  it('through the worker handler and the fake state machine, a provisioning runs phase by phase', async () => {
    const d = deployment('echo ok');
    const id = await create(d);
    await configureLambda(d);
    const machine = new FakeStateMachine((payload) => worker(payload, lambdaContext('w')));
    const handOff = new StepFunctionsHandOff(machine, {
      provision: 'arn:aws:states:eu-west-1:111111111111:stateMachine:p',
    });
    await handOff.dispatch({ kind: 'provision', workspaceId: id });
    await handOff.dispatch({ kind: 'provision', workspaceId: id }); // a retried request: the same execution
    await machine.drain();
    await handOff.dispatch({ kind: 'provision', workspaceId: id }); // after it ended: ExecutionAlreadyExists, harmless
    expect(machine.executions.size).toBe(1);
    expect(machine.invocations.map((p) => p['phase'])).toEqual(['start', 'await-setup', 'finish']);
    expect((await record(id)).status).toBe('ready');
  });
});

describe('StepFunctionsHandOff', () => {
  it('a failed StartExecution is a 503 with the cause; other jobs are refused', async () => {
    const handOff = new StepFunctionsHandOff(
      { startExecution: () => Promise.reject(Object.assign(new Error('nope'), { name: 'AccessDeniedException' })) },
      { provision: 'arn:x' },
    );
    await expect(handOff.dispatch({ kind: 'provision', workspaceId: 'ws-0' })).rejects.toBeInstanceOf(
      BackendUnavailableError,
    );
    await expect(
      handOff.dispatch({ kind: 'operation', workspaceId: 'ws-0', operationId: 'op-0' }),
    ).rejects.toBeInstanceOf(BackendUnavailableError);
  });
});
