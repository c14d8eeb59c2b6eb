import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs, { constants } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { ForkerTarget } from './protocol.js';

/**
 * The supervisor's side of a workspace's in-sandbox forker (forker.py, the payload of the
 * workspace's namespace holder): a command handed to it is one fork + exec inside the live sandbox
 * instead of a new bubblewrap sandbox (~2.4 ms against ~17 ms for the chain).
 *
 * What stays host-side, as with the chain: the command's stdout/stderr are FIFOs whose read ends
 * this process holds (capped here), the exit record is written here, the timeout is kept here, and
 * the command's host process group is found here — as a child of the forker's recorded host pid, in
 * the workspace's pid namespace — so a kill is the kernel's, not the forker's word. What the forker
 * says (its pid inside, its exit code) is trusted only about that workspace: a workspace that
 * tampers with its forker (it runs as the workspace's uid) can lie about or stop its own commands,
 * nothing else. Every write to it is non-blocking; a forker that does not pick a command up in time
 * fails that command and is not used again (the chain takes over).
 *
 * The channel dir (`<workspace dir>/chan`, made by pid-namespace.ts) is root-owned and bound
 * read-only into the sandbox: the workspace cannot create, swap or remove anything in it; this
 * process makes the FIFOs and request files there, owned by the workspace's uid, mode 0600.
 */

/** How long a forker may take to start a command before it counts as broken. */
const PICKUP_MS = 10_000;
/** FIFOs made per `mkfifo` run (three per command). */
const FIFO_BATCH = 24;
const MAX_STATUS_BYTES = 256;
const TOOL_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };

export interface ForkedEvents {
  /** The command runs; its host process group (undefined: it ended before it could be found). */
  started(pgid: number | undefined): void;
  /**
   * It ended: an exit code, or a signal; `note` goes to its stderr (why there is no real status).
   * `ran` false: it never started (its output FIFOs never had a writer: nothing to wait for).
   */
  ended(code: number | null, signal: NodeJS.Signals | null, note?: string, ran?: boolean): void;
}

export interface Forked {
  out: number;
  err: number;
  /** With openStdin: the write end of the command's stdin (a FIFO opened read-write: never blocks). */
  stdin?: number;
  /** Ask the forker to kill the command's group (besides the host-side group kill). */
  kill(): void;
  /** A new size for its terminal (a command started with a tty); false when the forker does not read. */
  resize(rows: number, cols: number): boolean;
  /**
   * Killed, yet the forker says nothing (the workspace stopped it): end the command as killed without
   * its word, and use the chain for this workspace from now on.
   */
  abandon(): void;
}

export class Forkers {
  /** Forkers (by pid and start time) that failed a command: the chain runs that workspace's commands. */
  private readonly broken = new Set<string>();
  private readonly pools = new Map<string, string[]>();
  private serial = 0;

