import { ECRClient, GetAuthorizationTokenCommand } from '@aws-sdk/client-ecr';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BackendUnavailableError } from '../../../../shared/contract/errors.js';
import { createEcrRegistryClient, ecrAuth } from '../../../../shared/backends/ecs/image/ecr-auth.js';
import { RegistryError } from '../../../../shared/backends/ecs/image/errors.js';
import { scriptedServer, type ScriptedServer } from './scripted-server.js';

const ecrMock = mockClient(ECRClient);
const token = (password: string): string => Buffer.from(`AWS:${password}`).toString('base64');

describe('ECR registry auth', () => {
  let server: ScriptedServer;
  let valid: string;

  beforeEach(async () => {
    ecrMock.reset();
    valid = token('first-password');
    // A registry that accepts only the current token, like ECR's Basic auth.
    server = await scriptedServer((req) =>
      req.headers.authorization === `Basic ${valid}`
        ? {
            status: 200,
            headers: { 'docker-distribution-api-version': 'registry/2.0', 'content-type': 'application/json' },
            body: '{}',
          }
        : {
            status: 401,
            headers: { 'www-authenticate': 'Basic realm="ecr"', 'content-type': 'application/json' },
            body: '{"errors":[{"code":"DENIED","message":"Your authorization token has expired."}]}',
          },
    );
  });
  afterEach(async () => {
    await server.close();
  });

  it('sends Basic <authorizationToken> to the proxyEndpoint and caches the token until 5 min before expiresAt', async () => {
    let nowMs = Date.parse('2026-05-01T00:00:00Z');
    ecrMock.on(GetAuthorizationTokenCommand).resolves({
      authorizationData: [
        { authorizationToken: valid, proxyEndpoint: server.url, expiresAt: new Date(nowMs + 12 * 3600_000) },
      ],
    });
    const client = await createEcrRegistryClient(new ECRClient({ region: 'us-east-1' }), {
      registryId: '123456789012',
      now: () => nowMs,
    });
    expect(client.endpoint.origin).toBe(server.url);
    await client.ping();
    await client.ping();
    expect(server.requests.map((r) => r.headers.authorization)).toEqual([`Basic ${valid}`, `Basic ${valid}`]);
    expect(ecrMock.commandCalls(GetAuthorizationTokenCommand)).toHaveLength(1);
    expect(ecrMock.commandCalls(GetAuthorizationTokenCommand)[0]!.args[0].input).toEqual({
      registryIds: ['123456789012'],
    });

    nowMs += 12 * 3600_000 - 5 * 60_000 - 1; // just inside the window: still cached
    await client.ping();
    expect(ecrMock.commandCalls(GetAuthorizationTokenCommand)).toHaveLength(1);
    nowMs += 2; // 5 min before expiry: refreshed
    await client.ping();
    expect(ecrMock.commandCalls(GetAuthorizationTokenCommand)).toHaveLength(2);
  });

  it('a 401 drops the cached token, fetches a new one and retries once', async () => {
    const stale = token('stale-password');
    ecrMock
      .on(GetAuthorizationTokenCommand)
      .resolvesOnce({
        authorizationData: [
          { authorizationToken: stale, proxyEndpoint: server.url, expiresAt: new Date(Date.now() + 3600_000) },
        ],
      })
      .resolves({
        authorizationData: [
          { authorizationToken: valid, proxyEndpoint: server.url, expiresAt: new Date(Date.now() + 3600_000) },
        ],
      });
    const client = await createEcrRegistryClient(new ECRClient({ region: 'us-east-1' }));
    await client.ping();
    expect(server.requests.map((r) => r.headers.authorization)).toEqual([`Basic ${stale}`, `Basic ${valid}`]);
    expect(ecrMock.commandCalls(GetAuthorizationTokenCommand)).toHaveLength(2);
    expect(ecrMock.commandCalls(GetAuthorizationTokenCommand)[0]!.args[0].input).toEqual({});
  });

  it('a registry that keeps refusing gives a RegistryError naming the code, never the token', async () => {
    const wrong = token('never-accepted-password');
    ecrMock.on(GetAuthorizationTokenCommand).resolves({
      authorizationData: [
        { authorizationToken: wrong, proxyEndpoint: server.url, expiresAt: new Date(Date.now() + 3600_000) },
      ],
    });
    const client = await createEcrRegistryClient(new ECRClient({ region: 'us-east-1' }));
    const error = (await client.ping().catch((e: unknown) => e)) as RegistryError;
    expect(error).toBeInstanceOf(RegistryError);
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect(error.status).toBe(401);
    expect(error.registryCode).toBe('DENIED');
    expect(error.message).toContain('DENIED: Your authorization token has expired.');
    expect(error.message).not.toContain(wrong);
    expect(error.message).not.toContain('never-accepted-password');
    expect(server.requests).toHaveLength(2); // one retry, then give up
  });

  it('concurrent first requests share one GetAuthorizationToken call', async () => {
    ecrMock.on(GetAuthorizationTokenCommand).resolves({
      authorizationData: [
        { authorizationToken: valid, proxyEndpoint: server.url, expiresAt: new Date(Date.now() + 3600_000) },
      ],
    });
    const auth = ecrAuth(new ECRClient({ region: 'us-east-1' }));
    const headers = await Promise.all([auth.header(), auth.header(), auth.endpoint()]);
    expect(headers).toEqual([`Basic ${valid}`, `Basic ${valid}`, server.url]);
    expect(ecrMock.commandCalls(GetAuthorizationTokenCommand)).toHaveLength(1);
  });

  it('ECR failures and empty answers become BackendUnavailableError', async () => {
    ecrMock
      .on(GetAuthorizationTokenCommand)
      .rejectsOnce(Object.assign(new Error('rate exceeded'), { name: 'ThrottlingException' }))
      .resolves({ authorizationData: [] });
    const auth = ecrAuth(new ECRClient({ region: 'us-east-1' }));
    await expect(auth.header()).rejects.toThrow(/GetAuthorizationToken failed: ThrottlingException/);
    await expect(auth.header()).rejects.toBeInstanceOf(BackendUnavailableError);
  });
});
