import type { z } from 'zod';

/** One bad field of a request: `path` like `body.argv[0]`, `params.id`, `query.limit`, `body.refs["../x"]`. */
export interface FieldProblem {
  path: string;
  message: string;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `['argv', 0]` under `body` → `body.argv[0]`; keys that are not identifiers are quoted: `body.refs["../x"]`. */
function formatPath(root: string, path: readonly PropertyKey[]): string {
  let out = root;
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (typeof key === 'string' && IDENTIFIER.test(key)) out += `.${key}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out;
}

/**
 * Zod issues → one problem per bad field. Unknown keys become one entry each (`body.bogus: unknown
 * field`) and bad record keys carry the key's own message, so the caller sees every field to fix.
 */
export function issuesToProblems(root: string, issues: readonly z.core.$ZodIssue[]): FieldProblem[] {
  const problems: FieldProblem[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys)
        problems.push({ path: formatPath(root, [...issue.path, key]), message: 'unknown field' });
    } else if (issue.code === 'invalid_key') {
      const inner = issue.issues.map((i) => i.message).join('; ');
      problems.push({ path: formatPath(root, issue.path), message: `invalid key: ${inner}` });
    } else {
      problems.push({ path: formatPath(root, issue.path), message: issue.message });
    }
  }
  return problems;
}
