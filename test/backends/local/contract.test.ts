import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLocalBackend } from '../../../shared/backends/local/index.js';
import { processesOfUid } from '../../../shared/backends/local/procs.js';
import { hostFingerprint } from '../../../shared/backends/local/tree/index.js';
import type { BackendRef } from '../../../shared/contract/workspace.js';
import { newId, useBackendFixture, type BackendHandle } from '../../support/backend-fixture.js';
import { describeBackendContract } from '../contract.js';
import { makeLocalBackend, overlayHomes } from './handle.js';

describeBackendContract('local', () => makeLocalBackend());

describe('local backend specifics', () => {
  const fx = useBackendFixture(() => makeLocalBackend());
  const dataDir = (): string => (fx.handle as BackendHandle & { dataDir: string }).dataDir;
  const wsDir = (ref: BackendRef): string => path.join(dataDir(), 'local', 'workspaces', String(ref.workspaceId));

  it('runs in a bwrap sandbox as root with no warnings', () => {
    expect(process.getuid?.()).toBe(0); // CI and dev machines run the suite as root
    expect(fx.backend.warnings).toEqual([]);
  });

  it('gives each workspace its own host uid; files and processes belong to it', async () => {
    const a = await fx.create();
    const b = await fx.create();
    const metaA = JSON.parse(fs.readFileSync(path.join(wsDir(a), 'meta.json'), 'utf8'));
    const metaB = JSON.parse(fs.readFileSync(path.join(wsDir(b), 'meta.json'), 'utf8'));
    expect(metaA.hostUid).toBeGreaterThan(200_000);
    expect(metaB.hostUid).not.toBe(metaA.hostUid);
    expect(metaA).toMatchObject({ workspaceId: a.workspaceId, owner: 'test-instance' });
    expect((await fx.sh(a, 'touch f')).status.exitCode).toBe(0);
    expect(fs.statSync(path.join(wsDir(a), 'home', 'f')).uid).toBe(metaA.hostUid);
    // Provider files stay root-only.
    expect(fs.statSync(path.join(wsDir(a), 'meta.json')).mode & 0o077).toBe(0);
    expect(fs.statSync(path.join(wsDir(a), 'commands')).mode & 0o077).toBe(0);
    expect(fs.statSync(path.join(wsDir(a), 'commands')).uid).toBe(0);
  });

  it('hands out host uids host-wide: a second provider with another data dir never reuses one', async () => {
    const other = await makeLocalBackend();
    try {
      const mine = await fx.create();
      const theirs = await other.backend.create(fx.plan, { workspaceId: newId('ws'), labels: {} });
      const uidOf = (dir: string, ref: BackendRef): number =>
        JSON.parse(fs.readFileSync(path.join(dir, 'local', 'workspaces', String(ref.workspaceId), 'meta.json'), 'utf8'))
          .hostUid;
      expect(uidOf(other.dataDir, theirs)).not.toBe(uidOf(dataDir(), mine));
    } finally {
      await other.cleanup();
    }
  });

  it('the pids limit holds a process flood, and killAll ends it', async () => {
    const plan = { ...fx.plan, resources: { pids: 40 } };
    const ref = await fx.create({ plan });
    // (dash gives up once fork fails at the limit; its ~40 background sleeps stay.)
    await fx.start(ref, ['sh', '-c', 'while :; do sleep 300 & done'], {}, plan);
    const uid = JSON.parse(fs.readFileSync(path.join(wsDir(ref), 'meta.json'), 'utf8')).hostUid as number;
    let count = 0;
    for (let i = 0; i < 500 && count < 30; i++) {
      count = (await processesOfUid(uid)).length;
      if (count < 30) await new Promise((r) => setTimeout(r, 20));
    }
    expect(count).toBeGreaterThanOrEqual(30);
    expect(count).toBeLessThanOrEqual(40);
    await fx.backend.open(ref, fx.plan).commands.killAll();
    expect(await processesOfUid(uid)).toEqual([]);
  });

  it('never puts env values in any process argv (they travel through a root-only file)', async () => {
    const ref = await fx.create();
    const secret = newId('env-secret');
    const id = await fx.start(ref, ['sh', '-c', 'printf "%s\\n" "$API_KEY"; exec sleep 300'], {
      env: { API_KEY: secret },
    });
    // Once the command printed it, the whole launch chain (wrapper, setpriv, bwrap, sh) exists.
    let out = '';
    for (let i = 0; i < 400 && out === ''; i++) {
      out = (await fx.backend.open(ref, fx.plan).commands.read(id, 'stdout', 0, 1000)).data.toString();
      if (out === '') await new Promise((r) => setTimeout(r, 25));
    }
    expect(out).toBe(`${secret}\n`);
    const leaks: string[] = [];
    for (const pid of fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
      try {
        if (fs.readFileSync(`/proc/${pid}/cmdline`).includes(secret)) leaks.push(pid);
      } catch {
        // gone
      }
    }
    expect(leaks).toEqual([]);
    await fx.backend.open(ref, fx.plan).commands.kill(id, 'cancelled');
  });

  it('passes no descriptor of the provider into a command (inherited ones are overwritten with /dev/null)', async () => {
    const ref = await fx.create();
    // ls lists its own descriptors: 0-2, the directory it reads, and whatever it inherited; then the
    // namespaces the command is in.
    const r = await fx.sh(ref, 'ls -l /proc/self/fd && readlink /proc/self/ns/user /proc/self/ns/pid');
    expect(r.status.exitCode).toBe(0);
    const fds = r.stdout
      .split('\n')
      .filter((l) => l.includes(' -> '))
      .map((l) => l.slice(l.lastIndexOf(' ', l.indexOf(' -> ') - 1) + 1));
    const ownNamespaces = r.stdout.split('\n').filter((l) => /^(user|pid):\[\d+\]$/.test(l));
    expect(ownNamespaces).toHaveLength(2);
    const inherited = fds.filter((f) => !/^[012] -> /.test(f) && !/ -> \/proc\/\d+\/fd$/.test(f));
    // The launch chain hands bwrap the workspace's user and pid namespaces (--userns/--pidns): those
    // two descriptors stay open, and they name exactly the namespaces the command is in (what its
    // own /proc/self/ns/* gives it anyway). Anything else is /dev/null.
    for (const fd of inherited) {
      if (/ -> (user|pid):/.test(fd)) expect(ownNamespaces).toContain(fd.slice(fd.indexOf(' -> ') + 4));
      else expect(fd).toMatch(/^\d+ -> \/dev\/null$/);
    }
    expect(fds.length).toBeGreaterThanOrEqual(4);
  });

  it('applies pids and memory limits to the workspace cgroup, not as per-process rlimits', async () => {
    const plan = { ...fx.plan, resources: { pids: 64, memoryMb: 2048 } };
    const ref = await fx.create({ plan });
    const r = await fx.run(ref, ['cat', '/proc/self/limits'], {}, plan);
    expect(r.stdout).toMatch(/^Max address space\s+unlimited\s/m);
    // From the host: the command's process sits in the workspace's cgroup, which holds the limits.
    const hostUid = JSON.parse(fs.readFileSync(path.join(wsDir(ref), 'meta.json'), 'utf8')).hostUid as number;
    const id = await fx.start(ref, ['sleep', '300'], {}, plan);
    let pids: number[] = [];
    for (let i = 0; i < 200 && pids.length === 0; i++) {
      pids = (await processesOfUid(hostUid)).filter((p) =>
        fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith('sleep'),
      );
      if (pids.length === 0) await new Promise((res) => setTimeout(res, 10));
    }
    const cgroupOf = (hierarchy: string): string =>
      fs
        .readFileSync(`/proc/${pids[0]}/cgroup`, 'utf8')
        .split('\n')
        .find((l) => l.split(':')[1] === hierarchy)!
        .split(':')[2]!;
    expect(cgroupOf('pids')).toMatch(new RegExp(`^/wsp/[0-9a-f]{16}/${ref.workspaceId}$`));
    expect(fs.readFileSync(`/sys/fs/cgroup/pids${cgroupOf('pids')}/pids.max`, 'utf8').trim()).toBe('64');
    expect(fs.readFileSync(`/sys/fs/cgroup/memory${cgroupOf('memory')}/memory.limit_in_bytes`, 'utf8').trim()).toBe(
      String(2048 * 1024 * 1024),
    );
    await fx.backend.open(ref, fx.plan).commands.kill(id, 'done');
  });

  it('restore rewrites only what changed (untouched files keep their inode)', async () => {
    const ref = await fx.create();
    expect((await fx.sh(ref, 'mkdir -p keep && echo k > keep/k.txt && echo c > change.txt')).status.exitCode).toBe(0);
    const home = path.join(wsDir(ref), 'home');
    const inode = fs.statSync(path.join(home, 'keep', 'k.txt')).ino;
    const snap = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('snap')));
    const f0 = await hostFingerprint(home);
    expect((await fx.sh(ref, 'echo changed > change.txt && touch new')).status.exitCode).toBe(0);
    await fx.backend.open(ref, fx.plan).snapshots.restore(snap);
    expect(await hostFingerprint(home)).toBe(f0);
    // Copy fallback: rewritten path by path. Overlay homes: the snapshot became the lower layer.
    if (overlayHomes(fx.backend)) expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).toContain(` ${home} `);
    else expect(fs.statSync(path.join(home, 'keep', 'k.txt')).ino).toBe(inode);
    expect(fs.statSync(path.join(home, 'change.txt')).uid).toBe(fs.statSync(home).uid);
  });

  it('keeps command results across a restart, from files only', async () => {
    const ref = await fx.create();
    const r = await fx.sh(ref, 'echo hi', [], { maxOutputBytes: 1024 });
    const dir = path.join(wsDir(ref), 'commands', r.commandId);
    expect(fs.readFileSync(path.join(dir, 'exit'), 'utf8')).toMatch(/^0 - 0 3 0 \d+\n$/);
  });

  it('rejects unsafe ids, names and refs with bad_request', async () => {
    const ref = await fx.create();
    await expect(fx.backend.open(ref, fx.plan).commands.status('../meta.json')).rejects.toMatchObject({
      code: 'bad_request',
    });
    await expect(fx.backend.destroy({ kind: 'local', workspaceId: '..', dir: '/' })).rejects.toMatchObject({
      code: 'bad_request',
    });
    await expect(fx.backend.open(ref, fx.plan).snapshots.take('cache', 'a/b')).rejects.toMatchObject({
      code: 'bad_request',
    });
    await expect(fx.start(ref, ['true'], { env: { 'BAD=NAME': 'x' } })).rejects.toMatchObject({ code: 'bad_request' });
    await expect(fx.start(ref, ['printf', 'a\0b'])).rejects.toMatchObject({ code: 'bad_request' });
    await fx.backend.destroy({ kind: 'local', workspaceId: 'ws-never-created', dir: '/nowhere' });
  });

  it('keeps workspace dirs in a reachable data dir; refuses a recorded place whose parents closed, naming the fix', async () => {
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-open-'));
    try {
      fs.chmodSync(parent, 0o711);
      const backend = await createLocalBackend({ dataDir: path.join(parent, 'data'), owner: 'x' });
      expect(backend.kind).toBe('local');
      expect(fs.statSync(path.join(parent, 'data')).mode & 0o777).toBe(0o701);
      expect(fs.existsSync(path.join(parent, 'data', 'local', 'workspaces-at'))).toBe(false);
      // Workspace dirs recorded elsewhere (see closed-parent.test.ts), whose parent is now closed.
      const elsewhere = path.join(parent, 'closed', 'wsp', 'workspaces');
      fs.mkdirSync(elsewhere, { recursive: true });
      fs.chmodSync(path.join(parent, 'closed'), 0o700);
      fs.writeFileSync(path.join(parent, 'data', 'local', 'workspaces-at'), `${elsewhere}\n`);
      const attempt = createLocalBackend({ dataDir: path.join(parent, 'data'), owner: 'x' });
      await expect(attempt).rejects.toMatchObject({ code: 'backend_unavailable' });
      await expect(attempt).rejects.toThrow(`chmod o+x ${path.join(parent, 'closed')}`);
    } finally {
      fs.rmSync(parent, { recursive: true, force: true });
    }
  });

  it('without bwrap: runs commands unsandboxed as the workspace uid and says so loudly', async () => {
    const handle = await makeLocalBackend({ bwrapPath: null });
    try {
      expect(handle.backend.warnings.join('\n')).toMatch(/NO SANDBOX/);
      const plan = fx.plan;
      const ref = await handle.backend.create(plan, { workspaceId: newId('ws'), labels: {} });
      await handle.backend.open(ref, plan).commands.start({
        commandId: 'c1',
        argv: ['sh', '-c', 'id -u; pwd; echo "$HOME"; echo "$WSP_X"'],
        cwd: plan.home,
        env: { WSP_X: "it's" },
        timeoutMs: 0,
        maxOutputBytes: 4096,
      });
      expect(await handle.backend.open(ref, fx.plan).commands.wait('c1', 30_000)).toMatchObject({
        state: 'exited',
        exitCode: 0,
      });
      const meta = JSON.parse(
        fs.readFileSync(path.join(handle.dataDir, 'local', 'workspaces', String(ref.workspaceId), 'meta.json'), 'utf8'),
      );
      const home = path.join(handle.dataDir, 'local', 'workspaces', String(ref.workspaceId), 'home');
      const out = (await handle.backend.open(ref, fx.plan).commands.read('c1', 'stdout', 0, 4096)).data.toString();
      expect(out).toBe(`${meta.hostUid}\n${home}\n${home}\nit's\n`);
    } finally {
      await handle.cleanup();
    }
  });
});
