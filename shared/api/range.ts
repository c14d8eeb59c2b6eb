import type { ByteRange } from '../contract/inputs.js';

/**
 * The one byte range of a `Range` header (RFC 9110 §14.1.2): `bytes=a-b`, `bytes=a-`, `bytes=-n`.
 * Anything else — another unit, several ranges, a malformed one — is ignored (undefined), as the RFC
 * allows: the whole file is sent. A range that starts past the end is the service's 416.
 */
export function parseRange(header: string | undefined): ByteRange | undefined {
  if (header === undefined) return undefined;
  const match = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!match) return undefined;
  const [, a = '', b = ''] = match;
  if (a === '' && b === '') return undefined;
  if (a === '') return { suffix: safe(b) };
  const first = safe(a);
  if (b === '') return { first };
  const last = safe(b);
  return last < first ? undefined : { first, last };
}

/** Digits as a number, capped so that the shell's arithmetic in the workspace never overflows. */
function safe(digits: string): number {
  return Math.min(Number(digits), Number.MAX_SAFE_INTEGER);
}
