import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { StepFailedError } from '../../shared/contract/errors.js';
import type { BackendRef, SnapshotRef } from '../../shared/contract/workspace.js';
import { DEFAULT_UID_REGISTRY } from '../../shared/backends/local/host-uids.js';
import { restoreChanged, takeSnapshot } from '../../shared/backends/local/tree/index.js';
import { wipeAs } from '../../shared/backends/local/tree/as-user.js';
import { newId, useBackendFixture, type BackendHandle } from '../support/backend-fixture.js';
import { rootUnavailable } from '../support/root.js';
import { makeLocalBackend, overlayHomes } from '../backends/local/handle.js';
import { describeTree, inodes } from '../backends/local/tree/helpers.js';

// The workspace owns every byte of its home and /tmp and may have a process alive that swaps a
// directory for a symlink to a host directory at any moment. Whatever the provider does to that
// content as root — restore, snapshot, the /tmp wipe, destroy — must never reach a sentinel
// directory OUTSIDE the workspace, and deep trees, long names, hard links to outside files, fifos
// and device nodes must neither break nor wedge it. The racers here are left alive ON PURPOSE while
// the content operation runs (the service would refuse commands and kill the workspace first): the
// operation itself must be safe, whatever the workspace does meanwhile.

const SECRET = `root-secret-${newId('s')}`;
const ROUNDS = 60;

