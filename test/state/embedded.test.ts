import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConflictError } from '../../shared/contract/errors.js';
import { createDynamoClients } from '../../shared/state/client.js';
import { DynamoStateStore } from '../../shared/state/dynamo-store.js';
import { startEmbeddedDynamo, type EmbeddedDynamo } from '../../shared/state/embedded.js';
import { ensureTable } from '../../shared/state/table.js';
import { workspaceRecord } from './fixtures.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'wsp-embedded-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function start(dir?: string): Promise<EmbeddedDynamo> {
  const embedded = await startEmbeddedDynamo(dir === undefined ? {} : { dir });
  cleanups.push(() => embedded.close());
  return embedded;
}

function storeOn(embedded: EmbeddedDynamo): { store: DynamoStateStore; ready: Promise<void> } {
  const { client, doc } = createDynamoClients({
    endpoint: embedded.endpoint,
    socketPath: embedded.socketPath,
    region: 'us-east-1',
    env: {},
  });
  cleanups.push(() => client.destroy());
  return { store: new DynamoStateStore(doc, 'wsp'), ready: ensureTable(client, 'wsp') };
}

describe('startEmbeddedDynamo', () => {
  it('keeps nothing in memory mode across restarts', async () => {
    const first = await start();
    const a = storeOn(first);
    await a.ready;
    await a.store.createWorkspace(workspaceRecord('ws-1'));
    await first.close();
    await first.close(); // idempotent

    const second = await start();
    const b = storeOn(second);
    await b.ready;
    expect(await b.store.getWorkspace('ws-1')).toBeUndefined();
  });

  it('persists under dir across restarts', async () => {
    const dir = tempDir();
    const first = await start(dir);
    const a = storeOn(first);
    await a.ready;
    await a.store.createWorkspace(workspaceRecord('ws-1'));
    await first.close();
    expect(existsSync(join(dir, 'wsp-embedded.lock'))).toBe(false);

    const second = await start(dir);
    const b = storeOn(second);
    await b.ready;
    expect(await b.store.getWorkspace('ws-1')).toEqual(workspaceRecord('ws-1'));
  });

  it('refuses a second opener of the same dir with ConflictError', async () => {
    const dir = tempDir();
    await start(dir);
    const err = await startEmbeddedDynamo({ dir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect((err as Error).message).toContain(dir);
  });

  it('takes over a lock left by a dead process', async () => {
    const dir = tempDir();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    writeFileSync(join(dir, 'wsp-embedded.lock'), dead.stdout);
    const embedded = await start(dir);
    const { store, ready } = storeOn(embedded);
    await ready;
    await store.createWorkspace(workspaceRecord('ws-1'));
    expect(await store.getWorkspace('ws-1')).toBeDefined();
  });
});

/**
 * TCP sockets in LISTEN state (/proc/net/tcp and tcp6, state 0A) that belong to THIS process (their
 * inode is one of our open fds), as "addr:port" hex: other processes' listeners come and go.
 */
function tcpListeners(): Set<string> {
  const ours = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m) ours.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const out = new Set<string>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === '0A' && ours.has(cols[9]!)) out.add(cols[1]!);
    }
  }
  return out;
}

describe('the embedded store is reachable only through a root-only unix socket', () => {
  it('the listener check sees a TCP listener of this process (so "none opened" below means something)', async () => {
    const before = tcpListeners();
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      expect([...tcpListeners()].filter((l) => !before.has(l))).toHaveLength(1);
    } finally {
      server.close();
    }
  });

  it('opens no TCP listener; its socket sits in a 0700 dir (in-memory mode: a fresh temp dir)', async () => {
    const before = tcpListeners();
    const embedded = await start();
    const after = tcpListeners();
    expect([...after].filter((l) => !before.has(l))).toEqual([]);
    expect(lstatSync(embedded.socketPath).isSocket()).toBe(true);
    expect(statSync(dirname(embedded.socketPath)).mode & 0o777).toBe(0o700);
    expect(embedded.endpoint).toBe('http://localhost');
    const { store, ready } = storeOn(embedded);
    await ready;
    await store.createWorkspace(workspaceRecord('ws-1'));
    await embedded.close();
    expect(existsSync(dirname(embedded.socketPath))).toBe(false);
  });

  it('with a dir: the socket is <dir>/socket/dynamo.sock, the socket dir is forced back to 0700, a stale socket file is replaced', async () => {
    const dir = tempDir();
    const first = await start(dir);
    expect(first.socketPath).toBe(join(dir, 'socket', 'dynamo.sock'));
    await first.close();
    expect(existsSync(first.socketPath)).toBe(false);
    // A loosened dir and a leftover file (a crash) do not survive the next start.
    chmodSync(join(dir, 'socket'), 0o777);
    writeFileSync(join(dir, 'socket', 'dynamo.sock'), 'stale');
    const before = tcpListeners();
    const second = await start(dir);
    expect([...tcpListeners()].filter((l) => !before.has(l))).toEqual([]);
    expect(statSync(join(dir, 'socket')).mode & 0o777).toBe(0o700);
    expect(lstatSync(second.socketPath).isSocket()).toBe(true);
    const { store, ready } = storeOn(second);
    await ready;
    await store.createWorkspace(workspaceRecord('ws-1'));
    expect(await store.getWorkspace('ws-1')).toEqual(workspaceRecord('ws-1'));
  });

  it('refuses a socket dir that is a symlink planted in its place', async () => {
    const dir = tempDir();
    const elsewhere = tempDir();
    symlinkSync(elsewhere, join(dir, 'socket'));
    await expect(startEmbeddedDynamo({ dir })).rejects.toThrow(/socket directory/);
    expect(existsSync(join(elsewhere, 'dynamo.sock'))).toBe(false);
    expect(existsSync(join(dir, 'wsp-embedded.lock'))).toBe(false);
  });

  it('answers DynamoDB on the socket (a raw connection gets an HTTP reply)', async () => {
    const embedded = await start();
    const reply = await new Promise<string>((resolve, reject) => {
      const s = connect({ path: embedded.socketPath }, () =>
        s.end('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'),
      );
      let data = '';
      s.on('data', (d) => (data += String(d)));
      s.on('end', () => resolve(data));
      s.on('error', reject);
    });
    expect(reply).toMatch(/^HTTP\/1\.1 /);
  });
});

describe('createDynamoClients', () => {
  it('uses dummy credentials for an explicit endpoint when the env has none', async () => {
    const { client } = createDynamoClients({ endpoint: 'http://127.0.0.1:9', region: 'eu-west-1', env: {} });
    cleanups.push(() => client.destroy());
    const credentials = await client.config.credentials();
    expect(credentials.accessKeyId).toBe('wsplocal');
    expect(await client.config.region()).toBe('eu-west-1');
  });

  it('leaves the SDK credential chain alone when the env has credentials', async () => {
    const env = { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'x' };
    const { client } = createDynamoClients({ endpoint: 'http://127.0.0.1:9', region: 'eu-west-1', env });
    cleanups.push(() => client.destroy());
    // The chain reads process.env, not our map; what matters is that no dummy was forced in.
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = 'AKIDFROMCHAIN';
    process.env.AWS_SECRET_ACCESS_KEY = 'y';
    try {
      expect((await client.config.credentials()).accessKeyId).toBe('AKIDFROMCHAIN');
    } finally {
      restoreEnv('AWS_ACCESS_KEY_ID', saved.id);
      restoreEnv('AWS_SECRET_ACCESS_KEY', saved.secret);
    }
  });
});

function restoreEnv(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}
