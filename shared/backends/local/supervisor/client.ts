import { type IOType, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs, { constants } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BackendUnavailableError, ConflictError } from '../../../contract/errors.js';
import { sleep } from '../../../lib/sleep.js';
import { sealedStdio, TOOL_ENV } from '../exec.js';
import { liveStartTime } from '../procs.js';
import {
  lineReader,
  type Message,
  type Reply,
  type ResizeRequest,
  type SpawnRequest,
  type StartRequest,
  type StdinRequest,
} from './protocol.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The daemon as shipped: compiled JavaScript when there is one beside this file, else the TypeScript source. */
const DAEMON = ['daemon.js', 'daemon.ts'].map((f) => path.join(HERE, f)).find((f) => fs.existsSync(f))!;
/** How long a request (and a daemon's start-up: Node + tsx) may take before the supervisor counts as unavailable. */
const REQUEST_TIMEOUT_MS = 15_000;
/** A spawn's answer: the supervisor gives a sandbox 20 s to start (sandboxed.ts), and fails it then. */
const SPAWN_TIMEOUT_MS = 30_000;
const DAEMON_START_TIMEOUT_MS = 30_000;

/**
 * The socket is named after the supervisor's code: a provider upgraded in place starts a supervisor
 * of its own version, and the old one ends once its commands have (it exits when idle).
 */
function socketName(): string {
  const hash = createHash('sha256');
  for (const f of fs.readdirSync(HERE).sort()) hash.update(f).update(fs.readFileSync(path.join(HERE, f)));
  return `supervisor-${hash.digest('hex').slice(0, 12)}.sock`;
}

interface Connection {
  socket: net.Socket;
  pending: Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>;
}

/**
 * The provider's side of the command supervisor (daemon.ts): connects to the one serving this data
 * dir, starting it (detached) when there is none, and learns of exits as they happen.
 */
export class SupervisorClient {
  private connection: Promise<Connection> | undefined;
  private nextId = 1;
  private readonly waiters = new Map<string, { promise: Promise<void>; resolve: () => void }>();
  private runFd: number | undefined;
  private readonly socket = socketName();

  constructor(private readonly runDir: string) {}

  /**
   * Start the chain of the command dir `dir` (its inputs written); resolves once the supervisor has
   * recorded its pid and process group. Sent again once on a fresh supervisor when the first one
   * ended before answering and had not taken the dir (no `pid` file): nothing ran yet.
   */
  async start(request: Omit<StartRequest, 'id' | 'op'>): Promise<void> {
    this.exitOf(request.dir);
    const send = async () => refusedAs(await this.send({ op: 'start', ...request }), 'cannot start the command');
    try {
      await send();
    } catch (error) {
      if (fs.existsSync(path.join(request.dir, 'pid'))) throw error;
      await send();
    }
  }

  /**
   * Start a long-lived process of a workspace's sandbox (holder, forker) from the supervisor (see
   * SpawnRequest); resolves to bwrap's child's host pid. Never sent twice: a second one would leave a
   * second holder behind.
   */
  async spawnSandboxed(request: Omit<SpawnRequest, 'id' | 'op'>): Promise<number> {
    const reply = refusedAs(
      await this.send({ op: 'spawn', ...request }, SPAWN_TIMEOUT_MS),
      'the sandbox did not start',
    );
    if (reply.pid === undefined) throw new BackendUnavailableError('the command supervisor answered no pid');
    return reply.pid;
  }

  /**
   * Append to the open stdin of the running command of `dir`; ConflictError when the supervisor
   * refuses (no open stdin: the command ended or was not started with one; closed; full).
   */
  async writeStdin(dir: string, data: Buffer, eof: boolean): Promise<void> {
    const reply = await this.send({ op: 'stdin', dir, data: data.toString('base64'), eof });
    if (!reply.ok) throw new ConflictError(reply.error ?? 'the command does not take input');
  }

  /** New size for the terminal of the running command of `dir`; ConflictError when it has none (or ended). */
  async resize(dir: string, size: { rows: number; cols: number }): Promise<void> {
    const reply = await this.send({ op: 'resize', dir, ...size });
    if (!reply.ok) throw new ConflictError(reply.error ?? 'the command has no terminal');
  }

  /** Resolves when the supervisor reports `dir` ended (or its connection is lost): a waiter looks again. */
  exited(dir: string): Promise<void> | undefined {
    return this.waiters.get(dir)?.promise;
  }

  /** Closes this client's connection; the supervisor and its commands live on. */
  close(): void {
    void this.connection?.then((c) => c.socket.destroy()).catch(() => undefined);
    this.connection = undefined;
    if (this.runFd !== undefined) fs.closeSync(this.runFd);
    this.runFd = undefined;
  }

  private exitOf(dir: string): void {
    if (this.waiters.has(dir)) return;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    this.waiters.set(dir, { promise, resolve });
  }

