import {
  GetAuthorizationTokenCommand,
  type ECRClient,
  type GetAuthorizationTokenCommandOutput,
} from '@aws-sdk/client-ecr';
import { BackendUnavailableError } from '../../../contract/errors.js';
import type { RegistryAuth } from './auth.js';
import { RegistryClient, type RegistryClientOptions } from './registry-client.js';

/**
 * ECR registry auth: `GetAuthorizationToken` gives `authorizationToken` = base64("AWS:<password>"),
 * valid 12 h (`expiresAt`), and `proxyEndpoint` (https://<account>.dkr.ecr.<region>.amazonaws.com).
 * The token is cached until `refreshBeforeMs` (default 5 min) before it expires, and dropped on a 401.
 * The token is a secret: it never appears in an error message or log line.
 */
export interface EcrAuthOptions {
  /** The registry (account id) to authorize for; default: the caller's own. */
  registryId?: string;
  /** Refresh this long before `expiresAt` (ms). Default 5 min. */
  refreshBeforeMs?: number;
  /** Clock (ms since epoch), for tests. */
  now?: () => number;
}

export interface EcrAuth extends RegistryAuth {
  /** The registry's proxyEndpoint (https://…), fetching a token if none is cached. */
  endpoint(): Promise<string>;
}

interface CachedToken {
  header: string;
  endpoint: string;
  /** ms since epoch after which a new token is fetched */
  refreshAt: number;
}

export function ecrAuth(ecr: ECRClient, options: EcrAuthOptions = {}): EcrAuth {
  const now = options.now ?? Date.now;
  const refreshBeforeMs = options.refreshBeforeMs ?? 5 * 60_000;
  let cached: CachedToken | undefined;
  let inflight: Promise<CachedToken> | undefined;

  const fetchToken = async (): Promise<CachedToken> => {
    let out: GetAuthorizationTokenCommandOutput;
    try {
      out = await ecr.send(
        new GetAuthorizationTokenCommand(options.registryId ? { registryIds: [options.registryId] } : {}),
      );
    } catch (error) {
      throw new BackendUnavailableError(`ECR GetAuthorizationToken failed: ${(error as Error).name}`, error);
    }
    const data = out.authorizationData?.[0];
    if (!data?.authorizationToken || !data.proxyEndpoint)
      throw new BackendUnavailableError('ECR GetAuthorizationToken returned no authorization data');
    // Without expiresAt, assume ECR's documented 12 h validity.
    const expiresAt = data.expiresAt?.getTime() ?? now() + 12 * 3600_000;
    return {
      header: `Basic ${data.authorizationToken}`,
      endpoint: data.proxyEndpoint,
      refreshAt: expiresAt - refreshBeforeMs,
    };
  };

  const current = async (): Promise<CachedToken> => {
    if (cached && now() < cached.refreshAt) return cached;
    // Single-flight: concurrent requests share one GetAuthorizationToken call.
    inflight ??= fetchToken().finally(() => (inflight = undefined));
    cached = await inflight;
    return cached;
  };

  return {
    header: async () => (await current()).header,
    endpoint: async () => (await current()).endpoint,
    onUnauthorized: async () => {
      cached = undefined;
      return true;
    },
  };
}

/** A RegistryClient for an ECR registry: endpoint = proxyEndpoint, auth = the cached ECR token. */
export async function createEcrRegistryClient(
  ecr: ECRClient,
  options: EcrAuthOptions & Omit<RegistryClientOptions, 'endpoint' | 'auth'> = {},
): Promise<RegistryClient> {
  const auth = ecrAuth(ecr, options);
  return new RegistryClient({ ...options, endpoint: await auth.endpoint(), auth });
}
