import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Hashed bearer keys. The deployment stores only sha256(key) in hex (`WSP_API_KEY_HASHES`, comma
 * separated), never a key. A presented key is hashed and compared with EVERY stored hash in constant
 * time (no early exit), so neither a key's length nor which hash matched shows in the timing.
 */

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** sha256 of a key as lowercase hex: what an operator puts in WSP_API_KEY_HASHES. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/**
 * Parse the comma-separated hex hashes (whitespace ignored, case-insensitive). Throws an Error
 * naming the position of a malformed entry — never its value (it is not secret, but keep logs plain).
 */
export function parseKeyHashes(value: string | undefined): Buffer[] {
  if (value === undefined) return [];
  const entries = value
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '');
  return entries.map((hex, i) => {
    if (!SHA256_HEX.test(hex)) throw new Error(`WSP_API_KEY_HASHES entry ${i + 1} is not a 64-digit hex sha256`);
    return Buffer.from(hex, 'hex');
  });
}

/** The key from `Authorization: Bearer <key>`; undefined when the header is missing or not a bearer. */
export function bearerKey(authorization: string | undefined): string | undefined {
  if (authorization === undefined) return undefined;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
  return match?.[1] || undefined;
}

/** True iff `digest` equals one of `hashes`; always compares against all of them (constant time). */
export function constantTimeIncludes(digest: Buffer, hashes: readonly Buffer[]): boolean {
  let found = 0;
  for (const hash of hashes) {
    // Every stored hash is 32 bytes (parseKeyHashes), as is every digest: equal lengths, no throw.
    found |= hash.length === digest.length && timingSafeEqual(hash, digest) ? 1 : 0;
  }
  return found === 1;
}

/** The whole check: a bearer key whose sha256 is one of `hashes`. */
export function authorizationMatches(authorization: string | undefined, hashes: readonly Buffer[]): boolean {
  const key = bearerKey(authorization);
  if (key === undefined) return false;
  return constantTimeIncludes(createHash('sha256').update(key, 'utf8').digest(), hashes);
}
