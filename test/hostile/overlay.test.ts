import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { BackendRef, SnapshotRef } from '../../shared/contract/workspace.js';
import { DEFAULT_UID_REGISTRY } from '../../shared/backends/local/host-uids.js';
import { LocalLayout } from '../../shared/backends/local/layout.js';
import { OverlayHomes } from '../../shared/backends/local/overlay/index.js';
import { hostFingerprint } from '../../shared/backends/local/tree/index.js';
import { silentLogger } from '../../shared/log.js';
import { newId, useBackendFixture, type BackendHandle } from '../support/backend-fixture.js';
import { rootUnavailable } from '../support/root.js';
import { waitFor } from '../support/wait.js';
import { makeLocalBackend, overlayHomes } from '../backends/local/handle.js';
import { describeTree, inodes } from '../backends/local/tree/helpers.js';

// Copy-on-write homes (issue 12): the snapshot is a read-only, idmapped lower layer and the
// workspace writes an upper dir of its own. The workspace controls every byte of the merged view —
// whiteouts (deletes), opaque dirs (rm -rf + mkdir), symlinks to host paths in place of lower files —
// and none of it may survive a reset, reach a host directory, leave a mount behind or keep its uid.

const mounts = (): string => fs.readFileSync('/proc/self/mountinfo', 'utf8');

