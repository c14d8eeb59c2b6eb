import { RunTaskCommand, TagResourceCommand } from '@aws-sdk/client-ecs';
import { describe, expect, it } from 'vitest';
import { EcsBackend } from '../../../shared/backends/ecs/index.js';
import { EcsTasks } from '../../../shared/backends/ecs/tasks.js';
import { EcsWarmLauncher } from '../../../shared/backends/ecs/warm-launcher.js';
import { WarmPool } from '../../../shared/backends/ecs/warm-pool.js';
import type { WarmTaskRecord } from '../../../shared/backends/ecs/warm-task-store.js';
import type { SnapshotRef } from '../../../shared/contract/workspace.js';
import { createDynamoClients, type DynamoClients } from '../../../shared/state/client.js';
import { DynamoWarmTaskStore } from '../../../shared/state/dynamo-warm-tasks.js';
import { startEmbeddedDynamo, type EmbeddedDynamo } from '../../../shared/state/embedded.js';
import { ensureTable } from '../../../shared/state/table.js';
import { newId, useBackendFixture } from '../../support/backend-fixture.js';
import { dockerUnavailable } from '../../support/docker-daemon.js';
import { ECS_CLUSTER, makeEcsBackend, TEST_RETRY, type EcsHandle } from '../../support/ecs-fixture.js';
import { registryUnavailable } from '../../support/registry.js';
import { sleep } from '../../../shared/lib/sleep.js';

/**
 * The warm pool end to end: a WarmPool over a real DynamoDB-protocol store (embedded dynalite) whose
 * launcher is the ECS one over the fake ECS (tasks are real containers of the cache image), and an
 * EcsBackend that claims from it. A claimed task becomes the workspace without a RunTask.
 */

interface WarmSetup {
  ecs: EcsHandle;
  /** The backend with `warmPool` (the fixture's `backend`). */
  warm: EcsBackend;
  pool: WarmPool;
  store: DynamoWarmTaskStore;
  dynamo: EmbeddedDynamo;
  clients: DynamoClients;
}

