import { describe, expect, it } from 'vitest';
import { toErrorResponse } from '../../shared/api/errors.js';
import { StepFailedError } from '../../shared/contract/errors.js';
import { publicError, scrubHostPaths } from '../../shared/service/public-error.js';

// A workspace provokes filesystem errors at will (a 2,200-deep tree, a full disk, a symlink loop);
// Node's messages for them name the provider's host paths. What reaches a response or a record must
// say which step failed and why, with a 4xx/502/503 — never a 500, never a host path.

const DATA = '/srv/wsp-data';
const errno = (code: string, p: string): NodeJS.ErrnoException =>
  Object.assign(new Error(`${code}: failed, lstat '${p}'`), { code, syscall: 'lstat', path: p });

describe('public errors', () => {
  it('a filesystem error from a hostile tree is the step failure (502) without the host path', () => {
    const e = publicError('reset', errno('ENAMETOOLONG', `${DATA}/local/workspaces/w1/home/a/a/a`), [DATA]);
    const r = toErrorResponse(e);
    expect(r.status).toBe(502);
    expect(r.body.error.code).toBe('step_failed');
    expect(r.body.error.message).toBe('reset failed: a path in the workspace is too long (ENAMETOOLONG)');
    expect(JSON.stringify(r.body)).not.toContain(DATA);
  });

  it('running out of a shared resource is a 503 naming the step', () => {
    const r = toErrorResponse(publicError('snapshot', errno('ENOSPC', `${DATA}/local/snapshots/x`), [DATA]));
    expect(r.status).toBe(503);
    expect(r.body.error.message).toBe('snapshot failed: no space left on device (ENOSPC)');
  });

  it('a raw system error that escapes a route handler is mapped the same way, not a 500', () => {
    const r = toErrorResponse(errno('ELOOP', `${DATA}/local/workspaces/w1/home/loop`));
    expect(r.status).toBe(502);
    expect(JSON.stringify(r.body)).not.toContain(DATA);
  });

  it('domain errors keep their code; host paths in their message are scrubbed, guest paths kept', () => {
    const e = publicError(
      'reset',
      new StepFailedError('restore', `cannot copy ${DATA}/local/snapshots/b1/home/app/x to /home/node/workspace/app/x`),
      [DATA],
    );
    expect(e.code).toBe('step_failed');
    expect(e.message).toBe('restore failed: cannot copy <provider path> to /home/node/workspace/app/x');
  });

  it('anything else is an opaque internal error', () => {
    const r = toErrorResponse(publicError('reset', new TypeError(`x of undefined at ${DATA}`), [DATA]));
    expect(r.status).toBe(500);
    expect(r.body.error.message).toBe('internal error');
  });

  it('scrubbing leaves unrelated paths and prefixes that only look alike', () => {
    expect(scrubHostPaths(`${DATA}-other/x and ${DATA}/y, ${DATA}`, [DATA])).toBe(
      `${DATA}-other/x and <provider path>, <provider path>`,
    );
  });
});