  /**
   * Hand the command of `dir` to the workspace's forker. Undefined: no forker takes it (none alive,
   * broken, or not reading) and nothing was handed off — the caller runs the chain instead.
   */
  start(target: ForkerTarget, dir: string, events: ForkedEvents, openStdin = false): Forked | undefined {
    const key = `${target.forker.pid}:${target.forker.start}`;
    if (this.broken.has(key) || startTime(target.forker.pid) !== target.forker.start) return undefined;
    const token = randomBytes(16).toString('hex');
    const names: string[] = [];
    const fds: number[] = [];
    let stdinMoved: string | undefined;
    const inChan = (name: string) => path.join(target.chan, name);
    const unlinkAll = () => {
      for (const n of names) fs.rmSync(inChan(n), { force: true });
    };
    try {
      const [out, err, st] = this.fifos(target, key, 3);
      names.push(out!, err!, st!);
      for (const n of [out!, err!, st!])
        fds.push(fs.openSync(inChan(n), constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW));
      let stdin: string | null = null;
      const stdinFile = path.join(dir, 'stdin');
      if (openStdin) {
        // Its stdin: a FIFO whose write end this process keeps (the `stdin` file's bytes are fed first,
        // by the caller). Opened read-write so that neither this open nor the forker's blocks.
        stdin = this.fifos(target, key, 1)[0]!;
        names.push(stdin);
        fds.push(fs.openSync(inChan(stdin), constants.O_RDWR | constants.O_NOFOLLOW));
      } else if (fs.statSync(stdinFile).size > 0) {
        stdin = `${token}.in`;
        fs.renameSync(stdinFile, inChan(stdin));
        stdinMoved = stdin;
        names.push(stdin);
        fs.chownSync(inChan(stdin), target.hostUid, target.hostUid);
        fs.chmodSync(inChan(stdin), 0o600);
      }
      names.push(`${token}.req`);
      writeOwned(
        inChan(`${token}.req`),
        JSON.stringify({
          argv: target.argv,
          env: target.env,
          cwd: target.cwd,
          out,
          err,
          st,
          in: stdin,
          ...(target.tty !== undefined ? { tty: [target.tty.rows, target.tty.cols] } : {}),
        }),
        target.hostUid,
      );
      if (!send(target.chan, `s ${token}\n`)) throw new Error('the forker is not reading');
    } catch {
      // Nothing was handed off: undo, and let the chain run it.
      for (const fd of fds) fs.closeSync(fd);
      if (stdinMoved !== undefined) fs.renameSync(inChan(stdinMoved), path.join(dir, 'stdin'));
      unlinkAll();
      return undefined;
    }
    // Handed off: the command's inputs are the forker's now (an open stdin's first bytes: the caller's).
    if (!openStdin) fs.rmSync(path.join(dir, 'stdin'), { force: true });
    fs.rmSync(path.join(dir, 'fd3'), { force: true });
    const abandon = this.watch(target, key, dir, fds[2]!, events, unlinkAll);
    return {
      out: fds[0]!,
      err: fds[1]!,
      ...(openStdin ? { stdin: fds[3]! } : {}),
      kill: () => void send(target.chan, `k ${token}\n`),
      resize: (rows, cols) => send(target.chan, `r ${token} ${rows} ${cols}\n`),
      abandon,
    };
  }

  /** Read the command's status channel: "p <pid inside>", then "x <code>" (negative: -signal). */
  private watch(
    target: ForkerTarget,
    key: string,
    dir: string,
    stFd: number,
    events: ForkedEvents,
    unlinkAll: () => void,
  ): () => void {
    const st = new net.Socket({ fd: stFd, readable: true, writable: false });
    let text = '';
    let picked = false;
    let done = false;
    const end = (code: number | null, signal: NodeJS.Signals | null, note?: string) => {
      if (done) return;
      done = true;
      clearTimeout(pickup);
      st.destroy();
      unlinkAll();
      events.ended(code, signal, note, picked);
    };
    const pickup = setTimeout(() => {
      this.broken.add(key);
      end(125, null, "the workspace's command runner did not start the command in time; run it again");
    }, PICKUP_MS);
    st.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (text.length > MAX_STATUS_BYTES) text = text.slice(-MAX_STATUS_BYTES);
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n')) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 1);
        const m = /^([px]) (-?\d{1,10})$/.exec(line);
        if (m === null || done) continue;
        const n = Number(m[2]);
        if (m[1] === 'p' && !picked) {
          picked = true;
          clearTimeout(pickup);
          unlinkAll();
          events.started(n > 0 ? hostGroupOf(target, n) : undefined);
        } else if (m[1] === 'x' && picked) {
          end(n >= 0 ? n : null, n >= 0 ? null : signalName(-n));
        }
      }
    });
    const closed = () => {
      if (done) return;
      // The forker ended without a word on this command: killed with everything of its workspace (a
      // kill-all, whose reason is recorded first) or by the workspace itself: its status is unknown.
      this.broken.add(key);
      if (fs.existsSync(path.join(dir, 'kill'))) return end(null, 'SIGKILL');
      end(
        125,
        null,
        picked
          ? "the workspace's command runner ended while the command ran (killed from inside the workspace?): its exit status is unknown"
          : "the workspace's command runner ended before it started the command; run it again",
      );
    };
    st.once('end', closed);
    st.once('close', closed);
    st.once('error', closed);
    return () => {
      this.broken.add(key);
      end(null, 'SIGKILL');
    };
  }

  /** FIFOs in the channel dir, owned by the workspace's uid (it opens the write ends as that uid). */
  private fifos(target: ForkerTarget, key: string, count: number): string[] {
    const poolKey = `${target.chan}\0${key}`;
    let pool = this.pools.get(poolKey);
    if (pool === undefined) {
      // A new holder made a new channel dir: the pool of the old one is gone with it.
      for (const k of this.pools.keys()) if (k.startsWith(`${target.chan}\0`)) this.pools.delete(k);
      pool = [];
      this.pools.set(poolKey, pool);
    }
    if (pool.length < count) {
      const made = Array.from({ length: FIFO_BATCH }, () => `f${process.pid}-${this.serial++}`);
      execFileSync('mkfifo', ['-m', '600', '--', ...made.map((n) => path.join(target.chan, n))], {
        env: TOOL_ENV,
        stdio: 'ignore',
      });
      for (const n of made) fs.chownSync(path.join(target.chan, n), target.hostUid, target.hostUid);
      pool.push(...made);
    }
    return pool.splice(0, count);
  }
}

