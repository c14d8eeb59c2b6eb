import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConflictError } from '../../../../shared/contract/errors.js';
import {
  copyTreeAs,
  hostFingerprint,
  restoreChanged,
  takeSnapshot,
} from '../../../../shared/backends/local/tree/index.js';
import { maxCtimeNs, readManifest, waitPastCtime } from '../../../../shared/backends/local/tree/manifest.js';
import {
  maxOriginCtimeNs,
  recordOriginFiles,
  takeLinkedSnapshot,
  type OriginFiles,
} from '../../../../shared/backends/local/tree/snapshot-linked.js';
import { describeTree, makeTree, tmpDir, type TreeSpec } from './helpers.js';

// What the local backend does around these helpers: snapshot O of a source home, a new home written
// from O by its own user (tar as that uid), the origin record taken right then; later a snapshot of
// the new home links from O whatever is untouched.

const OWNER = { uid: 4242, gid: 4242 };
const ino = (p: string): bigint => fs.lstatSync(p, { bigint: true }).ino;

interface Seeded {
  base: string;
  origin: string;
  home: string;
  files: OriginFiles;
}

async function seeded(spec: TreeSpec, prepare?: (src: string) => void): Promise<Seeded> {
  const base = tmpDir();
  const src = path.join(base, 'src');
  makeTree(src, spec);
  prepare?.(src);
  const origin = path.join(base, 'origin');
  await takeSnapshot(src, origin);
  const home = path.join(base, 'home');
  fs.mkdirSync(home, { mode: 0o700 });
  fs.chownSync(home, OWNER.uid, OWNER.gid);
  await copyTreeAs(path.join(origin, 'home'), home, OWNER);
  const files = await recordOriginFiles(home);
  await waitPastCtime(base, maxOriginCtimeNs(files));
  return { base, origin, home, files };
}

async function linkedSnapshot(
  s: Seeded,
  name = 'snap',
): Promise<{ snap: string; linked: number; copied: number; skipped: { special: number; foreign: number } }> {
  const snap = path.join(s.base, name);
  const r = await takeLinkedSnapshot(
    s.home,
    snap,
    { snapHome: path.join(s.origin, 'home'), files: s.files },
    { ownerUid: OWNER.uid },
  );
  return { snap, ...r };
}

/** describeTree without owners: linked files keep the origin's owner (restore applies the workspace's). */
const withoutOwners = (tree: Record<string, string>): Record<string, string> =>
  Object.fromEntries(Object.entries(tree).map(([k, v]) => [k, v.replace(/ \d+:\d+/, '')]));

const SPEC: TreeSpec = {
  'README.md': '# hi\n',
  'src/a.ts': 'export const a = 1;\n',
  'src/b.ts': 'export const b = 2;\n',
  'bin/run.sh': { mode: 0o755, content: '#!/bin/sh\n' },
  'ro.txt': { mode: 0o444, content: 'read only\n' },
  link: { link: 'src/a.ts' },
  empty: { dir: true },
  'with space/and\nnewline': 'odd name',
};

