import { describe, expect, it } from 'vitest';
import { bearerChallengeAuth, parseBearerChallenge } from '../../../../shared/backends/ecs/image/auth.js';
import { RegistryError } from '../../../../shared/backends/ecs/image/errors.js';
import { RegistryClient } from '../../../../shared/backends/ecs/image/registry-client.js';
import { scriptedServer } from './scripted-server.js';

describe('Bearer token challenge', () => {
  it('parses the challenge parameters', () => {
    expect(
      parseBearerChallenge(
        'Bearer realm="https://auth.example/token",service="reg.example",scope="repository:a/b:pull,push"',
      ),
    ).toEqual({
      realm: 'https://auth.example/token',
      service: 'reg.example',
      scope: 'repository:a/b:pull,push',
    });
    expect(parseBearerChallenge('Basic realm="x"')).toBeUndefined();
    expect(parseBearerChallenge(null)).toBeUndefined();
  });

  it('on a 401 fetches a token for the challenged scope (with Basic credentials) and retries with it', async () => {
    const tokens = await scriptedServer((req) =>
      req.headers.authorization === `Basic ${Buffer.from('robot:pw').toString('base64')}`
        ? { status: 200, headers: { 'content-type': 'application/json' }, body: '{"token":"tok-1"}' }
        : { status: 401 },
    );
    const registry = await scriptedServer((req) =>
      req.headers.authorization === 'Bearer tok-1'
        ? { status: 200, body: '{}' }
        : {
            status: 401,
            headers: {
              'www-authenticate': `Bearer realm="${tokens.url}/token",service="test-registry",scope="repository:a/b:pull"`,
            },
            body: '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
          },
    );
    try {
      const client = new RegistryClient({
        endpoint: registry.url,
        auth: bearerChallengeAuth({ username: 'robot', password: 'pw' }),
      });
      await client.ping();
      await client.ping();
      expect(registry.requests.map((r) => r.headers.authorization)).toEqual([
        undefined,
        'Bearer tok-1',
        'Bearer tok-1',
      ]);
      expect(tokens.requests).toHaveLength(1);
      const asked = new URL(tokens.requests[0]!.url, tokens.url);
      expect(asked.pathname).toBe('/token');
      expect(asked.searchParams.get('service')).toBe('test-registry');
      expect(asked.searchParams.get('scope')).toBe('repository:a/b:pull');

      const refused = new RegistryClient({
        endpoint: registry.url,
        auth: bearerChallengeAuth({ username: 'robot', password: 'wrong' }),
      });
      const error = (await refused.ping().catch((e: unknown) => e)) as RegistryError;
      expect(error).toBeInstanceOf(RegistryError);
      expect(error.registryCode).toBe('UNAUTHORIZED');
    } finally {
      await registry.close();
      await tokens.close();
    }
  });
});