describe.skipIf(dockerUnavailable !== undefined || registryUnavailable !== undefined)('ecs warm pool', () => {
  let setup: WarmSetup | undefined;
  const fx = useBackendFixture(async () => {
    const ecs = await makeEcsBackend();
    const dynamo = await startEmbeddedDynamo();
    const clients = createDynamoClients({
      endpoint: dynamo.endpoint,
      socketPath: dynamo.socketPath,
      region: 'us-east-1',
      env: {},
    });
    await ensureTable(clients.client, 'wsp-warm-test');
    const store = new DynamoWarmTaskStore(clients.doc, 'wsp-warm-test');
    // The pool's tasks: same cluster, network and startedBy as the backend's own (what production wires).
    const tasks = new EcsTasks(ecs.fake.client, {
      cluster: ECS_CLUSTER,
      container: ecs.options.container,
      network: { subnets: ecs.options.subnets, securityGroups: ecs.options.securityGroups },
      startedBy: ecs.owner,
      retry: TEST_RETRY,
      pollMinMs: 20,
      pollMaxMs: 200,
    });
    const pool = new WarmPool(store, new EcsWarmLauncher(tasks, ecs.owner), { owner: ecs.owner });
    const warm = new EcsBackend({ ...ecs.options, warmPool: pool });
    setup = { ecs, warm, pool, store, dynamo, clients };
    return {
      backend: warm,
      reopen: async () => new EcsBackend({ ...ecs.options, warmPool: pool }),
      async cleanup() {
        warm.close();
        await ecs.cleanup();
        clients.client.destroy();
        await dynamo.close();
      },
    };
  });
  const s = (): WarmSetup => {
    if (!setup) throw new Error('used outside a test');
    return setup;
  };
  const runTasks = () => s().ecs.fake.mock.commandCalls(RunTaskCommand);
  const records = (cacheKey: string): Promise<WarmTaskRecord[]> => s().store.listWarmTasks(cacheKey);

  /** Replenish until `size` records are ready (the fake reports a task ready after one DescribeTasks round). */
  async function fillUntilReady(cacheKey: string, taskDefinitionArn: string, size: number): Promise<WarmTaskRecord[]> {
    for (let i = 0; i < 100; i++) {
      await s().pool.replenish(cacheKey, taskDefinitionArn, size);
      const ready = (await records(cacheKey)).filter((r) => r.status === 'ready');
      if (ready.length === size) return ready;
      await sleep(50);
    }
    throw new Error(`warm pool '${cacheKey}' never became ready`);
  }

  /** A cache image whose home holds `$HOME/warm-file` = content. */
  async function cacheSnapshot(content: string): Promise<{ snap: SnapshotRef; td: string }> {
    const source = await fx.create();
    const r = await fx.sh(source, 'printf %s "$1" > "$HOME/warm-file"', [content]);
    expect(r.status).toMatchObject({ state: 'exited', exitCode: 0 });
    const snap = fx.trackSnapshot(await fx.backend.open(source, fx.plan).snapshots.take('cache', newId('cache')));
    await fx.backend.destroy(source);
    expect(snap).toMatchObject({ kind: 'ecs-image', taskDefinitionArn: expect.any(String) });
    return { snap, td: String(snap.taskDefinitionArn) };
  }

  it('replenish starts ready tasks of the cache image; create from it claims one without RunTask; the pool refills', async () => {
    const content = `warm ${newId('c')}`;
    const { snap, td } = await cacheSnapshot(content);
    const key = String(snap.name);

    const beforeFill = runTasks().length;
    const first = await s().pool.replenish(key, td, 2);
    expect(first).toMatchObject({ launched: 2, stopped: 0 });
    const launches = runTasks().slice(beforeFill);
    expect(launches).toHaveLength(2);
    for (const call of launches) {
      const input = call.args[0].input;
      expect(input).toMatchObject({
        cluster: ECS_CLUSTER,
        taskDefinition: td,
        launchType: 'FARGATE',
        enableExecuteCommand: true,
        startedBy: s().ecs.owner,
        networkConfiguration: { awsvpcConfiguration: { assignPublicIp: 'DISABLED' } },
      });
      const tags = Object.fromEntries((input.tags ?? []).map((t) => [t.key, t.value]));
      expect(tags).toMatchObject({ 'wsp:owner': s().ecs.owner, 'wsp:kind': 'warm', 'wsp:warm-cache-key': key });
      expect(tags['wsp:workspace']).toBeUndefined();
    }
    const ready = await fillUntilReady(key, td, 2);
    const readyArns = ready.map((r) => r.taskArn);
    // Filling never launched more than the pool size.
    expect(runTasks().length - beforeFill).toBe(2);
    // Pool tasks are the pool's, not workspaces: the reconciler must not see (and destroy) them.
    const listedArns = (await fx.backend.listResources()).map((res) => String(res.ref.taskArn));
    for (const arn of readyArns) expect(listedArns).not.toContain(arn);

    const beforeClaim = runTasks().length;
    const workspaceId = newId('ws');
    const ref = await fx.create({ from: snap, workspaceId });
    expect(runTasks().length).toBe(beforeClaim);
    expect(readyArns).toContain(ref.taskArn);
    const r = await fx.sh(ref, 'cat "$HOME/warm-file"; echo; stat -c %u:%g "$HOME/warm-file"; id -u');
    expect(r.stdout).toBe(`${content}\n${fx.plan.user.uid}:${fx.plan.user.gid}\n${fx.plan.user.uid}\n`);
    // Once claimed the task is the workspace's: listed (tagged with the workspace id) so the reconciler finds it.
    const tagCalls = s().ecs.fake.mock.commandCalls(TagResourceCommand, { resourceArn: String(ref.taskArn) });
    expect(tagCalls).toHaveLength(1);
    const claimTags = Object.fromEntries((tagCalls[0]!.args[0].input.tags ?? []).map((t) => [t.key, t.value]));
    expect(claimTags).toMatchObject({
      'wsp:workspace': workspaceId,
      'wsp:kind': 'workspace',
      'wsp:owner': s().ecs.owner,
      'wsp.workspace': workspaceId,
    });
    const listed = (await fx.backend.listResources()).find((res) => res.workspaceId === workspaceId);
    expect(listed?.ref.taskArn).toBe(ref.taskArn);
    // The pool no longer counts it: one unclaimed task left, and the next replenish starts one more.
    const left = (await records(key)).filter((rec) => rec.taskArn === ref.taskArn && rec.status !== 'claimed');
    expect(left).toEqual([]);
    expect((await records(key)).filter((rec) => rec.status !== 'claimed')).toHaveLength(1);
    const refill = await s().pool.replenish(key, td, 2);
    expect(refill).toMatchObject({ launched: 1, stopped: 0 });
    expect(runTasks().length).toBe(beforeClaim + 1);

    // Destroying the workspace stops its task; the pool's other tasks live on.
    await fx.backend.destroy(ref);
    expect(s().ecs.fake.tasks.get(String(ref.taskArn))?.stopped).toMatch(/workspace deleted/);
    const others = readyArns.filter((arn) => arn !== ref.taskArn);
    for (const arn of others) expect(s().ecs.fake.tasks.get(String(arn))?.stopped).toBeUndefined();
    expect(await s().pool.drain(key)).toBe(2);
  });

  it('a claimed pool task that stopped since the last upkeep is not used: create falls back to RunTask', async () => {
    const content = `stale ${newId('c')}`;
    const { snap, td } = await cacheSnapshot(content);
    const key = String(snap.name);
    const ready = await fillUntilReady(key, td, 1);
    // Fargate retired the task after the pool saw it ready; the record still says ready.
    await s().ecs.fake.killTask(String(ready[0]!.taskArn), 'Task is being retired');

    const before = runTasks().length;
    const ref = await fx.create({ from: snap });
    expect(runTasks().length - before).toBe(1);
    expect(ref.taskArn).not.toBe(ready[0]!.taskArn);
    expect((await fx.sh(ref, 'cat "$HOME/warm-file"')).stdout).toBe(content);
    // The dead task's record is gone (not left claimed for an hour).
    expect(await records(key)).toEqual([]);
  });

  it('with the pool empty, create from the cache image falls back to RunTask', async () => {
    const content = `cold ${newId('c')}`;
    const { snap, td } = await cacheSnapshot(content);
    // A pool that exists but has nothing ready yet (starting only) is empty too.
    await s().pool.replenish(String(snap.name), td, 1);
    expect((await records(String(snap.name))).map((rec) => rec.status)).toEqual(['starting']);

    const before = runTasks().length;
    const ref = await fx.create({ from: snap });
    const calls = runTasks().slice(before);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.args[0].input).toMatchObject({ taskDefinition: td });
    const tags = Object.fromEntries((calls[0]!.args[0].input.tags ?? []).map((t) => [t.key, t.value]));
    expect(tags).toMatchObject({ 'wsp:workspace': ref.workspaceId, 'wsp:kind': 'workspace' });
    expect((await fx.sh(ref, 'cat "$HOME/warm-file"')).stdout).toBe(content);
    // The starting pool task was not taken.
    expect((await records(String(snap.name))).map((rec) => rec.status)).toEqual(['starting']);
    expect(await s().pool.drain(String(snap.name))).toBe(1);
    expect(await records(String(snap.name))).toEqual([]);
  });

  it('janitor upkeep (maintain) keeps a pool per ready cache image at size and drains images no longer ready', async () => {
    const { snap } = await cacheSnapshot(`upkeep ${newId('u')}`);
    const key = String(snap.name);
    const upkeep = new EcsBackend({ ...s().ecs.options, warmPool: s().pool, warmPoolSize: 2 });
    try {
      await upkeep.maintain([snap]);
      expect((await records(key)).length).toBe(2);
      // Idempotent: at size, nothing more is launched.
      const launched = runTasks().length;
      await upkeep.maintain([snap]);
      expect(runTasks().length).toBe(launched);
      expect((await records(key)).length).toBe(2);
      const arns = (await records(key)).map((r) => r.taskArn!);
      // The image is no longer a ready cache entry: its pool is drained and its tasks stopped.
      await upkeep.maintain([]);
      expect(await records(key)).toEqual([]);
      for (const arn of arns) expect(s().ecs.fake.tasks.get(arn)?.stopped).toBeDefined();
    } finally {
      upkeep.close();
    }
  });
});
