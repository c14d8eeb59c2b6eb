/**
 * A minimal ustar writer for tests: hostile archives (absolute and `..` names, links out, device nodes,
 * setuid bits) that no well-behaved tar would make. Names and link targets up to 100 bytes.
 */
export interface TarEntry {
  name: string | Buffer;
  /** '0' file (default), '1' hard link, '2' symlink, '3' char device, '4' block device, '5' dir, '6' FIFO. */
  type?: '0' | '1' | '2' | '3' | '4' | '5' | '6';
  data?: Buffer | string;
  link?: string;
  /** Default 0o644 (dirs 0o755). */
  mode?: number;
}

export function tarOf(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? '0';
    const data = type === '0' ? Buffer.from(e.data ?? '') : Buffer.alloc(0);
    const header = Buffer.alloc(512);
    const put = (value: string | Buffer, at: number, length: number): void => {
      const bytes = Buffer.from(value);
      if (bytes.length > length) throw new Error(`tar field too long: ${value}`);
      bytes.copy(header, at);
    };
    const octal = (n: number, length: number): string => `${n.toString(8).padStart(length - 1, '0')}\0`;
    put(e.name, 0, 100);
    put(octal(e.mode ?? (type === '5' ? 0o755 : 0o644), 8), 100, 8);
    put(octal(1000, 8), 108, 8);
    put(octal(1000, 8), 116, 8);
    put(octal(data.length, 12), 124, 12);
    put(octal(1_700_000_000, 12), 136, 12);
    put('        ', 148, 8);
    put(type, 156, 1);
    put(e.link ?? '', 157, 100);
    put('ustar\u000000', 257, 8);
    if (type === '3' || type === '4') {
      put(octal(1, 8), 329, 8);
      put(octal(3, 8), 337, 8);
    }
    let sum = 0;
    for (const byte of header) sum += byte;
    put(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
    blocks.push(header, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}
