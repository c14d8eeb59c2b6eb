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

/** Basic with a ready `base64(user:password)` token (what ECR's GetAuthorizationToken returns). */
export function basicTokenAuth(token: string): RegistryAuth {
  return { header: async () => `Basic ${token}` };
}
