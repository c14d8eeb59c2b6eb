import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * Write `data` to `file` through a temp file renamed into place: a reader sees the old content or
 * the new one whole, never a part. The temp file is a dot name ending in `.tmp`, beside the file or
 * in `tmpDir` (same filesystem) when the file's own dir must never hold a transient entry; it is
 * removed if anything fails.
 */
export async function writeFileAtomic(
  file: string,
  data: string | Buffer,
  options: { mode: number; tmpDir?: string },
): Promise<void> {
  const name = `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const tmp = path.join(options.tmpDir ?? path.dirname(file), name);
  try {
    await fs.writeFile(tmp, data, { mode: options.mode });
    await fs.rename(tmp, file);
  } finally {
    await fs.rm(tmp, { force: true });
  }
}
