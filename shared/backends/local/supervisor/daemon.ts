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
 * It also starts each workspace's long-lived sandbox processes (namespace holder, forker:
 * sandboxed.ts) — every process that enters a sandbox comes from here, and this process passes on
 * no descriptor it inherited (inherited-fds.ts).
 *
 * The command dir's files (commands.ts writes the inputs; command-record.ts reads the rest back):
 *   stdin            fed to the command (opened, then removed)
 *   fd3              opened as fd 3 for the chain (bwrap --args or an env script: env values), then removed
 *   cgroup           read by the chain itself (sandbox.ts), never by this process
 *   pid              "<supervisor pid> <start time>": a status reads 'running' while that process lives
 *   pgid             "<pgid> <leader start time>": the chain's process group (it leads a session of its own)
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
import { STDIN_PENDING_MAX_BYTES } from '../../../contract/backend.js';
import { formatExit } from '../../runner/command-record.js';
import { killGroup, type RecordedGroup, startTimeSync, stillOurs } from '../procs.js';
import { Forkers } from './forked.js';
import { closeInheritedDescriptors } from './inherited-fds.js';
import { HolderGoneError, openHolderNamespaces } from './namespaces.js';
import { CappedStream } from './output.js';
import {
  type ForkerTarget,
  isResizeRequest,
  isSpawnRequest,
  isStartRequest,
  isStdinRequest,
  lineReader,
  type Message,
  type Reply,
  type StartRequest,
} from './protocol.js';
import { spawnSandboxed } from './sandboxed.js';
import { StdinFeed } from './stdin-feed.js';

// Before anything of ours opens a descriptor: nothing this process inherited may reach a sandbox.
// (Node marks the first inherited ones close-on-exec itself, up to the first gap past fd 15; this
// closes the rest.)
const inheritedClosed = closeInheritedDescriptors();

