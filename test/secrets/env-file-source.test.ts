import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BadRequestError } from '../../shared/contract/errors.js';
import { EnvSecretSource } from '../../shared/secrets/env-source.js';
import { FileSecretSource, MAX_SECRET_FILE_BYTES } from '../../shared/secrets/file-source.js';

const SECRET = 'ghp_canary_3f9a7c1e5d';

async function rejection(promise: Promise<unknown>): Promise<Error> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof Error)) throw new Error('expected a rejection');
  expect(err.message).not.toContain(SECRET);
  return err;
}

describe('EnvSecretSource', () => {
  const source = new EnvSecretSource({ GIT_TOKEN: SECRET, EMPTY: '' });

  it('reads the variable from the map it was given', async () => {
    expect(source.schemes).toEqual(['env']);
    expect(await source.resolve('env:GIT_TOKEN')).toBe(SECRET);
  });

  it('defaults to process.env', async () => {
    process.env.WSP_TEST_SECRET_ENV = SECRET;
    try {
      expect(await new EnvSecretSource().resolve('env:WSP_TEST_SECRET_ENV')).toBe(SECRET);
    } finally {
      delete process.env.WSP_TEST_SECRET_ENV;
    }
  });

  it('rejects unset, empty and malformed names with BadRequestError naming the reference', async () => {
    const unset = await rejection(source.resolve('env:MISSING'));
    expect(unset).toBeInstanceOf(BadRequestError);
    expect(unset.message).toContain("'env:MISSING'");
    expect(unset.message).toContain('not set');
    expect(await rejection(source.resolve('env:EMPTY'))).toBeInstanceOf(BadRequestError);
    expect(await rejection(source.resolve('env:1BAD'))).toBeInstanceOf(BadRequestError);
    expect(await rejection(source.resolve('file:/x'))).toBeInstanceOf(BadRequestError);
  });
});

describe('FileSecretSource', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wsp-secret-file-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const source = new FileSecretSource();
  const file = (name: string, content: string | Buffer): string => {
    const path = join(dir, name);
    writeFileSync(path, content, { mode: 0o600 });
    return path;
  };

  it('reads the file and trims exactly one trailing newline', async () => {
    expect(await source.resolve(`file:${file('plain', SECRET)}`)).toBe(SECRET);
    expect(await source.resolve(`file:${file('lf', `${SECRET}\n`)}`)).toBe(SECRET);
    expect(await source.resolve(`file:${file('crlf', `${SECRET}\r\n`)}`)).toBe(SECRET);
    expect(await source.resolve(`file:${file('two', `${SECRET}\n\n`)}`)).toBe(`${SECRET}\n`);
    expect(await source.resolve(`file:${file('spaces', ` ${SECRET} \n`)}`)).toBe(` ${SECRET} `);
  });

  it('picks up a rewritten file at once (no caching)', async () => {
    const path = file('rotating', 'old-value\n');
    expect(await source.resolve(`file:${path}`)).toBe('old-value');
    writeFileSync(path, `${SECRET}\n`);
    expect(await source.resolve(`file:${path}`)).toBe(SECRET);
  });

  it('follows a symlink to a regular file', async () => {
    const target = file('target', SECRET);
    const link = join(dir, 'link');
    symlinkSync(target, link);
    expect(await source.resolve(`file:${link}`)).toBe(SECRET);
  });

  it('rejects bad paths and files with BadRequestError naming the reference', async () => {
    const missing = await rejection(source.resolve(`file:${join(dir, 'nope')}`));
    expect(missing).toBeInstanceOf(BadRequestError);
    expect(missing.message).toContain('file not found');
    expect(missing.message).toContain(join(dir, 'nope'));
    expect(missing.cause).toBeDefined();

    expect(await rejection(source.resolve('file:relative/token'))).toBeInstanceOf(BadRequestError);
    expect(await rejection(source.resolve(`file:${file('empty', '')}`))).toBeInstanceOf(BadRequestError);
    expect(await rejection(source.resolve(`file:${file('newline-only', '\n')}`))).toBeInstanceOf(BadRequestError);

    const sub = join(dir, 'a-dir');
    mkdirSync(sub);
    const isDir = await rejection(source.resolve(`file:${sub}`));
    expect(isDir).toBeInstanceOf(BadRequestError);
    expect(isDir.message).toContain('not a regular file');
  });

  it('refuses a FIFO without blocking on it', async () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const err = await rejection(source.resolve(`file:${fifo}`));
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.message).toContain('not a regular file');
  });

  it('refuses files over the size limit and accepts one at the limit', async () => {
    const atLimit = 'x'.repeat(MAX_SECRET_FILE_BYTES);
    expect(await source.resolve(`file:${file('at-limit', atLimit)}`)).toBe(atLimit);
    const over = await rejection(source.resolve(`file:${file('over', `${atLimit}y`)}`));
    expect(over).toBeInstanceOf(BadRequestError);
    expect(over.message).toContain('larger than');
  });
});
