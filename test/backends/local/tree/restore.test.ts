import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConflictError } from '../../../../shared/contract/errors.js';
import { hostFingerprint, restoreChanged, takeSnapshot } from '../../../../shared/backends/local/tree/index.js';
import { describeTree, inodes, makeTree, tmpDir } from './helpers.js';

// Every case: build a home, snapshot it, change it the way a user could, restore, and compare the
// home with the snapshot's copy by an independent description (types, modes, owners, contents,
// targets) AND by the fingerprint taken before the change.

interface Fixture {
  home: string;
  snap: string;
  before: Record<string, string>;
  fingerprint: string;
}

async function setup(
  spec: Parameters<typeof makeTree>[1],
  prepare?: (home: string) => void | Promise<void>,
): Promise<Fixture> {
  const base = tmpDir();
  const home = path.join(base, 'home');
  makeTree(home, spec);
  await prepare?.(home);
  const snap = path.join(base, 'snap');
  await takeSnapshot(home, snap);
  return { home, snap, before: describeTree(home), fingerprint: await hostFingerprint(home) };
}

async function expectRestored(
  f: Fixture,
  owner?: { uid: number; gid: number },
): Promise<{ restored: number; removed: number }> {
  const result = await restoreChanged(f.home, f.snap, owner);
  if (!owner) {
    expect(describeTree(f.home)).toEqual(f.before);
    expect(describeTree(path.join(f.snap, 'home'))).toEqual(f.before);
  }
  expect(await hostFingerprint(f.home)).toBe(f.fingerprint);
  // The manifest was brought up to date: a second reset has nothing to do.
  expect(await restoreChanged(f.home, f.snap, owner)).toEqual({ restored: 0, removed: 0 });
  return result;
}

const BASE = {
  'a.txt': 'alpha',
  'dir/b.txt': 'bravo',
  'dir/sub/c.txt': 'charlie',
  'dir/sub/deep/d.txt': 'delta',
  link: { link: 'a.txt' },
  empty: { dir: true as const },
  'run.sh': { mode: 0o755, content: '#!/bin/sh\necho hi\n' },
};

