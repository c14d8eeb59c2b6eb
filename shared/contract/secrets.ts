/**
 * Secret source port. A reference is `env:NAME`, `file:/path` or `secretsmanager:<name-or-arn>[#jsonKey]`.
 * Errors name the reference, never the value.
 */
export interface SecretSource {
  /** The schemes this source answers, e.g. ['env', 'file']. */
  readonly schemes: readonly string[];
  resolve(reference: string): Promise<string>;
}
