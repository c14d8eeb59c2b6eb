import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processesOfUid } from '../../shared/backends/local/procs.js';
import { rootUnavailable } from '../support/root.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';

// The attacker lists processes (`ps`, /proc) to learn what else runs on the host — the provider, other
// workspaces and their command lines — and kills its own namespace's holder hoping to break the
// provider or another workspace. On the local backend (root + bwrap) each workspace has a pid
// namespace of its own that lasts as long as the workspace (shared/backends/local/pid-namespace.ts).

const skip = rootUnavailable;
const CONFIG = { workspace: { network: 'none' as const } };

describe.skipIf(skip !== undefined)('a workspace sees only its own processes (local backend, real provider)', () => {
  let wsp: TestProvider;

  beforeAll(async () => {
    wsp = await startTestProvider(CONFIG);
  }, 60_000);

  afterAll(async () => {
    if (wsp) {
      const backend = wsp.provider.deps.backend;
      for (const ws of await backend.listResources()) await backend.destroy(ws.ref);
    }
    await wsp?.close();
    if (wsp) fs.rmSync(wsp.dataDir, { recursive: true, force: true });
  });

  const wsDir = (id: string): string => path.join(wsp.dataDir, 'local', 'workspaces', id);
  const hostUid = (id: string): number =>
    JSON.parse(fs.readFileSync(path.join(wsDir(id), 'meta.json'), 'utf8')).hostUid;
  /** The holder's record: "<host pid of the namespace's init> <start time>" (a second line names its forker). */
  const holder = (id: string): string | undefined => {
    try {
      return fs.readFileSync(path.join(wsDir(id), 'pidns'), 'utf8').split('\n')[0];
    } catch {
      return undefined;
    }
  };
  /** Host pids of the workspace's processes whose command line starts with `argv0 arg1`. */
  const hostProcesses = async (id: string, cmdline: string): Promise<number[]> =>
    (await processesOfUid(hostUid(id))).filter((pid) => {
      try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim() === cmdline;
      } catch {
        return false;
      }
    });

  async function run(
    id: string,
    command: string,
  ): Promise<{ exitCode: number | null; state: string; stdout: string; stderr: string }> {
    const r = await wsp.exec(id, command);
    return { exitCode: r.exitCode, state: r.state, stdout: String(r.stdout.data), stderr: String(r.stderr.data) };
  }

  /** `ps` inside: "<pid> <args>" per process. */
  async function ps(id: string): Promise<Array<{ pid: number; args: string }>> {
    const r = await run(id, 'ps -e -o pid=,args=');
    expect(r.exitCode, r.stderr).toBe(0);
    return r.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => {
        const m = /^\s*(\d+)\s+(.*)$/.exec(l)!;
        return { pid: Number(m[1]), args: m[2]! };
      });
  }

  it("ps and /proc show only the workspace's processes: not the provider, not another workspace's background process", async () => {
    const a = await wsp.setup();
    const b = await wsp.setup();
    expect((await run(b.id, 'sleep 3101 > /dev/null 2>&1 & echo started')).stdout).toBe('started\n');
    // B's sleep runs on the host (the control: the check below could see it if it were visible).
    expect(await hostProcesses(b.id, 'sleep 3101')).toHaveLength(1);

    const seen = await ps(a.id);
    const all = seen.map((p) => p.args).join('\n');
    expect(all).not.toContain('sleep 3101');
    expect(all).not.toMatch(/node|vitest|dynalite|slirp4netns/);
    // Only A's namespace: its init (pid 1, the holder), the holder's sleep, this command's sh and ps.
    expect(seen.length).toBeLessThanOrEqual(5);
    expect(seen.map((p) => p.pid)).toContain(1);
    expect(seen.every((p) => p.pid < 1000)).toBe(true);
    // /proc by hand (no ps): no entry of the provider's host pid, none naming node.
    const proc = await run(
      a.id,
      `ls /proc | grep -E '^[0-9]+$'; cat /proc/${process.pid}/cmdline 2>&1; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done`,
    );
    expect(proc.stdout).not.toMatch(new RegExp(`^${process.pid}$`, 'm'));
    expect(proc.stdout).toContain('No such file or directory');
    expect(proc.stdout).not.toMatch(/node|vitest|sleep 3101/);
    // The holder runs in A's cgroup (a kill-all of the cgroup ends it; it cannot host an escape).
    const [holderPid] = holder(a.id)!.split(' ');
    expect(fs.readFileSync(`/proc/${holderPid}/cgroup`, 'utf8')).toContain(`/${a.id}\n`);
    // The holder's own namespaces are empty: /proc/1/net shows no host socket or interface.
    const net = await run(a.id, 'cat /proc/1/net/dev');
    expect(
      net.stdout
        .split('\n')
        .slice(2)
        .filter(Boolean)
        .map((l) => l.split(':')[0]!.trim()),
    ).toEqual(['lo']);
  }, 120_000);

  it('a background process started by one command is seen and signalled by the next', async () => {
    const a = await wsp.setup();
    const started = await run(a.id, 'sleep 3102 > /dev/null 2>&1 & echo $!');
    const pid = Number(started.stdout.trim());
    expect(pid).toBeGreaterThan(0);
    // The background child runs `sleep` once it has exec'd: a next command may come before that.
    const args = async () => (await ps(a.id)).find((p) => p.pid === pid)?.args;
    for (let i = 0; i < 100 && (await args()) !== 'sleep 3102'; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await args()).toBe('sleep 3102');
    const killed = await run(a.id, `kill -TERM ${pid} && echo signalled`);
    expect(killed.stdout).toBe('signalled\n');
    for (let i = 0; i < 50 && (await hostProcesses(a.id, 'sleep 3102')).length > 0; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect((await ps(a.id)).map((p) => p.args)).not.toContain('sleep 3102');
  }, 120_000);

  it('after a reset or a kill-all no process of the workspace survives, and the next command works', async () => {
    const a = await wsp.setup();
    // A process that left its command's session and group: only the namespace (or cgroup) catches it.
    await run(a.id, 'setsid sleep 3103 > /dev/null 2>&1 < /dev/null & echo ok');
    // (once the background child has exec'd sleep)
    for (let i = 0; i < 100 && (await hostProcesses(a.id, 'sleep 3103')).length === 0; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(await hostProcesses(a.id, 'sleep 3103')).toHaveLength(1);
    const reset = await wsp.api('POST', `/workspaces/${a.id}/reset`, {});
    expect(reset.status).toBe(200);
    expect(await hostProcesses(a.id, 'sleep 3103')).toHaveLength(0);
    expect((await processesOfUid(hostUid(a.id))).length).toBe(0);
    const next = await run(a.id, 'echo works; ps -e -o args=');
    expect(next.stdout).toMatch(/^works\n/);
    expect(next.stdout).not.toContain('sleep 3103');

    await run(a.id, 'setsid sleep 3104 > /dev/null 2>&1 < /dev/null & echo ok');
    const ref = (await wsp.provider.deps.backend.listResources()).find((r) => r.workspaceId === a.id)!.ref;
    await wsp.provider.deps.backend
      .open(ref, (await wsp.provider.deps.state.getWorkspace(a.id))!.plan)
      .commands.killAll();
    expect((await processesOfUid(hostUid(a.id))).length).toBe(0);
    const after = await run(a.id, 'echo works; ps -e -o args=');
    expect(after.stdout).toMatch(/^works\n/);
    expect(after.stdout).not.toContain('sleep 3104');
  }, 120_000);

  it('a workspace that kills its own namespace holder hurts only itself: the next command gets a new one', async () => {
    const a = await wsp.setup();
    const b = await wsp.setup();
    await run(a.id, 'sleep 3105 > /dev/null 2>&1 & echo ok');
    await run(b.id, 'sleep 3106 > /dev/null 2>&1 & echo ok');
    const before = holder(a.id);
    const bHolder = holder(b.id);
    // pid 1 (bwrap's reaper, the namespace's init) ignores signals from inside its namespace.
    const atInit = await run(a.id, 'kill -KILL 1; echo done');
    expect(atInit.stdout).toBe('done\n');
    expect(holder(a.id)).toBe(before);
    expect(await hostProcesses(a.id, 'sleep 3105')).toHaveLength(1);
    // Everything else it may kill: the holder's sleep (pid 2), its forker and all its own processes
    // (kill -1 spares the caller: it kills itself next). The reaper exits once it has no child left,
    // and the kernel ends the namespace.
    const suicide = await run(a.id, 'kill -KILL -1; kill -KILL $$; sleep 30; echo survived');
    expect(suicide.stdout).not.toContain('survived');
    expect(await hostProcesses(a.id, 'sleep 3105')).toHaveLength(0);

    const next = await run(a.id, 'echo works; ps -e -o args=');
    expect(next.exitCode, next.stderr).toBe(0);
    expect(next.stdout).toMatch(/^works\n/);
    expect(next.stdout).not.toContain('sleep 3105');
    expect(holder(a.id)).not.toBe(before);
    // B is untouched: same holder, its background process alive and visible to it.
    expect(holder(b.id)).toBe(bHolder);
    expect(await hostProcesses(b.id, 'sleep 3106')).toHaveLength(1);
    expect((await ps(b.id)).map((p) => p.args)).toContain('sleep 3106');
  }, 120_000);

  it('a restarted provider finds the namespace again: background processes stay visible, and a reset ends them', async () => {
    const a = await wsp.setup();
    const started = await run(a.id, 'sleep 3107 > /dev/null 2>&1 & echo $!');
    const pid = Number(started.stdout.trim());
    const before = holder(a.id);
    const dataDir = wsp.dataDir;
    await wsp.close();
    wsp = await startTestProvider(CONFIG, { dataDir });

    expect((await ps(a.id)).find((p) => p.pid === pid)?.args).toBe('sleep 3107');
    expect(holder(a.id)).toBe(before);
    const reset = await wsp.api('POST', `/workspaces/${a.id}/reset`, {});
    expect(reset.status).toBe(200);
    expect(await hostProcesses(a.id, 'sleep 3107')).toHaveLength(0);
    expect((await ps(a.id)).map((p) => p.args)).not.toContain('sleep 3107');
  }, 120_000);
});