describe.skipIf(rootUnavailable !== undefined)('hostile workspace vs copy-on-write homes (local, as root)', () => {
  const fx = useBackendFixture(() => makeLocalBackend());
  const dataDir = (): string => (fx.handle as BackendHandle & { dataDir: string }).dataDir;
  const wsDir = (ref: BackendRef): string => path.join(dataDir(), 'local', 'workspaces', String(ref.workspaceId));
  const home = (ref: BackendRef): string => path.join(wsDir(ref), 'home');
  const hostUid = (ref: BackendRef): number =>
    JSON.parse(fs.readFileSync(path.join(wsDir(ref), 'meta.json'), 'utf8')).hostUid as number;
  const snapDir = (s: SnapshotRef): string => path.join(dataDir(), 'local', 'snapshots', String(s.name));
  const sh = async (ref: BackendRef, script: string): Promise<string> => {
    const r = await fx.sh(ref, script, [], { cwd: fx.plan.home });
    expect(r.status.exitCode, r.stderr).toBe(0);
    return r.stdout;
  };
  const fingerprint = (ref: BackendRef): Promise<string> => fx.backend.open(ref, fx.plan).files.fingerprintHome!();

  const sentinels: string[] = [];
  const racers: ChildProcess[] = [];
  afterEach(() => {
    for (const r of racers.splice(0)) killGroup(r);
    for (const s of sentinels.splice(0)) fs.rmSync(s, { recursive: true, force: true });
  });
  const makeSentinel = (): { dir: string; check: () => void } => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-sentinel-'));
    sentinels.push(dir);
    fs.chmodSync(dir, 0o755);
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.writeFileSync(path.join(dir, 'file'), 'sentinel\n');
    fs.writeFileSync(path.join(dir, 'sub', 'deep.txt'), 'sentinel deep\n');
    const tree = describeTree(dir);
    const ino = inodes(dir);
    return {
      dir,
      check: () => {
        expect(describeTree(dir)).toEqual(tree);
        expect(inodes(dir)).toEqual(ino);
      },
    };
  };

  /** A workspace with content, its cache snapshot, and a workspace created from it (overlay home). */
  async function warm(): Promise<{ cache: SnapshotRef; ref: BackendRef }> {
    const source = await fx.create();
    await sh(
      source,
      'mkdir -p app/src app/keep && echo a > app/src/a.txt && echo k > app/keep/k.txt && ln -s src/a.txt app/link && chmod 700 app/keep',
    );
    const cache = fx.trackSnapshot(await fx.backend.open(source, fx.plan).snapshots.take('cache', newId('cache')));
    // (The source stays: its uid is not handed to the new workspace.)
    const ref = await fx.create({ from: cache });
    return { cache, ref };
  }

  it('is what this host gives (root, overlayfs, idmapped mounts): otherwise the copy fallback says so', () => {
    // This machine has all three; a host without them still passes the other suites on copies.
    expect(overlayHomes(fx.backend), fx.backend.warnings.join('; ')).toBe(true);
  });

  it('a home created from a snapshot is an overlay over it: the workspace owns what it sees, the snapshot never changes', async () => {
    const { cache, ref } = await warm();
    expect(mounts()).toContain(` ${home(ref)} `);
    const snapBefore = describeTree(path.join(snapDir(cache), 'home'));
    const owners = await sh(ref, 'stat -c %u:%g app/src/a.txt app/keep app/keep/k.txt . | sort -u');
    expect(owners.trim()).toBe(`${fx.plan.user.uid}:${fx.plan.user.gid}`);
    await sh(ref, 'echo more >> app/src/a.txt && rm app/keep/k.txt && chmod 755 app/keep && rm app/link && touch new');
    expect(describeTree(path.join(snapDir(cache), 'home'))).toEqual(snapBefore);
    // The snapshot's files stay the original owner's on disk (root-only dir): nothing was chowned.
    expect(fs.statSync(path.join(snapDir(cache), 'home', 'app', 'src', 'a.txt')).uid).not.toBe(hostUid(ref));
    // Its mount table names no host path for the home (layers given relative to the root-only ovl/).
    const homeLine = (await sh(ref, 'cat /proc/self/mountinfo'))
      .split('\n')
      .find((l) => l.includes(` ${fx.plan.home} `));
    expect(homeLine).toMatch(/ overlay overlay .*lowerdir=lower,upperdir=upper,workdir=work/);
    expect(homeLine).not.toContain(dataDir());
    // The upper is out of the workspace uid's reach except through the mount.
    expect(fs.statSync(path.join(wsDir(ref), 'ovl')).mode & 0o777).toBe(0o700);
  });

  it('whiteouts, opaque dirs, junk and a lower file replaced by a symlink to a host dir do not survive a reset nor reach the host', async () => {
    const { ref } = await warm();
    const sentinel = makeSentinel();
    const f0 = await fingerprint(ref);
    const LOOK = 'ls -A; cat app/keep/k.txt app/src/a.txt; readlink app/link';
    const look0 = await sh(ref, LOOK);
    expect(look0).toContain('src/a.txt');
    const baseline = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('base')));
    await sh(
      ref,
      [
        'rm -rf app/src && mkdir app/src && echo fake > app/src/b.txt', // opaque dir over the lower one
        'rm app/keep/k.txt', // a whiteout
        `rm -rf app/keep && ln -s ${sentinel.dir} app/keep`, // a lower dir replaced by a link to the host
        `ln -sf ${sentinel.dir}/file app/link`, // a lower symlink re-pointed
        'for i in $(seq 1 200); do echo junk > junk-$i; done && mkdir -p deep/a/b/c && echo x > deep/a/b/c/y',
        `ln -s ${sentinel.dir} host-link && ln -s ${sentinel.dir}/sub app/sub-link`,
      ].join(' && '),
    );
    expect(await fingerprint(ref)).not.toBe(f0);
    await fx.backend.open(ref, fx.plan).snapshots.restore(baseline);
    expect(await fingerprint(ref)).toBe(f0);
    expect(await sh(ref, LOOK)).toBe(look0);
    sentinel.check();
    const uid = hostUid(ref);
    await fx.backend.destroy(ref);
    sentinel.check();
    expect(fs.existsSync(wsDir(ref))).toBe(false);
    expect(mounts()).not.toContain(wsDir(ref));
    expect(claimOf(uid)).not.toBe(wsDir(ref));
  });

  it('dropping an upper under a live racer (symlink swaps to a host dir, lazy unmount) never touches the host', async () => {
    const { ref } = await warm();
    const sentinel = makeSentinel();
    const uid = hostUid(ref);
    // A host process of the workspace's uid in the merged home: out of reach of the kill-all, it
    // keeps the mount busy (lazy unmount) and keeps writing through it while the upper is dropped.
    const racer = spawn(
      'setpriv',
      [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--', 'perl', '-e', RACER, sentinel.dir],
      { cwd: home(ref), stdio: 'ignore', detached: true },
    );
    racers.push(racer);
    await new Promise((r) => setTimeout(r, 150));
    const homes = new OverlayHomes(new LocalLayout(dataDir()), silentLogger);
    await homes.unmountAndDrop({ workspaceId: String(ref.workspaceId), hostUid: uid }, { uid, gid: uid });
    expect(mounts()).not.toContain(wsDir(ref));
    killGroup(racer);
    sentinel.check();
    // What the racer still wrote lands in the root-only trash at worst, never outside.
    expect(fs.existsSync(path.join(wsDir(ref), 'ovl'))).toBe(false);
  });

  it('a provider restart finds the mount; a home found unmounted (reboot) is mounted again with its writes', async () => {
    const { ref } = await warm();
    await sh(ref, 'echo kept > app/written.txt && rm app/src/a.txt');
    const f1 = await fingerprint(ref);
    const second = await fx.handle.reopen!();
    const again = async (): Promise<string> => {
      const r = await fx.run(ref, ['sh', '-c', 'cat app/written.txt; ls app/src | wc -l'], { cwd: fx.plan.home });
      expect(r.status.exitCode, r.stderr).toBe(0);
      return r.stdout;
    };
    // The restarted instance runs commands in the mounted home as it is.
    const cid = newId('cmd');
    await second.open(ref, fx.plan).commands.start({
      commandId: cid,
      argv: ['cat', 'app/written.txt'],
      cwd: fx.plan.home,
      env: {},
      timeoutMs: 30_000,
      maxOutputBytes: 4096,
    });
    expect((await second.open(ref, fx.plan).commands.wait(cid, 30_000)).exitCode).toBe(0);
    expect((await second.open(ref, fx.plan).commands.read(cid, 'stdout', 0, 4096)).data.toString()).toBe('kept\n');
    // A reboot unmounts everything: the next command (a fresh instance) mounts it again over the same upper.
    for (const m of [home(ref), path.join(wsDir(ref), 'ovl', 'lower')]) expect(spawnOk('umount', ['-l', m])).toBe(true);
    const third = await fx.handle.reopen!();
    const cid2 = newId('cmd');
    await third.open(ref, fx.plan).commands.start({
      commandId: cid2,
      argv: ['sh', '-c', 'cat app/written.txt; ls app/src | wc -l'],
      cwd: fx.plan.home,
      env: {},
      timeoutMs: 30_000,
      maxOutputBytes: 4096,
    });
    expect((await third.open(ref, fx.plan).commands.wait(cid2, 30_000)).exitCode).toBe(0);
    expect((await third.open(ref, fx.plan).commands.read(cid2, 'stdout', 0, 4096)).data.toString()).toBe('kept\n0\n');
    expect(await again()).toBe('kept\n0\n');
    expect(await fingerprint(ref)).toBe(f1);
    const uid = hostUid(ref);
    await third.destroy(ref);
    expect(mounts()).not.toContain(wsDir(ref));
    expect(claimOf(uid)).not.toBe(wsDir(ref));
  });

  it('delete unmounts a busy home (a process inside) and frees the uid; a snapshot deleted while it is a lower layer is kept until then', async () => {
    const { cache, ref } = await warm();
    const uid = hostUid(ref);
    await fx.backend.snapshots.delete(cache);
    expect((await fx.backend.snapshots.list()).map((s) => s.name)).not.toContain(cache.name);
    // Still whole under the running workspace.
    expect(await sh(ref, 'cat app/src/a.txt')).toBe('a\n');
    // A background process keeps its cwd in the home while the workspace is deleted.
    await fx.start(ref, ['sh', '-c', 'sleep 600'], { cwd: fx.plan.home });
    await fx.backend.destroy(ref);
    expect(fs.existsSync(wsDir(ref))).toBe(false);
    expect(mounts()).not.toContain(wsDir(ref));
    expect(claimOf(uid)).not.toBe(wsDir(ref));
    // The retired snapshot went with its last user.
    expect(fs.readdirSync(path.join(dataDir(), 'local', 'snapshots')).filter((n) => n.startsWith('.retired-'))).toEqual(
      [],
    );
  });

  it('a snapshot that does not say it has one owner (taken before overlay homes) is copied, never mounted', async () => {
    const { cache, ref } = await warm();
    const infoFile = path.join(snapDir(cache), 'info.json');
    const info = JSON.parse(fs.readFileSync(infoFile, 'utf8'));
    expect(info.owner).toBe(fs.statSync(path.join(snapDir(cache), 'home')).uid);
    const baseline = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('base')));
    expect(JSON.parse(fs.readFileSync(path.join(snapDir(baseline), 'info.json'), 'utf8')).owner).toBe(info.owner);
    delete info.owner;
    fs.writeFileSync(infoFile, JSON.stringify(info));
    const old = await fx.create({ from: cache });
    expect(mounts()).not.toContain(` ${home(old)} `);
    expect(await sh(old, 'cat app/src/a.txt; stat -c %u app/src/a.txt')).toBe(`a\n${fx.plan.user.uid}\n`);
  });

  it('an unwritten overlay home fingerprints as its snapshot (walked once, kept root-only beside it); any write — a same-bytes rewrite, a chmod, a delete — makes it walk the home', async () => {
    const { cache, ref } = await warm();
    const walk = () => hostFingerprint(home(ref), { ownerUid: hostUid(ref) });
    const kept = path.join(snapDir(cache), 'fingerprint.json');
    // Walked once, in the background right after the cache snapshot was taken, and kept.
    await waitFor('the cache snapshot digest', async () => (fs.existsSync(kept) ? true : undefined), 30_000);
    const clean = await fingerprint(ref);
    expect(clean).toBe(await walk());
    expect(JSON.parse(fs.readFileSync(kept, 'utf8'))).toEqual({ snapshotId: expect.any(String), digest: clean });
    expect(fs.statSync(kept)).toMatchObject({ uid: 0, mode: expect.any(Number) });
    expect(fs.statSync(kept).mode & 0o777).toBe(0o600);
    expect(fs.statSync(snapDir(cache)).mode & 0o077).toBe(0); // no workspace reaches it
    // Create-then-delete of a new file leaves nothing written: still the snapshot.
    await sh(ref, 'echo t > tmpfile && rm tmpfile');
    expect(await fingerprint(ref)).toBe(clean);
    // The same bytes written back: copied up, walked, and still the same digest.
    await sh(ref, 'cat app/src/a.txt > t && cat t > app/src/a.txt && rm t');
    expect(await fingerprint(ref)).toBe(clean);
    await sh(ref, 'chmod 600 app/src/a.txt');
    const chmodded = await fingerprint(ref);
    expect(chmodded).not.toBe(clean);
    expect(chmodded).toBe(await walk());
    await sh(ref, 'rm app/keep/k.txt');
    const deleted = await fingerprint(ref);
    expect(deleted).toBe(await walk());
    // Reset onto a baseline of that state: unwritten again, so the baseline's kept digest answers.
    const baseline = await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('base'));
    fx.trackSnapshot(baseline);
    await sh(ref, 'echo more > more.txt');
    await fx.backend.open(ref, fx.plan).snapshots.restore(baseline);
    expect(await fingerprint(ref)).toBe(deleted);
    expect(await walk()).toBe(deleted);
  });

  it('the baseline of an unwritten home is an alias of the snapshot under it: O(1), the snapshot kept while named, removed with the last alias and mount', async () => {
    const { cache, ref } = await warm();
    const f0 = await fingerprint(ref);
    const baseline = await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('base'));
    const info = JSON.parse(fs.readFileSync(path.join(snapDir(baseline), 'info.json'), 'utf8'));
    expect(info.alias).toEqual({ name: cache.name, id: expect.any(String) });
    expect(fs.existsSync(path.join(snapDir(baseline), 'home'))).toBe(false);
    // The cache entry is evicted: its snapshot is retired, not removed (mounted, and named by the alias).
    await fx.backend.snapshots.delete(cache);
    const retired = () =>
      fs.readdirSync(path.join(dataDir(), 'local', 'snapshots')).filter((n) => n.startsWith('.retired-'));
    expect(retired()).toHaveLength(1);
    // A reset to the alias mounts the retired snapshot again; the home is exactly the baseline.
    await sh(ref, 'rm -rf app && echo junk > junk');
    await fx.backend.open(ref, fx.plan).snapshots.restore(baseline);
    expect(await fingerprint(ref)).toBe(f0);
    expect(await sh(ref, 'cat app/src/a.txt')).toBe('a\n');
    // A new workspace from the alias is the same content.
    const twin = await fx.create({ from: baseline });
    expect(await fingerprint(twin)).toBe(f0);
    await fx.backend.destroy(twin);
    // The alias goes, then the last workspace over it: the retired snapshot goes with them.
    await fx.backend.snapshots.delete(baseline);
    expect(retired()).toHaveLength(1); // still mounted under `ref`
    await fx.backend.destroy(ref);
    expect(retired()).toHaveLength(0);
  });

  it('disk usage of an overlay home counts what the workspace wrote, not the snapshot under it', async () => {
    const { ref } = await warm();
    const before = await fx.backend.open(ref, fx.plan).files.usageBytes!();
    await sh(ref, 'head -c 3000000 /dev/zero > big');
    const after = await fx.backend.open(ref, fx.plan).files.usageBytes!();
    expect(after - before).toBeGreaterThanOrEqual(3_000_000);
    expect(before).toBeLessThan(1_000_000);
  });
});

/** Keeps swapping `victim` (in the merged home) for a symlink to the sentinel, writing into it. */
const RACER = `
  my ($t) = @ARGV; my $i = 0;
  sub put { my ($p, $c) = @_; if (open(my $f, '>', $p)) { print $f $c; close $f } }
  while (1) {
    $i++;
    mkdir 'victim'; put('victim/junk-' . ($i % 3), $i); put('victim/file', "changed\\n");
    next unless rename('victim', 'victim.real');
    symlink($t, 'victim'); select(undef, undef, undef, 0.0005);
    unlink('victim'); rename('victim.real', 'victim');
  }`;

function spawnOk(cmd: string, args: string[]): boolean {
  return spawnSync(cmd, args).status === 0;
}

function claimOf(uid: number): string | undefined {
  try {
    return (
      JSON.parse(fs.readFileSync(path.join(DEFAULT_UID_REGISTRY, String(uid)), 'utf8')) as { workspaceDir: string }
    ).workspaceDir;
  } catch {
    return undefined;
  }
}

function killGroup(child: ChildProcess): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
  } catch {
    // gone already
  }
}
