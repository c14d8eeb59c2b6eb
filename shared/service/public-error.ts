import path from 'node:path';
import { BackendUnavailableError, StepFailedError, WspError } from '../contract/errors.js';

/**
 * What a failure may say in public (a response, a record's `failure.message`): the step and what
 * went wrong, never a host path of the provider (its data dir holds every workspace, mirror and the
 * state store) and never an internal's message. A workspace can provoke filesystem errors at will
 * (a 2,200-deep tree, a full disk): those become the step's failure, not a 500.
 */

/** Out of a resource the host shares between workspaces: the backend is (for now) unavailable → 503. */
const RESOURCE_CODES: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files in the system',
  ENOMEM: 'out of memory',
  EAGAIN: 'resource temporarily unavailable',
};

/** What a hostile tree can make a filesystem call say → the step failed (502). */
const TREE_CODES: Record<string, string> = {
  ENAMETOOLONG: 'a path in the workspace is too long',
  ELOOP: 'too many levels of symbolic links in the workspace',
  ENOTEMPTY: 'a directory changed while it was removed',
  EACCES: 'permission denied on a path of the workspace',
  EPERM: 'operation not permitted on a path of the workspace',
  EBUSY: 'a path of the workspace is busy',
  ENOTDIR: 'a path of the workspace is not a directory',
  EISDIR: 'a path of the workspace is a directory',
  ENOENT: 'a path of the workspace disappeared',
  EEXIST: 'a path of the workspace already exists',
  EXDEV: 'a path of the workspace crosses filesystems',
  EIO: 'input/output error',
};

/** The errno code of a Node system error (`ENOSPC`), if it is one. */
function systemErrorCode(error: unknown): string | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

/** A system error as a domain error for `step` (undefined when it is not a system error). */
export function systemErrorAsDomain(step: string, error: unknown): WspError | undefined {
  const code = systemErrorCode(error);
  if (code === undefined) return undefined;
  const resource = RESOURCE_CODES[code];
  if (resource !== undefined) {
    const e = new BackendUnavailableError(`${step} failed: ${resource} (${code})`, error);
    return e;
  }
  const failed = new StepFailedError(step, `${TREE_CODES[code] ?? 'filesystem error'} (${code})`);
  failed.cause = error;
  return failed;
}

/** Replace every occurrence of the given host directories (and anything below them) in `text`. */
export function scrubHostPaths(text: string, hostDirs: readonly string[]): string {
  let out = text;
  for (const dir of hostDirs) {
    if (!path.isAbsolute(dir) || dir === '/') continue;
    const trimmed = dir.replace(/\/+$/, '');
    const escaped = trimmed.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    // The dir itself or anything below it — not a sibling that only shares the prefix (`<dir>-other`).
    out = out.replace(new RegExp(`${escaped}(?=$|[/\\s'"\`:,;)])(/[^\\s'"\`:,;)]*)?`, 'g'), '<provider path>');
  }
  return out;
}

/**
 * Any error as the domain error to answer and record for `step`: domain errors keep their code
 * (message scrubbed of host paths), system errors become step failures or 503s, anything else an
 * opaque internal error. `hostDirs` are the provider's own directories (data dir, base dir).
 */
export function publicError(step: string, error: unknown, hostDirs: readonly string[]): WspError {
  if (error instanceof WspError) {
    const message = scrubHostPaths(error.message, hostDirs);
    if (message === error.message) return error;
    const copy = new WspError(error.code, message, { cause: error, details: error.details });
    copy.name = error.name;
    return copy;
  }
  return systemErrorAsDomain(step, error) ?? new WspError('internal', 'internal error', { cause: error });
}
