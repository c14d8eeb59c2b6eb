import { BadRequestError } from '../contract/errors.js';

/**
 * Names that become path segments, container names, image tags and S3/DynamoDB key parts: workspace
 * ids (`ws-` + 24 hex), command ids (`cmd-`/`sys-` + 24 hex), snapshot names (a workspace id or a cache
 * key `ck-` + 32 hex), transfer file names (16 hex + `.bundle`). One rule for every backend; 120
 * characters leaves room for prefixes inside a 128-character Docker tag or ECS name.
 */
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,119}$/;

/** True when `value` is safe as one path segment, name part, tag and key part (for filters and own errors). */
export function isSafeName(value: unknown): value is string {
  return typeof value === 'string' && SAFE_NAME.test(value) && !value.includes('..');
}

/** Returns `value` if it is safe as one path segment, name part, tag and key part; else BadRequestError. */
export function checkName(what: string, value: unknown): string {
  if (!isSafeName(value)) {
    throw new BadRequestError(
      `invalid ${what}: expected 1-120 characters of [A-Za-z0-9_.-], not starting with '.' or '-'`,
      { field: what },
    );
  }
  return value;
}
