/**
 * The local backend's command supervisor: one long-lived process per data dir (started detached by
 * client.ts, so commands and their records outlive the provider), which starts every command's
 * launch chain and supervises it — records its pid and process group, kills it on timeout, caps its
 * output while it runs, writes the atomic exit record — and tells its clients the moment a command
 * ended. One process instead of a shell wrapper per command (~20 process creations each): a command
 * costs one spawn of its chain.
 *
 * usage: node daemon.ts <run dir> <socket name>
 *
 * It runs as the provider (root) outside every sandbox; nothing of a workspace can reach it: its
 * socket is in the root-only run dir, the command dirs it writes are root-only and provider-made.
 * It exits when it has had no client and no running command for IDLE_MS.
 *
 * The command dir's files (commands.ts writes the inputs; command-record.ts reads the rest back):
 *   stdin            fed to the command (opened, then removed)
 *   fd3              opened as fd 3 for the chain (bwrap --args or an env script: env values), then removed
 *   cgroup           read by the chain itself (sandbox.ts), never by this process
 *   pid              "<supervisor pid> <start time>": a status reads 'running' while that process lives
 *   pgid             the chain's process group (it leads a session of its own)
 *   stdout, stderr   kept output (at most maxOutputBytes) and <stream>.rest (count past the cap)
 *   kill             reason, written by whoever kills the command (first writer wins)
 *   exit             the exit record (formatExit), written atomically as the very last step
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import fs, { constants } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { formatExit } from '../../runner/command-record.js';
import { HolderGoneError, openHolderNamespaces } from './namespaces.js';
import { CappedStream } from './output.js';
import { isStartRequest, lineReader, type Message, type Reply, type StartRequest } from './protocol.js';

/** How long an unused supervisor lingers (a provider restarting within it finds it again). */
const IDLE_MS = 5_000;
/** After the chain ended: how long the exit record waits for its output pipes to close (see finish). */
const GRACE_GROUP_ALIVE_MS = 1_000;
const GRACE_GROUP_EMPTY_MS = 10_000;
/** FIFOs made per `mkfifo` run (two per command). */
const FIFO_BATCH = 32;
const TOOL_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };

const [runDir, socketName] = process.argv.slice(2);
if (runDir === undefined || socketName === undefined || !path.isAbsolute(runDir)) {
  process.stderr.write('usage: daemon.ts <absolute run dir> <socket name>\n');
  process.exit(2);
}
// Paths through a descriptor of the run dir: a unix socket path is limited to 108 bytes, a data dir is not.
const runFd = fs.openSync(runDir, constants.O_RDONLY | constants.O_DIRECTORY);
const inRun = (name: string): string => `/proc/self/fd/${runFd}/${name}`;
const socketPath = inRun(socketName);
const fifoDir = `fifo-${process.pid}`;
fs.mkdirSync(path.join(runDir, fifoDir), { recursive: true, mode: 0o700 });

/** Field 22 of /proc/self/stat: with the pid it names this process and no later one (pid reuse). */
const selfStat = fs.readFileSync('/proc/self/stat', 'utf8');
const selfStart = selfStat.slice(selfStat.lastIndexOf(')') + 2).split(' ')[19];

function log(message: string): void {
  process.stderr.write(`${new Date().toISOString()} supervisor ${process.pid}: ${message}\n`);
}

function writeAtomic(file: string, text: string): void {
  fs.writeFileSync(`${file}.tmp`, text, { mode: 0o600 });
  fs.renameSync(`${file}.tmp`, file);
}

/** Open a file the provider wrote for this command, then remove it (it may hold env values). */
function takeInput(file: string): number {
  const fd = fs.openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  fs.rmSync(file, { force: true });
  return fd;
}

