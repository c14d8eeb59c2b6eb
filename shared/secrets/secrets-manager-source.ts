import {
  GetSecretValueCommand,
  type GetSecretValueCommandOutput,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { BackendUnavailableError, BadRequestError } from '../contract/errors.js';
import type { SecretSource } from '../contract/secrets.js';
import { bodyOf, withCause } from './reference.js';

export interface SecretsManagerSourceOptions {
  /** Built by the caller (region, endpoint override for LocalStack, credentials). */
  client: SecretsManagerClient;
  /** How long a fetched secret is reused; after that the next resolve fetches again (rotation). Default 5 min. */
  ttlMs?: number;
  /** Clock in epoch ms; injectable for tests. Default Date.now. */
  now?: () => number;
}

interface CachedSecret {
  secretString: string;
  fetchedAtMs: number;
}

/** Secret ids the service treats as operator configuration errors (→ 400). */
const BAD_REFERENCE_ERRORS: Record<string, string> = {
  ResourceNotFoundException: 'secret not found',
  InvalidRequestException: 'secret cannot be read (deleted or scheduled for deletion?)',
  InvalidParameterException: 'invalid secret id',
  ValidationException: 'invalid secret id',
};

/**
 * `secretsmanager:<name-or-arn>[#jsonKey]` via GetSecretValue (AWSCURRENT). The whole secret
 * string is cached per secret id for `ttlMs`; concurrent resolves share one request; failures
 * are not cached. With `#jsonKey` the secret must be a JSON object whose value at that key is a
 * non-empty string. Errors name the reference, never the value: BadRequestError for a bad or
 * missing secret or key, BackendUnavailableError for access denied, decryption or service failures.
 */
export class SecretsManagerSecretSource implements SecretSource {
  readonly schemes = ['secretsmanager'] as const;
  private readonly client: SecretsManagerClient;
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly cache = new Map<string, CachedSecret>();
  private readonly inFlight = new Map<string, Promise<CachedSecret>>();

  constructor(options: SecretsManagerSourceOptions) {
    this.client = options.client;
    this.ttlMs = options.ttlMs ?? 5 * 60_000;
    this.now = options.now ?? Date.now;
  }

  async resolve(reference: string): Promise<string> {
    const body = bodyOf(reference, 'secretsmanager');
    const hash = body.indexOf('#');
    const secretId = hash === -1 ? body : body.slice(0, hash);
    const jsonKey = hash === -1 ? undefined : body.slice(hash + 1);
    if (secretId === '') throw new BadRequestError(`secret reference '${reference}': missing secret name or ARN`);
    if (jsonKey === '') throw new BadRequestError(`secret reference '${reference}': empty JSON key after '#'`);

    const { secretString } = await this.fetch(reference, secretId);
    const value = jsonKey === undefined ? secretString : extractJsonKey(reference, secretString, jsonKey);
    if (value === '') throw new BadRequestError(`secret reference '${reference}': secret value is empty`);
    return value;
  }

  private async fetch(reference: string, secretId: string): Promise<CachedSecret> {
    const cached = this.cache.get(secretId);
    if (cached !== undefined && this.now() - cached.fetchedAtMs < this.ttlMs) return cached;
    let pending = this.inFlight.get(secretId);
    if (pending === undefined) {
      pending = this.getSecretValue(reference, secretId).finally(() => this.inFlight.delete(secretId));
      this.inFlight.set(secretId, pending);
    }
    const fresh = await pending;
    this.cache.set(secretId, fresh);
    return fresh;
  }

  private async getSecretValue(reference: string, secretId: string): Promise<CachedSecret> {
    let out: GetSecretValueCommandOutput;
    try {
      out = await this.client.send(new GetSecretValueCommand({ SecretId: secretId }));
    } catch (err) {
      // AWS error messages describe the request, not the secret, so the cause is safe to keep.
      const name = err instanceof Error ? err.name : 'unknown error';
      const reason = BAD_REFERENCE_ERRORS[name];
      if (reason !== undefined) throw withCause(new BadRequestError(`secret reference '${reference}': ${reason}`), err);
      if (name === 'AccessDeniedException') {
        throw new BackendUnavailableError(
          `secret reference '${reference}': access denied (check the provider's permissions)`,
          err,
        );
      }
      throw new BackendUnavailableError(`secret reference '${reference}': Secrets Manager unavailable (${name})`, err);
    }
    if (typeof out.SecretString !== 'string') {
      throw new BadRequestError(
        `secret reference '${reference}': secret has no string value (binary secrets are not supported)`,
      );
    }
    return { secretString: out.SecretString, fetchedAtMs: this.now() };
  }
}

/** No cause is kept here: JSON.parse's message quotes the input, i.e. the secret. */
function extractJsonKey(reference: string, secretString: string, key: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(secretString);
  } catch {
    throw new BadRequestError(`secret reference '${reference}': secret is not JSON, cannot read key '${key}'`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new BadRequestError(`secret reference '${reference}': secret is not a JSON object, cannot read key '${key}'`);
  }
  if (!Object.hasOwn(parsed, key))
    throw new BadRequestError(`secret reference '${reference}': JSON key '${key}' not found in secret`);
  const value = (parsed as Record<string, unknown>)[key];
  if (typeof value !== 'string') {
    throw new BadRequestError(
      `secret reference '${reference}': JSON key '${key}' is not a string (found ${value === null ? 'null' : typeof value})`,
    );
  }
  return value;
}
