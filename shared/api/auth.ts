import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Bearer-token check. Both sides are hashed first so the comparison is constant-time whatever the
 * lengths (timingSafeEqual needs equal lengths; comparing lengths first would leak the length).
 */
export function bearerMatches(authorization: string | undefined, expectedToken: string): boolean {
  if (authorization === undefined) return false;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
  if (!match?.[1]) return false;
  const presented = createHash('sha256').update(match[1], 'utf8').digest();
  const expected = createHash('sha256').update(expectedToken, 'utf8').digest();
  return timingSafeEqual(presented, expected);
}