/** How long an unused supervisor lingers (a provider restarting within it finds it again). */
const IDLE_MS = 5_000;
/** After the chain ended: how long the exit record waits for its output pipes to close (see finish). */
const GRACE_GROUP_ALIVE_MS = 1_000;
const GRACE_GROUP_EMPTY_MS = 10_000;
/** After a timeout's kill: how long a forker may take to report the end before the command is ended without it. */
const FORKER_KILL_GRACE_MS = 3_000;
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
function fifoName(): string {
  if (fifoPool.length === 0) {
    const names = Array.from({ length: FIFO_BATCH }, () => path.join(runDir!, fifoDir, `f${fifoSerial++}`));
    // 0666: once unlinked, a FIFO is reachable only through the descriptors of the command it was
    // given to (/proc/<pid>/fd/1, its own uid), and the command must be able to reopen its own
    // stdout that way (`echo x > /dev/stdout`) — as the workspace's uid, not root.
    execFileSync('mkfifo', ['-m', '666', '--', ...names], { env: TOOL_ENV, stdio: 'ignore' });
    fifoPool.push(...names);
  }
  return fifoPool.pop()!;
}
function pipePair(): { read: number; write: number } {
  const name = fifoName();
  const read = fs.openSync(name, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  // Blocking (the command's stdout must be): the open returns at once, the read end is open.
  const write = fs.openSync(name, constants.O_WRONLY | constants.O_NOFOLLOW);
  fs.rmSync(name, { force: true });
  return { read, write };
}

/**
 * An open stdin: the command's read end (a blocking one, as a shell's pipe is) and the write end kept
 * here. Opened read-write first, so that no open blocks; see exclusiveWriter for the rest.
 */
function stdinPipe(): { read: number; write: number } {
  const name = fifoName();
  const both = fs.openSync(name, constants.O_RDWR | constants.O_NOFOLLOW);
  let read: number | undefined;
  try {
    read = fs.openSync(name, constants.O_RDONLY | constants.O_NOFOLLOW);
    const write = exclusiveWriter(both);
    if (write === undefined) throw new Error('the stdin pipe lost its reader');
    return { read, write };
  } catch (error) {
    if (read !== undefined) fs.closeSync(read);
    throw error;
  } finally {
    fs.rmSync(name, { force: true });
  }
}

/**
 * Trade a read-write descriptor of a stdin FIFO (once the command has its read end) for a write-only
 * one: then the command is its only reader, and a command that closes its stdin makes our writes
 * fail (EPIPE) instead of filling a pipe nobody reads. Root-owned 0600 first, so that no other process
 * of the workspace can reopen it through /proc/<pid>/fd/0 to read or inject input. Undefined: no
 * reader is left (the command closed it already). Closes `both` either way.
 */
function exclusiveWriter(both: number): number | undefined {
  try {
    fs.fchownSync(both, 0, 0);
    fs.fchmodSync(both, 0o600);
    return fs.openSync(`/proc/self/fd/${both}`, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENXIO') return undefined;
    throw error;
  } finally {
    fs.closeSync(both);
  }
}

/** The open stdins of running commands (openStdin), by command dir. */
const feeds = new Map<string, StdinFeed>();

/** Feed an open stdin, the bytes of the command's `stdin` file first (given at start: not capped). */
function openFeed(dir: string, write: number | undefined, initial: Buffer): void {
  const feed = new StdinFeed(write, STDIN_PENDING_MAX_BYTES);
  feed.write(initial, false, true);
  feeds.set(dir, feed);
}

/** Answer to a StdinRequest: undefined when taken, else why not. */
function feedStdin(dir: string, data: Buffer, eof: boolean): string | undefined {
  const feed = feeds.get(dir);
  if (feed === undefined) return 'its stdin is closed: the command has ended, or was not started with openStdin';
  return feed.write(data, eof);
}

// --- commands ---------------------------------------------------------------------------------

interface Running {
  /** The command's process group, once known. */
  group: RecordedGroup | undefined;
  timer: NodeJS.Timeout | undefined;
  /** A command run by the workspace's forker: ask it to kill the command's group too. */
  forkerKill?: () => void;
  /** A command run by the workspace's forker: end it as killed without the forker's word (forked.ts). */
  forkerAbandon?: () => void;
  /** A command under a terminal of its forker: resize it. */
  forkerResize?: (rows: number, cols: number) => boolean;
}
const running = new Map<string, Running>();
const forkers = new Forkers();

function groupAlive(group: RecordedGroup | undefined): boolean {
  if (group === undefined || !stillOurs(group)) return false;
  try {
    process.kill(-group.pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The command's process group, then every process of its session (job-control shells' jobs). */
function killRecorded(cmd: Running): void {
  if (cmd.group !== undefined) killGroup(cmd.group);
}

/** Record why the command is killed, unless someone recorded a reason first. */
function writeKillReason(dir: string, reason: string): void {
  try {
    fs.writeFileSync(path.join(dir, 'kill'), `${reason}\n`, { flag: 'wx', mode: 0o600 });
  } catch {
    // a reason is there already (or the dir is gone)
  }
}

/** The command's group is known: record it; honour a kill that came before it was known. */
function groupKnown(dir: string, cmd: Running, pgid: number | undefined): void {
  if (pgid !== undefined) {
    // Its leader's start time with it: a kill long after must not hit a new group under the same number.
    const leaderStart = startTimeSync(pgid);
    cmd.group = { pgid, ...(leaderStart !== undefined ? { leaderStart } : {}) };
    writeAtomic(path.join(dir, 'pgid'), `${pgid}${leaderStart !== undefined ? ` ${leaderStart}` : ''}\n`);
  }
  if (fs.existsSync(path.join(dir, 'kill'))) {
    killRecorded(cmd);
    cmd.forkerKill?.();
  }
}

function armTimeout(dir: string, cmd: Running, timeoutMs: number): void {
  if (timeoutMs <= 0) return;
  // setTimeout holds at most 2^31-1 ms (~24.8 days); longer is as good as none here.
  cmd.timer = setTimeout(
    () => {
      writeKillReason(dir, 'timeout');
      killRecorded(cmd);
      cmd.forkerKill?.();
      // A forker the workspace stopped never reports the end: the timeout holds all the same.
      if (cmd.forkerAbandon !== undefined)
        setTimeout(() => running.get(dir) === cmd && cmd.forkerAbandon?.(), FORKER_KILL_GRACE_MS).unref();
    },
    Math.min(timeoutMs, 2 ** 31 - 1),
  );
}

/** Resolves once the command's pid and process group are recorded (or it ended first). */
async function start(req: StartRequest): Promise<void> {
  const { dir } = req;
  // A start sent again (its answer was lost): the first one holds the dir.
  if (running.has(dir) || fs.existsSync(path.join(dir, 'pid'))) return;
  writeAtomic(path.join(dir, 'pid'), `${process.pid} ${selfStart}\n`);
  const cmd: Running = { group: undefined, timer: undefined };
  if (req.forker !== undefined) {
    const started = startForked(req, req.forker, cmd);
    if (started !== undefined) return started;
    // A terminal is the forker's to make: a sandbox per command has none to offer.
    if (req.forker.tty !== undefined)
      return refuse(req, cmd, "the workspace's command runner is not available for a terminal; run it again");
  }
  startChain(req, cmd);
}

/**
 * Through the workspace's forker (forked.ts): undefined when it does not take the command (nothing
 * ran); else resolves once the forker started it (its group recorded) or it ended.
 */
function startForked(req: StartRequest, target: ForkerTarget, cmd: Running): Promise<void> | undefined {
  const { dir } = req;
  const streams: { out?: CappedStream; err?: CappedStream } = {};
  /** With openStdin: the read-write descriptor of its FIFO, until the forker has opened it (started). */
  let stdinBoth: number | undefined;
  let known!: () => void;
  const started = new Promise<void>((resolve) => {
    known = resolve;
  });
  const forked = forkers.start(
    target,
    dir,
    {
      started: (pgid) => {
        // The forker has opened the command's stdin: ours becomes its only writer (exclusiveWriter).
        if (stdinBoth !== undefined) {
          const both = stdinBoth;
          stdinBoth = undefined;
          const initial = fs.readFileSync(path.join(dir, 'stdin'));
          fs.rmSync(path.join(dir, 'stdin'), { force: true });
          openFeed(dir, exclusiveWriter(both), initial);
        }
        groupKnown(dir, cmd, pgid);
        known();
      },
      ended: (code, signal, note, ran) => {
        if (stdinBoth !== undefined) fs.closeSync(stdinBoth);
        stdinBoth = undefined;
        known();
        const said = note === undefined ? undefined : `wsp: ${note}\n`;
        void finish(dir, cmd, streams.out!, streams.err!, code, signal, said, ran === false ? 0 : undefined);
      },
    },
    req.openStdin === true,
  );
  if (forked === undefined) return undefined;
  stdinBoth = forked.stdin;
  cmd.forkerKill = forked.kill;
  if (target.tty !== undefined) cmd.forkerResize = forked.resize;
  cmd.forkerAbandon = forked.abandon;
  try {
    streams.out = new CappedStream(path.join(dir, 'stdout'), req.maxOutputBytes, forked.out);
    streams.err = new CappedStream(path.join(dir, 'stderr'), req.maxOutputBytes, forked.err);
  } catch (error) {
    forked.kill();
    throw error;
  }
  running.set(dir, cmd);
  armTimeout(dir, cmd, req.timeoutMs);
  return started;
}

/** A sandbox of its own for the command: the launch chain (sandbox.ts), spawned here. */
function startChain(req: StartRequest, cmd: Running): void {
  const { dir, chain } = req;
  const inputs: number[] = [];
  const outputs: Array<{ read: number; write: number }> = [];
  let child: ChildProcess | undefined;
  let refused: Error | undefined;
  let out: CappedStream;
  let err: CappedStream;
  let owned = 0;
  try {
    inputs.push(takeInput(path.join(dir, 'stdin')), takeInput(path.join(dir, 'fd3')));
    let openStdin: number | undefined;
    if (req.openStdin === true) {
      const initial = fs.readFileSync(inputs[0]!);
      const pipe = stdinPipe();
      inputs.push(pipe.read);
      openStdin = pipe.read;
      openFeed(dir, pipe.write, initial);
    }
    outputs.push(pipePair(), pipePair());
    out = new CappedStream(path.join(dir, 'stdout'), req.maxOutputBytes, outputs[0]!.read);
    owned = 1;
    err = new CappedStream(path.join(dir, 'stderr'), req.maxOutputBytes, outputs[1]!.read);
    owned = 2;
    // An open stdin goes in as fd 9, /dev/null on 0 (the chain moves it: sandbox.ts buildLaunch).
    const stdio: Array<number | 'ignore'> = [
      openStdin === undefined ? inputs[0]! : 'ignore',
      outputs[0]!.write,
      outputs[1]!.write,
      inputs[1]!,
    ];
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
    if (openStdin !== undefined) {
      while (stdio.length < 9) stdio.push('ignore');
      stdio[9] = openStdin;
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
    feeds.get(dir)?.close('the command did not start');
    feeds.delete(dir);
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
    void finish(dir, cmd, out, err, refused instanceof HolderGoneError ? 125 : 127, null, startNote(refused));
    return;
  }
  let spawnError: Error | undefined;
  child.once('error', (error) => {
    spawnError = error;
  });
  if (child.pid !== undefined) {
    groupKnown(dir, cmd, child.pid);
    armTimeout(dir, cmd, req.timeoutMs);
  }
  const spawned = child;
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    spawned.once('exit', (code, signal) => resolve({ code, signal }));
    spawned.once('error', () => resolve({ code: 127, signal: null }));
  });
  void ended.then(({ code, signal }) => finish(dir, cmd, out, err, code, signal, startNote(spawnError)));
}

/** A command that cannot run as asked: ended at once with exit 125 and why (never 'running'). */
function refuse(req: StartRequest, cmd: Running, why: string): void {
  const none = (name: string) => new CappedStream(path.join(req.dir, name), req.maxOutputBytes, emptyPipe());
  running.set(req.dir, cmd);
  void finish(req.dir, cmd, none('stdout'), none('stderr'), 125, null, `wsp: ${why}\n`, 0);
}

/** The read end of a pipe whose write end is closed already: a stream that ends at once. */
function emptyPipe(): number {
  const pair = pipePair();
  fs.closeSync(pair.write);
  return pair.read;
}

/** What stderr says about a command that could not be started. */
function startNote(error: Error | undefined): string | undefined {
  if (error === undefined) return undefined;
  return error instanceof HolderGoneError
    ? `wsp: ${error.message}\n`
    : `wsp: cannot start the command: ${error.message}\n`;
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
  /** Appended to stderr: why the command has no status of its own (it could not start, say). */
  note: string | undefined,
  /** How long the output may take to end; default: by whether the command's group lives on. */
  graceMs?: number,
): Promise<void> {
  if (cmd.timer !== undefined) clearTimeout(cmd.timer);
  // Closed now; kept (refusing with why) until the exit record is written: a write in between is told
  // the stdin is closed, not that there is none.
  feeds.get(dir)?.close('its stdin is closed: the command ended');
  const status = code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0);
  const grace = graceMs ?? (groupAlive(cmd.group) ? GRACE_GROUP_ALIVE_MS : GRACE_GROUP_EMPTY_MS);
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
    if (note !== undefined) {
      fs.appendFileSync(path.join(dir, 'stderr'), note);
      stderrBytes += Buffer.byteLength(note);
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
  feeds.delete(dir);
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
        if (isResizeRequest(value)) {
          const resize = running.get(value.dir)?.forkerResize;
          const ok = resize?.(value.rows, value.cols) ?? false;
          reply({ id: value.id, ok, ...(ok ? {} : { error: 'the command has no terminal to resize (or has ended)' }) });
          return;
        }
        if (isStdinRequest(value)) {
          const refused = feedStdin(value.dir, Buffer.from(value.data, 'base64'), value.eof);
          reply({ id: value.id, ok: refused === undefined, ...(refused !== undefined ? { error: refused } : {}) });
          return;
        }
        if (isSpawnRequest(value)) {
          spawnSandboxed(value).then(
            (pid) => reply({ id: value.id, ok: true, pid }),
            (error: Error) => {
              log(`spawn ${value.argv.join(' ').slice(0, 200)}: ${error.message}`);
              reply({ id: value.id, ok: false, error: error.message });
            },
          );
          return;
        }
        if (!isStartRequest(value)) {
          const id = (value as { id?: unknown } | null)?.id;
          reply({ id: typeof id === 'number' ? id : -1, ok: false, error: 'not a valid request' });
          return;
        }
        start(value).then(
          () => reply({ id: value.id, ok: true }),
          (error: Error) => {
            log(`start ${value.dir}: ${error.message}`);
            reply({ id: value.id, ok: false, error: error.message });
          },
        );
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
    log(`ready${inheritedClosed.length > 0 ? ` (closed inherited descriptors ${inheritedClosed.join(' ')})` : ''}`);
    idleCheck();
  });
}
listen(true);
