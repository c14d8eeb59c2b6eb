import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach } from 'vitest';

/** Temp dirs removed after each test (chmod'ed back first so a 000 dir never blocks cleanup). */
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) {
    fs.rmSync(d, { recursive: true, force: true });
  }
});

export function tmpDir(prefix = 'wsp-tree-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(d);
  return d;
}

/** Files as { relpath: content | { link } | { dir } }, created in order. */
export type TreeSpec = Record<string, string | { link: string } | { dir: true } | { mode: number; content: string }>;

export function makeTree(root: string, spec: TreeSpec): void {
  fs.mkdirSync(root, { recursive: true });
  for (const [rel, v] of Object.entries(spec)) {
    const abs = path.join(root, rel);
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    if (typeof v === 'string') fs.writeFileSync(abs, v);
    else if ('link' in v) fs.symlinkSync(v.link, abs);
    else if ('dir' in v) fs.mkdirSync(abs, { recursive: true });
    else {
      fs.writeFileSync(abs, v.content);
      fs.chmodSync(abs, v.mode);
    }
  }
}

/**
 * An independent description of a tree (deliberately NOT the code under test): per raw path,
 * type, permission bits, owner, and content hash or symlink target. Non-UTF-8 names are kept
 * as hex so two trees compare exactly.
 */
export function describeTree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (relParts: Buffer[]): void => {
    const absDir = Buffer.concat([Buffer.from(root), ...relParts.flatMap((p) => [Buffer.from('/'), p])]);
    for (const name of fs.readdirSync(absDir, { encoding: 'buffer' })) {
      const parts = [...relParts, name];
      const abs = Buffer.concat([absDir, Buffer.from('/'), name]);
      const st = fs.lstatSync(abs);
      const key = parts.map((p) => p.toString('hex')).join('/');
      const perm = (st.mode & 0o7777).toString(8);
      const own = `${st.uid}:${st.gid}`;
      if (st.isDirectory()) {
        out[key] = `d ${perm} ${own}`;
        walk(parts);
      } else if (st.isSymbolicLink())
        out[key] = `l ${own} -> ${fs.readlinkSync(abs, { encoding: 'buffer' }).toString('hex')}`;
      else if (st.isFile())
        out[key] = `f ${perm} ${own} ${createHash('sha256').update(fs.readFileSync(abs)).digest('hex')}`;
      else out[key] = `${st.isFIFO() ? 'p' : st.isSocket() ? 's' : 'x'} ${perm} ${own}`;
    }
  };
  walk([]);
  return out;
}

/** Inode number of every non-directory path (for "untouched paths were not rewritten"). */
export function inodes(root: string): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (dir: string, rel: string): void => {
    for (const name of fs.readdirSync(dir)) {
      const abs = path.join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(abs);
      if (st.isDirectory()) walk(abs, r);
      else out.set(r, st.ino);
    }
  };
  walk(root, '');
  return out;
}