// --- pipes: a FIFO opened at both ends, then unlinked (Node has no pipe(2); a socketpair would make
// `echo x > /dev/stdout` fail in the command, as a shell's pipe does not).
let fifoSerial = 0;
const fifoPool: string[] = [];
function pipePair(): { read: number; write: number } {
  if (fifoPool.length === 0) {
    const names = Array.from({ length: FIFO_BATCH }, () => path.join(runDir!, fifoDir, `f${fifoSerial++}`));
    // 0666: once unlinked, a FIFO is reachable only through the descriptors of the command it was
    // given to (/proc/<pid>/fd/1, its own uid), and the command must be able to reopen its own
    // stdout that way (`echo x > /dev/stdout`) — as the workspace's uid, not root.
    execFileSync('mkfifo', ['-m', '666', '--', ...names], { env: TOOL_ENV, stdio: 'ignore' });
    fifoPool.push(...names);
  }
  const name = fifoPool.pop()!;
  const read = fs.openSync(name, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  // Blocking (the command's stdout must be): the open returns at once, the read end is open.
  const write = fs.openSync(name, constants.O_WRONLY | constants.O_NOFOLLOW);
  fs.rmSync(name, { force: true });
  return { read, write };
}

// --- commands ---------------------------------------------------------------------------------

interface Running {
  pgid: number | undefined;
  timer: NodeJS.Timeout | undefined;
}
const running = new Map<string, Running>();

function groupAlive(pgid: number | undefined): boolean {
  if (pgid === undefined) return false;
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

function killGroup(pgid: number | undefined): void {
  if (pgid === undefined) return;
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Record why the command is killed, unless someone recorded a reason first. */
function writeKillReason(dir: string, reason: string): void {
  try {
    fs.writeFileSync(path.join(dir, 'kill'), `${reason}\n`, { flag: 'wx', mode: 0o600 });
  } catch {
    // a reason is there already (or the dir is gone)
  }
}

function start(req: StartRequest): void {
  const { dir, chain } = req;
  // A start sent again (its answer was lost): the first one holds the dir.
  if (running.has(dir) || fs.existsSync(path.join(dir, 'pid'))) return;
  writeAtomic(path.join(dir, 'pid'), `${process.pid} ${selfStart}\n`);
  const cmd: Running = { pgid: undefined, timer: undefined };
  const inputs: number[] = [];
  const outputs: Array<{ read: number; write: number }> = [];
  let child: ChildProcess | undefined;
  let refused: Error | undefined;
  let out: CappedStream;
  let err: CappedStream;
  let owned = 0;
  try {
    inputs.push(takeInput(path.join(dir, 'stdin')), takeInput(path.join(dir, 'fd3')));
    outputs.push(pipePair(), pipePair());
    out = new CappedStream(path.join(dir, 'stdout'), req.maxOutputBytes, outputs[0]!.read);
    owned = 1;
    err = new CappedStream(path.join(dir, 'stderr'), req.maxOutputBytes, outputs[1]!.read);
    owned = 2;
    const stdio: Array<number | 'ignore'> = [inputs[0]!, outputs[0]!.write, outputs[1]!.write, inputs[1]!];
    try {
      if (req.joinNamespacesOf !== undefined) {
        const ns = openHolderNamespaces(req.joinNamespacesOf);
        inputs.push(ns.user, ns.pid);
        stdio.push('ignore', 'ignore', 'ignore', ns.user, ns.pid);
      }
    } catch (error) {
      if (!(error instanceof HolderGoneError)) throw error;
      refused = error;
    }
    // detached: the chain leads a session (and process group) of its own, so a group kill reaches the
    // command and everything it started — and never this process.
    if (refused === undefined) {
      try {
        child = spawn(chain[0]!, chain.slice(1), { stdio, detached: true, cwd: '/', env: TOOL_ENV });
      } catch (error) {
        refused = error as Error;
      }
    }
  } catch (error) {
    // Its inputs are missing or no pipe could be made: it never ran, and says so (never 'running').
    for (const p of outputs.slice(owned)) fs.closeSync(p.read); // the others are their streams' now
    const ended = new Date().toISOString();
    const record = { code: 127, signal: null, killed: false, stdoutBytes: 0, stderrBytes: 0, endedAt: ended };
    writeAtomic(path.join(dir, 'exit'), formatExit(record));
    throw error;
  } finally {
    // The command has its copies (or never will): its pipes end when the command's side closes.
    for (const fd of [...inputs, ...outputs.map((p) => p.write)]) fs.closeSync(fd);
  }
  running.set(dir, cmd);
  if (child === undefined) {
    void finish(dir, cmd, out, err, refused instanceof HolderGoneError ? 125 : 127, null, refused);
    return;
  }
  let spawnError: Error | undefined;
  child.once('error', (error) => {
    spawnError = error;
  });
  cmd.pgid = child.pid;
  if (cmd.pgid !== undefined) {
    writeAtomic(path.join(dir, 'pgid'), `${cmd.pgid}\n`);
    // A kill that came before the group was known is honoured now.
    if (fs.existsSync(path.join(dir, 'kill'))) killGroup(cmd.pgid);
    if (req.timeoutMs > 0) {
      // setTimeout holds at most 2^31-1 ms (~24.8 days); longer is as good as none here.
      cmd.timer = setTimeout(
        () => {
          writeKillReason(dir, 'timeout');
          killGroup(cmd.pgid);
        },
        Math.min(req.timeoutMs, 2 ** 31 - 1),
      );
    }
  }
  const spawned = child;
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    spawned.once('exit', (code, signal) => resolve({ code, signal }));
    spawned.once('error', () => resolve({ code: 127, signal: null }));
  });
  void ended.then(({ code, signal }) => finish(dir, cmd, out, err, code, signal, spawnError));
}

/**
 * The chain ended: wait (bounded) until its output pipes close — at once, unless a background process
 * it left still holds one; then the record counts what came so far and the stream goes on being
 * capped alone — and write the exit record. A kill by us is a recorded reason AND a death by SIGKILL
 * (a shell would report 128 + 9): a kill requested after the command had ended does not count.
 */
async function finish(
  dir: string,
  cmd: Running,
  out: CappedStream,
  err: CappedStream,
  code: number | null,
  signal: NodeJS.Signals | null,
  spawnError: Error | undefined,
): Promise<void> {
  if (cmd.timer !== undefined) clearTimeout(cmd.timer);
  const status = code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0);
  const grace = groupAlive(cmd.pgid) ? GRACE_GROUP_ALIVE_MS : GRACE_GROUP_EMPTY_MS;
  let graceTimer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all([out.ended, err.ended]),
    new Promise((resolve) => {
      graceTimer = setTimeout(resolve, grace);
    }),
  ]);
  clearTimeout(graceTimer);
  try {
    let stderrBytes = err.bytes;
    if (spawnError !== undefined) {
      const message =
        spawnError instanceof HolderGoneError
          ? `wsp: ${spawnError.message}\n`
          : `wsp: cannot start the command: ${spawnError.message}\n`;
      fs.appendFileSync(path.join(dir, 'stderr'), message);
      stderrBytes += Buffer.byteLength(message);
    }
    const killed = status === 128 + 9 && fs.existsSync(path.join(dir, 'kill'));
    writeAtomic(
      path.join(dir, 'exit'),
      formatExit({
        code: status,
        signal: killed ? 'SIGKILL' : null,
        killed,
        stdoutBytes: out.bytes,
        stderrBytes,
        endedAt: new Date().toISOString(),
      }),
    );
  } catch (error) {
    // The dir was removed under us (its workspace destroyed): nothing to record into.
    log(`cannot record the exit of ${dir}: ${(error as Error).message}`);
  }
  running.delete(dir);
  broadcast({ exit: dir });
  idleCheck();
}

