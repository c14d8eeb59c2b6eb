import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../shared/contract/errors.js';
import { loadConfig, parseConfig } from '../../shared/config/load.js';

function fieldsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(BadRequestError);
    return ((error as BadRequestError).details as { path: string }[]).map((d) => d.path);
  }
  throw new Error('expected a BadRequestError');
}

describe('provider configuration', () => {
  it('has sane embedded defaults', () => {
    const c = parseConfig({});
    expect(c.mode).toBe('local');
    expect(c.listen).toEqual({
      host: '127.0.0.1',
      port: 7070,
      maxBodyBytes: 12 * 1024 * 1024,
      maxEventStreams: 256,
      maxEventStreamsPerWorkspace: 16,
    });
    expect(c.workspace.guestPath).toBe('/home/node/workspace');
    expect(c.state.embedded).toBe(true);
  });

  it('networks: commands default to none, setup to egress; host is only ever chosen; bridge is the old name of egress', () => {
    const c = parseConfig({});
    expect(c.workspace.network).toBe('none');
    expect(c.setup.network).toBe('egress');
    expect(parseConfig({ workspace: { network: 'bridge' }, setup: { network: 'bridge' } })).toMatchObject({
      workspace: { network: 'egress' },
      setup: { network: 'egress' },
    });
    expect(parseConfig({ workspace: { network: 'host' }, setup: { network: 'none' } })).toMatchObject({
      workspace: { network: 'host' },
      setup: { network: 'none' },
    });
  });

  // Every bad field is reported by its path.
  it.each([
    [{ mode: 'cloud' }, 'mode'],
    [{ listen: { port: 70000 } }, 'listen.port'],
    [{ listen: { port: '80' } }, 'listen.port'],
    [{ repositories: [{ url: 'https://x/a.git', path: '../escape' }] }, 'repositories[0].path'],
    [{ repositories: [{ url: 'https://x/a.git', path: '/abs' }] }, 'repositories[0].path'],
    [{ repositories: [{ url: 'https://x/a.git', path: 'a/../../b' }] }, 'repositories[0].path'],
    [{ repositories: [{ path: 'a' }] }, 'repositories[0]'],
    [{ repositories: [{ url: 'https://x/a.git', localPath: '/tmp', path: 'a' }] }, 'repositories[0]'],
    [{ repositories: [{ url: 'https://user:pw@x/a.git', path: 'a' }] }, 'repositories[0].url'],
    [{ repositories: [{ url: 'ftp://x/a.git', path: 'a' }] }, 'repositories[0].url'],
    [
      { repositories: [{ url: 'https://x/a.git', path: 'a', credential: 'ghp_plaintexttoken' }] },
      'repositories[0].credential',
    ],
    [{ repositories: [{ url: 'https://x/a.git', path: 'a', ref: '--upload-pack=evil' }] }, 'repositories[0].ref'],
    [
      { repositories: [{ url: 'https://x/a.git', path: 'a', cacheKeyFiles: ['../lock'] }] },
      'repositories[0].cacheKeyFiles[0]',
    ],
    [
      {
        repositories: [
          { url: 'https://x/a.git', path: 'a' },
          { url: 'https://x/b.git', path: 'a/' },
        ],
      },
      'repositories',
    ],
    [{ repositories: [{ url: 'https://x/a.git', path: 'a', extra: 1 }] }, 'repositories[0]'],
    [{ setup: { script: 1 } }, 'setup.script'],
    [{ setup: { timeoutMs: -1 } }, 'setup.timeoutMs'],
    [{ workspace: { guestPath: 'relative' } }, 'workspace.guestPath'],
    [{ workspace: { home: '/home/node', guestPath: '/srv/ws' } }, 'workspace.guestPath'],
    [{ workspace: { user: { uid: 0 } } }, 'workspace.user.uid'],
    [{ workspace: { env: { 'BAD-NAME': 'x' } } }, 'workspace.env.BAD-NAME'],
    [{ workspace: { network: 'internet' } }, 'workspace.network'],
    [{ setup: { network: 'internet' } }, 'setup.network'],
    [{ workspace: { resources: { memoryMb: 1 } } }, 'workspace.resources.memoryMb'],
    [{ state: { endpoint: 'not a url' } }, 'state.endpoint'],
    [{ commands: { defaultWaitMs: 60_000 } }, 'commands.defaultWaitMs'],
    [{ auth: { token: 'short' } }, 'auth.token'],
    [{ ecs: { subnets: ['subnet-x'] } }, 'ecs.subnets[0]'],
    [{ ecs: { securityGroups: ['default'] } }, 'ecs.securityGroups[0]'],
    [{ ecs: { warmPoolSize: 99 } }, 'ecs.warmPoolSize'],
    [{ ecs: { repositoryUri: 'https://x/y' } }, 'ecs.repositoryUri'],
    [{ ecs: { region: 'mars' } }, 'ecs.region'],
    [{ ecs: { cluster: 'a b' } }, 'ecs.cluster'],
    [{ ecs: { readyTimeoutSeconds: 5 } }, 'ecs.readyTimeoutSeconds'],
    [{ ecs: { layerPartMb: 4 } }, 'ecs.layerPartMb'],
    [{ ecs: { unknown: 1 } }, 'ecs'],
    [{ unknownTopLevel: true }, ''],
  ])('%j → names %s', (input, field) => {
    expect(fieldsOf(() => parseConfig(input))).toContain(field);
  });

  it('reports every bad field at once', () => {
    const fields = fieldsOf(() => parseConfig({ mode: 'x', listen: { port: -1 }, setup: { script: 2 } }));
    expect(fields).toEqual(expect.arrayContaining(['mode', 'listen.port', 'setup.script']));
  });

  it('merges file < env < flags', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-config-'));
    const file = path.join(dir, 'wsp.json');
    fs.writeFileSync(
      file,
      JSON.stringify({ listen: { port: 1111 }, dataDir: 'data', repositories: [{ localPath: 'src', path: '.' }] }),
    );
    const a = loadConfig(['--config', file], {});
    expect(a.config.listen.port).toBe(1111);
    expect(a.config.dataDir).toBe(path.join(dir, 'data')); // relative to the config file
    expect(a.baseDir).toBe(dir);
    const b = loadConfig(['--config', file], { WSP_PORT: '2222' });
    expect(b.config.listen.port).toBe(2222);
    const c = loadConfig(['--config', file, '--port', '3333'], { WSP_PORT: '2222' });
    expect(c.config.listen.port).toBe(3333);
    expect(fieldsOf(() => loadConfig(['--port', 'eighty'], {}))).toContain('listen.port');
  });

  it('takes repositories and a setup script from flags', () => {
    const { config } = loadConfig(
      ['--repo', 'app=https://example.com/app.git', '--repo', '/tmp/x', '--setup', 'echo hi'],
      {},
      '/work',
    );
    expect(config.repositories).toEqual([
      expect.objectContaining({ path: 'app', url: 'https://example.com/app.git' }),
      expect.objectContaining({ path: '.', localPath: '/tmp/x' }),
    ]);
    expect(config.setup.script).toBe('echo hi');
  });

  it('rejects unknown flags and unreadable or non-JSON files clearly', () => {
    expect(() => loadConfig(['--nope'], {})).toThrow(/invalid flags/);
    expect(() => loadConfig(['--config', '/nonexistent/wsp.json'], {})).toThrow(/cannot read config file/);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-config-'));
    fs.writeFileSync(path.join(dir, 'bad.json'), '{ nope');
    expect(() => loadConfig(['--config', path.join(dir, 'bad.json')], {})).toThrow(/not a JSON object/);
  });
});
