import {
  DecryptionFailure,
  GetSecretValueCommand,
  InternalServiceError,
  ResourceNotFoundException,
  SecretsManagerClient,
  SecretsManagerServiceException,
} from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BackendUnavailableError, BadRequestError, WspError } from '../../shared/contract/errors.js';
import { SecretsManagerSecretSource } from '../../shared/secrets/secrets-manager-source.js';

const SECRET = 'ghp_canary_sm_8d2b6e';
const ROTATED = 'ghp_canary_sm_rotated_41c0';
const meta = { $metadata: {} };

/** Every message in the error and its cause chain, plus its details, serialised. */
function everything(err: unknown): string {
  const parts: string[] = [];
  let current: unknown = err;
  for (let depth = 0; current !== undefined && current !== null && depth < 5; depth++) {
    if (current instanceof Error) {
      parts.push(current.message, String(current.stack));
      if (current instanceof WspError) parts.push(JSON.stringify(current.details ?? null));
      current = current.cause;
    } else {
      parts.push(String(current));
      break;
    }
  }
  return parts.join('\n');
}

async function rejection(promise: Promise<unknown>, ...secrets: string[]): Promise<Error> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof Error)) throw new Error('expected a rejection');
  for (const secret of [SECRET, ROTATED, ...secrets]) expect(everything(err)).not.toContain(secret);
  return err;
}

