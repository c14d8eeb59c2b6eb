import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../shared/config/schema.js';
import { containerConfig } from '../../shared/backends/docker/container.js';
import { DockerLayout } from '../../shared/backends/docker/layout.js';
import { DEFAULT_WORKSPACE_PIDS } from '../../shared/contract/limits.js';
import { detectLimits, WorkspaceCgroups } from '../../shared/backends/local/cgroup.js';
import { processesOfUid } from '../../shared/backends/local/procs.js';
import type { BackendRef } from '../../shared/contract/workspace.js';
import { dockerClient } from '../support/docker-daemon.js';
import { closeTestProvider, hostileBackends, type HostileBackendName } from '../support/hostile-backends.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';
import { rootUnavailable } from '../support/root.js';
import { newId, planFor, useBackendFixture } from '../support/backend-fixture.js';
import { makeLocalBackend } from '../backends/local/handle.js';
import { sleep } from '../../shared/lib/sleep.js';

// The attacker owns every process it can start: it forks without end, allocates from many processes
// at once, and writes output without end. Each must stop at a limit that holds for the WHOLE
// workspace, while the provider (and the host) keep answering, and a reset must end all of it.

const MiB = 1024 * 1024;
const OUTPUT_CAP = MiB;

type BackendName = HostileBackendName;
const BACKENDS = hostileBackends(rootUnavailable);

/** The workspace's cgroup dir in a v1 hierarchy, as the host sees it (this machine and CI are v1). */
async function cgroupDir(backend: BackendName, workspaceId: string, hierarchy: 'pids' | 'memory'): Promise<string> {
  if (backend === 'docker') {
    const info = await dockerClient().getContainer(`wsp-${workspaceId}`).inspect();
    return path.join('/sys/fs/cgroup', hierarchy, 'docker', info.Id);
  }
  const root = path.join('/sys/fs/cgroup', hierarchy, 'wsp');
  for (const provider of fs.readdirSync(root)) {
    const dir = path.join(root, provider, workspaceId);
    if (fs.existsSync(dir)) return dir;
  }
  throw new Error(`no ${hierarchy} cgroup for workspace ${workspaceId}`);
}