  private settle(dir: string): void {
    const w = this.waiters.get(dir);
    if (w === undefined) return;
    this.waiters.delete(dir);
    w.resolve();
  }

  private async send(
    request: Omit<StartRequest, 'id'> | Omit<SpawnRequest, 'id'> | Omit<StdinRequest, 'id'> | Omit<ResizeRequest, 'id'>,
    timeoutMs = REQUEST_TIMEOUT_MS,
  ): Promise<Reply> {
    const conn = await this.connect();
    const id = this.nextId++;
    const message = { id, ...request };
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        conn.pending.delete(id);
        reject(new BackendUnavailableError('the command supervisor did not answer in time'));
      }, timeoutMs);
      conn.pending.set(id, {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      conn.socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  private connect(): Promise<Connection> {
    this.connection ??= this.open().catch((error) => {
      this.connection = undefined;
      throw error;
    });
    return this.connection;
  }

  private async open(): Promise<Connection> {
    fs.mkdirSync(this.runDir, { recursive: true, mode: 0o700 });
    fs.chmodSync(this.runDir, 0o700);
    this.runFd ??= fs.openSync(this.runDir, constants.O_RDONLY | constants.O_DIRECTORY);
    // Through a descriptor of the run dir: a unix socket path holds at most 108 bytes.
    const address = `/proc/self/fd/${this.runFd}/${this.socket}`;
    let socket = await tryConnect(address);
    if (socket === undefined) {
      await this.spawnDaemon();
      const deadline = Date.now() + DAEMON_START_TIMEOUT_MS;
      while (socket === undefined && Date.now() < deadline) {
        await sleep(20);
        socket = await tryConnect(address);
      }
    }
    if (socket === undefined) {
      const tail = readTail(path.join(this.runDir, 'supervisor.log'));
      throw new BackendUnavailableError(`the command supervisor did not start${tail ? `: ${tail}` : ''}`);
    }
    return this.attach(socket);
  }

  private attach(socket: net.Socket): Connection {
    const conn: Connection = { socket, pending: new Map() };
    // An idle connection keeps no process alive (a request's timer does, while it waits).
    socket.unref();
    socket.on(
      'data',
      lineReader(
        (value) => {
          const m = value as Message;
          if ('exit' in m && typeof m.exit === 'string') return this.settle(m.exit);
          const r = m as Reply;
          const p = conn.pending.get(r.id);
          if (p === undefined) return;
          conn.pending.delete(r.id);
          p.resolve(r);
        },
        () => undefined,
      ),
    );
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      if (this.connection !== undefined) this.connection = undefined;
      for (const p of conn.pending.values()) p.reject(new BackendUnavailableError('the command supervisor ended'));
      conn.pending.clear();
      // Waiters look at the files again (the commands of a dead supervisor read 'lost').
      for (const dir of [...this.waiters.keys()]) this.settle(dir);
    });
    return conn;
  }

  private async spawnDaemon(): Promise<void> {
    await removeDeadFifoDirs(this.runDir);
    const logFd = fs.openSync(path.join(this.runDir, 'supervisor.log'), 'a', 0o600);
    const devNull = fs.openSync('/dev/null', 'r');
    try {
      // Descriptors this process inherited without close-on-exec become /dev/null in the daemon.
      const stdio = [...(await sealedStdio(devNull))] as Array<IOType | number>;
      stdio[2] = logFd;
      const argv = daemonArgv(this.runDir);
      const child = spawn(argv[0]!, argv.slice(1), {
        detached: true,
        stdio,
        cwd: '/',
        env: TOOL_ENV,
      });
      child.once('error', () => undefined); // reported as "did not start" by open()
      child.unref();
    } finally {
      fs.closeSync(logFd);
      fs.closeSync(devNull);
    }
  }
}

/** How the supervisor of `runDir` is started (its socket named after its code, see socketName). */
export function daemonArgv(runDir: string): string[] {
  const loader = DAEMON.endsWith('.ts')
    ? ['--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href]
    : [];
  return [process.execPath, ...loader, DAEMON, runDir, socketName()];
}

/** The reply, or the supervisor's refusal as BackendUnavailableError. */
function refusedAs(reply: Reply, what: string): Reply {
  if (!reply.ok) throw new BackendUnavailableError(`${what}: ${reply.error ?? 'refused by the command supervisor'}`);
  return reply;
}

function tryConnect(address: string): Promise<net.Socket | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect(address);
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', () => resolve(undefined));
  });
}

/** The FIFO pools of supervisors that died without cleaning up (fifo-<pid>). */
async function removeDeadFifoDirs(runDir: string): Promise<void> {
  for (const name of fs.readdirSync(runDir)) {
    const pid = /^fifo-(\d+)$/.exec(name)?.[1];
    if (pid !== undefined && (await liveStartTime(Number(pid))) === undefined)
      fs.rmSync(path.join(runDir, name), { recursive: true, force: true });
  }
}

function readTail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-3).join(' | ').slice(-1000);
  } catch {
    return '';
  }
}
