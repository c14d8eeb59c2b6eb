import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanTree } from '../../../../shared/backends/local/tree/index.js';
import { makeTree, tmpDir } from './helpers.js';

const TOKEN = 'ghp_CANARYtoken1234567890abcdef';
const OTHER = 's3cr3t-other-canary';

describe('scanTree', () => {
  it('finds needles in contents, names and symlink targets, and never prints a needle', async () => {
    const dir = tmpDir();
    makeTree(dir, {
      'clean.txt': 'nothing here',
      '.git/config': `[http]\n\textraHeader = Authorization: Bearer ${TOKEN}\n`,
      [`cache/${TOKEN}.json`]: '{}',
      link: { link: `/run/${OTHER}` },
      'both.txt': `${OTHER} and ${TOKEN}`,
    });
    execFileSync('mkfifo', [path.join(dir, 'fifo')]); // must not be opened (it would block)
    const hits = await scanTree(dir, [TOKEN, OTHER]);
    expect(hits).toEqual([
      '.git/config: needle #0',
      'both.txt: needle #0',
      'both.txt: needle #1',
      'cache/<needle #0>.json: needle #0',
      'link: needle #1',
    ]);
    for (const h of hits) {
      expect(h).not.toContain(TOKEN);
      expect(h).not.toContain(OTHER);
    }
  });

  it('finds a needle split across the 1 MiB read chunks, and at the very end of a big file', async () => {
    const dir = tmpDir();
    const mib = 1 << 20;
    const straddle = Buffer.alloc(3 * mib, 0x61);
    straddle.write(TOKEN, mib - 10); // crosses the first chunk boundary
    fs.writeFileSync(path.join(dir, 'straddle.bin'), straddle);
    const tail = Buffer.alloc(2 * mib + 17, 0x62);
    tail.write(OTHER, tail.length - OTHER.length);
    fs.writeFileSync(path.join(dir, 'tail.bin'), tail);
    fs.writeFileSync(path.join(dir, 'decoy.bin'), Buffer.alloc(3 * mib, 0x61));
    expect(await scanTree(dir, [TOKEN, OTHER])).toEqual(['straddle.bin: needle #0', 'tail.bin: needle #1']);
  });

  it('a clean tree gives no hits; empty needles are ignored', async () => {
    const dir = tmpDir();
    makeTree(dir, { 'a.txt': 'hello', 'd/b.txt': 'world' });
    expect(await scanTree(dir, [TOKEN, ''])).toEqual([]);
    expect(await scanTree(dir, [])).toEqual([]);
  });

  it('searches raw bytes, including non-UTF-8 file names', async () => {
    const dir = tmpDir();
    fs.writeFileSync(Buffer.concat([Buffer.from(`${dir}/\xff-`, 'latin1'), Buffer.from(TOKEN)]), 'x');
    fs.writeFileSync(path.join(dir, 'utf16.txt'), Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(TOKEN)]));
    const hits = await scanTree(dir, [TOKEN]);
    expect(hits).toHaveLength(2);
    expect(hits).toContain('utf16.txt: needle #0');
    expect(hits.join('\n')).not.toContain(TOKEN);
  });
});
