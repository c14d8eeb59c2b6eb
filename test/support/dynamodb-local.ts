import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';

/**
 * AWS's DynamoDB Local (Java) for fidelity tests. `node test/support/prepare.mjs` puts it in
 * .cache/dynamodb-local/ (npm test runs that first). A missing jar is a test failure unless
 * WSP_SKIP_DYNAMODB_LOCAL=1.
 */
const DYNAMODB_LOCAL_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '.cache', 'dynamodb-local');
const JAR = join(DYNAMODB_LOCAL_DIR, 'DynamoDBLocal.jar');

export type DynamoDbLocalStatus =
  | { state: 'present' }
  | { state: 'skipped'; message: string }
  | { state: 'missing'; message: string };

export function dynamoDbLocalStatus(
  env: NodeJS.ProcessEnv = process.env,
  dir = DYNAMODB_LOCAL_DIR,
): DynamoDbLocalStatus {
  const jar = join(dir, 'DynamoDBLocal.jar');
  if (env.WSP_SKIP_DYNAMODB_LOCAL === '1') {
    return { state: 'skipped', message: 'DynamoDB Local tests skipped (WSP_SKIP_DYNAMODB_LOCAL=1)' };
  }
  if (existsSync(jar)) return { state: 'present' };
  return {
    state: 'missing',
    message: `DynamoDB Local not found at ${jar}: run \`node test/support/prepare.mjs\` (or set WSP_SKIP_DYNAMODB_LOCAL=1 to skip)`,
  };
}

export interface StartedDynamoDbLocal {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  /** SIGTERM, then SIGKILL after 5 s; resolves when the JVM has exited. Idempotent. */
  close(): Promise<void>;
}

/**
 * Start an in-memory DynamoDB Local on a free port and wait until ListTables answers.
 * Note: DynamoDB Local has no bind-address option and listens on all interfaces; tests talk to it
 * on 127.0.0.1 only.
 */
export async function startDynamoDbLocal(options: { readyTimeoutMs?: number } = {}): Promise<StartedDynamoDbLocal> {
  const status = dynamoDbLocalStatus();
  if (status.state !== 'present') throw new Error(status.message);
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const port = await freePort();
  const child = spawn(
    'java',
    [
      `-Djava.library.path=${join(DYNAMODB_LOCAL_DIR, 'DynamoDBLocal_lib')}`,
      '-jar',
      JAR,
      '-inMemory',
      '-port',
      String(port),
      '-disableTelemetry',
    ],
    { cwd: DYNAMODB_LOCAL_DIR, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  let exitCode: number | null | undefined;
  child.once('exit', (code) => {
    exitCode = code;
  });
  child.once('error', (err) => {
    output += `\nspawn error: ${err.message}`;
  });

  const close = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
  };

  const endpoint = `http://127.0.0.1:${port}`;
  const client = new DynamoDBClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    maxAttempts: 1,
  });
  const deadline = Date.now() + readyTimeoutMs;
  try {
    for (;;) {
      if (exitCode !== undefined)
        throw new Error(`DynamoDB Local exited (code ${exitCode}) before answering:\n${output}`);
      try {
        await client.send(new ListTablesCommand({ Limit: 1 }));
        return { endpoint, close };
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        throw new Error(
          `DynamoDB Local did not answer ListTables on ${endpoint} within ${readyTimeoutMs} ms:\n${output}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await close();
    throw err;
  } finally {
    client.destroy();
  }
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const server = createServer();
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => res(port));
    });
  });
}