describe('takeLinkedSnapshot', () => {
  it('links untouched files from the origin, copies changed ones, and the copy equals the live home', async () => {
    const s = await seeded(SPEC);
    fs.appendFileSync(path.join(s.home, 'src/b.ts'), '// changed\n');
    fs.writeFileSync(path.join(s.home, 'new.txt'), 'new\n');
    fs.chownSync(path.join(s.home, 'new.txt'), OWNER.uid, OWNER.gid); // made by the workspace user
    fs.rmSync(path.join(s.home, 'README.md'));
    fs.chmodSync(path.join(s.home, 'ro.txt'), 0o644);
    const { snap, linked, copied } = await linkedSnapshot(s);

    const o = (rel: string): string => path.join(s.origin, 'home', rel);
    const n = (rel: string): string => path.join(snap, 'home', rel);
    expect(ino(n('src/a.ts'))).toBe(ino(o('src/a.ts')));
    expect(ino(n('bin/run.sh'))).toBe(ino(o('bin/run.sh')));
    expect(ino(n('with space/and\nnewline'))).toBe(ino(o('with space/and\nnewline')));
    expect(ino(n('src/b.ts'))).not.toBe(ino(o('src/b.ts')));
    expect(ino(n('src/b.ts'))).not.toBe(ino(path.join(s.home, 'src/b.ts')));
    expect(fs.readFileSync(n('src/b.ts'), 'utf8')).toBe('export const b = 2;\n// changed\n');
    expect(ino(n('ro.txt'))).not.toBe(ino(o('ro.txt'))); // chmod moved its ctime
    expect(fs.existsSync(n('README.md'))).toBe(false);
    expect({ linked, copied }).toEqual({ linked: 3, copied: 3 });

    expect(withoutOwners(describeTree(path.join(snap, 'home')))).toEqual(withoutOwners(describeTree(s.home)));
    // Copied entries keep the live owner, as cp -a does.
    expect(fs.lstatSync(n('src/b.ts')).uid).toBe(OWNER.uid);
    expect(fs.lstatSync(n('link')).uid).toBe(OWNER.uid);
    expect(fs.lstatSync(n('src')).uid).toBe(OWNER.uid);
    expect(fs.readdirSync(snap).sort()).toEqual(['home', 'manifest.json']);
  });

  it('the manifest describes the LIVE home: every path, with its live inode and ctime', async () => {
    const s = await seeded(SPEC);
    fs.writeFileSync(path.join(s.home, 'src/b.ts'), 'rewritten\n');
    const { snap } = await linkedSnapshot(s);
    const manifest = await readManifest(snap);
    const live = new Map<string, fs.BigIntStats>();
    const walk = (rel: string): void => {
      for (const name of fs.readdirSync(path.join(s.home, rel))) {
        const r = rel ? `${rel}/${name}` : name;
        const st = fs.lstatSync(path.join(s.home, r), { bigint: true });
        live.set(r, st);
        if (st.isDirectory()) walk(r);
      }
    };
    walk('');
    expect([...manifest.keys()].sort()).toEqual(['', ...live.keys()].sort());
    for (const [rel, st] of live) expect(manifest.get(rel), rel).toMatchObject({ ino: st.ino, ctimeNs: st.ctimeNs });
    expect(manifest.get('')?.ino).toBe(ino(s.home));
    expect(maxCtimeNs(manifest)).toBeGreaterThan(0n);
  });

  it('decides by ctime, not mtime: a content change with the old mtime put back is copied', async () => {
    const s = await seeded(SPEC);
    const file = path.join(s.home, 'src/a.ts');
    const before = fs.statSync(file);
    fs.writeFileSync(file, 'export const a = 9;\n'); // same size
    fs.utimesSync(file, before.atime, before.mtime);
    const { snap } = await linkedSnapshot(s);
    expect(fs.readFileSync(path.join(snap, 'home/src/a.ts'), 'utf8')).toBe('export const a = 9;\n');
    expect(ino(path.join(snap, 'home/src/a.ts'))).not.toBe(ino(path.join(s.origin, 'home/src/a.ts')));
  });

  it('the copy into the home keeps exact modes (setuid too), so such files are linked as well', async () => {
    const s = await seeded({ tool: { mode: 0o4755, content: 'x' }, plain: 'p' });
    expect(fs.statSync(path.join(s.origin, 'home/tool')).mode & 0o7777).toBe(0o4755);
    expect(fs.statSync(path.join(s.home, 'tool')).mode & 0o7777).toBe(0o4755);
    const { snap } = await linkedSnapshot(s);
    expect(ino(path.join(snap, 'home/tool'))).toBe(ino(path.join(s.origin, 'home/tool')));
    expect(ino(path.join(snap, 'home/plain'))).toBe(ino(path.join(s.origin, 'home/plain')));
  });

  it('copies a file whose origin copy has another mode than the live one', async () => {
    const s = await seeded({ tool: { mode: 0o755, content: 'x' } });
    fs.chmodSync(path.join(s.origin, 'home/tool'), 0o700); // (a snapshot is never changed; this stands for any mismatch)
    const { snap } = await linkedSnapshot(s);
    expect(ino(path.join(snap, 'home/tool'))).not.toBe(ino(path.join(s.origin, 'home/tool')));
    expect(fs.statSync(path.join(snap, 'home/tool')).mode & 0o7777).toBe(0o755);
  });

  it('copies when the origin file is gone or the record does not match', async () => {
    const s = await seeded(SPEC);
    fs.rmSync(path.join(s.origin, 'home/src/a.ts'));
    s.files.set('README.md', { ino: 1n, ctimeNs: 1n });
    const { snap, linked } = await linkedSnapshot(s);
    expect(fs.readFileSync(path.join(snap, 'home/src/a.ts'), 'utf8')).toBe('export const a = 1;\n');
    expect(ino(path.join(snap, 'home/README.md'))).not.toBe(ino(path.join(s.origin, 'home/README.md')));
    expect(linked).toBe(4); // 6 files, 2 not linkable
  });

  it('restore from a linked snapshot is exact, copies (never links) into the home, and leaves the snapshots alone', async () => {
    const s = await seeded(SPEC);
    const fp = await hostFingerprint(s.home);
    const { snap } = await linkedSnapshot(s);
    const originBefore = describeTree(path.join(s.origin, 'home'));
    const snapBefore = describeTree(path.join(snap, 'home'));

    fs.appendFileSync(path.join(s.home, 'src/a.ts'), 'agent edit\n'); // a linked file, edited in place
    fs.rmSync(path.join(s.home, 'src/b.ts'));
    fs.writeFileSync(path.join(s.home, 'junk'), 'junk');
    fs.chmodSync(path.join(s.home, 'bin/run.sh'), 0o600);
    await restoreChanged(s.home, snap, OWNER);
    expect(await hostFingerprint(s.home)).toBe(fp);
    for (const rel of ['src/a.ts', 'src/b.ts', 'bin/run.sh']) {
      expect(ino(path.join(s.home, rel))).not.toBe(ino(path.join(snap, 'home', rel)));
      expect(fs.lstatSync(path.join(s.home, rel)).uid, rel).toBe(OWNER.uid); // the workspace's, not the origin's
    }
    expect(fs.lstatSync(path.join(snap, 'home/src/a.ts')).uid).toBe(0); // the linked file stays the origin's

    // Writing into restored files (in place) changes neither snapshot.
    fs.appendFileSync(path.join(s.home, 'src/a.ts'), 'more\n');
    fs.appendFileSync(path.join(s.home, 'src/b.ts'), 'more\n');
    expect(describeTree(path.join(snap, 'home'))).toEqual(snapBefore);
    expect(describeTree(path.join(s.origin, 'home'))).toEqual(originBefore);
  });

  it('deleting the origin snapshot leaves the linked snapshot whole, and it still restores exactly', async () => {
    const s = await seeded(SPEC);
    const fp = await hostFingerprint(s.home);
    const { snap } = await linkedSnapshot(s);
    const before = describeTree(path.join(snap, 'home'));
    fs.rmSync(s.origin, { recursive: true });
    expect(describeTree(path.join(snap, 'home'))).toEqual(before);
    fs.rmSync(path.join(s.home, 'src'), { recursive: true });
    fs.writeFileSync(path.join(s.home, 'README.md'), 'changed');
    await restoreChanged(s.home, snap, OWNER);
    expect(await hostFingerprint(s.home)).toBe(fp);
  });

  it('keeps names that are not UTF-8, and hard links between copied files', async () => {
    const s = await seeded(SPEC);
    const raw = Buffer.concat([Buffer.from(`${s.home}/raw-`), Buffer.from([0xff, 0xfe])]);
    fs.writeFileSync(raw, 'not utf-8 name');
    fs.writeFileSync(path.join(s.home, 'one'), 'shared');
    fs.linkSync(path.join(s.home, 'one'), path.join(s.home, 'two'));
    for (const p of [raw, path.join(s.home, 'one')]) fs.chownSync(p, OWNER.uid, OWNER.gid); // made by the workspace user
    const fp = await hostFingerprint(s.home);
    const { snap } = await linkedSnapshot(s);
    expect(ino(path.join(snap, 'home/one'))).toBe(ino(path.join(snap, 'home/two')));
    const snapRaw = Buffer.concat([Buffer.from(`${snap}/home/raw-`), Buffer.from([0xff, 0xfe])]);
    expect(fs.readFileSync(snapRaw, 'utf8')).toBe('not utf-8 name');
    expect(await hostFingerprint(path.join(snap, 'home'))).toBe(fp);
  });

  it('a symlink to a directory outside is kept as a symlink; nothing behind it is copied', async () => {
    const s = await seeded(SPEC);
    makeTree(path.join(s.base, 'outside'), { 'secret.txt': 'host secret' });
    fs.symlinkSync(path.join(s.base, 'outside'), path.join(s.home, 'escape'));
    const { snap } = await linkedSnapshot(s);
    expect(fs.lstatSync(path.join(snap, 'home/escape')).isSymbolicLink()).toBe(true);
    expect(fs.readlinkSync(path.join(snap, 'home/escape'))).toBe(path.join(s.base, 'outside'));
  });

  it('a fifo is recreated (never opened: that would block); a device node is recorded, not copied', async () => {
    const s = await seeded(SPEC);
    execFileSync('mkfifo', ['-m', '0640', path.join(s.home, 'src/pipe')]);
    execFileSync('mknod', [path.join(s.home, 'src/null'), 'c', '1', '3']); // as root, as a hostile setup could not
    const { snap, skipped } = await linkedSnapshot(s);
    expect(fs.lstatSync(path.join(snap, 'home/src/pipe')).isFIFO()).toBe(true);
    expect(fs.lstatSync(path.join(snap, 'home/src/pipe')).mode & 0o7777).toBe(0o640);
    expect(fs.existsSync(path.join(snap, 'home/src/null'))).toBe(false);
    expect(skipped).toEqual({ special: 1, foreign: 0 });
    const manifest = await readManifest(snap);
    expect(manifest.has('src/pipe')).toBe(true);
    expect(manifest.get('src/null')?.type).toBe('c'); // recorded: an untouched one stays at a reset
  });

  it('a file of another owner (a hard link from outside the home) is neither read nor kept', async () => {
    const s = await seeded(SPEC);
    const outside = path.join(s.base, 'root-only.txt');
    fs.writeFileSync(outside, 'root-only host data', { mode: 0o600 });
    fs.linkSync(outside, path.join(s.home, 'stolen')); // root can link it; protected_hardlinks stops the uid
    const { snap, skipped } = await linkedSnapshot(s);
    expect(fs.existsSync(path.join(snap, 'home/stolen'))).toBe(false);
    expect(skipped).toEqual({ special: 0, foreign: 1 });
    expect((await readManifest(snap)).has('stolen')).toBe(false);
    expect(fs.readFileSync(outside, 'utf8')).toBe('root-only host data');
  });

  it('refuses an existing destination', async () => {
    const s = await seeded(SPEC);
    await linkedSnapshot(s);
    await expect(linkedSnapshot(s)).rejects.toBeInstanceOf(ConflictError);
  });
});