// --- clients ----------------------------------------------------------------------------------

const clients = new Set<net.Socket>();

function broadcast(message: Message): void {
  const line = `${JSON.stringify(message)}\n`;
  for (const c of clients) c.write(line);
}

function onClient(socket: net.Socket): void {
  clients.add(socket);
  idleCheck();
  const reply = (r: Reply) => socket.write(`${JSON.stringify(r)}\n`);
  socket.on(
    'data',
    lineReader(
      (value) => {
        if (!isStartRequest(value)) {
          const id = (value as { id?: unknown } | null)?.id;
          reply({ id: typeof id === 'number' ? id : -1, ok: false, error: 'not a valid request' });
          return;
        }
        try {
          start(value);
          reply({ id: value.id, ok: true });
        } catch (error) {
          log(`start ${value.dir}: ${(error as Error).message}`);
          reply({ id: value.id, ok: false, error: (error as Error).message });
        }
      },
      (line) => log(`unreadable request: ${line.slice(0, 200)}`),
    ),
  );
  socket.on('error', () => socket.destroy());
  socket.on('close', () => {
    clients.delete(socket);
    idleCheck();
  });
}

let idleTimer: NodeJS.Timeout | undefined;
function idleCheck(): void {
  if (idleTimer !== undefined) clearTimeout(idleTimer);
  idleTimer = undefined;
  if (clients.size > 0 || running.size > 0) return;
  idleTimer = setTimeout(() => {
    if (clients.size > 0 || running.size > 0) return;
    server.close();
    shutdown(0);
  }, IDLE_MS);
}

function shutdown(code: number): never {
  fs.rmSync(path.join(runDir!, socketName!), { force: true });
  fs.rmSync(path.join(runDir!, fifoDir), { recursive: true, force: true });
  process.exit(code);
}

process.on('uncaughtException', (error) => log(`uncaught: ${error.stack ?? error.message}`));
process.on('SIGTERM', () => (running.size === 0 ? shutdown(0) : log('SIGTERM ignored: commands are running')));

const server = net.createServer(onClient);
/** Listen; a socket file left by a dead supervisor is replaced, a live one's is left alone (we exit). */
function listen(retry: boolean): void {
  server.once('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EADDRINUSE' || !retry) {
      log(`cannot listen: ${error.message}`);
      process.exit(1);
    }
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      process.exit(0); // another supervisor serves this socket: the client finds it
    });
    probe.once('error', () => {
      fs.rmSync(path.join(runDir!, socketName!), { force: true });
      listen(false);
    });
  });
  server.listen(socketPath, () => {
    log('ready');
    idleCheck();
  });
}
listen(true);
