import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { SecretSource } from '../contract/secrets.js';
import { EnvSecretSource } from './env-source.js';
import { FileSecretSource } from './file-source.js';
import { SecretResolver } from './resolver.js';
import { SecretsManagerSecretSource } from './secrets-manager-source.js';

export interface SecretResolverOptions {
  /** Environment for `env:` references. Default process.env. */
  env?: Record<string, string | undefined>;
  /** Enables `secretsmanager:` references; without it they are an unknown scheme (400). */
  secretsManagerClient?: SecretsManagerClient;
  /** Cache TTL for Secrets Manager values. Default 5 min. */
  secretsManagerTtlMs?: number;
}

/** The resolver with the three standard sources (env, file, and Secrets Manager when a client is given). */
export function createSecretResolver(options: SecretResolverOptions = {}): SecretResolver {
  const sources: SecretSource[] = [new EnvSecretSource(options.env ?? process.env), new FileSecretSource()];
  if (options.secretsManagerClient !== undefined) {
    sources.push(
      new SecretsManagerSecretSource({
        client: options.secretsManagerClient,
        ...(options.secretsManagerTtlMs !== undefined ? { ttlMs: options.secretsManagerTtlMs } : {}),
      }),
    );
  }
  return new SecretResolver(sources);
}
