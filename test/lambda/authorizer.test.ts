import { createHash, timingSafeEqual } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';

// timingSafeEqual, counted (same behaviour): proves every stored hash is compared.
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) };
});
import {
  authorizationMatches,
  bearerKey,
  constantTimeIncludes,
  hashApiKey,
  parseKeyHashes,
} from '../../functions/lambda/api-keys.js';
import { authorize } from '../../functions/lambda/authorizer.js';
import { apiEvent, lambdaContext } from './events.js';

const KEY_A = 'key-a-0123456789abcdef';
const KEY_B = 'key-b-fedcba9876543210';
const hashes = parseKeyHashes(`${hashApiKey(KEY_A)}, ${hashApiKey(KEY_B).toUpperCase()}`);
const authEvent = (authorization?: string) => ({ headers: authorization === undefined ? {} : { authorization } });

describe('authorizer decision (simple responses)', () => {
  it('allows the right key, whichever of the configured hashes it matches', () => {
    expect(authorize(authEvent(`Bearer ${KEY_A}`), hashes)).toEqual({ isAuthorized: true });
    expect(authorize(authEvent(`bearer ${KEY_B}`), hashes)).toEqual({ isAuthorized: true });
    expect(authorize({ headers: { Authorization: `Bearer ${KEY_A}` } }, hashes)).toEqual({ isAuthorized: true });
  });

  it('denies a wrong key, a key differing in one character, and the hash itself presented as a key', () => {
    expect(authorize(authEvent('Bearer key-a-nope'), hashes).isAuthorized).toBe(false);
    expect(authorize(authEvent(`Bearer ${KEY_A.slice(0, -1)}X`), hashes).isAuthorized).toBe(false);
    expect(authorize(authEvent(`Bearer ${hashApiKey(KEY_A)}`), hashes).isAuthorized).toBe(false);
  });

  it('denies a missing header, an empty bearer, another scheme, and everything when no hash is configured', () => {
    expect(authorize(authEvent(), hashes).isAuthorized).toBe(false);
    expect(authorize({}, hashes).isAuthorized).toBe(false);
    expect(authorize(authEvent('Bearer '), hashes).isAuthorized).toBe(false);
    expect(authorize(authEvent(`Basic ${Buffer.from(`u:${KEY_A}`).toString('base64')}`), hashes).isAuthorized).toBe(
      false,
    );
    expect(authorize(authEvent(`Bearer ${KEY_A}`), []).isAuthorized).toBe(false);
  });
});

describe('hash helpers', () => {
  it('hashApiKey is hex sha256', () => {
    expect(hashApiKey('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('parseKeyHashes accepts comma lists with spaces and any case, refuses malformed entries by position only', () => {
    expect(parseKeyHashes(undefined)).toEqual([]);
    expect(parseKeyHashes(' , ')).toEqual([]);
    expect(hashes).toHaveLength(2);
    const bad = 'deadbeef';
    expect(() => parseKeyHashes(`${hashApiKey(KEY_A)},${bad}`)).toThrow(/entry 2 is not a 64-digit hex sha256/);
    try {
      parseKeyHashes(bad);
    } catch (error) {
      expect((error as Error).message).not.toContain(bad);
    }
  });

  it('bearerKey takes exactly one token after the scheme', () => {
    expect(bearerKey('Bearer abc')).toBe('abc');
    expect(bearerKey('Bearer\tabc  ')).toBe('abc');
    expect(bearerKey('Bearer abc def')).toBeUndefined();
    expect(bearerKey('Token abc')).toBeUndefined();
    expect(bearerKey(undefined)).toBeUndefined();
  });

  it('constantTimeIncludes finds a match anywhere and compares against every hash (no early exit)', () => {
    const digest = createHash('sha256').update(KEY_B).digest();
    expect(constantTimeIncludes(digest, hashes)).toBe(true);
    expect(constantTimeIncludes(createHash('sha256').update('other').digest(), hashes)).toBe(false);
    expect(constantTimeIncludes(digest, [])).toBe(false);
    // Every stored hash is compared, even after a match on the first: the work does not depend on
    // which (or whether any) hash matches.
    const counted = vi.mocked(timingSafeEqual);
    const many = [...hashes, ...parseKeyHashes([1, 2, 3].map((i) => hashApiKey(`k${i}`)).join(','))];
    counted.mockClear();
    expect(constantTimeIncludes(createHash('sha256').update(KEY_A).digest(), many)).toBe(true);
    expect(counted).toHaveBeenCalledTimes(many.length);
    counted.mockClear();
    expect(constantTimeIncludes(createHash('sha256').update('nobody').digest(), many)).toBe(false);
    expect(counted).toHaveBeenCalledTimes(many.length);
  });

  it('authorizationMatches is the whole check', () => {
    expect(authorizationMatches(`Bearer ${KEY_A}`, hashes)).toBe(true);
    expect(authorizationMatches(`Bearer ${KEY_A}x`, hashes)).toBe(false);
    expect(authorizationMatches(undefined, hashes)).toBe(false);
  });
});

describe('authorizer handler', () => {
  it('reads WSP_API_KEY_HASHES once and answers simple responses', async () => {
    vi.resetModules();
    const before = process.env.WSP_API_KEY_HASHES;
    process.env.WSP_API_KEY_HASHES = hashApiKey(KEY_A);
    try {
      const { handler } = await import('../../functions/lambda/authorizer.js');
      const event = (authorization?: string) => ({
        ...apiEvent('GET', '/workspaces', { headers: authorization ? { authorization } : {} }),
        type: 'REQUEST' as const,
        routeArn: 'arn:x',
        identitySource: authorization ? [authorization] : [],
        cookies: [],
      });
      expect(await handler(event(`Bearer ${KEY_A}`), lambdaContext())).toEqual({ isAuthorized: true });
      expect(await handler(event(`Bearer ${KEY_B}`), lambdaContext())).toEqual({ isAuthorized: false });
      expect(await handler(event(), lambdaContext())).toEqual({ isAuthorized: false });
    } finally {
      if (before === undefined) delete process.env.WSP_API_KEY_HASHES;
      else process.env.WSP_API_KEY_HASHES = before;
    }
  });

  it('a malformed hash list denies everything instead of throwing', async () => {
    vi.resetModules();
    const before = process.env.WSP_API_KEY_HASHES;
    process.env.WSP_API_KEY_HASHES = `${hashApiKey(KEY_A)},not-a-hash`;
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const { handler } = await import('../../functions/lambda/authorizer.js');
      const event = {
        ...apiEvent('GET', '/workspaces', { headers: { authorization: `Bearer ${KEY_A}` } }),
        type: 'REQUEST' as const,
        routeArn: 'arn:x',
        identitySource: [],
        cookies: [],
      };
      expect(await handler(event, lambdaContext())).toEqual({ isAuthorized: false });
      expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toContain('authorizer misconfigured');
    } finally {
      stderr.mockRestore();
      if (before === undefined) delete process.env.WSP_API_KEY_HASHES;
      else process.env.WSP_API_KEY_HASHES = before;
    }
  });
});
