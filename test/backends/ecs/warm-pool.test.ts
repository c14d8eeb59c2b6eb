import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BackendUnavailableError, ConflictError } from '../../../shared/contract/errors.js';
import { WarmPool, type WarmLauncher } from '../../../shared/backends/ecs/warm-pool.js';
import type { WarmTaskRecord } from '../../../shared/backends/ecs/warm-task-store.js';
import type { DynamoWarmTaskStore } from '../../../shared/state/dynamo-warm-tasks.js';
import { startEmbeddedDynamo } from '../../../shared/state/embedded.js';
import { dynamoDbLocalStatus, startDynamoDbLocal } from '../../support/dynamodb-local.js';
import { useFreshTable, type Endpoint } from '../../state/fresh-table.js';

const TD1 = 'arn:aws:ecs:us-east-1:123456789012:task-definition/wsp-cache-k1:1';
const TD2 = 'arn:aws:ecs:us-east-1:123456789012:task-definition/wsp-cache-k1:2';

type TaskState = 'starting' | 'ready' | 'gone';

/**
 * Recording WarmLauncher: every RunTask gets a fresh ARN whose task is 'starting' until the test
 * says otherwise; probe answers from that map (unknown ARNs are gone). `failNext` makes the next
 * launches throw; `hold` makes launches wait until released (to interleave with other calls).
 */
class FakeLauncher implements WarmLauncher {
  readonly launched: { cacheKey: string; taskDefinitionArn: string; warmTaskId: string; taskArn: string }[] = [];
  readonly stopped: { taskArn: string; reason: string }[] = [];
  readonly tasks = new Map<string, TaskState>();
  failNext = 0;
  private held: (() => void)[] = [];
  private holding = false;
  private onLaunchCalled: (() => void) | undefined;
  private count = 0;

  async launch(cacheKey: string, taskDefinitionArn: string, warmTaskId: string): Promise<string> {
    this.onLaunchCalled?.();
    if (this.holding) await new Promise<void>((resolve) => this.held.push(resolve));
    // Yield so concurrent replenishers interleave between store calls and RunTask.
    await new Promise((resolve) => setImmediate(resolve));
    if (this.failNext > 0) {
      this.failNext--;
      throw new BackendUnavailableError('RunTask failed: capacity unavailable');
    }
    const taskArn = `arn:aws:ecs:us-east-1:123456789012:task/wsp/${++this.count}`;
    this.launched.push({ cacheKey, taskDefinitionArn, warmTaskId, taskArn });
    this.tasks.set(taskArn, 'starting');
    return taskArn;
  }

  /** Every probe's tasks with the times the pool gave for them. */
  readonly probes: { taskArn: string; knownAt: Date }[][] = [];

  async probe(tasks: ReadonlyArray<{ taskArn: string; knownAt: Date }>): Promise<{ ready: string[]; gone: string[] }> {
    this.probes.push([...tasks]);
    const taskArns = tasks.map((t) => t.taskArn);
    return {
      ready: taskArns.filter((arn) => this.tasks.get(arn) === 'ready'),
      gone: taskArns.filter((arn) => (this.tasks.get(arn) ?? 'gone') === 'gone'),
    };
  }

  async stop(taskArn: string, reason: string): Promise<void> {
    this.stopped.push({ taskArn, reason });
    this.tasks.set(taskArn, 'gone');
  }

  /** Mark every task started so far (or the given ones) ready. */
  makeReady(arns: string[] = this.launched.map((l) => l.taskArn)): void {
    for (const arn of arns) if (this.tasks.get(arn) === 'starting') this.tasks.set(arn, 'ready');
  }

  /** Hold launches; resolves once the first held launch has been called. */
  hold(): Promise<void> {
    this.holding = true;
    return new Promise((resolve) => (this.onLaunchCalled = resolve));
  }

  release(): void {
    this.holding = false;
    this.onLaunchCalled = undefined;
    for (const resolve of this.held.splice(0)) resolve();
  }

  running(): string[] {
    return [...this.tasks].filter(([, s]) => s !== 'gone').map(([arn]) => arn);
  }
}

