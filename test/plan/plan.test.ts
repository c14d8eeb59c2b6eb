import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../shared/config/load.js';
import { resolveGuestCwd, resolveWorkspacePlan } from '../../shared/plan/resolve.js';

// The seed's cases (workspace-plan-issue.txt): local-dir source on/off, home override,
// relative/absolute host path, .git detection.
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-plan-'));
  dirs.push(d);
  return d;
}

describe('resolveWorkspacePlan', () => {
  it('without content the workdir falls back to the home', () => {
    const plan = resolveWorkspacePlan(parseConfig({}));
    expect(plan).toMatchObject({ home: '/home/node', root: '/home/node/workspace', workdir: '/home/node', repos: [] });
    expect(plan.user).toEqual({ name: 'node', uid: 1000, gid: 1000 });
  });

  it('with a local-dir source the workdir is the root and the target is resolved once', () => {
    const host = tmp();
    const plan = resolveWorkspacePlan(parseConfig({ repositories: [{ localPath: host, path: '.' }] }));
    expect(plan.workdir).toBe('/home/node/workspace');
    expect(plan.repos[0]).toMatchObject({
      name: '.',
      path: '.',
      target: '/home/node/workspace',
      source: { kind: 'localDir', hostPath: host, hasGitDir: false },
    });
  });

  it('honours a home and guest-path override everywhere', () => {
    const plan = resolveWorkspacePlan(
      parseConfig({
        workspace: { home: '/home/agent', guestPath: '/home/agent/src' },
        repositories: [{ url: 'https://example.com/a.git', path: 'a' }],
      }),
    );
    expect(plan.home).toBe('/home/agent');
    expect(plan.root).toBe('/home/agent/src');
    expect(plan.repos[0]!.target).toBe('/home/agent/src/a');
  });

  it('resolves a relative host path against the base dir, an absolute one as is', () => {
    const base = tmp();
    fs.mkdirSync(path.join(base, 'proj'));
    const rel = resolveWorkspacePlan(parseConfig({ repositories: [{ localPath: 'proj', path: 'p' }] }), {}, base);
    expect(rel.repos[0]!.source).toMatchObject({ kind: 'localDir', hostPath: path.join(base, 'proj') });
    const abs = resolveWorkspacePlan(
      parseConfig({ repositories: [{ localPath: path.join(base, 'proj'), path: 'p' }] }),
      {},
      '/somewhere/else',
    );
    expect(abs.repos[0]!.source).toMatchObject({ kind: 'localDir', hostPath: path.join(base, 'proj') });
  });

  it('detects a .git directory in a local source', () => {
    const host = tmp();
    execFileSync('git', ['init', '-q', host]);
    const plan = resolveWorkspacePlan(parseConfig({ repositories: [{ localPath: host, path: 'x' }] }));
    expect(plan.repos[0]!.source).toMatchObject({ hasGitDir: true });
  });

  it('applies request refs and env over the config', () => {
    const plan = resolveWorkspacePlan(
      parseConfig({
        repositories: [{ url: 'https://example.com/a.git', path: 'a', ref: 'main' }],
        workspace: { env: { A: '1', B: '1' } },
      }),
      { refs: { a: 'v2' }, env: { B: '2' } },
    );
    expect(plan.repos[0]!.source).toMatchObject({ kind: 'git', ref: 'v2' });
    expect(plan.env).toEqual({ A: '1', B: '2' });
  });
});

describe('resolveGuestCwd', () => {
  const plan = resolveWorkspacePlan(parseConfig({ repositories: [{ url: 'https://example.com/a.git', path: 'a' }] }));
  it.each([
    [undefined, '/home/node/workspace'],
    ['a', '/home/node/workspace/a'],
    ['/home/node', '/home/node'],
    ['..', '/home/node'],
    ['../..', undefined],
    ['/etc', undefined],
    ['a/../../../../root', undefined],
  ])('%s → %s', (cwd, expected) => {
    expect(resolveGuestCwd(plan, cwd)).toBe(expected);
  });
});
