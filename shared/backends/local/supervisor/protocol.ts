/**
 * What the provider and the command supervisor (daemon.ts) say to each other over the supervisor's
 * unix socket: one JSON object per line. The socket lives in the data dir's root-only run dir, so
 * only the provider can reach it — never a workspace (its sandbox does not see the data dir).
 */

/** Start one command: the supervisor runs `chain` for the command dir `dir` (see daemon.ts). */
export interface StartRequest {
  id: number;
  op: 'start';
  dir: string;
  timeoutMs: number;
  maxOutputBytes: number;
  /** argv of the launch chain (sandbox.ts buildLaunch); holds no env values (those are in `fd3`). */
  chain: string[];
  /** The holder whose user and pid namespaces become the chain's fds 7 and 8 (namespaces.ts). */
  joinNamespacesOf?: { pid: number; start: string };
  /** The workspace's in-sandbox forker, tried first (forked.ts); `chain` runs when it does not take the command. */
  forker?: ForkerTarget;
  /** stdin stays open: a pipe this supervisor feeds (the `stdin` file's bytes first), see StdinRequest. */
  openStdin?: boolean;
}

/** Append to the open stdin of the command of `dir` (started with openStdin); `eof` closes it after. */
export interface StdinRequest {
  id: number;
  op: 'stdin';
  dir: string;
  /** base64 */
  data: string;
  eof: boolean;
}

/** A command for a workspace's forker (forker.py): what bwrap would have set up is the sandbox's already. */
export interface ForkerTarget {
  /** Host path of the workspace's channel dir (root-owned; bound read-only into its sandbox). */
  chan: string;
  /** The workspace's host uid: owner of the FIFOs and request files made for the forker. */
  hostUid: number;
  /** Host pid and start time of the forker process. */
  forker: { pid: number; start: string };
  /** A cgroup.procs file of the workspace's cgroup: where a command's group is looked for when its leader is gone. */
  procs?: string;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  /** Under a pseudo-terminal the forker makes (forker.py), of this size. */
  tty?: { rows: number; cols: number };
}

/** New size for the terminal of the command of `dir` (started through its forker with a tty). */
export interface ResizeRequest {
  id: number;
  op: 'resize';
  dir: string;
  rows: number;
  cols: number;
}

/**
 * Start a long-lived process of a workspace's sandbox — its namespace holder (pid-namespace.ts) or its
 * forker (forker-start.ts) — detached, from the supervisor: the one process that holds no descriptor
 * a sandbox could inherit (it drops what it inherited when it starts, inherited-fds.ts), whereas the
 * provider's own (the embedded store's LevelDB files, opened without close-on-exec at any time) would
 * pass through bwrap into the sandbox. `argv` runs with fd 2 on `log`, bwrap's --info-fd on fd 3 and a
 * ready byte from the payload on fd 4; answered with bwrap's child's host pid once both came.
 */
export interface SpawnRequest {
  id: number;
  op: 'spawn';
  argv: string[];
  /** Root-only file for the process's stderr (truncated), read back when the start fails. */
  log: string;
  /** Opened as fd 5, then removed (bwrap --args 5: options that must not show in argv). */
  argsFile?: string;
  /** The holder whose user and pid namespaces become fds 7 and 8 (a forker joins them). */
  joinNamespacesOf?: { pid: number; start: string };
}

/** The answer to a request with the same id; a start is answered once `pid` and `pgid` are recorded. */
export interface Reply {
  id: number;
  ok: boolean;
  error?: string;
  /** A spawn's answer: the host pid of bwrap's child. */
  pid?: number;
}

/** Sent to every connected client when a command's exit record is written. */
export interface ExitEvent {
  exit: string;
}

export type Message = Reply | ExitEvent;

/** Splits a byte stream into JSON lines; a line that does not parse is reported, not thrown. */
export function lineReader(onMessage: (value: unknown) => void, onBadLine: (line: string) => void) {
  let pending = '';
  return (chunk: Buffer | string): void => {
    pending += chunk.toString();
    for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line.trim() === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        onBadLine(line);
        continue;
      }
      onMessage(value);
    }
  };
}

export function isStartRequest(value: unknown): value is StartRequest {
  const r = value as Partial<StartRequest> | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    r.op === 'start' &&
    Number.isInteger(r.id) &&
    typeof r.dir === 'string' &&
    r.dir.startsWith('/') &&
    Number.isInteger(r.timeoutMs) &&
    r.timeoutMs! >= 0 &&
    Number.isInteger(r.maxOutputBytes) &&
    r.maxOutputBytes! >= 0 &&
    Array.isArray(r.chain) &&
    r.chain.length > 0 &&
    r.chain.every((a) => typeof a === 'string') &&
    (r.joinNamespacesOf === undefined || isProcessRef(r.joinNamespacesOf)) &&
    (r.forker === undefined || isForkerTarget(r.forker)) &&
    (r.openStdin === undefined || typeof r.openStdin === 'boolean')
  );
}

const isCells = (n: unknown): boolean => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 1000;

export function isResizeRequest(value: unknown): value is ResizeRequest {
  const r = value as Partial<ResizeRequest> | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    r.op === 'resize' &&
    Number.isInteger(r.id) &&
    typeof r.dir === 'string' &&
    r.dir.startsWith('/') &&
    isCells(r.rows) &&
    isCells(r.cols)
  );
}

export function isStdinRequest(value: unknown): value is StdinRequest {
  const r = value as Partial<StdinRequest> | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    r.op === 'stdin' &&
    Number.isInteger(r.id) &&
    typeof r.dir === 'string' &&
    r.dir.startsWith('/') &&
    typeof r.data === 'string' &&
    typeof r.eof === 'boolean'
  );
}

export function isSpawnRequest(value: unknown): value is SpawnRequest {
  const r = value as Partial<SpawnRequest> | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    r.op === 'spawn' &&
    Number.isInteger(r.id) &&
    Array.isArray(r.argv) &&
    r.argv.length > 0 &&
    r.argv.every((a) => typeof a === 'string') &&
    typeof r.log === 'string' &&
    r.log.startsWith('/') &&
    (r.argsFile === undefined || (typeof r.argsFile === 'string' && r.argsFile.startsWith('/'))) &&
    (r.joinNamespacesOf === undefined || isProcessRef(r.joinNamespacesOf))
  );
}

function isProcessRef(p: { pid?: unknown; start?: unknown }): boolean {
  return (
    typeof p === 'object' &&
    p !== null &&
    Number.isInteger(p.pid) &&
    (p.pid as number) > 1 &&
    typeof p.start === 'string' &&
    /^\d+$/.test(p.start)
  );
}

function isForkerTarget(t: Partial<ForkerTarget>): boolean {
  return (
    typeof t === 'object' &&
    t !== null &&
    typeof t.chan === 'string' &&
    t.chan.startsWith('/') &&
    Number.isInteger(t.hostUid) &&
    t.hostUid! > 0 &&
    t.forker !== undefined &&
    isProcessRef(t.forker) &&
    Array.isArray(t.argv) &&
    t.argv.length > 0 &&
    t.argv.every((a) => typeof a === 'string') &&
    typeof t.env === 'object' &&
    t.env !== null &&
    Object.values(t.env).every((v) => typeof v === 'string') &&
    typeof t.cwd === 'string' &&
    (t.procs === undefined || (typeof t.procs === 'string' && t.procs.startsWith('/'))) &&
    (t.tty === undefined || (isCells(t.tty.rows) && isCells(t.tty.cols)))
  );
}
