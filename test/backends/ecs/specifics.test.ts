import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { ExecuteCommandCommand, ListTasksCommand, RunTaskCommand, StopTaskCommand } from '@aws-sdk/client-ecs';
import { afterEach, describe, expect, it } from 'vitest';
import { EcsBackend } from '../../../shared/backends/ecs/index.js';
import { BadRequestError } from '../../../shared/contract/errors.js';
import type { BackendRef, SnapshotRef } from '../../../shared/contract/workspace.js';
import { newId, useBackendFixture } from '../../support/backend-fixture.js';
import { DOCKER_SOCKET, dockerUnavailable } from '../../support/docker-daemon.js';
import { ECS_CLUSTER, makeEcsBackend, type EcsHandle } from '../../support/ecs-fixture.js';
import { registryUnavailable } from '../../support/registry.js';
import { sleep } from '../../../shared/lib/sleep.js';

/**
 * What only the Fargate backend has: the shapes of its ECS requests, its one persistent ECS Exec
 * session per task, and its failure paths (sessions dropped by the agent, tasks that never start or
 * stop mid-command, RunTask throttled or refused, handles rebuilt from JSON or malformed). ECS is the
 * fake at the SDK boundary (test/support/fake-ecs.ts) whose tasks are real containers.
 */

const run = promisify(execFile);

const roundTrip = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

async function expectCode(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'expected a rejection').toBeDefined();
  expect(error).toMatchObject({ code });
  if (message) expect((error as Error).message).toMatch(message);
}

