import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * How deliveries are signed: Standard Webhooks 1.0 (the scheme of Svix, and so of Daytona's and many
 * peers' webhooks), so a receiver can use that project's libraries. Headers:
 *
 *   webhook-id         the event id — the same on every attempt: de-duplicate on it
 *   webhook-timestamp  this attempt's time, Unix seconds (refuse old ones: replay protection)
 *   webhook-signature  `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`
 *
 * The key is the secret's UTF-8 bytes; a secret written `whsec_<base64>` (the form Standard Webhooks
 * libraries take) is the base64-decoded rest, as those libraries read it.
 */

const SIGNATURE_HEADERS = {
  id: 'webhook-id',
  timestamp: 'webhook-timestamp',
  signature: 'webhook-signature',
} as const;

function signingKey(secret: string): Buffer {
  return secret.startsWith('whsec_')
    ? Buffer.from(secret.slice('whsec_'.length), 'base64')
    : Buffer.from(secret, 'utf8');
}

/** The `webhook-signature` value for one attempt. */
export function signWebhook(secret: string, id: string, timestampSeconds: number, body: string): string {
  const mac = createHmac('sha256', signingKey(secret)).update(`${id}.${timestampSeconds}.${body}`).digest('base64');
  return `v1,${mac}`;
}

/** The three headers of one attempt. */
export function signedHeaders(
  secret: string,
  id: string,
  timestampSeconds: number,
  body: string,
): Record<string, string> {
  return {
    [SIGNATURE_HEADERS.id]: id,
    [SIGNATURE_HEADERS.timestamp]: String(timestampSeconds),
    [SIGNATURE_HEADERS.signature]: signWebhook(secret, id, timestampSeconds, body),
  };
}

/**
 * A receiver's check (what docs/webhooks.md describes; the tests' receiver uses it): a `v1` signature
 * of the space-separated list matches in constant time, and the timestamp is within `toleranceSeconds`
 * of `nowSeconds` both ways.
 */
export function verifyWebhook(
  secret: string,
  headers: Record<string, string | undefined>,
  body: string,
  nowSeconds: number,
  toleranceSeconds = 300,
): boolean {
  const id = headers[SIGNATURE_HEADERS.id];
  const timestamp = headers[SIGNATURE_HEADERS.timestamp];
  const signatures = headers[SIGNATURE_HEADERS.signature];
  if (id === undefined || timestamp === undefined || signatures === undefined || !/^\d{1,12}$/.test(timestamp))
    return false;
  if (Math.abs(nowSeconds - Number(timestamp)) > toleranceSeconds) return false;
  const expected = Buffer.from(signWebhook(secret, id, Number(timestamp), body));
  return signatures.split(' ').some((candidate) => {
    const given = Buffer.from(candidate);
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}
