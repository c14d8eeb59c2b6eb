import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { StepFailedError } from '../../../../shared/contract/errors.js';
import { hostFingerprint } from '../../../../shared/backends/local/tree/index.js';
import { openDirAt, openRegularAt, walkTreeAt } from '../../../../shared/backends/local/tree/walk-at.js';
import { makeTree, tmpDir } from './helpers.js';

const lstat = (p: string): fs.BigIntStats => fs.lstatSync(p, { bigint: true });

describe('openRegularAt', () => {
  it('opens the regular file that was listed, and reads it', () => {
    const dir = tmpDir();
    makeTree(dir, { f: 'content' });
    const p = path.join(dir, 'f');
    const opened = openRegularAt(Buffer.from(p), lstat(p));
    expect(opened).toBeDefined();
    try {
      expect(fs.readFileSync(opened!.fd, 'utf8')).toBe('content');
    } finally {
      fs.closeSync(opened!.fd);
    }
  });

  it('never opens a fifo, a socket or a symlink, even one that replaced the file after its lstat', () => {
    const dir = tmpDir();
    makeTree(dir, { f: 'x', g: 'y', h: 'z', outside: 'outside' });
    const stale = { f: lstat(path.join(dir, 'f')), g: lstat(path.join(dir, 'g')), h: lstat(path.join(dir, 'h')) };
    fs.rmSync(path.join(dir, 'f'));
    execFileSync('mkfifo', [path.join(dir, 'f')]); // opening it for reading would block forever
    fs.rmSync(path.join(dir, 'g'));
    fs.symlinkSync(path.join(dir, 'outside'), path.join(dir, 'g'));
    fs.writeFileSync(path.join(dir, 'h.new'), 'z');
    fs.renameSync(path.join(dir, 'h.new'), path.join(dir, 'h')); // same name, another inode
    for (const name of ['f', 'g', 'h'] as const) {
      expect(openRegularAt(Buffer.from(path.join(dir, name)), stale[name])).toBeUndefined();
    }
    // The fifo, even with its own current stat: not a regular file, so not opened.
    expect(openRegularAt(Buffer.from(path.join(dir, 'f')), lstat(path.join(dir, 'f')))).toBeUndefined();
    expect(openRegularAt(Buffer.from(path.join(dir, 'gone')), stale.f)).toBeUndefined();
  });

  it('openDirAt refuses a symlink to a directory and a replaced directory', () => {
    const dir = tmpDir();
    makeTree(dir, { 'd/x': 'x', 'e/y': 'y' });
    fs.symlinkSync(path.join(dir, 'd'), path.join(dir, 'link'));
    expect(openDirAt(path.join(dir, 'link'))).toBeUndefined();
    const opened = openDirAt(path.join(dir, 'd'), lstat(path.join(dir, 'd')));
    expect(opened).toBeDefined();
    fs.closeSync(opened!.fd);
    expect(openDirAt(path.join(dir, 'd'), lstat(path.join(dir, 'e')))).toBeUndefined();
  });
});

describe('walkTreeAt', () => {
  it('visits every entry once with its type, parents first, and leaves directories after their contents', async () => {
    const dir = tmpDir();
    makeTree(dir, { 'a/b/c.txt': 'c', 'a/l': { link: 'b' }, e: { dir: true }, f: 'f' });
    const events: string[] = [];
    await walkTreeAt(dir, {
      visit: (e) => {
        events.push(`visit ${e.rel.toString()} ${e.type}`);
      },
      leave: (e) => {
        events.push(`leave ${e.rel.toString()}`);
      },
      onChanged: () => {
        throw new Error('unexpected change');
      },
    });
    expect(events.filter((e) => e.startsWith('visit')).sort()).toEqual([
      'visit a d',
      'visit a/b d',
      'visit a/b/c.txt f',
      'visit a/l l',
      'visit e d',
      'visit f f',
    ]);
    const at = (s: string): number => events.indexOf(s);
    expect(at('visit a/b d')).toBeGreaterThan(at('visit a d'));
    expect(at('leave a/b')).toBeGreaterThan(at('visit a/b/c.txt f'));
    expect(at('leave a')).toBeGreaterThan(at('leave a/b'));
  });

  it('a directory swapped for a symlink mid-walk is reported, never followed', async () => {
    const base = tmpDir();
    const home = path.join(base, 'home');
    makeTree(home, { 'a/inside.txt': 'in', 'z.txt': 'z' });
    makeTree(path.join(base, 'outside'), { 'secret.txt': 'host file' });
    const seen: string[] = [];
    const changed: string[] = [];
    await walkTreeAt(home, {
      visit: (e) => {
        seen.push(e.rel.toString());
        if (e.rel.toString() === 'a') {
          // The workspace wins the race: after the listing, `a` becomes a symlink to a host dir.
          fs.renameSync(path.join(home, 'a'), path.join(base, 'a-moved'));
          fs.symlinkSync(path.join(base, 'outside'), path.join(home, 'a'));
        }
      },
      onChanged: (rel) => {
        changed.push(rel.toString());
      },
    });
    expect(changed).toEqual(['a']);
    expect(seen.sort()).toEqual(['a', 'z.txt']);
    expect(seen.join()).not.toContain('secret');
  });

  // hostFingerprint lists the root synchronously and yields before the first visit: a change made
  // right after the call lands exactly between the listing and the reads.
  it('hostFingerprint fails (step_failed) instead of following a directory swapped for a symlink', async () => {
    const base = tmpDir();
    const home = path.join(base, 'home');
    makeTree(home, { 'a/x': 'x' });
    makeTree(path.join(base, 'outside'), { x: 'x' });
    const pending = hostFingerprint(home);
    fs.rmSync(path.join(home, 'a'), { recursive: true });
    fs.symlinkSync(path.join(base, 'outside'), path.join(home, 'a'));
    await expect(pending).rejects.toBeInstanceOf(StepFailedError);
    // Taken afresh, the symlink is just a symlink (hashed as its target, not followed).
    fs.rmSync(path.join(base, 'outside'), { recursive: true });
    expect(await hostFingerprint(home)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('hostFingerprint fails instead of opening a fifo that replaced a file (it would block forever)', async () => {
    const home = tmpDir();
    makeTree(home, { f: 'x' });
    const pending = hostFingerprint(home);
    fs.rmSync(path.join(home, 'f'));
    execFileSync('mkfifo', [path.join(home, 'f')]);
    await expect(pending).rejects.toBeInstanceOf(StepFailedError);
  });

  it('hostFingerprint refuses a root that is a symlink', async () => {
    const base = tmpDir();
    makeTree(path.join(base, 'real'), { x: 'x' });
    fs.symlinkSync(path.join(base, 'real'), path.join(base, 'link'));
    await expect(hostFingerprint(path.join(base, 'link'))).rejects.toThrow();
    expect(await hostFingerprint(path.join(base, 'real'))).toMatch(/^[0-9a-f]{64}$/);
  });
});
