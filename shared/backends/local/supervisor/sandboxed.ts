import { spawn } from 'node:child_process';
import fs, { constants } from 'node:fs';
import type { Readable } from 'node:stream';
import { openHolderNamespaces } from './namespaces.js';
import type { SpawnRequest } from './protocol.js';

/**
 * The supervisor's side of a SpawnRequest (protocol.ts): start a long-lived sandboxed process (a
 * namespace holder or a forker), detached, and answer bwrap's child's host pid once the payload said
 * it is ready. Spawned here, never by the provider: see SpawnRequest for why.
 */

/**
 * How long a new sandbox may take to report its child and for its payload to say it is ready
 * (below the client's wait for the answer, so a slow start fails here and leaves nothing behind).
 */
const START_TIMEOUT_MS = 20_000;
const TOOL_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };

export async function spawnSandboxed(req: SpawnRequest): Promise<number> {
  const own: number[] = [];
  let child: ReturnType<typeof spawn>;
  try {
    const stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'];
    own.push(
      fs.openSync(req.log, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600),
    );
    stdio[2] = own.at(-1)!;
    if (req.argsFile !== undefined) {
      // The options may name host paths: read by bwrap from a descriptor, the file gone at once.
      own.push(fs.openSync(req.argsFile, constants.O_RDONLY | constants.O_NOFOLLOW));
      fs.rmSync(req.argsFile, { force: true });
      stdio[5] = own.at(-1)!;
    }
    if (req.joinNamespacesOf !== undefined) {
      const ns = openHolderNamespaces(req.joinNamespacesOf);
      own.push(ns.user, ns.pid);
      while (stdio.length < 7) stdio.push('ignore');
      stdio.push(ns.user, ns.pid);
    }
    // Detached, in a session of its own: it outlives this supervisor (a holder lives as long as its workspace).
    child = spawn(req.argv[0]!, req.argv.slice(1), { detached: true, stdio, cwd: '/', env: TOOL_ENV });
  } finally {
    for (const fd of own) fs.closeSync(fd);
  }
  child.unref();
  child.once('error', () => undefined); // seen as the info pipe closing
  const info = child.stdio[3] as Readable;
  const ready = child.stdio[4] as Readable;
  try {
    const [pid] = await Promise.all([childPid(info), readyByte(ready)]);
    return pid;
  } catch (error) {
    child.kill('SIGKILL');
    const why = readTail(req.log);
    throw new Error(`${(error as Error).message}${why ? ` (${why})` : ''}`);
  } finally {
    info.destroy();
    ready.destroy();
  }
}

function readTail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim().slice(-500);
  } catch {
    return '';
  }
}

/** bwrap's --info-fd JSON: the host pid of its child (for a holder: the namespace's init). */
function childPid(stream: Readable): Promise<number> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error('no namespace report in time')), START_TIMEOUT_MS);
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => {
      text += d;
      const m = /"child-pid":\s*(\d+)/.exec(text);
      if (m !== null) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    stream.once('close', () => {
      clearTimeout(timer);
      reject(new Error('bwrap reported no namespace'));
    });
    stream.once('error', (e) => reject(e));
  });
}

/** One byte from the payload: the namespaces are set up and the payload runs. EOF first: it failed. */
function readyByte(stream: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the sandbox did not start in time')), START_TIMEOUT_MS);
    stream.once('data', () => {
      clearTimeout(timer);
      resolve();
    });
    stream.once('close', () => {
      clearTimeout(timer);
      reject(new Error('the sandbox ended before it was ready'));
    });
    stream.once('error', (e) => reject(e));
  });
}
