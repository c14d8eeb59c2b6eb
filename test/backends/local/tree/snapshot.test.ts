import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConflictError, StepFailedError } from '../../../../shared/contract/errors.js';
import { copyTreeAs, takeSnapshot, treeSizeBytes } from '../../../../shared/backends/local/tree/index.js';
import { readManifest } from '../../../../shared/backends/local/tree/manifest.js';
import { describeTree, makeTree, tmpDir } from './helpers.js';

describe('copyTreeAs', () => {
  it('keeps modes, symlinks, mtimes and hard links; everything belongs to the writer', async () => {
    const base = tmpDir();
    const src = path.join(base, 'src');
    makeTree(src, {
      'a.txt': 'a',
      'bin/run': { mode: 0o4750, content: 'x' },
      l: { link: '../outside' },
      e: { dir: true },
    });
    fs.utimesSync(path.join(src, 'a.txt'), 1_000_000, 1_000_000);
    fs.linkSync(path.join(src, 'a.txt'), path.join(src, 'a-link'));
    fs.chmodSync(path.join(src, 'e'), 0o500);
    const dest = path.join(base, 'dest');
    fs.mkdirSync(dest);
    fs.chownSync(dest, 4242, 4343);
    await copyTreeAs(src, dest, { uid: 4242, gid: 4343 });
    const owned = (t: Record<string, string>): Record<string, string> =>
      Object.fromEntries(Object.entries(t).map(([k, v]) => [k, v.replace(/ 0:0/, ' 4242:4343')]));
    expect(describeTree(dest)).toEqual(owned(describeTree(src)));
    expect(fs.statSync(path.join(dest, 'a.txt')).mtimeMs).toBe(1_000_000_000);
    expect(fs.statSync(path.join(dest, 'a-link')).ino).toBe(fs.statSync(path.join(dest, 'a.txt')).ino);
  });

  it('reports a failing copy as StepFailedError without host paths', async () => {
    const base = tmpDir();
    makeTree(path.join(base, 'src'), { x: 'x' });
    fs.mkdirSync(path.join(base, 'dest')); // root-owned: uid 4242 cannot write into it
    const error = await copyTreeAs(path.join(base, 'src'), path.join(base, 'dest'), { uid: 4242, gid: 4242 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StepFailedError);
    expect(String((error as Error).message)).not.toContain(base);
  });
});

describe('takeSnapshot', () => {
  it('copies the home and records every live path with its inode', async () => {
    const base = tmpDir();
    const home = path.join(base, 'home');
    makeTree(home, { 'a.txt': 'a', 'd/b.txt': 'b', 'd/l': { link: 'b.txt' } });
    const snap = path.join(base, 'snap');
    await takeSnapshot(home, snap);
    expect(describeTree(path.join(snap, 'home'))).toEqual(describeTree(home));
    const manifest = await readManifest(snap);
    expect([...manifest.keys()].sort()).toEqual(['', 'a.txt', 'd', 'd/b.txt', 'd/l']);
    // The manifest describes the LIVE home (its inodes), not the copy.
    expect(manifest.get('d/b.txt')?.ino).toBe(fs.statSync(path.join(home, 'd/b.txt'), { bigint: true }).ino);
    expect(manifest.get('d/l')?.type).toBe('l');
    expect(fs.readdirSync(snap).sort()).toEqual(['home', 'manifest.json']);
  });

  it('refuses to overwrite an existing snapshot', async () => {
    const base = tmpDir();
    makeTree(path.join(base, 'home'), { x: 'x' });
    await takeSnapshot(path.join(base, 'home'), path.join(base, 'snap'));
    await expect(takeSnapshot(path.join(base, 'home'), path.join(base, 'snap'))).rejects.toBeInstanceOf(ConflictError);
  });
});

describe('treeSizeBytes', () => {
  it('sums file and symlink sizes, counting hard links once', async () => {
    const dir = tmpDir();
    makeTree(dir, { a: 'x'.repeat(1000), 'd/b': 'y'.repeat(234), l: { link: 'abcdef' }, e: { dir: true } });
    fs.linkSync(path.join(dir, 'a'), path.join(dir, 'd/a-again'));
    expect(await treeSizeBytes(dir)).toBe(1000 + 234 + 6);
  });
});
