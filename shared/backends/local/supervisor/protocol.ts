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
}

/** The answer to a request with the same id; a start is answered once `pid` and `pgid` are recorded. */
export interface Reply {
  id: number;
  ok: boolean;
  error?: string;
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
    (r.joinNamespacesOf === undefined ||
      (Number.isInteger(r.joinNamespacesOf.pid) &&
        r.joinNamespacesOf.pid > 1 &&
        typeof r.joinNamespacesOf.start === 'string' &&
        /^\d+$/.test(r.joinNamespacesOf.start))) &&
    (r.forker === undefined || isForkerTarget(r.forker))
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
    typeof t.forker === 'object' &&
    t.forker !== null &&
    Number.isInteger(t.forker.pid) &&
    t.forker.pid > 1 &&
    typeof t.forker.start === 'string' &&
    /^\d+$/.test(t.forker.start) &&
    Array.isArray(t.argv) &&
    t.argv.length > 0 &&
    t.argv.every((a) => typeof a === 'string') &&
    typeof t.env === 'object' &&
    t.env !== null &&
    Object.values(t.env).every((v) => typeof v === 'string') &&
    typeof t.cwd === 'string' &&
    (t.procs === undefined || (typeof t.procs === 'string' && t.procs.startsWith('/')))
  );
}
