import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { BackendUnavailableError, BadRequestError } from '../contract/errors.js';
import type { SecretSource } from '../contract/secrets.js';
import { bodyOf, withCause } from './reference.js';

/** Larger files are refused: a token is small, and /dev/zero-like mistakes must not hang us. */
export const MAX_SECRET_FILE_BYTES = 64 * 1024;

/**
 * `file:/abs/path` — read at each resolve (so a rotated file is picked up at once), with one
 * trailing newline (`\n` or `\r\n`) removed. Regular files only.
 */
export class FileSecretSource implements SecretSource {
  readonly schemes = ['file'] as const;

  /** BadRequestError for a relative path, a missing/unreadable/non-regular/empty/oversized file. */
  async resolve(reference: string): Promise<string> {
    const path = bodyOf(reference, 'file');
    if (!isAbsolute(path)) throw new BadRequestError(`secret reference '${reference}': path must be absolute`);
    const content = await readLimited(reference, path);
    const value = content.endsWith('\r\n')
      ? content.slice(0, -2)
      : content.endsWith('\n')
        ? content.slice(0, -1)
        : content;
    if (value === '') throw new BadRequestError(`secret reference '${reference}': file is empty`);
    return value;
  }
}

async function readLimited(reference: string, path: string): Promise<string> {
  let handle: FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw fileError(reference, err);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new BadRequestError(`secret reference '${reference}': not a regular file`);
    const buffer = Buffer.alloc(MAX_SECRET_FILE_BYTES + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > MAX_SECRET_FILE_BYTES) {
      throw new BadRequestError(`secret reference '${reference}': file is larger than ${MAX_SECRET_FILE_BYTES} bytes`);
    }
    return buffer.subarray(0, length).toString('utf8');
  } catch (err) {
    throw err instanceof BadRequestError ? err : fileError(reference, err);
  } finally {
    await handle.close();
  }
}

/** File-system errors carry the path and errno only, never contents, so the cause is kept. */
function fileError(reference: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  const why: Record<string, string> = {
    ENOENT: 'file not found',
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    EISDIR: 'not a regular file',
    ENOTDIR: 'file not found',
    ELOOP: 'too many symbolic links',
  };
  const reason = code !== undefined ? why[code] : undefined;
  if (reason !== undefined) return withCause(new BadRequestError(`secret reference '${reference}': ${reason}`), err);
  return new BackendUnavailableError(
    `secret reference '${reference}': cannot read file (${code ?? 'unknown error'})`,
    err,
  );
}
