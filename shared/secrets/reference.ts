import { BadRequestError } from '../contract/errors.js';

/**
 * Secret references: `env:NAME`, `file:/abs/path`, `secretsmanager:<name-or-arn>[#jsonKey]`.
 * A reference is configuration, not a secret, so errors may quote it — except when it does not
 * even look like a reference (someone may have pasted the token itself): then only its shape is told.
 */
export interface ParsedReference {
  scheme: string;
  /** Everything after `<scheme>:`. */
  body: string;
}

const SCHEME = /^([a-z][a-z0-9+.-]{0,31}):/;

export function parseReference(reference: string): ParsedReference {
  const match = SCHEME.exec(reference);
  if (!match?.[1]) {
    throw new BadRequestError(
      'secret reference must look like env:NAME, file:/abs/path or secretsmanager:<name-or-arn>[#jsonKey]',
    );
  }
  return { scheme: match[1], body: reference.slice(match[0].length) };
}

/** Parse and check the scheme a source expects (a programming error if it differs). */
export function bodyOf(reference: string, scheme: string): string {
  const parsed = parseReference(reference);
  if (parsed.scheme !== scheme)
    throw new BadRequestError(`secret reference scheme '${parsed.scheme}' is not '${scheme}'`);
  return parsed.body;
}

/**
 * BadRequestError takes no `cause` (shared/contract/errors.ts); attach it the way Error does, so
 * the chain is kept for logs. Only for causes that cannot carry the secret value.
 */
export function withCause<E extends Error>(error: E, cause: unknown): E {
  Object.defineProperty(error, 'cause', { value: cause, writable: true, configurable: true, enumerable: false });
  return error;
}
