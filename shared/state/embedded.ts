import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import dynalite from 'dynalite';
import { BackendUnavailableError } from '../contract/errors.js';
import { createDynamoClients } from './client.js';
import { acquireDirLock, type DirLock } from './dir-lock.js';

export interface EmbeddedDynamo {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  /** Stop listening, drop open connections, close the LevelDB store. Idempotent. */
  close(): Promise<void>;
}

export interface EmbeddedDynamoOptions {
  /** LevelDB directory (created if missing) so state survives restarts; in-memory when unset. */
  dir?: string;
}

/**
 * Start dynalite (a DynamoDB-protocol server in this process) on 127.0.0.1 and a free port.
 * Tables are ACTIVE as soon as they are created. dynalite has no transactions, TTL or streams;
 * DynamoStateStore needs none of them. Only one process may open a given `dir` at a time
 * (LevelDB lock): a second start on the same dir throws ConflictError (see dir-lock.ts). Other
 * start failures throw BackendUnavailableError.
 */
export async function startEmbeddedDynamo(options: EmbeddedDynamoOptions = {}): Promise<EmbeddedDynamo> {
  let lock: DirLock | undefined;
  if (options.dir !== undefined) {
    mkdirSync(options.dir, { recursive: true });
    // dynalite crashes the process (unhandled stream error) when LevelDB's own lock is taken,
    // so refuse a second opener ourselves, before dynalite touches the dir.
    lock = acquireDirLock(join(options.dir, 'wsp-embedded.lock'), `embedded state store dir ${options.dir}`);
  }
  const server = dynalite({
    ...(options.dir !== undefined ? { path: options.dir } : {}),
    createTableMs: 0,
    deleteTableMs: 0,
    updateTableMs: 0,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    lock?.release();
    throw new BackendUnavailableError('embedded state store failed to listen on 127.0.0.1', err);
  }
  const { port } = server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${port}`;

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve, reject) => {
      server.close((err) => {
        lock?.release();
        if (err) reject(err);
        else resolve();
      });
      // SDK clients keep connections alive; without this, close waits for them to time out.
      server.closeAllConnections();
    });
    return closing;
  };

  // LevelDB opens lazily: make one request so a locked or unreadable dir fails here, not later.
  const { client } = createDynamoClients({ endpoint, region: 'us-east-1', env: {} });
  try {
    await client.send(new ListTablesCommand({ Limit: 1 }));
  } catch (err) {
    await close().catch(() => undefined);
    const where = options.dir !== undefined ? ` (dir ${options.dir})` : '';
    throw new BackendUnavailableError(`embedded state store failed to start${where}`, err);
  } finally {
    client.destroy();
  }
  return { endpoint, close };
}