describe('SecretsManagerSecretSource', () => {
  const client = new SecretsManagerClient({ region: 'us-east-1' });
  const sm = mockClient(client);
  let nowMs = 1_000_000;
  const now = (): number => nowMs;
  let source: SecretsManagerSecretSource;

  beforeEach(() => {
    sm.reset();
    nowMs = 1_000_000;
    source = new SecretsManagerSecretSource({ client, now, ttlMs: 60_000 });
  });
  afterEach(() => sm.reset());

  it('returns a plain string secret by name or ARN', async () => {
    const arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:git/token-AbCdEf';
    sm.on(GetSecretValueCommand, { SecretId: 'git/token' }).resolves({ SecretString: SECRET, ...meta });
    sm.on(GetSecretValueCommand, { SecretId: arn }).resolves({ SecretString: ROTATED, ...meta });
    expect(source.schemes).toEqual(['secretsmanager']);
    expect(await source.resolve('secretsmanager:git/token')).toBe(SECRET);
    expect(await source.resolve(`secretsmanager:${arn}`)).toBe(ROTATED);
  });

  it('extracts a JSON key', async () => {
    sm.on(GetSecretValueCommand, { SecretId: 'git/json' }).resolves({
      SecretString: JSON.stringify({ token: SECRET, user: 'bot' }),
      ...meta,
    });
    expect(await source.resolve('secretsmanager:git/json#token')).toBe(SECRET);
    expect(await source.resolve('secretsmanager:git/json#user')).toBe('bot');
    // Both keys came from one fetch.
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(1);
  });

  it('caches for the TTL and picks up a rotated value after it', async () => {
    sm.on(GetSecretValueCommand)
      .resolvesOnce({ SecretString: SECRET, ...meta })
      .resolves({ SecretString: ROTATED, ...meta });
    expect(await source.resolve('secretsmanager:git/token')).toBe(SECRET);
    nowMs += 59_999;
    expect(await source.resolve('secretsmanager:git/token')).toBe(SECRET);
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(1);
    nowMs += 1;
    expect(await source.resolve('secretsmanager:git/token')).toBe(ROTATED);
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(2);
  });

  it('defaults the TTL to five minutes', async () => {
    const defaults = new SecretsManagerSecretSource({ client, now });
    sm.on(GetSecretValueCommand)
      .resolvesOnce({ SecretString: SECRET, ...meta })
      .resolves({ SecretString: ROTATED, ...meta });
    expect(await defaults.resolve('secretsmanager:t')).toBe(SECRET);
    nowMs += 5 * 60_000 - 1;
    expect(await defaults.resolve('secretsmanager:t')).toBe(SECRET);
    nowMs += 1;
    expect(await defaults.resolve('secretsmanager:t')).toBe(ROTATED);
  });

  it('shares one request between concurrent resolves', async () => {
    sm.on(GetSecretValueCommand).resolves({ SecretString: SECRET, ...meta });
    const values = await Promise.all([1, 2, 3].map(() => source.resolve('secretsmanager:git/token')));
    expect(values).toEqual([SECRET, SECRET, SECRET]);
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(1);
  });

  it('maps ResourceNotFoundException to BadRequestError naming the reference, and does not cache failures', async () => {
    sm.on(GetSecretValueCommand)
      .rejectsOnce(
        new ResourceNotFoundException({ message: "Secrets Manager can't find the specified secret.", ...meta }),
      )
      .resolves({ SecretString: SECRET, ...meta });
    const err = await rejection(source.resolve('secretsmanager:git/missing'));
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.message).toContain("'secretsmanager:git/missing'");
    expect(err.message).toContain('not found');
    expect(err.cause).toBeInstanceOf(ResourceNotFoundException);
    expect(await source.resolve('secretsmanager:git/missing')).toBe(SECRET);
  });

  it('maps AccessDeniedException to BackendUnavailableError', async () => {
    // Not a modelled exception of this client: AWS returns it as a generic service error by name.
    const denied = new SecretsManagerServiceException({
      name: 'AccessDeniedException',
      $fault: 'client',
      message: 'User is not authorized',
      ...meta,
    });
    sm.on(GetSecretValueCommand).rejects(denied);
    const err = await rejection(source.resolve('secretsmanager:git/token#token'));
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect(err.message).toContain("'secretsmanager:git/token#token'");
    expect(err.message).toContain('access denied');
    expect(err.cause).toBe(denied);
  });

  it('maps decryption and service failures to BackendUnavailableError', async () => {
    sm.on(GetSecretValueCommand)
      .rejectsOnce(new DecryptionFailure({ message: 'kms', ...meta }))
      .rejectsOnce(new InternalServiceError({ message: 'boom', ...meta }));
    expect(await rejection(source.resolve('secretsmanager:a'))).toBeInstanceOf(BackendUnavailableError);
    expect(await rejection(source.resolve('secretsmanager:a'))).toBeInstanceOf(BackendUnavailableError);
  });

  it('rejects a missing JSON key, a non-string value and a non-JSON secret without echoing the value', async () => {
    sm.on(GetSecretValueCommand, { SecretId: 'json' }).resolves({
      SecretString: JSON.stringify({ token: SECRET, n: 42, o: { t: SECRET } }),
      ...meta,
    });
    sm.on(GetSecretValueCommand, { SecretId: 'plain' }).resolves({ SecretString: SECRET, ...meta });
    sm.on(GetSecretValueCommand, { SecretId: 'array' }).resolves({ SecretString: JSON.stringify([SECRET]), ...meta });

    const missingKey = await rejection(source.resolve('secretsmanager:json#password'));
    expect(missingKey).toBeInstanceOf(BadRequestError);
    expect(missingKey.message).toContain("JSON key 'password' not found");
    expect(missingKey.message).toContain("'secretsmanager:json#password'");

    const number = await rejection(source.resolve('secretsmanager:json#n'));
    expect(number).toBeInstanceOf(BadRequestError);
    expect(number.message).toContain('not a string');
    expect(await rejection(source.resolve('secretsmanager:json#o'))).toBeInstanceOf(BadRequestError);

    // JSON.parse's own message quotes its input; ours must not, and must not keep it as cause.
    const notJson = await rejection(source.resolve('secretsmanager:plain#token'));
    expect(notJson).toBeInstanceOf(BadRequestError);
    expect(notJson.message).toContain('not JSON');
    expect(await rejection(source.resolve('secretsmanager:array#0'))).toBeInstanceOf(BadRequestError);
  });

  it('rejects binary secrets and malformed references', async () => {
    sm.on(GetSecretValueCommand).resolves({ SecretBinary: new TextEncoder().encode(SECRET), ...meta });
    const binary = await rejection(source.resolve('secretsmanager:bin'));
    expect(binary).toBeInstanceOf(BadRequestError);
    expect(binary.message).toContain('binary');
    expect(await rejection(source.resolve('secretsmanager:'))).toBeInstanceOf(BadRequestError);
    expect(await rejection(source.resolve('secretsmanager:name#'))).toBeInstanceOf(BadRequestError);
    expect(await rejection(source.resolve('env:NAME'))).toBeInstanceOf(BadRequestError);
  });
});
