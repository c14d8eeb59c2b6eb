import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { daemonArgv } from '../../shared/backends/local/supervisor/client.js';
import { closeTestProvider } from '../support/hostile-backends.js';
import { rootUnavailable } from '../support/root.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';
import { waitFor } from '../support/wait.js';

// The provider process holds descriptors WITHOUT close-on-exec that it cannot see coming: the
// embedded store's LevelDB opens its files that way, at any time, from a native thread. A process
// spawned from the provider inherits whichever are open at that instant, and a sandbox's process
// would carry them into the workspace, where the workspace (same uid) can open them through
// /proc/<pid>/fd — the provider's state of every workspace. So nothing that enters a sandbox is
// spawned by the provider: the command supervisor starts commands, namespace holders and forkers,
// and drops every descriptor it inherited when it starts.
//
// The leak is staged where a race would put it: the supervisor is started here with a "LevelDB
// file" and a pipe it inherits without close-on-exec (as a spawn racing LevelDB would give it).

const skip = rootUnavailable;

describe.skipIf(skip !== undefined)("the provider's descriptors never reach a workspace (local backend)", () => {
  let wsp: TestProvider;
  let canaryDir: string;
  let supervisorPid: number;
  let id: string;
  /** What the supervisor inherited: the canary files and the staged pipe, as /proc/<pid>/fd shows them. */
  let leaked: (target: string) => boolean;

  beforeAll(async () => {
    wsp = await startTestProvider({ workspace: { network: 'none' } });
    canaryDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-leak-'));
    const canary = fs.openSync(path.join(canaryDir, 'MANIFEST-000003'), 'w', 0o600);
    const runDir = path.join(wsp.dataDir, 'local', 'run');
    fs.mkdirSync(runDir, { recursive: true, mode: 0o700 });
    const log = fs.openSync(path.join(runDir, 'supervisor.log'), 'a', 0o600);
    const argv = daemonArgv(runDir);
    // Descriptors of the supervisor: 9, a canary file (Node itself marks the first inherited ones
    // close-on-exec when it starts: libuv's uv_disable_stdio_inheritance, up to the first gap past 15);
    // 23, a pipe (its other end kept here); 40, past a gap, a canary file Node leaves as it is.
    const stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'ignore', log];
    while (stdio.length < 41) stdio.push('ignore');
    stdio[9] = canary;
    stdio[23] = 'pipe';
    stdio[40] = canary;
    const daemon = spawn(argv[0]!, argv.slice(1), { detached: true, stdio, cwd: '/' });
    daemon.unref();
    fs.closeSync(canary);
    fs.closeSync(log);
    const pipeEnd = ((daemon.stdio as unknown[])[23] as { _handle: { fd: number } })._handle.fd;
    const pipe = fs.readlinkSync(`/proc/self/fd/${pipeEnd}`);
    leaked = (target) => target.includes(canaryDir) || target === pipe;
    supervisorPid = daemon.pid!;
    const socket = argv.at(-1)!;
    await waitFor(
      'the supervisor to listen',
      () =>
        new Promise<true | undefined>((resolve) => {
          const c = net.connect(path.join(runDir, socket));
          c.once('connect', () => {
            c.destroy();
            resolve(true);
          });
          c.once('error', () => resolve(undefined));
        }),
      30_000,
    );
    // The provider finds this supervisor (same socket) and starts nothing of its own.
    id = (await wsp.setup()).id;
  }, 90_000);

  afterAll(async () => {
    await closeTestProvider(wsp);
    if (canaryDir) fs.rmSync(canaryDir, { recursive: true, force: true });
  });

  /** Every descriptor of a host process, as `fd -> target`. */
  const descriptors = (pid: number): string[] =>
    fs.readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return `${fd} -> ${fs.readlinkSync(`/proc/${pid}/fd/${fd}`)}`;
      } catch {
        return `${fd} -> (gone)`;
      }
    });
  const parentOf = (pid: number): number =>
    Number(/^PPid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

  it('the supervisor passes on nothing it inherited: closed, or close-on-exec', () => {
    const passedOn = fs.readdirSync(`/proc/${supervisorPid}/fd`).filter((fd) => {
      if (Number(fd) < 3) return false;
      const flags = /^flags:\s+([0-7]+)/m.exec(fs.readFileSync(`/proc/${supervisorPid}/fdinfo/${fd}`, 'utf8'))![1]!;
      return (parseInt(flags, 8) & 0o2000000) === 0;
    });
    expect(passedOn.map((fd) => `${fd} -> ${fs.readlinkSync(`/proc/${supervisorPid}/fd/${fd}`)}`)).toEqual([]);
    // The one past the gap was closed at start (it had no close-on-exec).
    expect(fs.existsSync(`/proc/${supervisorPid}/fd/40`)).toBe(false);
  });

  it('no process in the workspace holds them: commands, background processes, the holder and its forker', async () => {
    const started = await wsp.exec(id, 'sleep 300 & echo started');
    expect(started.exitCode, String(started.stderr.data)).toBe(0);
    // The holder's record names its init and (once started, in the background) its forker.
    const recordFile = path.join(wsp.dataDir, 'local', 'workspaces', id, 'pidns');
    const record = await waitFor(
      'the forker in the holder record',
      async () => {
        const lines = fs.readFileSync(recordFile, 'utf8').trim().split('\n');
        return lines.length === 2 ? lines.map((l) => Number(l.split(' ')[0])) : undefined;
      },
      30_000,
    );
    const [init, forker] = record as [number, number];
    const everyone = [init, forker, ...fs.readFileSync(`/proc/${init}/task/${init}/children`, 'utf8').trim().split(' ')]
      .map(Number)
      .filter((pid) => pid > 0);
    for (const pid of everyone) {
      const fds = descriptors(pid);
      expect(
        fds.filter((d) => leaked(d.slice(d.indexOf(' -> ') + 4))),
        `pid ${pid} ${fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')} ${fds.join(', ')}`,
      ).toEqual([]);
    }
    // Seen from inside: every process the workspace can see, every descriptor it can read.
    const inside = await wsp.exec(
      id,
      'for p in /proc/[0-9]*; do ls -l "$p/fd" 2>/dev/null; done | grep -c MANIFEST; true',
    );
    expect(String(inside.stdout.data).trim()).toBe('0');
    // The holder and the forker came from the supervisor (their host-side bwrap is its child), not from the provider.
    for (const pid of [init, forker]) {
      let p = pid;
      while (p > 1 && p !== supervisorPid && p !== process.pid) p = parentOf(p);
      expect(p, `the ancestor of ${pid} that started it`).toBe(supervisorPid);
    }
  }, 60_000);
});
