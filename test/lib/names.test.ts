import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../shared/contract/errors.js';
import { checkName } from '../../shared/lib/names.js';
import type { WorkspacePlan } from '../../shared/contract/plan.js';
import { computeCacheKey, computeRestoreKey } from '../../shared/service/cache-key.js';
import { newCommandId, newSystemCommandId, newWorkspaceId } from '../../shared/service/ids.js';

describe('checkName: the one rule for names that become paths, tags and keys', () => {
  it('accepts every name the provider produces', () => {
    // The key reads only these plan fields.
    const plan = {
      home: '/home/dev',
      root: '/',
      user: { name: 'dev', uid: 1000, gid: 1000 },
      repos: [],
    } as unknown as WorkspacePlan;
    const key = computeCacheKey({
      backendKind: 'local',
      baseIdentity: 'host',
      plan,
      setupScript: 'true',
      setupEnv: {},
      keyFiles: {},
    });
    for (const name of [
      key,
      newWorkspaceId(),
      newCommandId(),
      newSystemCommandId(),
      `${randomBytes(8).toString('hex')}.bundle`,
      'x'.repeat(120),
    ]) {
      expect(checkName('name', name)).toBe(name);
    }
  });

  it('refuses what could escape a directory, start an option or overrun a tag', () => {
    for (const bad of ['', '.', '..', 'a..b', '.hidden', '-rf', 'a/b', 'a b', 'x'.repeat(121), 'ü', 42, undefined]) {
      expect(() => checkName('name', bad)).toThrow(BadRequestError);
    }
  });
});

describe('restore keys', () => {
  const plan = {
    home: '/home/dev',
    root: '/',
    user: { name: 'dev', uid: 1000, gid: 1000 },
    repos: [{ name: 'app', path: 'app', source: { kind: 'git', url: 'https://x/app.git' } }],
  } as unknown as WorkspacePlan;
  const inputs = (lock: string | undefined, setupScript = 'npm ci') => ({
    backendKind: 'local',
    baseIdentity: 'host',
    plan,
    setupScript,
    setupEnv: {},
    keyFiles: { app: [['package-lock.json', lock]] as [string, string | undefined][] },
  });

  it('entries that differ only in a key file share a restore key, and nothing else does', () => {
    expect(computeCacheKey(inputs('v1'))).not.toBe(computeCacheKey(inputs('v2')));
    expect(computeRestoreKey(inputs('v1'))).toBe(computeRestoreKey(inputs('v2')));
    expect(computeRestoreKey(inputs(undefined))).toBe(computeRestoreKey(inputs('v2')));
    expect(computeRestoreKey(inputs('v1', 'npm install'))).not.toBe(computeRestoreKey(inputs('v1')));
    expect(computeRestoreKey({ ...inputs('v1'), baseIdentity: 'other' })).not.toBe(computeRestoreKey(inputs('v1')));
    expect(computeRestoreKey(inputs('v1'))).toMatch(/^rk-[0-9a-f]{32}$/);
  });
});
