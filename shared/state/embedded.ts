import { chmodSync, lstatSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import dynalite from 'dynalite';
import { BackendUnavailableError } from '../contract/errors.js';
import { createDynamoClients } from './client.js';
import { acquireDirLock, type DirLock } from './dir-lock.js';

export interface EmbeddedDynamo {
  /** A dummy `http://localhost` (Host header, signing scope): requests go through `socketPath`. */
  endpoint: string;
  /** The unix socket the store listens on, inside a 0700 directory: pass both to createDynamoClients. */
  socketPath: string;
  /** Stop listening, drop open connections, close the LevelDB store. Idempotent. */
  close(): Promise<void>;
}

export interface EmbeddedDynamoOptions {
  /** LevelDB directory (created if missing) so state survives restarts; in-memory when unset. */
  dir?: string;
}

/** sun_path is 108 bytes on Linux, NUL included. */
const MAX_SOCKET_PATH = 107;

/**
 * Start dynalite (a DynamoDB-protocol server in this process) on a unix socket. dynalite has no
 * authentication, so it must be reachable by the provider only: never TCP (every workspace that
 * shares a loopback could Scan and rewrite every record), but a socket inside a directory that
 * only its owner may enter — `<dir>/socket` (0700) with a dir, else a fresh mkdtemp dir (0700).
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
  let socketDir: { path: string; temporary: boolean };
  try {
    socketDir = privateSocketDir(options.dir);
  } catch (err) {
    lock?.release();
    throw new BackendUnavailableError('embedded state store: cannot prepare its socket directory', err);
  }
  const socketPath = join(socketDir.path, 'dynamo.sock');
  // We hold the dir lock: a socket file left here is a crashed run's, and listen() would fail on it.
  rmSync(socketPath, { force: true });
  const cleanup = (): void => {
    if (socketDir.temporary) rmSync(socketDir.path, { recursive: true, force: true });
    else rmSync(socketPath, { force: true });
    lock?.release();
  };
  const server = dynalite({
    ...(options.dir !== undefined ? { path: options.dir } : {}),
    createTableMs: 0,
    deleteTableMs: 0,
    updateTableMs: 0,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    cleanup();
    throw new BackendUnavailableError('embedded state store failed to listen on its unix socket', err);
  }
  const endpoint = 'http://localhost';

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve, reject) => {
      server.close((err) => {
        cleanup();
        if (err) reject(err);
        else resolve();
      });
      // SDK clients keep connections alive; without this, close waits for them to time out.
      server.closeAllConnections();
    });
    return closing;
  };

  // LevelDB opens lazily: make one request so a locked or unreadable dir fails here, not later.
  const { client } = createDynamoClients({ endpoint, socketPath, region: 'us-east-1', env: {} });
  try {
    await client.send(new ListTablesCommand({ Limit: 1 }));
  } catch (err) {
    await close().catch(() => undefined);
    const where = options.dir !== undefined ? ` (dir ${options.dir})` : '';
    throw new BackendUnavailableError(`embedded state store failed to start${where}`, err);
  } finally {
    client.destroy();
  }
  return { endpoint, socketPath, close };
}

/**
 * `<dir>/socket`, made 0700 and checked to be a real directory of ours (not a planted symlink);
 * a fresh 0700 temp dir without `dir`, or when the path would not fit in sun_path.
 */
function privateSocketDir(dir: string | undefined): { path: string; temporary: boolean } {
  if (dir !== undefined && join(dir, 'socket', 'dynamo.sock').length <= MAX_SOCKET_PATH) {
    const path = join(dir, 'socket');
    mkdirSync(path, { mode: 0o700, recursive: true });
    const st = lstatSync(path);
    if (!st.isDirectory() || st.uid !== process.getuid?.())
      throw new Error(`${path} is not a directory owned by this process's user`);
    chmodSync(path, 0o700);
    return { path, temporary: false };
  }
  return { path: mkdtempSync(join(tmpdir(), 'wsp-state-')), temporary: true };
}