describe.skipIf(rootUnavailable !== undefined)('hostile workspace content (local backend, as root)', () => {
  const fx = useBackendFixture(() => makeLocalBackend());
  const dataDir = (): string => (fx.handle as BackendHandle & { dataDir: string }).dataDir;
  const wsDir = (ref: BackendRef): string => path.join(dataDir(), 'local', 'workspaces', String(ref.workspaceId));
  const home = (ref: BackendRef): string => path.join(wsDir(ref), 'home');
  const hostUid = (ref: BackendRef): number =>
    JSON.parse(fs.readFileSync(path.join(wsDir(ref), 'meta.json'), 'utf8')).hostUid as number;
  const snapDir = (s: SnapshotRef): string => path.join(dataDir(), 'local', 'snapshots', String(s.name));
  const sh = async (ref: BackendRef, script: string, args: string[] = []): Promise<void> => {
    const r = await fx.sh(ref, script, args, { cwd: fx.plan.home });
    expect(r.status.exitCode, r.stderr).toBe(0);
  };

  /** A root-owned host directory the workspace must never change: traversable (0755), holding a secret. */
  const sentinels: string[] = [];
  const racers: ChildProcess[] = [];
  afterEach(() => {
    for (const r of racers.splice(0)) killGroup(r);
    for (const s of sentinels.splice(0)) fs.rmSync(s, { recursive: true, force: true });
  });
  const makeSentinel = (): { dir: string; before: () => void } => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-sentinel-'));
    sentinels.push(dir);
    fs.chmodSync(dir, 0o755);
    // Names a restore would treat as "extra" (removed) or "changed" (rewritten) if it followed the link.
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.writeFileSync(path.join(dir, 'file'), 'sentinel file\n');
    fs.writeFileSync(path.join(dir, 'junk-1'), 'sentinel junk\n');
    fs.writeFileSync(path.join(dir, 'sub', 'deep.txt'), 'sentinel deep\n');
    fs.writeFileSync(path.join(dir, 'secret'), `${SECRET}\n`, { mode: 0o600 });
    const tree = describeTree(dir);
    const ino = inodes(dir);
    return {
      dir,
      before: () => {
        expect(describeTree(dir)).toEqual(tree);
        expect(inodes(dir)).toEqual(ino);
      },
    };
  };

  /**
   * A process of the workspace's uid, running on the host in `cwd` (as a workspace command would, but
   * out of reach of the provider's kill-all), that keeps swapping the directory `victim` for a
   * symlink to `target` and back, writing junk inside it so that a restore has work right there.
   */
  const startRacer = (uid: number, cwd: string, target: string): ChildProcess => {
    // perl (always on Debian: perl-base) swaps with bare syscalls, thousands of times a second.
    const script = `
      my ($t) = @ARGV; my $i = 0;
      sub put { my ($p, $c) = @_; if (open(my $f, '>', $p)) { print $f $c; close $f } }
      while (1) {
        $i++;
        mkdir 'victim'; mkdir 'victim/sub';
        put('victim/junk-' . ($i % 3), $i); put('victim/file', "changed\n"); put('victim/sub/deep.txt', "changed\n");
        # the inner directory too: victim/sub becomes a link to the sentinel's sub for a moment
        if (rename('victim/sub', 'victim/sub.real')) { symlink("$t/sub", 'victim/sub'); select(undef, undef, undef, 0.0003); unlink('victim/sub'); rename('victim/sub.real', 'victim/sub') }
        next unless rename('victim', 'victim.real');
        symlink($t, 'victim');
        select(undef, undef, undef, 0.0005); # hold the link a moment, then the directory again
        unlink('victim');
        rename('victim.real', 'victim');
      }`;
    const racer = spawn(
      'setpriv',
      [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--', 'perl', '-e', script, target],
      {
        cwd,
        stdio: 'ignore',
        detached: true,
      },
    );
    racers.push(racer);
    return racer;
  };

  /** Let the racer get going (its first swaps) before the operation starts. */
  const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

  /** The outcome the operation may have with a live racer: done, or a clear step failure. Nothing else. */
  const doneOrStepFailed = async (op: Promise<unknown>): Promise<'done' | 'failed'> => {
    try {
      await op;
      return 'done';
    } catch (error) {
      expect(error).toBeInstanceOf(StepFailedError);
      expect(String((error as Error).message)).not.toContain(dataDir());
      return 'failed';
    }
  };

  const baselineWithVictim = async (): Promise<{ ref: BackendRef; baseline: SnapshotRef; fp: string }> => {
    const ref = await fx.create();
    await sh(
      ref,
      'mkdir -p victim/sub && echo original > victim/file && echo deep > victim/sub/deep.txt && echo top > top.txt',
    );
    const fp = await fx.backend.open(ref, fx.plan).files.fingerprintHome!();
    const baseline = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('base')));
    return { ref, baseline, fp };
  };

  it('restore with a live racer swapping a directory for a symlink to a host directory never touches it', async () => {
    const sentinel = makeSentinel();
    const { ref, baseline, fp } = await baselineWithVictim();
    const uid = hostUid(ref);
    startRacer(uid, home(ref), sentinel.dir);
    await pause(100);
    const outcomes: string[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      // What backend.restore runs after its kill-all — here with the racer alive.
      outcomes.push(await doneOrStepFailed(restoreChanged(home(ref), snapDir(baseline), { uid, gid: uid })));
      sentinel.before();
    }
    expect(outcomes).toContain('done');
    // With the racer gone, the normal reset brings the exact baseline back.
    await stopRacer(racers.pop()!);
    await fx.backend.open(ref, fx.plan).snapshots.restore(baseline);
    expect(await fx.backend.open(ref, fx.plan).files.fingerprintHome!()).toBe(fp);
    sentinel.before();
  }, 180_000);

  it('snapshots with a live racer: the sentinel is untouched and its content never lands in a snapshot', async () => {
    const sentinel = makeSentinel();
    const { ref } = await baselineWithVictim();
    startRacer(hostUid(ref), home(ref), sentinel.dir);
    await pause(100);
    for (let i = 0; i < 8; i++) {
      const snap = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('race')));
      expect(await fx.backend.snapshots.scan(snap, [SECRET, 'sentinel deep', 'sentinel junk'])).toEqual([]);
      sentinel.before();
    }
    // takeSnapshot itself, as the provider reads any home: same guarantee.
    for (let i = 0; i < 4; i++) {
      const dir = path.join(dataDir(), `plain-snap-${i}`);
      await takeSnapshot(home(ref), dir, { ownerUid: hostUid(ref) });
      expect(spawnSync('grep', ['-r', '-l', SECRET, dir]).status).toBe(1); // 1 = no match
      fs.rmSync(dir, { recursive: true, force: true });
      sentinel.before();
    }
  }, 180_000);

  it('the delete wipe and the /tmp wipe with a live racer never touch the sentinel', async () => {
    const sentinel = makeSentinel();
    const ref = await fx.create();
    const uid = hostUid(ref);
    const tmp = path.join(wsDir(ref), 'tmp');
    startRacer(uid, home(ref), sentinel.dir);
    startRacer(uid, tmp, sentinel.dir);
    await pause(100);
    for (let i = 0; i < ROUNDS; i++) {
      // What backend.destroy and backend.restore run on the home and /tmp after their kill-all.
      await doneOrStepFailed(wipeAs('delete', { uid, gid: uid }, home(ref)));
      await doneOrStepFailed(wipeAs('wipe /tmp', { uid, gid: uid }, tmp));
      sentinel.before();
    }
    // And the real delete (it kills first) finishes and leaves nothing.
    await fx.backend.destroy(ref);
    expect(fs.existsSync(wsDir(ref))).toBe(false);
    sentinel.before();
  }, 180_000);

  it('a PATH_MAX-deep chain and 255-byte names: reset succeeds, and delete of a 3,000-deep chain succeeds and releases the uid', async () => {
    const ref = await fx.create();
    await sh(ref, 'echo base > base.txt');
    const fp = await fx.backend.open(ref, fx.plan).files.fingerprintHome!();
    const baseline = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('base')));
    const long = 'L'.repeat(255);
    await sh(ref, `${chain(2200, 'd', long)} && mkdir "${long}" && echo x > "${long}/${long}"`);
    expect(await fx.backend.open(ref, fx.plan).files.fingerprintHome!()).not.toBe(fp);
    await fx.backend.open(ref, fx.plan).snapshots.restore(baseline);
    expect(await fx.backend.open(ref, fx.plan).files.fingerprintHome!()).toBe(fp);

    const uid = hostUid(ref);
    await sh(ref, chain(3000, 'deeper', long));
    await fx.backend.destroy(ref);
    expect(fs.existsSync(wsDir(ref))).toBe(false);
    expect(fs.existsSync(path.join(dataDir(), 'local', 'trash'))).toBe(false); // removed, not parked
    expect(claimOf(uid)).not.toBe(wsDir(ref));
  }, 180_000);

  it('a PATH_MAX-deep chain inside the baseline: snapshot works, reset works or fails clearly, and the workspace stays deletable', async () => {
    const ref = await fx.create();
    await sh(ref, chain(2200, 'd', 'f'));
    const fp = await fx.backend.open(ref, fx.plan).files.fingerprintHome!();
    const baseline = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('base')));
    expect(await fx.backend.snapshots.sizeBytes(baseline)).toBeGreaterThan(0);
    // No change: the reset only walks.
    await fx.backend.open(ref, fx.plan).snapshots.restore(baseline);
    // A change at the bottom: written back through a path longer than PATH_MAX — may fail, but clearly.
    await sh(
      ref,
      `perl -e 'for (1..2200) { chdir "d" or die "$!" } open(my $f, ">", "f") or die; print $f "changed\\n"; open(my $g, ">", "g") or die;'`,
    );
    const outcome = await doneOrStepFailed(fx.backend.open(ref, fx.plan).snapshots.restore(baseline));
    if (outcome === 'done') expect(await fx.backend.open(ref, fx.plan).files.fingerprintHome!()).toBe(fp);
    const uid = hostUid(ref);
    await fx.backend.destroy(ref);
    expect(fs.existsSync(wsDir(ref))).toBe(false);
    expect(claimOf(uid)).not.toBe(wsDir(ref));
  }, 180_000);

  it('content its uid cannot remove does not wedge a delete: parked root-only, the uid released, swept at the next start', async () => {
    const ref = await fx.create();
    const uid = hostUid(ref);
    await sh(ref, 'mkdir -p a/b && echo x > a/b/f');
    // A directory the uid cannot empty (root's, not the workspace's: it stands for any removal that fails).
    fs.mkdirSync(path.join(home(ref), 'root-made'));
    fs.writeFileSync(path.join(home(ref), 'root-made', 'x'), 'x');
    await fx.backend.destroy(ref);
    expect(fs.existsSync(wsDir(ref))).toBe(false);
    expect(claimOf(uid)).not.toBe(wsDir(ref));
    const trash = path.join(dataDir(), 'local', 'trash');
    expect(fs.statSync(trash).mode & 0o777).toBe(0o700);
    expect(fs.statSync(trash).uid).toBe(0);
    expect(fs.readdirSync(trash)).toHaveLength(1);
    await fx.handle.reopen!();
    expect(fs.readdirSync(trash)).toEqual([]);
  }, 120_000);

  it('a hard link in the home to a root-only file outside: the snapshot and the fingerprint never read it, a reset cuts the link and leaves the file', async () => {
    const sentinel = makeSentinel();
    const ref = await fx.create();
    const uid = hostUid(ref);
    const secret = path.join(sentinel.dir, 'secret');
    // The workspace uid itself cannot make this link where fs.protected_hardlinks is on (here: it is)…
    const protectedLinks = fs.readFileSync('/proc/sys/fs/protected_hardlinks', 'utf8').trim() === '1';
    const attempt = spawnSync('setpriv', [
      `--reuid=${uid}`,
      `--regid=${uid}`,
      '--clear-groups',
      '--',
      'ln',
      secret,
      path.join(home(ref), 'stolen'),
    ]);
    if (protectedLinks) expect(attempt.status).not.toBe(0);
    // …so make it as root: what a host without that protection would let the workspace do.
    if (!fs.existsSync(path.join(home(ref), 'stolen'))) fs.linkSync(secret, path.join(home(ref), 'stolen'));
    // The fingerprint (handed to the caller) does not depend on the secret's content.
    const fp = await fx.backend.open(ref, fx.plan).files.fingerprintHome!();
    fs.writeFileSync(secret, `${SECRET}-other\n`);
    expect(await fx.backend.open(ref, fx.plan).files.fingerprintHome!()).toBe(fp);
    fs.writeFileSync(secret, `${SECRET}\n`);
    const snap = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('base')));
    expect(await fx.backend.snapshots.scan(snap, [SECRET])).toEqual([]);
    expect(fs.existsSync(path.join(snapDir(snap), 'home', 'stolen'))).toBe(false);
    await fx.backend.open(ref, fx.plan).snapshots.restore(snap);
    expect(fs.existsSync(path.join(home(ref), 'stolen'))).toBe(false);
    expect(fs.readFileSync(secret, 'utf8')).toBe(`${SECRET}\n`);
    expect(fs.statSync(secret).nlink).toBe(1);
    sentinel.before();
  }, 120_000);

  it('a hard link to an outside file the workspace uid owns: restore replaces the name, never writes through the link', async () => {
    const sentinel = makeSentinel();
    const ref = await fx.create();
    const uid = hostUid(ref);
    const outside = path.join(sentinel.dir, 'owned-by-workspace');
    fs.writeFileSync(outside, 'outside v1\n');
    fs.chownSync(outside, uid, uid);
    const ln = spawnSync('setpriv', [
      `--reuid=${uid}`,
      `--regid=${uid}`,
      '--clear-groups',
      '--',
      'ln',
      outside,
      path.join(home(ref), 'linked'),
    ]);
    expect(ln.status, ln.stderr.toString()).toBe(0); // its own file: allowed
    const snap = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('base')));
    expect(fs.readFileSync(path.join(snapDir(snap), 'home', 'linked'), 'utf8')).toBe('outside v1\n'); // its own data
    await sh(ref, 'echo "changed by the workspace" > linked'); // writes through its own link: its own business
    await fx.backend.open(ref, fx.plan).snapshots.restore(snap);
    expect(fs.readFileSync(path.join(home(ref), 'linked'), 'utf8')).toBe('outside v1\n');
    expect(fs.readFileSync(outside, 'utf8')).toBe('changed by the workspace\n'); // the restore did not write it
    expect(fs.statSync(outside).ino).not.toBe(fs.statSync(path.join(home(ref), 'linked')).ino);
  }, 120_000);

  it('fifos, sockets and device nodes in the home: snapshot, scan, size, fingerprint and restore neither hang nor fail', async () => {
    const ref = await fx.create();
    const uid = hostUid(ref);
    await sh(ref, 'mkdir d && mkfifo d/pipe && echo data > d/file');
    // Device nodes only root can make (a workspace cannot): made here the way a compromised setup might leave them.
    for (const [name, type, major, minor] of [
      ['null', 'c', '1', '3'],
      ['zero', 'c', '1', '5'],
      ['loop', 'b', '7', '0'],
    ] as const) {
      const p = path.join(home(ref), 'd', name);
      expect(spawnSync('mknod', [p, type, major, minor]).status).toBe(0);
      fs.chownSync(p, uid, uid);
    }
    // A unix socket the workspace bound and left behind (its server gone).
    const sock = spawnSync('setpriv', [
      `--reuid=${uid}`,
      `--regid=${uid}`,
      '--clear-groups',
      '--',
      'perl',
      '-MSocket',
      '-e',
      'socket(my $s, PF_UNIX, SOCK_STREAM, 0) or die; bind($s, pack_sockaddr_un($ARGV[0])) or die $!',
      path.join(home(ref), 'd', 'sock'),
    ]);
    expect(sock.status, sock.stderr.toString()).toBe(0);
    expect(fs.lstatSync(path.join(home(ref), 'd', 'sock')).isSocket()).toBe(true);

    const fp = await fx.backend.open(ref, fx.plan).files.fingerprintHome!();
    expect(fp).toMatch(/^[0-9a-f]{64}$/);
    const snap = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('base')));
    expect(await fx.backend.snapshots.scan(snap, ['data'])).toEqual(['home/d/file: needle #0']);
    expect(await fx.backend.snapshots.sizeBytes(snap)).toBeGreaterThan(0);
    const inSnap = (n: string): string => path.join(snapDir(snap), 'home', 'd', n);
    expect(fs.lstatSync(inSnap('pipe')).isFIFO()).toBe(true);
    for (const n of ['null', 'zero', 'loop', 'sock']) expect(fs.existsSync(inSnap(n)), n).toBe(false);

    await sh(ref, 'rm d/pipe && echo junk > d/junk');
    await fx.backend.open(ref, fx.plan).snapshots.restore(snap);
    expect(fs.lstatSync(path.join(home(ref), 'd', 'pipe')).isFIFO()).toBe(true);
    expect(fs.existsSync(path.join(home(ref), 'd', 'junk'))).toBe(false);
    if (overlayHomes(fx.backend)) {
      // Copy-on-write homes: the reset mounts the snapshot itself, which never held them: gone.
      for (const n of ['null', 'zero', 'loop', 'sock'])
        expect(fs.existsSync(path.join(home(ref), 'd', n)), n).toBe(false);
      await fx.backend.destroy(ref);
      expect(claimOf(uid)).not.toBe(wsDir(ref));
      return;
    }
    // Recorded but not copied: untouched, they stay, and the home is back to its fingerprint.
    for (const n of ['null', 'zero', 'loop', 'sock']) expect(fs.existsSync(path.join(home(ref), 'd', n)), n).toBe(true);
    expect(await fx.backend.open(ref, fx.plan).files.fingerprintHome!()).toBe(fp);
    // Removed by the workspace: a reset cannot bring them back (no uid may create them) — and says so
    // through the fingerprint, without failing.
    await sh(ref, 'rm d/null d/sock');
    await fx.backend.open(ref, fx.plan).snapshots.restore(snap);
    expect(fs.existsSync(path.join(home(ref), 'd', 'null'))).toBe(false);
    expect(await fx.backend.open(ref, fx.plan).files.fingerprintHome!()).not.toBe(fp);
  }, 120_000);
});

/**
 * Shell text that makes, from the cwd, a chain of `n` nested directories `name` with a file `leaf`
 * at the bottom (perl: relative mkdir/chdir, constant time per level — a shell's cd recomputes the
 * whole path and fails past PATH_MAX).
 */
function chain(n: number, name: string, leaf: string): string {
  return `perl -e 'my ($n, $d, $leaf) = @ARGV; for (1..$n) { mkdir $d or die "$!"; chdir $d or die "$!" } open(my $f, ">", $leaf) or die "$!"; print $f "bottom\\n"' ${n} '${name}' '${leaf}'`;
}

/** The workspace dir a host uid is claimed for, or undefined. */
function claimOf(uid: number): string | undefined {
  try {
    return (
      JSON.parse(fs.readFileSync(path.join(DEFAULT_UID_REGISTRY, String(uid)), 'utf8')) as { workspaceDir: string }
    ).workspaceDir;
  } catch {
    return undefined;
  }
}

async function stopRacer(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  killGroup(child);
  if (child.exitCode === null && child.signalCode === null) await exited;
}

function killGroup(child: ChildProcess): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
  } catch {
    // gone already
  }
}