const readNumber = (file: string): number => Number(fs.readFileSync(file, 'utf8').trim());
/** Live (non-zombie) members of a cgroup. */
function members(dir: string): number[] {
  return fs
    .readFileSync(path.join(dir, 'cgroup.procs'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map(Number)
    .filter((pid) => {
      try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
      } catch {
        return false;
      }
    });
}
/** Real uid of a process (undefined once gone). */
function uidOf(pid: number): number | undefined {
  try {
    return Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
  } catch {
    return undefined;
  }
}

/** The host dir of a command (both backends keep it under the data dir). */
function commandDir(dataDir: string, commandId: string): string {
  const found = execFileSync('find', [dataDir, '-type', 'd', '-name', commandId], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .filter(Boolean);
  if (found.length !== 1) throw new Error(`command dir of ${commandId}: ${JSON.stringify(found)}`);
  return found[0]!;
}

/** How long the provider takes to answer a status request (ms). */
async function latency(wsp: TestProvider, id: string): Promise<number> {
  const t0 = Date.now();
  const r = await wsp.api('GET', `/workspaces/${id}`);
  expect(r.status).toBe(200);
  return Date.now() - t0;
}

describe.each(BACKENDS)('limits that hold per workspace ($name backend, real provider)', ({ name, config, skip }) => {
  let wsp: TestProvider;
  let hog: TestProvider;

  beforeAll(async () => {
    if (skip !== undefined) return;
    // The default config, but for a small output cap (the runaway-output case). No pids setting: the default holds.
    wsp = await startTestProvider({ ...config, commands: { maxOutputBytes: OUTPUT_CAP } });
    hog = await startTestProvider({ ...config, workspace: { resources: { memoryMb: 256 } } });
  }, 60_000);

  afterAll(async () => {
    for (const p of [wsp, hog]) await closeTestProvider(p);
  }, 120_000);

  it.skipIf(skip !== undefined)(
    'a fork bomb under the default config stops at the pids limit; provider and host keep answering; a reset ends it',
    async () => {
      const ws = await wsp.setup();
      const pids = await cgroupDir(name, ws.id, 'pids');
      expect(readNumber(path.join(pids, 'pids.max'))).toBe(DEFAULT_WORKSPACE_PIDS);
      const bomb = await wsp.api('POST', `/workspaces/${ws.id}/commands`, { command: 'f() { f | f & }; f', waitMs: 0 });
      expect(bomb.status).toBeLessThan(300);

      // The bomb reaches the limit (forks fail: pids.events counts them) and never passes it.
      let peak = 0;
      const deadline = Date.now() + 30_000;
      const failedForks = (): number =>
        Number(/^max (\d+)/m.exec(fs.readFileSync(path.join(pids, 'pids.events'), 'utf8'))?.[1] ?? 0);
      while (failedForks() === 0) {
        peak = Math.max(peak, readNumber(path.join(pids, 'pids.current')));
        if (Date.now() > deadline) throw new Error(`the bomb never hit the limit (peak ${peak})`);
        await sleep(50);
      }
      const latencies: number[] = [];
      for (let i = 0; i < 10; i++) {
        peak = Math.max(peak, readNumber(path.join(pids, 'pids.current')));
        latencies.push(await latency(wsp, ws.id));
        // The host can still start a process: its pid space was not taken.
        execFileSync('true', { timeout: 5_000 });
        await sleep(200);
      }
      expect(peak).toBeLessThanOrEqual(DEFAULT_WORKSPACE_PIDS);
      expect(Math.max(...latencies)).toBeLessThan(3_000);

      const reset = await wsp.api('POST', `/workspaces/${ws.id}/reset`, {});
      expect(reset.status).toBe(200);
      // Nothing of the bomb is left, and nothing comes back.
      await sleep(500);
      const after = await cgroupDir(name, ws.id, 'pids');
      const left = members(after).filter((pid) => uidOf(pid) !== 0);
      expect(left).toEqual([]);
      // Killed tasks are reaped too: the pid budget is free again (else the next command cannot fork).
      expect(readNumber(path.join(after, 'pids.current'))).toBeLessThan(DEFAULT_WORKSPACE_PIDS / 2);
      const ok = await wsp.exec(ws.id, 'echo still-works');
      expect(ok).toMatchObject({ state: 'exited', exitCode: 0 });
      expect(ok.stdout.data).toBe('still-works\n');
    },
    120_000,
  );

  // Each loop in a session of its own: without a cpu cgroup every session is an autogroup of its own
  // (measured on the local backend with 400 loops: API answers took 0.6-8 s), with it the workspace is one entity.
  it.skipIf(skip !== undefined)(
    '450 busy loops in as many sessions do not starve the provider: the workspace competes for CPU as one',
    async () => {
      const ws = await wsp.setup();
      const burn = await wsp.api('POST', `/workspaces/${ws.id}/commands`, {
        command: 'for i in $(seq 450); do setsid sh -c "sleep 4; while :; do :; done" & done; wait',
        waitMs: 0,
      });
      expect(burn.status).toBeLessThan(300);
      const pids = await cgroupDir(name, ws.id, 'pids');
      // All of them are started (asleep) before they spin together: once spinning, the spawning shell
      // would get only its share of the workspace's CPU.
      for (let i = 0; i < 400 && readNumber(path.join(pids, 'pids.current')) < 880; i++) await sleep(50);
      expect(readNumber(path.join(pids, 'pids.current'))).toBeGreaterThanOrEqual(880); // 450 × (sh + sleep)
      await sleep(4_500);
      const latencies: number[] = [];
      for (let i = 0; i < 10; i++) {
        latencies.push(await latency(wsp, ws.id));
        await sleep(100);
      }
      // The median: other test files share these 2 cores in CI. Without the cpu cgroup it was seconds.
      expect(latencies.sort((a, b) => a - b)[5]).toBeLessThan(1_000);
      const record = (await wsp.provider.deps.state.getWorkspace(ws.id))!;
      await wsp.provider.deps.backend.open(record.backend!, record.plan).commands.killAll();
    },
    120_000,
  );

  it.skipIf(skip !== undefined)(
    'six processes of 200 MB each cannot hold more than memoryMb (256) together',
    async () => {
      const ws = await hog.setup();
      const memory = await cgroupDir(name, ws.id, 'memory');
      expect(readNumber(path.join(memory, 'memory.limit_in_bytes'))).toBe(256 * MiB);
      // Each hog: tail keeps the last 200 MB of its input in memory until the input ends (3 s later),
      // then prints how much it held. Only a hog that was not killed prints 209715200.
      const script =
        'for i in 1 2 3 4 5 6; do ( { head -c 209715200 /dev/zero; sleep 3; } | tail -c 209715200 | wc -c ) & done; wait';
      const run = await hog.exec(ws.id, script, { timeoutMs: 120_000 });
      const held = String(run.stdout.data)
        .split('\n')
        .filter((l) => l.trim() === '209715200').length;
      // At most one 200 MB hog fits under 256 MB; the kernel's OOM killer ended the others.
      expect(held).toBeLessThanOrEqual(1);
      expect(readNumber(path.join(memory, 'memory.max_usage_in_bytes'))).toBeLessThanOrEqual(256 * MiB);
      // The cgroup's OOM killer did it (not something else that ended the hogs early).
      const oomKills = Number(
        /^oom_kill (\d+)/m.exec(fs.readFileSync(path.join(memory, 'memory.oom_control'), 'utf8'))?.[1] ?? 0,
      );
      expect(oomKills).toBeGreaterThanOrEqual(5);
      // The workspace goes on.
      expect(await hog.exec(ws.id, 'echo alive')).toMatchObject({ exitCode: 0 });
    },
    180_000,
  );

  it.skipIf(skip !== undefined)(
    'runaway output: the stdout file stops at the cap while the command runs; the end records the real count',
    async () => {
      const ws = await wsp.setup();
      const started = await wsp.api('POST', `/workspaces/${ws.id}/commands`, {
        command: 'timeout 4 yes; true',
        waitMs: 0,
      });
      expect(started.status).toBeLessThan(300);
      const id = started.body.id as string;
      const dir = commandDir(wsp.dataDir, id);
      const file = path.join(dir, 'stdout');
      // While it runs: the file reaches the cap and stays there.
      let sawCapWhileRunning = false;
      let sawTruncatedWhileRunning = false;
      for (let i = 0; i < 60; i++) {
        const size = fs.statSync(file).size;
        expect(size).toBeLessThanOrEqual(OUTPUT_CAP);
        const status = await wsp.api('GET', `/workspaces/${ws.id}/commands/${id}`);
        if (status.body.state !== 'running') break;
        if (size === OUTPUT_CAP) sawCapWhileRunning = true;
        // The status says so already while it runs: more bytes than the cap, truncated.
        if (status.body.stdout.truncated === true && status.body.stdout.bytes > OUTPUT_CAP)
          sawTruncatedWhileRunning = true;
        await sleep(50);
      }
      expect(sawCapWhileRunning).toBe(true);
      expect(sawTruncatedWhileRunning).toBe(true);
      let end = await wsp.api('GET', `/workspaces/${ws.id}/commands/${id}?waitMs=20000`);
      while (end.body.state === 'running')
        end = await wsp.api('GET', `/workspaces/${ws.id}/commands/${id}?waitMs=20000`);
      expect(end.body).toMatchObject({ state: 'exited', exitCode: 0 });
      expect(end.body.stdout.truncated).toBe(true);
      expect(end.body.stdout.bytes).toBeGreaterThan(OUTPUT_CAP * 4);
      expect(fs.statSync(file).size).toBe(OUTPUT_CAP);
      expect(fs.readFileSync(file, 'utf8')).toBe('y\n'.repeat(OUTPUT_CAP / 2));
    },
    60_000,
  );

  it.skipIf(skip !== undefined)(
    'killAll against a tight fork loop (double-forking orphans) leaves no process of the workspace',
    async () => {
      const ws = await wsp.setup();
      const backend = wsp.provider.deps.backend;
      const ref = (await backend.listResources()).find((r) => r.workspaceId === ws.id)!.ref;
      // Each round leaves an orphan sleeper behind (its parent subshell exits at once).
      const started = await wsp.api('POST', `/workspaces/${ws.id}/commands`, {
        command: 'while :; do ( sleep 1000 & ) ; done',
        waitMs: 0,
      });
      expect(started.status).toBeLessThan(300);
      const pids = await cgroupDir(name, ws.id, 'pids');
      for (let i = 0; i < 100 && readNumber(path.join(pids, 'pids.current')) < 50; i++) await sleep(50);
      expect(readNumber(path.join(pids, 'pids.current'))).toBeGreaterThanOrEqual(50);

      await backend.open(ref, (await wsp.provider.deps.state.getWorkspace(ws.id))!.plan).commands.killAll();
      const userProcs = async (): Promise<number[]> => {
        const inCgroup = members(pids).filter((pid) => uidOf(pid) !== 0);
        if (name === 'docker') return inCgroup;
        const meta = JSON.parse(fs.readFileSync(path.join(String(ref.dir), 'meta.json'), 'utf8')) as {
          hostUid: number;
        };
        return [...new Set([...members(pids), ...(await processesOfUid(meta.hostUid))])];
      };
      expect(await userProcs()).toEqual([]);
      await sleep(500);
      expect(await userProcs()).toEqual([]);
      const status = await wsp.api('GET', `/workspaces/${ws.id}/commands/${started.body.id}`);
      expect(status.body.state).toBe('killed');
    },
    60_000,
  );
});

describe.skipIf(rootUnavailable !== undefined)('the local workspace cgroup (root)', () => {
  const fx = useBackendFixture(() => makeLocalBackend());
  const wsDir = (ref: BackendRef): string => String(ref.dir);
  const hostUid = (ref: BackendRef): number =>
    (JSON.parse(fs.readFileSync(path.join(wsDir(ref), 'meta.json'), 'utf8')) as { hostUid: number }).hostUid;

  it('belongs to root: the workspace uid can neither move a process out nor raise a limit', async () => {
    const ref = await fx.create();
    for (const hierarchy of ['pids', 'memory'] as const) {
      const dir = await cgroupDir('local', String(ref.workspaceId), hierarchy);
      for (const file of [
        dir,
        path.join(dir, 'cgroup.procs'),
        path.join(dir, hierarchy === 'pids' ? 'pids.max' : 'memory.limit_in_bytes'),
      ]) {
        const st = fs.statSync(file);
        expect(st.uid).toBe(0);
        expect(st.mode & 0o022).toBe(0);
      }
      // Tried as the workspace's host uid, outside any sandbox: leave to the parent, raise the limit.
      const parent = path.dirname(dir);
      const r = spawnSync(
        'setpriv',
        [
          `--reuid=${hostUid(ref)}`,
          `--regid=${hostUid(ref)}`,
          '--clear-groups',
          '--',
          'sh',
          '-c',
          `echo $$ > ${parent}/cgroup.procs || echo $$ > ${dir}/../../cgroup.procs || echo -1 > ${dir}/${hierarchy === 'pids' ? 'pids.max' : 'memory.limit_in_bytes'} || exit 42; exit 0`,
        ],
        { encoding: 'utf8' },
      );
      expect(r.status).toBe(42);
    }
    // Inside the sandbox the cgroup file system is not even there.
    const inside = await fx.sh(
      ref,
      'ls /sys/fs/cgroup 2>&1; echo $$ > /sys/fs/cgroup/pids/cgroup.procs 2>&1 || echo refused',
    );
    expect(inside.stdout).toContain('refused');
  });

  it('is found again by a restarted provider: its killAll empties it, and destroy removes it', async () => {
    const ref = await fx.create();
    const id = await fx.start(ref, ['sh', '-c', 'while :; do ( sleep 1000 & ) ; done']);
    const pids = await cgroupDir('local', String(ref.workspaceId), 'pids');
    for (let i = 0; i < 100 && members(pids).length < 20; i++) await sleep(50);
    expect(members(pids).length).toBeGreaterThanOrEqual(20);

    const restarted = await fx.handle.reopen!();
    await restarted.open(ref, fx.plan).commands.killAll();
    expect(members(pids)).toEqual([]);
    expect(await processesOfUid(hostUid(ref))).toEqual([]);
    expect((await restarted.open(ref, fx.plan).commands.status(id)).state).toBe('killed');
    // A new command of the restarted provider enters the same cgroup.
    expect((await fx.run(ref, ['true'])).status.exitCode).toBe(0);

    await restarted.destroy(ref);
    for (const hierarchy of ['pids', 'memory', 'freezer', 'cpu']) {
      expect(
        fs.existsSync(path.join(path.dirname(pids).replace('/pids/', `/${hierarchy}/`), String(ref.workspaceId))),
      ).toBe(false);
    }
  });
});

describe.skipIf(rootUnavailable !== undefined)('orphan workspace cgroups (root)', () => {
  it('a provider start kills what runs in a cgroup of its own whose workspace dir is gone, and removes it', async () => {
    const handle = await makeLocalBackend();
    try {
      const ref = await handle.backend.create(planFor(), { workspaceId: newId('ws-orphan'), labels: {} });
      const id = String(ref.workspaceId);
      const pids = await cgroupDir('local', id, 'pids');
      // Something of the workspace still runs in its cgroup when its dir vanishes (a crash mid-destroy).
      const stray = spawn('sh', ['-c', `echo $$ > ${pids}/cgroup.procs && exec sleep 1000`], {
        stdio: 'ignore',
        detached: true,
      });
      for (let i = 0; i < 100 && members(pids).length === 0; i++) await sleep(20);
      expect(members(pids)).toEqual([stray.pid]);
      fs.rmSync(String(ref.dir), { recursive: true, force: true });

      await handle.reopen();
      expect(fs.existsSync(pids)).toBe(false);
      expect(uidOf(stray.pid!)).toBeUndefined();
    } finally {
      await handle.cleanup();
    }
  });
});

describe('local limits without a cgroup say what they do not enforce', () => {
  it('not root: memory per process, pids approximate; without bwrap, escaped processes survive', async () => {
    const { warnings } = await detectLimits('/nonexistent', { kind: 'bwrap', asRoot: false, rootfsArgs: [] });
    expect(warnings.join('\n')).toMatch(/memoryMb limits each process's address space, not the workspace's memory/);
    expect(warnings.join('\n')).toMatch(/pids is approximate/);
    const none = await detectLimits('/nonexistent', { kind: 'none', asRoot: false, rootfsArgs: [] });
    expect(none.warnings.join('\n')).toMatch(/survives a reset or delete/);
  });
});

// This machine has no cgroup v2 controllers: the v2 control files are checked on a plain dir (what is
// written where), the kernel side of v2 is not exercised here.
describe('workspace cgroup control files', () => {
  const prepare = (files: Record<string, string>): string => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-cg-'));
    fs.mkdirSync(path.join(dir, 'ws-a'));
    for (const [name, value] of Object.entries(files)) fs.writeFileSync(path.join(dir, 'ws-a', name), value);
    return dir;
  };
  const read = (dir: string, name: string): string => fs.readFileSync(path.join(dir, 'ws-a', name), 'utf8').trim();

  it('v2: pids.max, memory.max and no swap; unset limits are max', async () => {
    const dir = prepare({ 'pids.max': 'max', 'memory.max': 'max', 'memory.swap.max': 'max', 'cgroup.procs': '' });
    const cg = WorkspaceCgroups.at(2, { unified: dir });
    await cg.ensure('ws-a', { pids: 1024, memoryMb: 256 });
    expect([read(dir, 'pids.max'), read(dir, 'memory.max'), read(dir, 'memory.swap.max')]).toEqual([
      '1024',
      String(256 * MiB),
      '0',
    ]);
    await cg.ensure('ws-a', {});
    expect([read(dir, 'pids.max'), read(dir, 'memory.max')]).toEqual(['max', 'max']);
    expect(cg.procsFiles('ws-a')).toEqual([path.join(dir, 'ws-a', 'cgroup.procs')]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('v1: memsw follows the memory limit (swap cannot dodge it); ids that are not names are refused', async () => {
    const unlimited = '9223372036854771712';
    const pids = prepare({ 'pids.max': 'max' });
    const memory = prepare({ 'memory.limit_in_bytes': unlimited, 'memory.memsw.limit_in_bytes': unlimited });
    const cg = WorkspaceCgroups.at(1, { pids, memory });
    await cg.ensure('ws-a', { pids: 64, memoryMb: 256 });
    expect([
      read(pids, 'pids.max'),
      read(memory, 'memory.limit_in_bytes'),
      read(memory, 'memory.memsw.limit_in_bytes'),
    ]).toEqual(['64', String(256 * MiB), String(256 * MiB)]);
    expect(() => cg.dirs('../x')).toThrow(/not a workspace id/);
    for (const d of [pids, memory]) fs.rmSync(d, { recursive: true, force: true });
  });
});

describe('the default pids limit', () => {
  it('is the config default, and a backend applies it to a plan that has none', () => {
    expect(configSchema.parse({}).workspace.resources.pids).toBe(DEFAULT_WORKSPACE_PIDS);
    const plan = planFor();
    const bare = { ...plan, resources: {} };
    expect(containerConfig(new DockerLayout('/data'), 'ws-a', bare, 'img', {}).HostConfig?.PidsLimit).toBe(
      DEFAULT_WORKSPACE_PIDS,
    );
    expect(
      containerConfig(new DockerLayout('/data'), 'ws-a', { ...plan, resources: { pids: 64 } }, 'img', {}).HostConfig
        ?.PidsLimit,
    ).toBe(64);
  });
});
