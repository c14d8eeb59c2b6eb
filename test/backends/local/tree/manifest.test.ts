import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  buildManifest,
  maxCtimeNs,
  readManifest,
  waitPastCtime,
  writeManifest,
} from '../../../../shared/backends/local/tree/manifest.js';
import { makeTree, tmpDir } from './helpers.js';

describe('manifest', () => {
  it('round-trips through manifest.json, raw names included', async () => {
    const home = tmpDir();
    makeTree(home, { a: 'a', 'd/b': 'b', l: { link: 'a' } });
    fs.writeFileSync(Buffer.from(`${home}/\xff\xfe`, 'latin1'), 'x');
    const m = await buildManifest(home);
    const snap = tmpDir();
    await writeManifest(snap, m);
    expect(await readManifest(snap)).toEqual(m);
    expect(m.get('\xff\xfe')?.type).toBe('f');
    expect(fs.readdirSync(snap)).toEqual(['manifest.json']);
  });

  // File systems stamp ctime from a coarse clock (here: 4 ms ticks). Without the barrier, a file
  // rewritten right after the manifest was taken often keeps the very same ctime and inode, and
  // would look untouched. After waitPastCtime, every later change must show.
  it('after waitPastCtime, an immediate same-size rewrite always gets a new ctime', async () => {
    const home = tmpDir();
    const probeDir = tmpDir();
    const file = path.join(home, 'x');
    for (let i = 0; i < 30; i++) {
      fs.writeFileSync(file, 'aaaa');
      const m = await buildManifest(home);
      await waitPastCtime(probeDir, maxCtimeNs(m));
      fs.writeFileSync(file, 'bbbb');
      const st = fs.statSync(file, { bigint: true });
      expect(st.ino).toBe(m.get('x')?.ino);
      expect(st.ctimeNs).not.toBe(m.get('x')?.ctimeNs);
    }
    expect(fs.readdirSync(probeDir)).toEqual([]);
  });

  it("after waitPastCtime, even a brand-new file (never stat'ed) gets a later ctime", async () => {
    const home = tmpDir();
    const probeDir = tmpDir();
    for (let i = 0; i < 30; i++) {
      fs.writeFileSync(path.join(home, `a${i}`), 'a');
      const seen = fs.statSync(path.join(home, `a${i}`), { bigint: true }).ctimeNs;
      await waitPastCtime(probeDir, seen);
      fs.writeFileSync(path.join(home, `b${i}`), 'b');
      expect(fs.statSync(path.join(home, `b${i}`), { bigint: true }).ctimeNs > seen).toBe(true);
    }
  });
});