describe('restoreChanged', () => {
  it('untouched tree: nothing rewritten, every inode kept', async () => {
    const f = await setup(BASE);
    const ino = inodes(f.home);
    expect(await expectRestored(f)).toEqual({ restored: 0, removed: 0 });
    expect(inodes(f.home)).toEqual(ino);
  });

  it('one changed file in a big tree: only that file is rewritten', async () => {
    const spec: Record<string, string> = {};
    for (let i = 0; i < 400; i++) spec[`d${i % 20}/f${i}.txt`] = `file ${i}\n`.repeat(50);
    const f = await setup(spec);
    const stamp = (): Map<string, string> =>
      new Map(
        [...inodes(f.home)].map(([rel, n]) => [
          rel,
          `${n}@${fs.lstatSync(path.join(f.home, rel), { bigint: true }).ctimeNs}`,
        ]),
      );
    const ino = stamp();
    fs.appendFileSync(path.join(f.home, 'd7/f187.txt'), 'agent was here');
    const result = await expectRestored(f);
    expect(result).toEqual({ restored: 1, removed: 0 });
    // Untouched: same inode AND same ctime. (The rewritten file is removed and written anew; the
    // file system may hand it the freed inode number again, but never the old ctime.)
    const after = stamp();
    let untouched = 0;
    for (const [rel, n] of ino) if (after.get(rel) === n) untouched++;
    expect(untouched).toBe(399);
    expect(after.get('d7/f187.txt')).not.toBe(ino.get('d7/f187.txt'));
  });

  it('content change hidden behind a faked mtime (touch -r) and the same size is still caught', async () => {
    const f = await setup(BASE);
    const file = path.join(f.home, 'dir/b.txt');
    const ref = path.join(f.snap, 'home/dir/b.txt');
    fs.writeFileSync(file, 'BRAVO');
    execFileSync('touch', ['-r', ref, file]);
    expect(fs.statSync(file).mtimeMs).toBe(fs.statSync(ref).mtimeMs);
    expect((await expectRestored(f)).restored).toBe(1);
  });

  it('a change made right after the snapshot is caught (ctime tick barrier)', async () => {
    for (let i = 0; i < 5; i++) {
      const f = await setup({ 'x.txt': 'aaaa' });
      fs.writeFileSync(path.join(f.home, 'x.txt'), 'bbbb');
      expect((await expectRestored(f)).restored).toBe(1);
    }
  });

  it('chmod-only changes of files and directories', async () => {
    const f = await setup(BASE);
    fs.chmodSync(path.join(f.home, 'run.sh'), 0o600);
    fs.chmodSync(path.join(f.home, 'a.txt'), 0o4755);
    fs.chmodSync(path.join(f.home, 'dir/sub'), 0o700);
    const result = await expectRestored(f);
    expect(result.removed).toBe(0);
    expect(result.restored).toBe(3);
  });

  it('the home directory itself: mode restored, nothing else rewritten', async () => {
    const f = await setup(BASE);
    const ino = inodes(f.home);
    fs.chmodSync(f.home, 0o700);
    expect(await expectRestored(f)).toEqual({ restored: 1, removed: 0 });
    expect(inodes(f.home)).toEqual(ino);
  });

  it('type changes: file→dir, dir→file, file→symlink, symlink→file, dir→symlink', async () => {
    const f = await setup(BASE);
    const h = (p: string): string => path.join(f.home, p);
    fs.rmSync(h('a.txt'));
    fs.mkdirSync(h('a.txt'));
    fs.writeFileSync(h('a.txt/inside'), 'x');
    fs.rmSync(h('dir/sub/deep'), { recursive: true });
    fs.writeFileSync(h('dir/sub/deep'), 'now a file');
    fs.rmSync(h('dir/b.txt'));
    fs.symlinkSync('/etc/passwd', h('dir/b.txt'));
    fs.rmSync(h('link'));
    fs.writeFileSync(h('link'), 'not a link');
    fs.rmSync(h('empty'), { recursive: true });
    fs.symlinkSync('dir', h('empty'));
    const result = await expectRestored(f);
    expect(result.removed).toBe(0);
  });

  it('a deleted directory with contents comes back whole', async () => {
    const f = await setup(BASE);
    fs.rmSync(path.join(f.home, 'dir'), { recursive: true });
    const result = await expectRestored(f);
    expect(result).toEqual({ restored: 6, removed: 0 }); // dir, b.txt, sub, c.txt, deep, d.txt + root meta
  });

  it('new files, new nested dirs, fifos and sockets are removed', async () => {
    const f = await setup(BASE);
    fs.mkdirSync(path.join(f.home, 'new/nested/deeper'), { recursive: true });
    fs.writeFileSync(path.join(f.home, 'new/nested/deeper/x'), 'x');
    fs.writeFileSync(path.join(f.home, 'dir/sub/extra.txt'), 'extra');
    fs.writeFileSync(path.join(f.home, '.hidden'), 'h');
    execFileSync('mkfifo', [path.join(f.home, 'dir/fifo')]);
    await makeSocket(path.join(f.home, 'sock'));
    const result = await expectRestored(f);
    expect(result.removed).toBe(5);
  });

  it('symlink retarget', async () => {
    const f = await setup(BASE);
    fs.rmSync(path.join(f.home, 'link'));
    fs.symlinkSync('dir/b.txt', path.join(f.home, 'link'));
    expect((await expectRestored(f)).restored).toBe(1);
  });

  it('renames: the old name comes back, the new one goes', async () => {
    const f = await setup(BASE);
    fs.renameSync(path.join(f.home, 'dir/sub'), path.join(f.home, 'dir/sub2'));
    const result = await expectRestored(f);
    expect(result.removed).toBe(1);
  });

  it('hard links: an edit through a baseline pair restores both; a new link to a baseline file is cut', async () => {
    const f = await setup(BASE, (home) => {
      fs.linkSync(path.join(home, 'dir/b.txt'), path.join(home, 'dir/b-link.txt'));
    });
    fs.appendFileSync(path.join(f.home, 'dir/b.txt'), ' changed through one name');
    fs.linkSync(path.join(f.home, 'a.txt'), path.join(f.home, 'a-extra-link'));
    const outside = path.join(tmpDir(), 'outside');
    fs.linkSync(path.join(f.home, 'dir/sub/c.txt'), outside); // a link kept outside the home
    const result = await expectRestored(f);
    expect(result.removed).toBe(1);
    // The outside link keeps its own inode; the home's file got a new one, so later edits inside
    // the home never reach the outside name.
    expect(fs.statSync(outside).ino).not.toBe(fs.statSync(path.join(f.home, 'dir/sub/c.txt')).ino);
  });

  it('fifos in the snapshot are recreated with their type; a socket is recorded, left alone while untouched, not recreated once gone', async () => {
    const base = tmpDir();
    const home = path.join(base, 'home');
    makeTree(home, BASE);
    execFileSync('mkfifo', ['-m', '0640', path.join(home, 'dir/pipe')]);
    await makeSocket(path.join(home, 'dir/sock'));
    await makeSocket(path.join(home, 'dir/sock2'));
    const snap = path.join(base, 'snap');
    await takeSnapshot(home, snap);
    const fp = await hostFingerprint(home);
    expect(fs.existsSync(path.join(snap, 'home/dir/sock'))).toBe(false); // not copied (no uid could create it again)
    fs.rmSync(path.join(home, 'dir/pipe'));
    expect(await restoreChanged(home, snap)).toEqual({ restored: 1, removed: 0 });
    expect(fs.lstatSync(path.join(home, 'dir/pipe')).isFIFO()).toBe(true);
    expect(fs.lstatSync(path.join(home, 'dir/pipe')).mode & 0o7777).toBe(0o640);
    expect(fs.lstatSync(path.join(home, 'dir/sock')).isSocket()).toBe(true); // untouched: kept
    expect(await hostFingerprint(home)).toBe(fp);
    fs.rmSync(path.join(home, 'dir/sock2'));
    await restoreChanged(home, snap);
    expect(fs.existsSync(path.join(home, 'dir/sock2'))).toBe(false); // gone stays gone
  });

  it('directories the user locked (chmod 000) with changes inside', async () => {
    const f = await setup(BASE);
    fs.writeFileSync(path.join(f.home, 'dir/sub/c.txt'), 'changed');
    fs.writeFileSync(path.join(f.home, 'dir/sub/deep/new'), 'new');
    fs.chmodSync(path.join(f.home, 'dir/sub/deep/d.txt'), 0);
    fs.chmodSync(path.join(f.home, 'dir/sub/deep'), 0);
    fs.chmodSync(path.join(f.home, 'dir/sub'), 0);
    const result = await expectRestored(f);
    expect(result.removed).toBe(1);
  });

  it('as the workspace user, with the home itself locked (chmod 000) and changes inside', async () => {
    const owner = { uid: 4242, gid: 4343 };
    const f = await setup(BASE, (home) => {
      for (const d of ['', 'dir']) fs.chownSync(path.join(home, d), owner.uid, owner.gid);
    });
    fs.writeFileSync(path.join(f.home, 'junk'), 'junk');
    fs.chownSync(path.join(f.home, 'junk'), owner.uid, owner.gid);
    fs.chmodSync(f.home, 0);
    const result = await restoreChanged(f.home, f.snap, owner);
    expect(result.removed).toBe(1);
    expect(fs.statSync(f.home).mode & 0o7777).toBe(fs.statSync(path.join(f.snap, 'home')).mode & 0o7777);
    expect(await hostFingerprint(f.home)).toBe(f.fingerprint);
  });

  it('names with spaces, newlines, tabs, unicode and invalid UTF-8', async () => {
    const weird = Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x62, 0x69, 0x6e]); // "f\xff\xfe.bin"
    const f = await setup({ 'with space.txt': 'a', 'new\nline': 'b', 'tab\there': 'c', 'ünï/cødé ✓': 'd' }, (home) => {
      fs.writeFileSync(Buffer.concat([Buffer.from(`${home}/`), weird]), 'raw');
    });
    const weirdAbs = Buffer.concat([Buffer.from(`${f.home}/`), weird]);
    fs.writeFileSync(weirdAbs, 'raw changed');
    fs.writeFileSync(path.join(f.home, 'new\nline'), 'B');
    fs.rmSync(path.join(f.home, 'ünï'), { recursive: true });
    fs.writeFileSync(Buffer.concat([Buffer.from(`${f.home}/added-`), weird]), 'x');
    const result = await expectRestored(f);
    expect(result.removed).toBe(1);
    expect(fs.readFileSync(weirdAbs, 'utf8')).toBe('raw');
  });

  it('as the workspace user: everything rewritten is written by it (setuid bits kept), untouched paths keep their owner', async () => {
    const owner = { uid: 4242, gid: 4343 };
    // The home and the directories the changes are in belong to the workspace user, as in a real home.
    const f = await setup(BASE, (home) => {
      fs.chmodSync(path.join(home, 'run.sh'), 0o4755);
      for (const d of ['', 'dir']) fs.chownSync(path.join(home, d), owner.uid, owner.gid);
    });
    fs.writeFileSync(path.join(f.home, 'run.sh'), '#!/bin/sh\necho changed\n');
    fs.rmSync(path.join(f.home, 'dir/sub'), { recursive: true });
    fs.rmSync(path.join(f.home, 'link'));
    fs.symlinkSync('elsewhere', path.join(f.home, 'link'));
    await expectRestored(f, owner);
    const st = (p: string): fs.Stats => fs.lstatSync(path.join(f.home, p));
    for (const p of ['run.sh', 'dir/sub', 'dir/sub/c.txt', 'dir/sub/deep/d.txt', 'link']) {
      expect([p, st(p).uid, st(p).gid]).toEqual([p, 4242, 4343]);
    }
    expect(st('run.sh').mode & 0o7777).toBe(0o4755);
    expect(st('a.txt').uid).toBe(0);
    expect(st('dir/b.txt').uid).toBe(0);
  });

  it('into another directory than the snapshot was taken from: the manifest is not trusted, all is rewritten', async () => {
    const f = await setup(BASE);
    const other = path.join(tmpDir(), 'other-home');
    fs.cpSync(path.join(f.snap, 'home'), other, { recursive: true, verbatimSymlinks: true });
    // Same names, same contents — but changed in a way only a full rewrite repairs.
    fs.writeFileSync(path.join(other, 'dir/b.txt'), 'BRAVO');
    const result = await restoreChanged(other, f.snap);
    expect(result.removed).toBe(0);
    expect(result.restored).toBeGreaterThanOrEqual(6); // every non-directory
    expect(describeTree(other)).toEqual(f.before);
    // …and the manifest now describes `other`.
    expect(await restoreChanged(other, f.snap)).toEqual({ restored: 0, removed: 0 });
  });

  it('refuses a snapshot without a manifest', async () => {
    const base = tmpDir();
    makeTree(path.join(base, 'home'), { x: 'x' });
    fs.mkdirSync(path.join(base, 'snap/home'), { recursive: true });
    await expect(restoreChanged(path.join(base, 'home'), path.join(base, 'snap'))).rejects.toBeInstanceOf(
      ConflictError,
    );
  });
});

/** A socket file that outlives its server: listen, hard-link the socket inode, close. */
async function makeSocket(p: string): Promise<void> {
  const tmp = `${p}.listening`;
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(tmp, resolve));
  fs.linkSync(tmp, p);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  fs.rmSync(tmp, { force: true });
}
