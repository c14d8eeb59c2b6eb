import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * Makes a loopback port of this test process reachable at the same port inside the network
 * namespace of the test dockerd (which .ci/docker.sh starts under `unshare --net`, so its
 * 127.0.0.1 — and that of `--network host` containers and of its image pulls — is not ours).
 *
 *   container/dockerd ──tcp 127.0.0.1:<port>──▶ peer (node, nsenter'ed into the daemon's netns)
 *        ──unix socket in a temp dir (the filesystem is shared)──▶ this process ──tcp──▶ 127.0.0.1:<port>
 *
 * Same namespace → a no-op. The peer exits when its stdin closes, so it cannot outlive this process.
 */

export interface NetnsBridge {
  /** Whether a bridge was needed (false: the daemon shares our namespace; nothing was started). */
  readonly bridged: boolean;
  /** The peer's pid inside the daemon's namespace (undefined when not bridged). */
  readonly peerPid?: number;
  /** Stops the peer, closes every connection and the socket, removes the temp dir. Idempotent. */
  close(): Promise<void>;
}

export interface BridgeOptions {
  /** The dockerd to bridge into; default: the process listening on `socketPath`, else the pid file's. */
  daemonPid?: number;
  /** Default WSP_DOCKER_SOCKET, else /var/lib/wsp-ci-docker/docker.sock. */
  socketPath?: string;
  /** Default /var/lib/wsp-ci-docker/pid (written by dockerd --pidfile in .ci/docker.sh). */
  pidFile?: string;
}

const DEFAULT_SOCKET = process.env.WSP_DOCKER_SOCKET ?? '/var/lib/wsp-ci-docker/docker.sock';
const DEFAULT_PID_FILE = '/var/lib/wsp-ci-docker/pid';
const PEER_READY_TIMEOUT_MS = 15_000;

// The peer: listens on 127.0.0.1:<port> inside the namespace, forwards each connection to the unix socket.
const PEER_SOURCE = `
import net from 'node:net';
const [sock, port] = process.argv.slice(2);
const server = net.createServer((client) => {
  const up = net.connect(sock);
  client.pipe(up); up.pipe(client);
  const done = () => { client.destroy(); up.destroy(); };
  client.on('error', done); up.on('error', done); client.on('close', done); up.on('close', done);
});
server.on('error', (e) => { process.stderr.write('peer: ' + e.message + '\\n'); process.exit(2); });
server.listen(Number(port), '127.0.0.1', () => process.stdout.write('ready\\n'));
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
`;

function netnsOf(pid: number | 'self'): string {
  return fs.readlinkSync(`/proc/${pid}/ns/net`);
}

/** The pid of the process holding the listening unix socket at `socketPath`, if any (needs root or same user). */
function pidListeningOn(socketPath: string): number | undefined {
  let inode: string | undefined;
  try {
    // /proc/net/unix: Num RefCount Protocol Flags Type St Inode Path
    for (const line of fs.readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[7] === socketPath && cols[5] === '01') inode = cols[6];
    }
  } catch {
    return undefined;
  }
  if (inode === undefined) return undefined;
  const target = `socket:[${inode}]`;
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === target) return Number(pid);
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return undefined;
}

function resolveDaemonPid(options: BridgeOptions): number {
  if (options.daemonPid !== undefined) return options.daemonPid;
  const bySocket = pidListeningOn(options.socketPath ?? DEFAULT_SOCKET);
  if (bySocket !== undefined) return bySocket;
  const pidFile = options.pidFile ?? DEFAULT_PID_FILE;
  try {
    const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0 && fs.existsSync(`/proc/${pid}`)) return pid;
  } catch {
    /* fall through */
  }
  throw new Error(
    `no dockerd found: nothing listens on ${options.socketPath ?? DEFAULT_SOCKET} and ${pidFile} names no live process`,
  );
}

/** Bridges 127.0.0.1:<port> of the docker daemon's namespace to 127.0.0.1:<port> here. Throws if the peer cannot listen. */
export async function bridgeIntoDockerNetns(port: number, options: BridgeOptions = {}): Promise<NetnsBridge> {
  const daemonPid = resolveDaemonPid(options);
  if (netnsOf('self') === netnsOf(daemonPid)) return { bridged: false, close: async () => {} };

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-netns-bridge-'));
  const sockPath = path.join(dir, 'b.sock');
  const peerPath = path.join(dir, 'peer.mjs');
  fs.writeFileSync(peerPath, PEER_SOURCE);

  const sockets = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    const upstream = net.connect(port, '127.0.0.1');
    sockets.add(inbound).add(upstream);
    inbound.pipe(upstream);
    upstream.pipe(inbound);
    const done = (): void => {
      inbound.destroy();
      upstream.destroy();
      sockets.delete(inbound);
      sockets.delete(upstream);
    };
    for (const s of [inbound, upstream]) {
      s.on('error', done);
      s.on('close', done);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(sockPath, () => resolve());
  });

  let child: ChildProcess | undefined;
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child!.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child!.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    fs.rmSync(dir, { recursive: true, force: true });
  };

  try {
    child = spawn('nsenter', [`--net=/proc/${daemonPid}/ns/net`, process.execPath, peerPath, sockPath, String(port)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const proc = child;
    await new Promise<void>((resolve, reject) => {
      let stderr = '';
      let stdout = '';
      const timer = setTimeout(
        () => reject(new Error(`netns bridge peer for port ${port} not ready after ${PEER_READY_TIMEOUT_MS} ms`)),
        PEER_READY_TIMEOUT_MS,
      );
      proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      proc.stdout!.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (stdout.includes('ready\n')) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      proc.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`netns bridge peer for port ${port} exited (${code ?? signal}): ${stderr.trim()}`));
      });
    });
  } catch (error) {
    await close();
    throw error;
  }
  return { bridged: true, peerPid: child.pid, close };
}