function warmPoolSuite(name: string, startEndpoint: () => Promise<Endpoint>): void {
  describe(`WarmPool on ${name}`, () => {
    const table = useFreshTable(startEndpoint, 'wsp-pool');
    let store: DynamoWarmTaskStore;
    let launcher: FakeLauncher;
    let pool: WarmPool;
    beforeEach(() => {
      ({ warmTasks: store } = table());
      launcher = new FakeLauncher();
      pool = new WarmPool(store, launcher, { owner: 'stack-1' });
    });
    afterEach(() => {
      vi.restoreAllMocks();
    });

    const records = (cacheKey = 'k1'): Promise<WarmTaskRecord[]> => store.listWarmTasks(cacheKey);
    const statuses = async (cacheKey = 'k1'): Promise<string[]> =>
      (await records(cacheKey)).map((r) => r.status).sort();

    it('launches exactly the deficit, records each task with its ARN, and is idempotent', async () => {
      expect(await pool.replenish('k1', TD1, 3)).toEqual({ launched: 3, stopped: 0, removed: 0 });
      const stored = await records();
      expect(stored).toHaveLength(3);
      for (const r of stored) {
        const launch = launcher.launched.find((l) => l.warmTaskId === r.id);
        expect(launch).toMatchObject({ cacheKey: 'k1', taskDefinitionArn: TD1 });
        expect(r).toMatchObject({
          status: 'starting',
          taskArn: launch?.taskArn,
          taskDefinitionArn: TD1,
          owner: 'stack-1',
          version: 2,
        });
      }
      expect(await pool.replenish('k1', TD1, 3)).toEqual({ launched: 0, stopped: 0, removed: 0 });
      expect(launcher.launched).toHaveLength(3);
      expect(await records('k2')).toEqual([]);
    });

    it('marks probed-ready tasks ready; claim takes only ready ones and each once', async () => {
      await pool.replenish('k1', TD1, 3);
      expect(await pool.claim('k1', 'ws-0')).toBeUndefined(); // all still starting
      const first = launcher.launched[0]?.taskArn as string;
      launcher.makeReady([first]);
      expect(await pool.replenish('k1', TD1, 3)).toEqual({ launched: 0, stopped: 0, removed: 0 });
      expect(await statuses()).toEqual(['ready', 'starting', 'starting']);

      const claimed = await pool.claim('k1', 'ws-1');
      expect(claimed).toMatchObject({ status: 'claimed', claimedBy: 'ws-1', taskArn: first });
      expect(await pool.claim('k1', 'ws-2')).toBeUndefined();
      expect(await pool.claim('other-key', 'ws-2')).toBeUndefined();
      expect(await store.getWarmTask('k1', claimed?.id as string)).toEqual(claimed);
    });

    it('probes each task with when the pool last knew it existed (ARN recorded, then seen ready)', async () => {
      await pool.replenish('k1', TD1, 1);
      const [launched] = await records();
      await pool.replenish('k1', TD1, 1);
      expect(launcher.probes.at(-1)).toEqual([{ taskArn: launched!.taskArn, knownAt: new Date(launched!.updatedAt) }]);
      launcher.makeReady();
      await pool.replenish('k1', TD1, 1);
      const [ready] = await records();
      expect(ready!.status).toBe('ready');
      await pool.replenish('k1', TD1, 1);
      expect(launcher.probes.at(-1)).toEqual([{ taskArn: ready!.taskArn, knownAt: new Date(ready!.updatedAt) }]);
    });

    it('gives 3 ready tasks to exactly 3 of 10 concurrent claimers', async () => {
      await pool.replenish('k1', TD1, 3);
      launcher.makeReady();
      await pool.replenish('k1', TD1, 3);
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => pool.claim('k1', `ws-${i}`)));
      const winners = results.filter((r) => r !== undefined);
      expect(winners).toHaveLength(3);
      expect(new Set(winners.map((w) => w.taskArn)).size).toBe(3);
      expect(new Set(winners.map((w) => w.claimedBy)).size).toBe(3);
      const stored = await records();
      expect(stored.map((r) => r.status)).toEqual(['claimed', 'claimed', 'claimed']);
      for (const w of winners) expect(stored.find((r) => r.id === w.id)?.claimedBy).toBe(w.claimedBy);
    });

    it('refills what was claimed and leaves claimed records alone until released', async () => {
      await pool.replenish('k1', TD1, 2);
      launcher.makeReady();
      await pool.replenish('k1', TD1, 2);
      const claimed = await pool.claim('k1', 'ws-1');
      expect(await pool.replenish('k1', TD1, 2)).toEqual({ launched: 1, stopped: 0, removed: 0 });
      expect(await statuses()).toEqual(['claimed', 'ready', 'starting']);
      // Even a claimed task that died is the workspace's business, not the pool's.
      launcher.tasks.set(claimed?.taskArn as string, 'gone');
      expect(await pool.replenish('k1', TD1, 2)).toEqual({ launched: 0, stopped: 0, removed: 0 });
      expect(launcher.stopped).toEqual([]);

      await pool.release('k1', claimed?.taskArn as string);
      expect(await statuses()).toEqual(['ready', 'starting']);
      await pool.release('k1', claimed?.taskArn as string); // idempotent
      await pool.release('k1', 'arn:unknown');
    });

    it('refuses to release a task that is not claimed', async () => {
      await pool.replenish('k1', TD1, 1);
      const [record] = await records();
      const err = await pool.release('k1', record?.taskArn as string).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConflictError);
      expect(await records()).toHaveLength(1);
    });

    it('removes records of gone tasks and launches replacements', async () => {
      await pool.replenish('k1', TD1, 3);
      launcher.makeReady();
      const [a, b] = launcher.launched;
      launcher.tasks.set(a?.taskArn as string, 'gone');
      launcher.tasks.delete(b?.taskArn as string); // unknown to ECS counts as gone
      expect(await pool.replenish('k1', TD1, 3)).toEqual({ launched: 2, stopped: 0, removed: 2 });
      const arns = (await records()).map((r) => r.taskArn);
      expect(arns).not.toContain(a?.taskArn);
      expect(arns).not.toContain(b?.taskArn);
      expect(arns).toHaveLength(3);
    });

    it('stops the surplus, starting tasks and newest first, and never a claimed one', async () => {
      await pool.replenish('k1', TD1, 2);
      launcher.makeReady();
      await pool.replenish('k1', TD1, 4); // two more, still starting
      await pool.claim('k1', 'ws-1');
      expect(await statuses()).toEqual(['claimed', 'ready', 'starting', 'starting']);

      expect(await pool.replenish('k1', TD1, 1)).toEqual({ launched: 0, stopped: 2, removed: 0 });
      expect(launcher.stopped.map((s) => s.taskArn).sort()).toEqual(
        [launcher.launched[2]?.taskArn, launcher.launched[3]?.taskArn].sort(),
      );
      expect(await statuses()).toEqual(['claimed', 'ready']);
      expect(await pool.replenish('k1', TD1, 0)).toEqual({ launched: 0, stopped: 1, removed: 0 });
      expect(await statuses()).toEqual(['claimed']);
      expect(launcher.stopped.every((s) => s.reason === 'warm pool: surplus')).toBe(true);
    });

    it('replaces the tasks of an older task-definition revision', async () => {
      await pool.replenish('k1', TD1, 2);
      launcher.makeReady();
      expect(await pool.replenish('k1', TD2, 2)).toEqual({ launched: 2, stopped: 2, removed: 0 });
      expect((await records()).map((r) => r.taskDefinitionArn)).toEqual([TD2, TD2]);
      expect(launcher.running()).toHaveLength(2);
    });

    it('does not let a task claimed during a surplus stop be stopped or forgotten', async () => {
      await pool.replenish('k1', TD1, 1);
      launcher.makeReady();
      await pool.replenish('k1', TD1, 1);
      const original = store.deleteWarmTask.bind(store);
      let claimed: WarmTaskRecord | undefined;
      vi.spyOn(store, 'deleteWarmTask').mockImplementationOnce(async (cacheKey, id, version) => {
        claimed = await pool.claim('k1', 'ws-racer'); // the claim lands between the read and the delete
        return original(cacheKey, id, version);
      });
      expect(await pool.replenish('k1', TD1, 0)).toEqual({ launched: 0, stopped: 0, removed: 0 });
      expect(claimed?.status).toBe('claimed');
      expect(launcher.stopped).toEqual([]);
      expect(await records()).toEqual([claimed]);
    });

    it('drains every unclaimed task, including a launch in flight, and keeps claimed ones', async () => {
      await pool.replenish('k1', TD1, 2);
      launcher.makeReady();
      await pool.replenish('k1', TD1, 2);
      const claimed = await pool.claim('k1', 'ws-1');
      // A replenish whose RunTask is still running when the drain comes.
      const launchCalled = launcher.hold();
      const inFlight = pool.replenish('k1', TD1, 2);
      await launchCalled;
      expect((await records()).filter((r) => r.taskArn === undefined)).toHaveLength(1);

      expect(await pool.drain('k1')).toBe(2); // the ready task and the in-flight record
      launcher.release();
      expect(await inFlight).toEqual({ launched: 0, stopped: 0, removed: 0 });
      // The in-flight task found its record gone and stopped itself: nothing runs unrecorded.
      expect(launcher.running()).toEqual([claimed?.taskArn]);
      expect(await records()).toEqual([claimed]);
      expect(await pool.drain('k1')).toBe(0);
    });

    it('leaves no record behind a failed launch and reports the failure', async () => {
      launcher.failNext = 1;
      const err = await pool.replenish('k1', TD1, 3).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BackendUnavailableError);
      expect((err as Error).message).toMatch(/1 launch\(es\) failed, 2 launched/);
      expect((err as Error).cause).toBeInstanceOf(BackendUnavailableError);
      const stored = await records();
      expect(stored).toHaveLength(2);
      expect(stored.every((r) => r.status === 'starting' && r.taskArn !== undefined)).toBe(true);
      launcher.makeReady();
      expect(await pool.replenish('k1', TD1, 3)).toEqual({ launched: 1, stopped: 0, removed: 0 });
      expect(await statuses()).toEqual(['ready', 'ready', 'starting']);
    });

    it('counts a fresh launch in flight and forgets one whose launcher died', async () => {
      const launching = {
        cacheKey: 'k1',
        taskDefinitionArn: TD1,
        status: 'starting',
        owner: 'other',
        version: 1,
      } as const;
      const fresh = new Date().toISOString();
      await store.putWarmTask({ ...launching, id: 'in-flight', createdAt: fresh, updatedAt: fresh });
      expect(await pool.replenish('k1', TD1, 1)).toEqual({ launched: 0, stopped: 0, removed: 0 });

      // Ten minutes later the record still has no ARN: its launcher crashed.
      const later = new WarmPool(store, launcher, { owner: 'stack-1', now: () => new Date(Date.now() + 600_001) });
      expect(await later.replenish('k1', TD1, 1)).toEqual({ launched: 1, stopped: 0, removed: 1 });
      expect(await store.getWarmTask('k1', 'in-flight')).toBeUndefined();
    });

    it('forgets a claim never released after claimedRetentionMs, without stopping its task', async () => {
      await pool.replenish('k1', TD1, 1);
      launcher.makeReady();
      await pool.replenish('k1', TD1, 1);
      const claimed = await pool.claim('k1', 'ws-crashed');
      const soon = new WarmPool(store, launcher, { owner: 'stack-1', now: () => new Date(Date.now() + 60_000) });
      expect(await soon.replenish('k1', TD1, 0)).toEqual({ launched: 0, stopped: 0, removed: 0 });
      expect(await store.getWarmTask('k1', claimed?.id as string)).toEqual(claimed);

      const hourLater = new WarmPool(store, launcher, {
        owner: 'stack-1',
        now: () => new Date(Date.now() + 3_600_001),
      });
      expect(await hourLater.replenish('k1', TD1, 0)).toEqual({ launched: 0, stopped: 0, removed: 1 });
      expect(await records()).toEqual([]);
      expect(launcher.stopped).toEqual([]);
    });

    for (const replenishers of [2, 8]) {
      it(`never launches more than the pool size with ${replenishers} concurrent replenishers`, async () => {
        await pool.replenish('k1', TD1, 1);
        const pools = Array.from({ length: replenishers }, () => new WarmPool(store, launcher, { owner: 'stack-1' }));
        const results = await Promise.all(pools.map((p) => p.replenish('k1', TD1, 4)));
        expect(results.every((r) => r.stopped === 0 && r.removed === 0)).toBe(true);
        expect(launcher.launched.length).toBeLessThanOrEqual(4);
        expect(results.reduce((n, r) => n + r.launched, 0)).toBe(launcher.launched.length - 1);
        // Reservations that were withdrawn are gone; whatever is short, one more run fills exactly.
        expect((await records()).every((r) => r.taskArn !== undefined)).toBe(true);
        await pool.replenish('k1', TD1, 4);
        expect(launcher.launched).toHaveLength(4);
        expect(launcher.stopped).toEqual([]);
        expect(await records()).toHaveLength(4);
      });
    }
  });
}

warmPoolSuite('embedded dynalite', () => startEmbeddedDynamo());

const local = dynamoDbLocalStatus();
if (local.state === 'present') {
  warmPoolSuite('DynamoDB Local', () => startDynamoDbLocal());
} else if (local.state === 'missing') {
  describe('WarmPool on DynamoDB Local', () => {
    it('needs DynamoDB Local', () => {
      throw new Error(local.message);
    });
  });
} else {
  console.log(local.message);
}
