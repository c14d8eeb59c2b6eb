import crypto from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { BadRequestError } from '../../../contract/errors.js';
import { RegistryError } from './errors.js';

/** Digests and name checks. Only sha256 digests are produced or accepted. */

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;
// distribution/reference: path components of lowercase alphanumerics joined by separators.
const REPOSITORY_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export const sha256Digest = (bytes: Uint8Array): string =>
  `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;

export function isDigest(s: string): boolean {
  return DIGEST_RE.test(s);
}

export function assertDigest(s: string): void {
  if (!DIGEST_RE.test(s)) throw new BadRequestError(`not a sha256 digest: '${s.slice(0, 80)}'`);
}

export function assertRepository(name: string): void {
  if (name.length > 255 || !REPOSITORY_RE.test(name))
    throw new BadRequestError(`invalid repository name '${name.slice(0, 80)}'`);
}

/** A tag or a digest. */
export function assertReference(ref: string): void {
  if (!TAG_RE.test(ref) && !DIGEST_RE.test(ref))
    throw new BadRequestError(`invalid image reference '${ref.slice(0, 80)}' (a tag or sha256 digest)`);
}

/** Counts and hashes what passes through; `digest`/`size` are final after the stream ends. */
export class HashTap extends Transform {
  private readonly hash = crypto.createHash('sha256');
  size = 0;
  digest = '';
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    done(null, chunk);
  }
  override _flush(done: TransformCallback): void {
    this.digest = `sha256:${this.hash.digest('hex')}`;
    done();
  }
}

/**
 * Passes bytes through and fails the stream at the end if they do not hash to `expected` (or, when
 * given, their count differs from `expectedSize`): a downloaded blob is never trusted unverified.
 */
export class VerifyingStream extends Transform {
  private readonly hash = crypto.createHash('sha256');
  private size = 0;
  constructor(
    private readonly expected: string,
    private readonly what: string,
    private readonly expectedSize?: number,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    if (this.expectedSize !== undefined && this.size > this.expectedSize) {
      done(
        new RegistryError(
          `${this.what}: blob ${this.expected} is larger than its descriptor's ${this.expectedSize} bytes`,
          { registryCode: 'SIZE_INVALID' },
        ),
      );
      return;
    }
    done(null, chunk);
  }
  override _flush(done: TransformCallback): void {
    const got = `sha256:${this.hash.digest('hex')}`;
    if (got !== this.expected) {
      done(
        new RegistryError(`${this.what}: blob digest mismatch (expected ${this.expected}, got ${got})`, {
          registryCode: 'DIGEST_INVALID',
        }),
      );
    } else if (this.expectedSize !== undefined && this.size !== this.expectedSize) {
      done(
        new RegistryError(
          `${this.what}: blob ${this.expected} has ${this.size} bytes, descriptor says ${this.expectedSize}`,
          { registryCode: 'SIZE_INVALID' },
        ),
      );
    } else done();
  }
}
