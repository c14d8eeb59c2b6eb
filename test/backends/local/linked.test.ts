import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BackendRef, SnapshotRef } from '../../../shared/contract/workspace.js';
import { hostFingerprint } from '../../../shared/backends/local/tree/index.js';
import { fingerprintArgv, parseFingerprint } from '../../../shared/workspace/fingerprint.js';
import { newId, useBackendFixture, type BackendHandle } from '../../support/backend-fixture.js';
import { makeLocalBackend, overlayHomes } from './handle.js';

// Snapshots of a workspace created from a snapshot hard-link, from that snapshot, every file that
// is unchanged since the create (tree/snapshot-linked.ts); a workspace created empty links from its
// first snapshot. These tests look at the inodes on disk.

describe('local backend: snapshots link what is unchanged since a warm create', () => {
  const fx = useBackendFixture(() => makeLocalBackend());
  const dataDir = (): string => (fx.handle as BackendHandle & { dataDir: string }).dataDir;
  const wsDir = (ref: BackendRef): string => path.join(dataDir(), 'local', 'workspaces', String(ref.workspaceId));
  const inSnap = (snap: SnapshotRef, rel: string): string =>
    path.join(dataDir(), 'local', 'snapshots', String(snap.name), 'home', rel);
  const inHome = (ref: BackendRef, rel: string): string => path.join(wsDir(ref), 'home', rel);
  const ino = (p: string): number => fs.lstatSync(p).ino;
  const hostUid = (ref: BackendRef): number =>
    JSON.parse(fs.readFileSync(path.join(wsDir(ref), 'meta.json'), 'utf8')).hostUid;

  const POPULATE = [
    'mkdir -p app/src .cache/deps && echo a > app/src/a.txt && echo b > app/src/b.txt && echo keep > app/keep.txt',
    "printf '#!/bin/sh\\n' > app/run.sh && chmod 755 app/run.sh && ln -s src/a.txt app/link && head -c 300000 /dev/urandom > .cache/deps/blob",
  ].join(' && ');

  async function inside(ref: BackendRef): Promise<string> {
    const r = await fx.run(ref, fingerprintArgv(fx.plan.home));
    expect(r.status, r.stderr).toMatchObject({ state: 'exited', exitCode: 0 });
    return parseFingerprint(r.stdout).digest;
  }

  /** A "cold" workspace, its cache snapshot, and a workspace created from it. */
  async function warm(): Promise<{ source: BackendRef; cache: SnapshotRef; ref: BackendRef }> {
    const source = await fx.create();
    expect((await fx.sh(source, POPULATE, [], { cwd: fx.plan.home })).status.exitCode).toBe(0);
    const cache = fx.trackSnapshot(await fx.backend.open(source, fx.plan).snapshots.take('cache', newId('cache')));
    const ref = await fx.create({ from: cache });
    return { source, cache, ref };
  }

  it('links untouched files from the cache snapshot into the baseline; changed files are new inodes; restore is exact', async () => {
    const { source, cache, ref } = await warm();
    // A warm start's fetch + checkout changes a few files.
    expect(
      (await fx.sh(ref, 'echo checked-out > app/src/b.txt && echo fetched > app/new.txt', [], { cwd: fx.plan.home }))
        .status.exitCode,
    ).toBe(0);
    const f0 = await inside(ref);
    const baseline = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('base')));

    for (const rel of ['app/src/a.txt', 'app/keep.txt', 'app/run.sh', '.cache/deps/blob']) {
      expect(ino(inSnap(baseline, rel)), rel).toBe(ino(inSnap(cache, rel)));
    }
    expect(ino(inSnap(baseline, 'app/src/b.txt'))).not.toBe(ino(inSnap(cache, 'app/src/b.txt')));
    expect(fs.readFileSync(inSnap(baseline, 'app/src/b.txt'), 'utf8')).toBe('checked-out\n');
    expect(fs.readFileSync(inSnap(baseline, 'app/new.txt'), 'utf8')).toBe('fetched\n');
    // The linked file is still owned as the cache's copy was (the source workspace's uid).
    expect(fs.lstatSync(inSnap(baseline, 'app/src/a.txt')).uid).toBe(hostUid(source));
    expect(hostUid(source)).not.toBe(hostUid(ref));

    // Agent work, then reset.
    const work =
      'echo edit >> app/src/a.txt && chmod 600 app/run.sh && rm -rf app/src && echo x > junk && echo k2 >> app/keep.txt';
    expect((await fx.sh(ref, work, [], { cwd: fx.plan.home })).status.exitCode).toBe(0);
    await fx.backend.open(ref, fx.plan).snapshots.restore(baseline);
    expect(await inside(ref)).toBe(f0);
    expect(await fx.backend.open(ref, fx.plan).files.fingerprintHome!()).toBe(f0);
    expect(await hostFingerprint(path.join(wsDir(ref), 'home'))).toBe(f0);

    // Restored files are copies owned by this workspace — never the snapshot's inodes, never the origin's owner.
    // (Overlay homes: an untouched file is the snapshot's own inode, read-only below the mount and
    // shown as this workspace's through the idmapped lower layer.)
    for (const rel of ['app/src/a.txt', 'app/keep.txt', 'app/run.sh']) {
      if (!overlayHomes(fx.backend)) expect(ino(inHome(ref, rel)), rel).not.toBe(ino(inSnap(baseline, rel)));
      expect(fs.lstatSync(inHome(ref, rel)).uid, rel).toBe(hostUid(ref));
    }
    // Writing into restored files in place changes neither snapshot.
    const snapBytes = fs.readFileSync(inSnap(baseline, 'app/src/a.txt'));
    expect(
      (await fx.sh(ref, 'echo more >> app/src/a.txt && echo more >> app/keep.txt', [], { cwd: fx.plan.home })).status
        .exitCode,
    ).toBe(0);
    expect(fs.readFileSync(inSnap(baseline, 'app/src/a.txt'))).toEqual(snapBytes);
    expect(fs.readFileSync(inSnap(cache, 'app/keep.txt'), 'utf8')).toBe('keep\n');
    expect(fs.readFileSync(inSnap(baseline, 'app/keep.txt'), 'utf8')).toBe('keep\n');
  });

  it('deleting the cache snapshot leaves the linked baseline whole, and a reset still restores it exactly', async () => {
    const { cache, ref } = await warm();
    // Written to (an unwritten overlay home's baseline is an alias of its lower: overlay.test.ts).
    expect((await fx.sh(ref, 'echo b > app/b.txt', [], { cwd: fx.plan.home })).status.exitCode).toBe(0);
    const f0 = await inside(ref);
    const baseline = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('base')));
    const blob = fs.readFileSync(inSnap(baseline, '.cache/deps/blob'));
    expect(fs.lstatSync(inSnap(baseline, '.cache/deps/blob')).nlink).toBe(2);
    await fx.backend.snapshots.delete(cache);
    // An overlay home still mounted over the cache keeps it (retired, unlisted) until it is unmounted.
    if (overlayHomes(fx.backend))
      expect((await fx.backend.snapshots.list()).map((s) => s.name)).not.toContain(cache.name);
    else expect(fs.lstatSync(inSnap(baseline, '.cache/deps/blob')).nlink).toBe(1);
    expect(fs.readFileSync(inSnap(baseline, '.cache/deps/blob'))).toEqual(blob);
    expect(
      (await fx.sh(ref, 'rm -rf .cache app/keep.txt && echo y >> app/src/a.txt', [], { cwd: fx.plan.home })).status
        .exitCode,
    ).toBe(0);
    await fx.backend.open(ref, fx.plan).snapshots.restore(baseline);
    expect(await inside(ref)).toBe(f0);
  });

  it('copies everything when the origin snapshot was evicted before the snapshot', async () => {
    const { cache, ref } = await warm();
    const f0 = await inside(ref);
    await fx.backend.snapshots.delete(cache);
    const baseline = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('base')));
    expect(fs.lstatSync(inSnap(baseline, 'app/keep.txt')).nlink).toBe(1);
    expect(fs.readFileSync(inSnap(baseline, 'app/keep.txt'), 'utf8')).toBe('keep\n');
    expect((await fx.sh(ref, 'echo z > app/keep.txt')).status.exitCode).toBe(0);
    await fx.backend.open(ref, fx.plan).snapshots.restore(baseline);
    expect(await inside(ref)).toBe(f0);
  });

  it("never links from another snapshot taken later under the origin's name", async () => {
    const { cache, ref } = await warm();
    // The cache entry is rebuilt under the same name from a workspace with other bytes in the same
    // names, sizes, modes and mtimes: only the snapshot's identity can tell the two apart.
    const other = await fx.create();
    const sameNamesOtherBytes = POPULATE.replace('echo keep >', 'echo KEEP >');
    expect((await fx.sh(other, sameNamesOtherBytes, [], { cwd: fx.plan.home })).status.exitCode).toBe(0);
    for (const rel of ['app/src/a.txt', 'app/src/b.txt', 'app/keep.txt', 'app/run.sh', '.cache/deps/blob']) {
      const ns = fs.lstatSync(inHome(ref, rel), { bigint: true }).mtimeNs;
      execFileSync('touch', [
        '-d',
        `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`,
        '--',
        inHome(other, rel),
      ]);
    }
    await fx.backend.open(other, fx.plan).snapshots.take('cache', String(cache.name));
    expect(fs.readFileSync(inSnap(cache, 'app/keep.txt'), 'utf8')).toBe('KEEP\n');
    // The same mtime as far as a snapshot keeps one: the copier sets times through futimes (seconds as a
    // double, ~240 ns of rounding), and the linking compares within 2 µs for that reason.
    const drift =
      fs.lstatSync(inSnap(cache, 'app/keep.txt'), { bigint: true }).mtimeNs -
      fs.lstatSync(inHome(ref, 'app/keep.txt'), { bigint: true }).mtimeNs;
    expect(drift >= -2_000n && drift <= 2_000n, `mtime drift ${drift} ns`).toBe(true);

    const baseline = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('base')));
    expect(fs.readFileSync(inSnap(baseline, 'app/keep.txt'), 'utf8')).toBe('keep\n');
    for (const rel of ['app/keep.txt', 'app/src/a.txt']) {
      expect(ino(inSnap(baseline, rel)), rel).not.toBe(ino(inSnap(cache, rel)));
      expect(fs.lstatSync(inSnap(baseline, rel)).nlink, rel).toBe(1);
    }
  });

  it('records the origin root-only, at a create from a snapshot', async () => {
    const { cache, ref } = await warm();
    const file = path.join(wsDir(ref), 'origin.json');
    const st = fs.statSync(file);
    expect({ uid: st.uid, mode: st.mode & 0o777 }).toEqual({ uid: 0, mode: 0o600 });
    const origin = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(origin.snapshot).toBe(cache.name);
    const info = JSON.parse(
      fs.readFileSync(path.join(dataDir(), 'local', 'snapshots', String(cache.name), 'info.json'), 'utf8'),
    );
    expect(origin.snapshotId).toBe(info.id);
    // An overlay home records no files: its untouched files ARE the snapshot's (origin.ts `lower`).
    if (overlayHomes(fx.backend))
      expect({ lower: origin.lower, files: origin.files }).toEqual({ lower: true, files: [] });
    else
      expect(origin.files.map((f: string[]) => f[0]).sort()).toEqual([
        '.cache/deps/blob',
        'app/keep.txt',
        'app/run.sh',
        'app/src/a.txt',
        'app/src/b.txt',
      ]);
    // Invisible from inside: the workspace sees its home, not the directory around it.
    const r = await fx.sh(ref, 'ls -a "$HOME/.."; cat "$HOME/../origin.json"');
    expect(r.stdout).not.toContain('origin.json');
  });

  it("a workspace created empty takes its first snapshot as its origin: a cold start's baseline links from its cache snapshot", async () => {
    const source = await fx.create();
    expect(fs.existsSync(path.join(wsDir(source), 'origin.json'))).toBe(false);
    expect((await fx.sh(source, POPULATE, [], { cwd: fx.plan.home })).status.exitCode).toBe(0);
    const cache = fx.trackSnapshot(await fx.backend.open(source, fx.plan).snapshots.take('cache', newId('cache')));
    expect(JSON.parse(fs.readFileSync(path.join(wsDir(source), 'origin.json'), 'utf8')).snapshot).toBe(cache.name);
    expect(fs.lstatSync(inSnap(cache, 'app/keep.txt')).nlink).toBe(1); // the first one is a full copy
    expect((await fx.sh(source, 'echo changed > app/keep.txt', [], { cwd: fx.plan.home })).status.exitCode).toBe(0);
    const f0 = await inside(source);
    const baseline = fx.trackSnapshot(await fx.backend.open(source, fx.plan).snapshots.take('baseline', newId('base')));
    expect(ino(inSnap(baseline, 'app/src/a.txt'))).toBe(ino(inSnap(cache, 'app/src/a.txt')));
    expect(ino(inSnap(baseline, '.cache/deps/blob'))).toBe(ino(inSnap(cache, '.cache/deps/blob')));
    expect(ino(inSnap(baseline, 'app/keep.txt'))).not.toBe(ino(inSnap(cache, 'app/keep.txt')));
    expect(fs.readFileSync(inSnap(baseline, 'app/keep.txt'), 'utf8')).toBe('changed\n');
    // The origin stays the first snapshot.
    expect(JSON.parse(fs.readFileSync(path.join(wsDir(source), 'origin.json'), 'utf8')).snapshot).toBe(cache.name);
    expect(
      (await fx.sh(source, 'echo edit >> app/src/a.txt && rm -rf .cache', [], { cwd: fx.plan.home })).status.exitCode,
    ).toBe(0);
    await fx.backend.open(source, fx.plan).snapshots.restore(baseline);
    expect(await inside(source)).toBe(f0);
  });

  it('a home holding a fifo still links its unchanged files; the fifo is recreated (never opened), and restores exactly', async () => {
    const { cache, ref } = await warm();
    expect((await fx.sh(ref, 'mkfifo app/pipe', [], { cwd: fx.plan.home })).status.exitCode).toBe(0);
    const f0 = await inside(ref);
    const baseline = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('base')));
    expect(ino(inSnap(baseline, 'app/keep.txt'))).toBe(ino(inSnap(cache, 'app/keep.txt')));
    expect(fs.lstatSync(inSnap(baseline, 'app/pipe')).isFIFO()).toBe(true);
    expect((await fx.sh(ref, 'rm app/pipe && echo q > app/keep.txt', [], { cwd: fx.plan.home })).status.exitCode).toBe(
      0,
    );
    await fx.backend.open(ref, fx.plan).snapshots.restore(baseline);
    expect(await inside(ref)).toBe(f0);
  });
});
