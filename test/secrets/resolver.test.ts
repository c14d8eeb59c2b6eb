import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, describe, expect, it } from 'vitest';
import { BadRequestError } from '../../shared/contract/errors.js';
import type { SecretSource } from '../../shared/contract/secrets.js';
import { createSecretResolver } from '../../shared/secrets/default-resolver.js';
import { EnvSecretSource } from '../../shared/secrets/env-source.js';
import { SecretResolver } from '../../shared/secrets/resolver.js';

const ENV_SECRET = 'canary-env-7a1f';
const FILE_SECRET = 'canary-file-90b3';
const SM_SECRET = 'canary-sm-c4d2';

async function rejection(promise: Promise<unknown>): Promise<Error> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof Error)) throw new Error('expected a rejection');
  return err;
}

describe('SecretResolver', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wsp-resolver-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${FILE_SECRET}\n`);

  const client = new SecretsManagerClient({ region: 'us-east-1' });
  const sm = mockClient(client);
  sm.on(GetSecretValueCommand).resolves({ SecretString: JSON.stringify({ token: SM_SECRET }), $metadata: {} });

  it('dispatches by scheme and remembers every value it resolved', async () => {
    const resolver = createSecretResolver({ env: { TOKEN: ENV_SECRET }, secretsManagerClient: client });
    expect([...resolver.schemes].sort()).toEqual(['env', 'file', 'secretsmanager']);
    expect(resolver.knownSecretValues()).toEqual([]);
    expect(await resolver.resolve('env:TOKEN')).toBe(ENV_SECRET);
    expect(await resolver.resolve(`file:${tokenFile}`)).toBe(FILE_SECRET);
    expect(await resolver.resolve('secretsmanager:git#token')).toBe(SM_SECRET);
    expect(await resolver.resolve('env:TOKEN')).toBe(ENV_SECRET);
    expect(resolver.knownSecretValues().sort()).toEqual([ENV_SECRET, FILE_SECRET, SM_SECRET].sort());
  });

  it('keeps superseded values after a rotation and nothing from failures', async () => {
    const env: Record<string, string> = { TOKEN: 'first-value' };
    const resolver = new SecretResolver([new EnvSecretSource(env)]);
    await resolver.resolve('env:TOKEN');
    env.TOKEN = 'second-value';
    await resolver.resolve('env:TOKEN');
    await rejection(resolver.resolve('env:UNSET'));
    expect(resolver.knownSecretValues()).toEqual(['first-value', 'second-value']);
  });

  it('rejects an unknown scheme with BadRequestError', async () => {
    const resolver = createSecretResolver({ env: {} });
    const err = await rejection(resolver.resolve('vault:kv/git'));
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.message).toContain("'vault'");
    // Without a Secrets Manager client the scheme is unknown, not a crash later.
    expect(await rejection(resolver.resolve('secretsmanager:git'))).toBeInstanceOf(BadRequestError);
  });

  it('does not echo something that is not a reference at all (a pasted token)', async () => {
    const resolver = createSecretResolver({ env: {} });
    const pasted = 'ghp_0123456789abcdefPASTED';
    const err = await rejection(resolver.resolve(pasted));
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.message).not.toContain(pasted);
    const pastedUrl = 'https://user:ghp_secretinurl@example.invalid/repo.git';
    const urlErr = await rejection(resolver.resolve(pastedUrl));
    expect(urlErr.message).not.toContain('ghp_secretinurl');
  });

  it('refuses two sources for one scheme', () => {
    const a: SecretSource = { schemes: ['env'], resolve: async () => 'a' };
    expect(() => new SecretResolver([a, new EnvSecretSource({})])).toThrow(/scheme 'env'/);
  });
});