/** One request line to the forker, never blocking: false when no forker reads the channel or it is full. */
function send(chan: string, line: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(path.join(chan, 'req'), constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch {
    return false; // ENXIO: no reader (the forker is gone)
  }
  try {
    // Shorter than PIPE_BUF: written whole or not at all.
    return fs.writeSync(fd, line) === Buffer.byteLength(line);
  } catch {
    return false; // EAGAIN: it does not read
  } finally {
    fs.closeSync(fd);
  }
}

function writeOwned(file: string, text: string, uid: number): void {
  const fd = fs.openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    fs.fchownSync(fd, uid, uid);
    fs.writeSync(fd, text);
  } finally {
    fs.closeSync(fd);
  }
}

function statFields(pid: number): string[] | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

function startTime(pid: number): string | undefined {
  const f = statFields(pid);
  return f === undefined || f[0] === 'Z' || f[0] === 'X' ? undefined : f[19];
}

/**
 * The host id of the process group the command leads — `nsPid` inside the workspace's pid namespace
 * (the forker starts each command in a session of its own) — which a kill signals. Looked for among
 * the forker's children (the recorded forker's: whatever it says, the group is the workspace's), else
 * among the processes of the workspace's cgroup (the command ended at once, and a background process
 * it left keeps the group). Undefined when neither has it (nothing of the group is left).
 */
function hostGroupOf(target: ForkerTarget, nsPid: number): number | undefined {
  const { forker } = target;
  const children = readOr(`/proc/${forker.pid}/task/${forker.pid}/children`);
  for (const pid of pids(children)) {
    const ids = nsIds(pid);
    if (ids === undefined || ids.pid !== nsPid) continue;
    // It leads its group, and the forker is still the recorded process (the list read was its children).
    return ids.pgid === nsPid && startTime(forker.pid) === forker.start ? ids.hostPgid : undefined;
  }
  if (target.procs === undefined) return undefined;
  for (const pid of pids(readOr(target.procs))) {
    const ids = nsIds(pid);
    if (ids !== undefined && ids.pgid === nsPid) return ids.hostPgid;
  }
  return undefined;
}

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function pids(text: string): number[] {
  return text
    .split(/\s+/)
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 1);
}

/** A process's pid and process group inside its (nested) pid namespace, and its group's host id. */
function nsIds(pid: number): { pid: number; pgid: number; hostPgid: number } | undefined {
  const status = readOr(`/proc/${pid}/status`);
  const nsPid = /^NSpid:\s+(.+)$/m.exec(status)?.[1]?.trim().split(/\s+/) ?? [];
  const nsPgid = /^NSpgid:\s+(.+)$/m.exec(status)?.[1]?.trim().split(/\s+/) ?? [];
  // Two levels: the host's and the workspace's namespace (the forker's commands are never deeper).
  if (nsPid.length !== 2 || nsPgid.length !== 2) return undefined;
  return { pid: Number(nsPid[1]), pgid: Number(nsPgid[1]), hostPgid: Number(nsPgid[0]) };
}

function signalName(n: number): NodeJS.Signals | null {
  for (const [name, value] of Object.entries(os.constants.signals)) if (value === n) return name as NodeJS.Signals;
  return null;
}
