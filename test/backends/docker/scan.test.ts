import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { scanImageTar } from '../../../shared/backends/tar/scan.js';

// The layer scan on a synthetic `docker save` stream (no Docker needed), fed in tiny chunks so every
// needle crosses chunk boundaries.
async function tarOf(entries: { name: string; content?: Buffer | string; linkname?: string }[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    if (e.linkname !== undefined) pack.entry({ name: e.name, type: 'symlink', linkname: e.linkname });
    else
      pack.entry(
        { name: e.name },
        typeof e.content === 'string' ? Buffer.from(e.content) : (e.content ?? Buffer.alloc(0)),
      );
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as unknown as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

function trickle(buf: Buffer, size: number): NodeJS.ReadableStream {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
}

const NEEDLE = 'tok-0123456789abcdef';

async function image(): Promise<Buffer> {
  const layer1 = await tarOf([{ name: 'etc/clean', content: 'nothing here\n'.repeat(100) }]);
  const layer2 = await tarOf([
    { name: 'home/node/.npmrc', content: `${'x'.repeat(1000)}//registry/:_authToken=${NEEDLE}\n` },
    { name: `home/node/dir-${NEEDLE}/f`, content: 'plain' },
    { name: 'home/node/link', linkname: `/tmp/${NEEDLE}` },
  ]);
  return tarOf([
    { name: 'cfg.json', content: JSON.stringify({ config: { Env: [`API=${NEEDLE}`] } }) },
    { name: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/layer.tar', content: layer1 },
    { name: 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/layer.tar', content: layer2 },
    { name: 'manifest.json', content: '[]' },
  ]);
}

describe('docker image scan', () => {
  it('finds needles in contents, names, link targets and the config, across chunk seams, without echoing them', async () => {
    for (const size of [7, 512, 65536]) {
      const hits = await scanImageTar(trickle(await image(), size), ['absent-one', NEEDLE]);
      expect(hits.sort()).toEqual([
        'bbbbbbbbbbbb:/home/node/.npmrc: needle #1',
        'bbbbbbbbbbbb:/home/node/dir-***/f (name): needle #1',
        'bbbbbbbbbbbb:/home/node/link (name): needle #1',
        'image:cfg.json: needle #1',
      ]);
    }
  });

  it('reports nothing for absent or empty needles', async () => {
    expect(await scanImageTar(trickle(await image(), 100), ['absent-one', ''])).toEqual([]);
    expect(await scanImageTar(trickle(await image(), 100), [])).toEqual([]);
  });
});
