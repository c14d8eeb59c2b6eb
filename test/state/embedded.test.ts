import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

function storeOn(endpoint: string): { store: DynamoStateStore; ready: Promise<void> } {
  const { client, doc } = createDynamoClients({ endpoint, region: 'us-east-1', env: {} });
  cleanups.push(() => client.destroy());
  return { store: new DynamoStateStore(doc, 'wsp'), ready: ensureTable(client, 'wsp') };
}

describe('startEmbeddedDynamo', () => {
  it('listens on 127.0.0.1 and keeps nothing in memory mode across restarts', async () => {
    const first = await start();
    expect(first.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const a = storeOn(first.endpoint);
    await a.ready;
    await a.store.createWorkspace(workspaceRecord('ws-1'));
    await first.close();
    await first.close(); // idempotent

    const second = await start();
    const b = storeOn(second.endpoint);
    await b.ready;
    expect(await b.store.getWorkspace('ws-1')).toBeUndefined();
  });

  it('persists under dir across restarts', async () => {
    const dir = tempDir();
    const first = await start(dir);
    const a = storeOn(first.endpoint);
    await a.ready;
    await a.store.createWorkspace(workspaceRecord('ws-1'));
    await first.close();
    expect(existsSync(join(dir, 'wsp-embedded.lock'))).toBe(false);

    const second = await start(dir);
    const b = storeOn(second.endpoint);
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
    const { store, ready } = storeOn(embedded.endpoint);
    await ready;
    await store.createWorkspace(workspaceRecord('ws-1'));
    expect(await store.getWorkspace('ws-1')).toBeDefined();
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
