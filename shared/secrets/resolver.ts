import { BadRequestError } from '../contract/errors.js';
import type { SecretSource } from '../contract/secrets.js';
import { parseReference } from './reference.js';

/**
 * Dispatches a reference to the source registered for its scheme, and remembers every value it
 * handed out so the service can scan cache entries and outputs for them (canary/secret scan).
 */
export class SecretResolver implements SecretSource {
  readonly schemes: readonly string[];
  private readonly bySchemes = new Map<string, SecretSource>();
  private readonly resolved = new Set<string>();

  /** Throws Error if two sources claim the same scheme (a wiring mistake). */
  constructor(sources: readonly SecretSource[]) {
    for (const source of sources) {
      for (const scheme of source.schemes) {
        if (this.bySchemes.has(scheme)) throw new Error(`two secret sources for scheme '${scheme}'`);
        this.bySchemes.set(scheme, source);
      }
    }
    this.schemes = [...this.bySchemes.keys()];
  }

  /** BadRequestError for a malformed reference or an unknown scheme; otherwise the source's errors. */
  async resolve(reference: string): Promise<string> {
    const { scheme } = parseReference(reference);
    const source = this.bySchemes.get(scheme);
    if (source === undefined) {
      throw new BadRequestError(
        `unknown secret reference scheme '${scheme}' (known: ${this.schemes.join(', ') || 'none'})`,
      );
    }
    const value = await source.resolve(reference);
    if (value !== '') this.resolved.add(value);
    return value;
  }

  /** Every distinct non-empty value resolved so far (including superseded values after rotation). */
  knownSecretValues(): string[] {
    return [...this.resolved];
  }
}