describe.skipIf(dockerUnavailable !== undefined || registryUnavailable !== undefined)('ecs backend specifics', () => {
  const fx = useBackendFixture(() => makeEcsBackend());
  const h = (): EcsHandle => fx.handle as EcsHandle;
  const taskArn = (ref: BackendRef): string => String(ref.taskArn);
  const execCalls = (arn: string) => h().fake.mock.commandCalls(ExecuteCommandCommand, { task: arn });
  const runTaskCalls = () => h().fake.mock.commandCalls(RunTaskCommand);
  /** Agent sessions of one task (the fake's command is `<taskArn>\n<command>`). */
  const sessionsOf = (arn: string) =>
    [...h().fake.agent.sessions.values()].filter((s) => s.command.startsWith(`${arn}\n`));
  /** A shell in the task's container as root, outside ECS Exec (what the test looks at). */
  const inTask = async (ref: BackendRef, script: string): Promise<string> => {
    const task = h().fake.tasks.get(taskArn(ref));
    if (!task) throw new Error('unknown task');
    return (await run('docker', ['-H', `unix://${DOCKER_SOCKET}`, 'exec', task.container, 'sh', '-c', script])).stdout;
  };
  /** Kill the task's live exec session from the agent side (the socket vanishes, no channel_closed). */
  const dropSession = (ref: BackendRef): string => {
    const live = sessionsOf(taskArn(ref)).filter((s) => s.state === 'running');
    expect(live).toHaveLength(1);
    h().fake.agent.kill(live[0]!.sessionId);
    return live[0]!.sessionId;
  };

  afterEach(() => {
    const fake = h().fake;
    fake.failRunTask = [];
    fake.failTaskStart = [];
    fake.agentNeverReady = false;
    fake.missingRounds = 0;
    fake.loseRunTaskResponses = 0;
  });

  describe('request shapes', () => {
    it('RunTask: cluster, Fargate, exec enabled, private awsvpc, tags with workspace/owner/labels, startedBy = owner', async () => {
      const before = runTaskCalls().length;
      const workspaceId = newId('ws');
      const ref = await fx.create({ workspaceId, labels: { team: 'blue', 'odd key!': 'v a*l' } });
      const calls = runTaskCalls().slice(before);
      expect(calls).toHaveLength(1);
      const input = calls[0]!.args[0].input;
      expect(input).toMatchObject({
        cluster: ECS_CLUSTER,
        taskDefinition: h().options.baseTaskDefinition,
        launchType: 'FARGATE',
        count: 1,
        enableExecuteCommand: true,
        startedBy: h().owner,
        networkConfiguration: {
          awsvpcConfiguration: {
            subnets: ['subnet-private-a'],
            securityGroups: ['sg-workspaces'],
            assignPublicIp: 'DISABLED',
          },
        },
      });
      const tags = Object.fromEntries((input.tags ?? []).map((t) => [t.key, t.value]));
      expect(tags).toMatchObject({
        'wsp:workspace': workspaceId,
        'wsp:owner': h().owner,
        'wsp:kind': 'workspace',
        team: 'blue',
        'wsp.workspace': workspaceId,
      });
      // Characters ECS tags refuse are replaced, not passed through (RunTask would fail).
      expect(tags['odd key_']).toBe('v a_l');
      expect(ref).toMatchObject({ kind: 'ecs', workspaceId, taskArn: expect.stringMatching(/^arn:aws:ecs:/) });
    });

    it('ExecuteCommand: interactive, the workspace container, the runner in rpc mode; StopTask on destroy with a reason', async () => {
      const ref = await fx.create();
      const calls = execCalls(taskArn(ref));
      expect(calls).toHaveLength(1);
      expect(calls[0]!.args[0].input).toEqual({
        cluster: ECS_CLUSTER,
        task: taskArn(ref),
        container: 'workspace',
        interactive: true,
        command: 'sh /opt/wsp/runner.sh rpc',
      });

      await fx.backend.destroy(ref);
      const stops = h().fake.mock.commandCalls(StopTaskCommand, { task: taskArn(ref) });
      expect(stops).toHaveLength(1);
      expect(stops[0]!.args[0].input).toEqual({
        cluster: ECS_CLUSTER,
        task: taskArn(ref),
        reason: 'workspace deleted',
      });
      expect(h().fake.tasks.get(taskArn(ref))?.stopped).toMatch(/workspace deleted/);
    });
  });

  describe('the exec session', () => {
    it('one persistent ECS Exec session serves many operations', async () => {
      const ref = await fx.create();
      for (let i = 0; i < 5; i++) {
        const r = await fx.sh(ref, 'echo "n=$1"', [String(i)]);
        expect(r.stdout).toBe(`n=${i}\n`);
      }
      await fx.backend.open(ref, fx.plan).commands.killAll();
      expect(execCalls(taskArn(ref))).toHaveLength(1);
      expect(sessionsOf(taskArn(ref)).map((s) => s.state)).toEqual(['running']);
    });

    it('a big stdin goes in through S3 (presigned GET by the runner), not through the PTY; a small one inline', async () => {
      const ref = await fx.create();
      const s3 = h().s3;
      const stdinRequests = () => s3.requests.filter((q) => q.key.startsWith('transfer/stdin/'));
      const small = randomBytes(1000);
      const r1 = await fx.run(ref, ['sha256sum'], { stdin: small });
      expect(r1.stdout.split(' ')[0]).toBe(createHash('sha256').update(small).digest('hex'));
      expect(stdinRequests()).toEqual([]);
      const big = randomBytes(3 * 1024 * 1024 + 7);
      const r2 = await fx.run(ref, ['sh', '-c', 'wc -c; exit 0'], { stdin: big });
      expect(r2.stdout.trim()).toBe(String(big.length));
      const r3 = await fx.run(ref, ['sha256sum'], { stdin: big });
      expect(r3.stdout.split(' ')[0]).toBe(createHash('sha256').update(big).digest('hex'));
      const methods = stdinRequests().map((q) => `${q.method}${q.presigned ? ' presigned' : ''}`);
      expect(methods.filter((m) => m === 'PUT')).toHaveLength(2);
      expect(methods.filter((m) => m === 'GET presigned')).toHaveLength(2);
      expect(methods.filter((m) => m === 'DELETE')).toHaveLength(2);
      // Nothing left behind in the bucket.
      expect([...s3.objects.keys()].filter((k) => k.startsWith('transfer/stdin/'))).toEqual([]);
    });

    it('forget also removes what the carriers left in S3 for the command (exactly its prefix), and works on a stopped task', async () => {
      const ref = await fx.create();
      const s3 = h().s3;
      const done = await fx.run(ref, ['true']);
      const id = done.commandId;
      // As if the carriers' own best-effort deletes had failed; and a neighbour whose id starts like it.
      const mine = [`transfer/stdin/${id}/0123456789abcdef`, `transfer/output/${id}/fedcba9876543210`];
      const neighbour = `transfer/output/${id}x/0123456789abcdef`;
      for (const key of [...mine, neighbour]) s3.objects.set(key, Buffer.from('left over'));
      await fx.backend.open(ref, fx.plan).commands.forget!(id);
      expect(mine.filter((k) => s3.objects.has(k))).toEqual([]);
      expect(s3.objects.has(neighbour)).toBe(true);
      s3.objects.delete(neighbour);
      await expectCode(fx.backend.open(ref, fx.plan).commands.status(id), 'not_found');
      // The task gone: its dirs went with it; the objects are still removed.
      const other = await fx.run(ref, ['true']);
      s3.objects.set(`transfer/output/${other.commandId}/0123456789abcdef`, Buffer.from('left over'));
      await h().fake.client.send(new StopTaskCommand({ cluster: ECS_CLUSTER, task: taskArn(ref), reason: 'test' }));
      await fx.backend.open(ref, fx.plan).commands.forget!(other.commandId);
      expect([...s3.objects.keys()].filter((k) => k.includes(other.commandId))).toEqual([]);
    });

    it('a session dropped between operations: the next operation opens a new one and sees the true state', async () => {
      const ref = await fx.create();
      const id = await fx.start(ref, ['sh', '-c', 'echo before; sleep 2; echo after; exit 7']);
      const dropped = dropSession(ref);
      // The command started in the old session runs on (the runner detached it).
      const status = await fx.backend.open(ref, fx.plan).commands.wait(id, 30_000);
      expect(status).toMatchObject({ state: 'exited', exitCode: 7 });
      expect((await fx.backend.open(ref, fx.plan).commands.read(id, 'stdout', 0, 1024)).data.toString()).toBe(
        'before\nafter\n',
      );
      expect(execCalls(taskArn(ref))).toHaveLength(2);
      expect(h().fake.agent.sessions.get(dropped)?.closeReason).toBe('killed');
    });

    it('a session dropped during waitCommand: the waiter reconnects and reports the exit code', async () => {
      const ref = await fx.create();
      const id = await fx.start(ref, ['sh', '-c', 'sleep 3; exit 5']);
      const waiting = fx.backend.open(ref, fx.plan).commands.wait(id, 30_000);
      // Let the waiter poll on the open session at least once, then drop it under it.
      await sleep(500);
      dropSession(ref);
      await expect(waiting).resolves.toMatchObject({ state: 'exited', exitCode: 5 });
      expect(execCalls(taskArn(ref)).length).toBeGreaterThanOrEqual(2);
      // And the workspace still works on the new session.
      expect((await fx.run(ref, ['echo', 'still here'])).stdout).toBe('still here\n');
    });
  });

  describe('task failures', () => {
    it('a task that never starts: create rejects backend_unavailable with ECS stoppedReason', async () => {
      const reason = 'CannotPullContainerError: pull image manifest has been retried 5 time(s): not found';
      h().fake.failTaskStart = [reason];
      const before = runTaskCalls().length;
      await expectCode(fx.create(), 'backend_unavailable', /CannotPullContainerError/);
      expect(runTaskCalls().length - before).toBe(1);
    });

    it('an exec agent that never gets ready: create rejects after readyTimeoutMs and stops the task', async () => {
      const impatient = new EcsBackend({ ...h().options, readyTimeoutMs: 1_500 });
      h().fake.agentNeverReady = true;
      const before = new Set(h().fake.tasks.keys());
      await expectCode(
        impatient.create(fx.plan, { workspaceId: newId('ws'), labels: {} }),
        'backend_unavailable',
        /not ready after 2 s \(its exec agent is PENDING\)/,
      );
      const started = [...h().fake.tasks.keys()].filter((arn) => !before.has(arn));
      expect(started).toHaveLength(1);
      // No orphan: the task was stopped with a reason.
      expect(h().fake.tasks.get(started[0]!)?.stopped).toMatch(/workspace creation failed/);
      expect(h().fake.mock.commandCalls(StopTaskCommand, { task: started[0]! })).toHaveLength(1);
      expect(execCalls(started[0]!)).toHaveLength(0);
      impatient.close();
    });

    it('RunTask throttled twice then OK: create succeeds', async () => {
      h().fake.failRunTask = ['throttle', 'throttle'];
      const before = runTaskCalls().length;
      const ref = await fx.create();
      expect(runTaskCalls().length - before).toBe(3);
      expect((await fx.run(ref, ['true'])).status).toMatchObject({ state: 'exited', exitCode: 0 });
    });

    it('RunTask refused for good (MISSING): backend_unavailable, no retry', async () => {
      h().fake.failRunTask = ['MISSING'];
      const before = runTaskCalls().length;
      await expectCode(fx.create(), 'backend_unavailable', /RunTask refused: MISSING/);
      expect(runTaskCalls().length - before).toBe(1);
      expect(h().fake.failRunTask).toEqual([]);
    });

    it('a task stopped mid-command: lost with the reason, empty output, start → not_found, destroy still works', async () => {
      const ref = await fx.create();
      const id = await fx.start(ref, ['sh', '-c', 'echo started; sleep 60']);
      // Its output exists before the task dies…
      for (
        let i = 0;
        i < 100 && (await fx.backend.open(ref, fx.plan).commands.read(id, 'stdout', 0, 100)).data.length === 0;
        i++
      )
        await sleep(50);
      expect((await fx.backend.open(ref, fx.plan).commands.read(id, 'stdout', 0, 100)).data.toString()).toBe(
        'started\n',
      );
      await h().fake.killTask(taskArn(ref), 'Task failed container health checks');

      const status = await fx.backend.open(ref, fx.plan).commands.status(id);
      expect(status).toMatchObject({ commandId: id, state: 'lost', exitCode: null });
      expect(status.reason).toMatch(/Task failed container health checks/);
      expect(await fx.backend.open(ref, fx.plan).commands.wait(id, 5_000)).toMatchObject({ state: 'lost' });
      expect(await fx.backend.open(ref, fx.plan).commands.read(id, 'stdout', 0, 100)).toEqual({
        data: Buffer.alloc(0),
        nextOffset: 0,
      });
      expect(await fx.backend.open(ref, fx.plan).commands.read(id, 'stdout', 3, 100)).toEqual({
        data: Buffer.alloc(0),
        nextOffset: 3,
      });
      await expectCode(
        fx.backend.open(ref, fx.plan).commands.start({
          commandId: newId('cmd'),
          argv: ['true'],
          cwd: fx.plan.home,
          env: {},
          timeoutMs: 0,
          maxOutputBytes: 1024,
        }),
        'not_found',
      );
      await fx.backend.destroy(ref);
      await fx.backend.destroy(ref);
      expect((await fx.backend.listResources()).map((r) => r.workspaceId)).not.toContain(ref.workspaceId);
    });
  });

  // Issue 11: ECS as it really behaves — and the fake refusing what ECS refuses.
  describe('ECS as it really behaves', () => {
    it('a new task ECS does not show yet (DescribeTasks MISSING right after RunTask) is waited for, not taken as stopped', async () => {
      h().fake.missingRounds = 2;
      const before = h().fake.stats.missingAnswers;
      const ref = await fx.create();
      expect(h().fake.stats.missingAnswers - before).toBe(2);
      expect((await fx.run(ref, ['echo', 'visible now'])).stdout).toBe('visible now\n');
    });

    it('listResources finds the tasks by ListTasks with startedBy as its only filter (ECS refuses startedBy + desiredStatus)', async () => {
      await expect(
        h().fake.client.send(
          new ListTasksCommand({ cluster: ECS_CLUSTER, startedBy: h().owner, desiredStatus: 'RUNNING' }),
        ),
      ).rejects.toMatchObject({ name: 'InvalidParameterException' });
      const ref = await fx.create();
      const before = h().fake.mock.commandCalls(ListTasksCommand).length;
      expect((await fx.backend.listResources()).map((r) => r.workspaceId)).toContain(ref.workspaceId);
      for (const call of h().fake.mock.commandCalls(ListTasksCommand).slice(before))
        expect(call.args[0].input).toEqual({ cluster: ECS_CLUSTER, startedBy: h().owner });
    });

    it('a RunTask whose answer is lost is retried with the same clientToken: one task, no billed duplicate', async () => {
      h().fake.loseRunTaskResponses = 1;
      const tasksBefore = new Set(h().fake.tasks.keys());
      const callsBefore = runTaskCalls().length;
      const ref = await fx.create();
      const calls = runTaskCalls().slice(callsBefore);
      expect(calls).toHaveLength(2);
      expect(calls[1]!.args[0].input.clientToken).toBe(calls[0]!.args[0].input.clientToken);
      const started = [...h().fake.tasks.keys()].filter((arn) => !tasksBefore.has(arn));
      expect(started).toEqual([taskArn(ref)]);
      // ECS's side of the contract: the token with other parameters is a conflict, never a second task.
      await expect(
        h().fake.client.send(
          new RunTaskCommand({ ...calls[0]!.args[0].input, taskDefinition: `${h().options.baseTaskDefinition}-other` }),
        ),
      ).rejects.toMatchObject({ name: 'ConflictException' });
    });

    it('an owner id ECS would not take as startedBy is refused when the backend is built, and by the fake ECS', async () => {
      for (const owner of ['wsp.with.dots', `wsp-${'0'.repeat(33)}`]) {
        expect(() => new EcsBackend({ ...h().options, owner })).toThrow(BadRequestError);
        expect(() => new EcsBackend({ ...h().options, owner })).toThrow(/cannot be the ECS startedBy/);
      }
      await expect(
        h().fake.client.send(
          new RunTaskCommand({
            cluster: ECS_CLUSTER,
            taskDefinition: h().options.baseTaskDefinition,
            startedBy: 'wsp.with.dots',
            enableExecuteCommand: true,
          }),
        ),
      ).rejects.toMatchObject({ name: 'InvalidParameterException' });
    });
  });

  describe('handles', () => {
    it('a second instance works from the JSON of the ref and the snapshots: commands, restore, create from, deleteSnapshot', async () => {
      const first = fx.backend;
      const ref = await fx.create();
      expect((await fx.sh(ref, 'echo one > "$HOME/f"')).status.exitCode).toBe(0);
      const baseline = roundTrip(await first.open(ref, fx.plan).snapshots.take('baseline', newId('base')));
      const cache = fx.trackSnapshot(roundTrip(await first.open(ref, fx.plan).snapshots.take('cache', newId('cache'))));
      const storedRef = roundTrip(ref);

      const second = (await h().reopen!()) as EcsBackend;
      try {
        const beforeExec = execCalls(taskArn(ref)).length;
        const id = newId('cmd');
        await second.open(storedRef, fx.plan).commands.start({
          commandId: id,
          argv: ['sh', '-c', 'echo two > "$HOME/f"; cat "$HOME/f"'],
          cwd: fx.plan.home,
          env: {},
          timeoutMs: 0,
          maxOutputBytes: 1024,
        });
        expect(await second.open(storedRef, fx.plan).commands.wait(id, 30_000)).toMatchObject({
          state: 'exited',
          exitCode: 0,
        });
        expect((await second.open(storedRef, fx.plan).commands.read(id, 'stdout', 0, 100)).data.toString()).toBe(
          'two\n',
        );
        // Its own session: the first instance's session is not shared across instances.
        expect(execCalls(taskArn(ref)).length).toBe(beforeExec + 1);

        await second.open(storedRef, fx.plan).snapshots.restore(baseline);
        expect((await fx.sh(ref, 'cat "$HOME/f"')).stdout).toBe('one\n');

        const fromCache = await second.create(fx.plan, { workspaceId: newId('ws'), labels: {}, from: cache });
        try {
          expect((await fx.sh(fromCache, 'cat "$HOME/f"')).stdout).toBe('one\n');
        } finally {
          await second.destroy(roundTrip(fromCache));
        }

        // deleteSnapshot from the JSON: the baseline copy leaves the task, the image's revision is deregistered.
        const pristine = `/var/lib/wsp/pristine/${baseline.name}`;
        expect(await inTask(ref, `test -d ${pristine} && echo yes`)).toBe('yes\n');
        await second.snapshots.delete(roundTrip(baseline));
        expect(await inTask(ref, `test -e ${pristine} || echo gone`)).toBe('gone\n');
        await second.snapshots.delete(roundTrip(cache));
        expect(h().fake.taskDefinitions.get(String(cache.taskDefinitionArn))?.status).toBe('INACTIVE');
        expect(h().s3.objects.has(String(cache.layerKey))).toBe(false);
        // Deleting again is fine (the fixture's cleanup does it too).
        await second.snapshots.delete(roundTrip(baseline));
      } finally {
        second.close();
      }
    });

    it('a cache layer larger than one PUT leaves the task as a multipart upload: parts the runner PUTs, completed by the provider', async () => {
      const MiB = 1024 * 1024;
      const s3 = h().s3;
      const backend = new EcsBackend({ ...h().options, layerPartBytes: 5 * MiB });
      s3.maxPutBytes = 8 * MiB; // stands for S3's 5 GiB per PUT
      try {
        const ref = await fx.create();
        const made = await fx.sh(ref, 'head -c 12582912 /dev/urandom > "$HOME/big.bin" && sha256sum < "$HOME/big.bin"');
        expect(made.status.exitCode).toBe(0);
        const before = s3.requests.length;
        const cache = fx.trackSnapshot(
          roundTrip(await backend.open(ref, fx.plan).snapshots.take('cache', newId('cache'))),
        );
        const requests = s3.requests.slice(before);
        const parts = requests.filter((r) => r.method === 'PUT' && r.query.has('uploadId'));
        expect(parts.map((r) => r.query.get('partNumber'))).toEqual(['1', '2', '3']);
        expect(parts.every((r) => r.presigned && r.key === cache.layerKey)).toBe(true);
        expect(requests.filter((r) => r.method === 'PUT' && !r.query.has('uploadId'))).toEqual([]);
        expect(s3.pendingUploads().size).toBe(0);

        const fromCache = await backend.create(fx.plan, { workspaceId: newId('ws'), labels: {}, from: cache });
        try {
          expect((await fx.sh(fromCache, 'sha256sum < "$HOME/big.bin"')).stdout).toBe(made.stdout);
        } finally {
          await backend.destroy(roundTrip(fromCache));
        }
      } finally {
        s3.maxPutBytes = 5 * 1024 * MiB;
        backend.close();
      }
    });

    it('a baseline of a stopped task is gone with it: deleteSnapshot succeeds', async () => {
      const ref = await fx.create();
      const baseline = await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('base'));
      await h().fake.killTask(taskArn(ref));
      await fx.backend.snapshots.delete(baseline);
    });

    it('bad handles → bad_request', async () => {
      const b = fx.backend;
      const arn = 'arn:aws:ecs:us-east-1:123456789012:task/wsp-test/0123456789abcdef';
      const otherKind: BackendRef = { kind: 'docker', workspaceId: 'ws-1', containerId: 'abc' };
      const noArn: BackendRef = { kind: 'ecs', workspaceId: 'ws-1' };
      const badArn: BackendRef = { kind: 'ecs', workspaceId: 'ws-1', taskArn: 'task/123' };
      const good: BackendRef = { kind: 'ecs', workspaceId: 'ws-1', taskArn: arn, uid: 1000, gid: 1000 };
      const spec = { commandId: 'c1', argv: ['true'], cwd: fx.plan.home, env: {}, timeoutMs: 0, maxOutputBytes: 1024 };
      for (const ref of [otherKind, noArn, badArn]) {
        await expectCode(b.destroy(ref), 'bad_request');
        await expectCode(b.open(ref, fx.plan).commands.start(spec), 'bad_request');
        // Rejections, never synchronous throws: callers chain `.catch()` on these.
        await expectCode(b.open(ref, fx.plan).commands.status('c1'), 'bad_request');
        await expectCode(b.open(ref, fx.plan).commands.wait('c1', 0), 'bad_request');
        await expectCode(b.open(ref, fx.plan).commands.read('c1', 'stdout', 0, 10), 'bad_request');
        await expectCode(b.open(ref, fx.plan).commands.kill('c1', 'x'), 'bad_request');
        await expectCode(b.open(ref, fx.plan).commands.killAll(), 'bad_request');
        await expectCode(b.open(ref, fx.plan).snapshots.take('baseline', 'b1'), 'bad_request');
      }
      const dockerSnap: SnapshotRef = { kind: 'docker-image', name: 'snap-1', image: 'sha256:abc' };
      const pristine: SnapshotRef = { kind: 'ecs-pristine', name: 'snap-1', taskArn: arn };
      const imageWithoutTd: SnapshotRef = {
        kind: 'ecs-image',
        name: 'snap-1',
        image: 'r/x@sha256:abc',
        layerKey: 'layers/x',
      };
      await expectCode(b.open(good, fx.plan).snapshots.restore(dockerSnap), 'bad_request');
      await expectCode(b.snapshots.delete(dockerSnap), 'bad_request');
      await expectCode(b.snapshots.delete(imageWithoutTd), 'bad_request');
      await expectCode(b.snapshots.scan(pristine, ['x']), 'bad_request');
      // A workspace starts from a cache image, not from another task's baseline copy.
      await expectCode(b.create(fx.plan, { workspaceId: 'ws-2', labels: {}, from: pristine }), 'bad_request');
      await expectCode(b.create(fx.plan, { workspaceId: 'ws-2', labels: {}, from: dockerSnap }), 'bad_request');
      // A cache image is not restored into a workspace.
      await expectCode(
        b.open(good, fx.plan).snapshots.restore({
          kind: 'ecs-image',
          name: 'snap-1',
          image: 'r/x@sha256:abc',
          taskDefinitionArn: 'arn:td',
          layerKey: 'k',
          bytes: 1,
        }),
        'bad_request',
      );
      // Nothing reached ECS for any of these.
      expect(h().fake.mock.commandCalls(ExecuteCommandCommand, { task: arn })).toHaveLength(0);
      expect(h().fake.mock.commandCalls(StopTaskCommand, { task: arn })).toHaveLength(0);
    });
  });
});
