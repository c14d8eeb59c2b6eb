import { BadRequestError } from '../contract/errors.js';
import type { SecretSource } from '../contract/secrets.js';
import { bodyOf } from './reference.js';

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `env:NAME` — read from an environment map (default process.env) at each resolve. */
export class EnvSecretSource implements SecretSource {
  readonly schemes = ['env'] as const;

  constructor(private readonly env: Record<string, string | undefined> = process.env) {}

  /** BadRequestError when the name is malformed, or the variable is unset or empty. */
  async resolve(reference: string): Promise<string> {
    const name = bodyOf(reference, 'env');
    if (!NAME.test(name))
      throw new BadRequestError(`secret reference '${reference}': not a valid environment variable name`);
    const value = this.env[name];
    if (value === undefined)
      throw new BadRequestError(`secret reference '${reference}': environment variable is not set`);
    if (value === '') throw new BadRequestError(`secret reference '${reference}': environment variable is empty`);
    return value;
  }
}
