/**
 * Pluggable registry authentication. The client asks for a header before each request to the
 * registry's own origin (never to a redirect target such as S3) and, on a 401, calls
 * `onUnauthorized` once; `true` means "retry the request with a fresh header".
 */
export interface RegistryAuth {
  /** The Authorization header value, or undefined to send none. */
  header(): Promise<string | undefined>;
  /** Called with the WWW-Authenticate challenge of a 401; true = worth one retry. */
  onUnauthorized?(challenge: string | null): Promise<boolean>;
}

export const noAuth: RegistryAuth = { header: async () => undefined };

/** HTTP Basic: `Authorization: Basic base64(user:password)`. */
export function basicAuth(username: string, password: string): RegistryAuth {
  const value = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  return { header: async () => value };
}

/** Parses `Bearer realm="…",service="…",scope="…"` (undefined if not a Bearer challenge). */
export function parseBearerChallenge(challenge: string | null): Record<string, string> | undefined {
  const m = challenge?.match(/^\s*Bearer\s+(.*)$/i);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  for (const p of m[1]!.matchAll(/([A-Za-z_]+)="([^"]*)"/g)) params[p[1]!.toLowerCase()] = p[2]!;
  return params.realm ? params : undefined;
}

/**
 * The registry token flow (Docker Hub, GHCR, Harbor…): on a 401 with a Bearer challenge, GET
 * `realm?service=…&scope=…` (with Basic credentials if given) and send `Bearer <token>` from then
 * on. Keeps one token — the last challenge's scope — so alternating repositories re-fetch; fine
 * for our push of one image at a time. Token-endpoint failures surface as the retried 401.
 */
export function bearerChallengeAuth(credentials?: { username: string; password: string }): RegistryAuth {
  let token: string | undefined;
  return {
    header: async () => (token === undefined ? undefined : `Bearer ${token}`),
    onUnauthorized: async (challenge) => {
      const params = parseBearerChallenge(challenge);
      if (!params) return false;
      const url = new URL(params.realm!);
      if (params.service) url.searchParams.set('service', params.service);
      if (params.scope) url.searchParams.set('scope', params.scope);
      const headers: Record<string, string> = credentials
        ? {
            authorization: `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`,
          }
        : {};
      try {
        const res = await fetch(url, { headers });
        if (!res.ok) {
          await res.body?.cancel();
          return false;
        }
        const body = (await res.json()) as { token?: string; access_token?: string };
        token = body.token ?? body.access_token;
        return token !== undefined;
      } catch {
        return false;
      }
    },
  };
}
