import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CommandSpec } from '../../contract/backend.js';
import type { NetworkPolicy, WorkspacePlan } from '../../contract/plan.js';
import { BadRequestError } from '../../contract/errors.js';
import { shellQuote } from '../../lib/shell-quote.js';

/**
 * How commands are confined on this host (decided once, by detectSandbox in sandbox-detect.ts):
 * - bwrap + root: own host uid per workspace (setpriv); every command joins the workspace's user and
 *   pid namespaces (held by pid-namespace.ts: background processes live on between commands, the
 *   host's processes are invisible) and gets mount/ipc/uts (and per policy net) namespaces of its own.
 * - bwrap, not root: the provider's uid; a pid namespace per command (background processes end with it).
 * - none: no bwrap — commands run directly (as the workspace's host uid when root), in the host's pid
 *   namespace. NOT a sandbox.
 */
export interface SandboxHost {
  kind: 'bwrap' | 'none';
  /** Absolute path of bwrap when kind is 'bwrap'. */
  bwrapPath?: string;
  /** The provider runs as root: per-workspace host uids via setpriv. */
  asRoot: boolean;
  /** bwrap args that rebuild the host's read-only system dirs (/usr, /bin → usr/bin, /etc, …). */
  rootfsArgs: string[];
  /**
   * slirp4netns, when network 'egress' can be given (bwrap, root, slirp4netns installed); else
   * 'egress' runs as 'none' (never as 'host') and `egressUnavailable` says why.
   */
  slirp4netnsPath?: string;
  egressUnavailable?: string;
}

/** Host directories of one workspace that appear inside it. */
export interface WorkspaceHostPaths {
  home: string;
  tmp: string;
  transfer: string;
  /** Bound over /etc/passwd and /etc/group when present (see accountFiles). */
  passwd?: string;
  group?: string;
}

export interface Launch {
  /** argv of the launch chain (the supervisor runs it). Holds no env values: those travel in `fd3`. */
  chain: string[];
  /** Data the supervisor opens as fd 3 for the chain: bwrap `--args` (NUL-separated) or an env script. */
  fd3: Buffer;
  /**
   * The holder of the workspace's namespaces: the supervisor opens its user and pid namespaces as
   * fds 7 and 8 for `bwrap --userns 7 --pidns 8` (see supervisor/namespaces.ts).
   */
  joinNamespacesOf?: { pid: number; start: string };
}

const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';
/** Attaches slirp4netns (host loopback disabled) to a command's fresh network namespace. */
export const NET_EGRESS_SCRIPT = fileURLToPath(new URL('./net-egress.sh', import.meta.url));
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Throws BadRequestError for argv/env that cannot be passed verbatim (NUL bytes, bad names). */
export function checkCommandSpec(spec: CommandSpec): void {
  if (
    !Array.isArray(spec.argv) ||
    spec.argv.length === 0 ||
    spec.argv.some((a) => typeof a !== 'string' || a.includes('\0'))
  ) {
    throw new BadRequestError('argv must be a non-empty list of strings without NUL bytes', { field: 'argv' });
  }
  if (typeof spec.cwd !== 'string' || !path.posix.isAbsolute(spec.cwd) || spec.cwd.includes('\0')) {
    throw new BadRequestError('cwd must be an absolute guest path', { field: 'cwd' });
  }
  for (const [name, value] of Object.entries(spec.env ?? {})) {
    if (!ENV_NAME.test(name) || typeof value !== 'string' || value.includes('\0')) {
      throw new BadRequestError('env names must be [A-Za-z_][A-Za-z0-9_]* and values strings without NUL bytes', {
        field: 'env',
      });
    }
  }
  if (!Number.isInteger(spec.timeoutMs) || spec.timeoutMs < 0)
    throw new BadRequestError('timeoutMs must be an integer >= 0', { field: 'timeoutMs' });
  if (!Number.isInteger(spec.maxOutputBytes) || spec.maxOutputBytes < 0) {
    throw new BadRequestError('maxOutputBytes must be an integer >= 0', { field: 'maxOutputBytes' });
  }
}

/** The command's environment: fixed basics, then spec.env (which may override any of them). */
function commandEnv(plan: WorkspacePlan, spec: CommandSpec, home: string): Record<string, string> {
  return {
    HOME: home,
    USER: plan.user.name,
    LOGNAME: plan.user.name,
    PATH: DEFAULT_PATH,
    LANG: 'C.UTF-8',
    ...spec.env,
  };
}

/** `prlimit` prefix for plan.resources (pids → RLIMIT_NPROC, per real uid; memoryMb → RLIMIT_AS, per process). */
function limitArgs(plan: WorkspacePlan): string[] {
  const limits: string[] = [];
  if (plan.resources.pids !== undefined) limits.push(`--nproc=${plan.resources.pids}`);
  if (plan.resources.memoryMb !== undefined) limits.push(`--as=${plan.resources.memoryMb * 1024 * 1024}`);
  return limits.length > 0 ? ['prlimit', ...limits, '--'] : [];
}

function dropToUid(hostUid: number): string[] {
  return ['setpriv', `--reuid=${hostUid}`, `--regid=${hostUid}`, '--clear-groups', '--inh-caps=-all', '--'];
}

/**
 * The network a command gets here: spec.network (setup) or plan.network; 'egress' without
 * slirp4netns is 'none' (the backend warns). Without bwrap nothing is enforced (NO SANDBOX warning).
 */
function effectiveNetwork(sandbox: SandboxHost, plan: WorkspacePlan, spec: CommandSpec): NetworkPolicy {
  let wanted: string = spec.network ?? plan.network;
  if (wanted === 'bridge') wanted = 'egress'; // plans stored before 'egress' existed: the same meaning
  if (wanted === 'egress') return sandbox.slirp4netnsPath !== undefined ? 'egress' : 'none';
  return wanted === 'host' ? 'host' : 'none'; // anything unknown: the safest
}

/** What the plan's networks (commands, setup) mean on this host, said on every workspace. */
export function networkWarnings(sandbox: SandboxHost, plan: WorkspacePlan): string[] {
  const wanted = new Set<string>([plan.network, plan.setupNetwork ?? plan.network]);
  const out: string[] = [];
  if (wanted.has('host')) {
    out.push(
      "network 'host': workspaces share the host's network namespace and can reach every service on its loopback (the provider's API included)",
    );
  }
  if ((wanted.has('egress') || wanted.has('bridge')) && sandbox.kind === 'bwrap' && sandbox.egressUnavailable)
    out.push(sandbox.egressUnavailable);
  if (sandbox.kind === 'none' && (wanted.has('none') || wanted.has('egress')))
    out.push("no sandbox: workspace networks are not enforced (commands use the host's network)");
  return out;
}

/**
 * bwrap network args: 'none' and 'egress' get a network namespace of their own (only lo); 'egress'
 * also reports the sandbox pid on fd 5 and waits on fd 6 until net-egress.sh attached slirp4netns.
 * 'host' shares the host's namespace (its loopback services included: the warned opt-in).
 */
function networkArgs(network: NetworkPolicy): string[] {
  if (network === 'none') return ['--unshare-net'];
  if (network === 'egress') return ['--unshare-net', '--info-fd', '5', '--block-fd', '6'];
  return [];
}

/**
 * Who a process is inside a workspace's sandbox: the plan's uid/gid in the user namespace, its own
 * ipc and uts namespaces, its own cgroup namespace where the kernel has one. The same for every
 * command and for the workspace's pid-namespace holder (pid-namespace.ts), whose namespaces the
 * commands join: the two must agree.
 */
export function workspaceIdentityArgs(plan: WorkspacePlan): string[] {
  return [
    '--uid',
    String(plan.user.uid),
    '--gid',
    String(plan.user.gid),
    '--unshare-ipc',
    '--unshare-uts',
    '--unshare-cgroup-try',
  ];
}

/**
 * What a workspace sees of the file system (bwrap args): the host's system dirs read-only, its own
 * /etc/passwd and /etc/group, /proc of its pid namespace, a minimal /dev, its home and /tmp, the
 * transfer dir read-only. The same for a command's own sandbox and for the namespace holder whose
 * forker starts commands inside it (pid-namespace.ts).
 */
export function workspaceMountArgs(sandbox: SandboxHost, plan: WorkspacePlan, paths: WorkspaceHostPaths): string[] {
  return [
    ...sandbox.rootfsArgs,
    ...(paths.passwd ? ['--ro-bind-try', paths.passwd, '/etc/passwd'] : []),
    ...(paths.group ? ['--ro-bind-try', paths.group, '/etc/group'] : []),
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    '--bind',
    paths.home,
    plan.home,
    '--bind',
    paths.tmp,
    '/tmp',
    '--ro-bind',
    paths.transfer,
    plan.transferDir,
  ];
}

/**
 * The command as the workspace's in-sandbox forker runs it (supervisor/forked.ts), or undefined when
 * it needs a sandbox of its own: only a command on network 'none' shares the holder's (empty)
 * network namespace; 'egress' and 'host' get theirs from the launch chain.
 */
export function forkerCommand(
  sandbox: SandboxHost,
  plan: WorkspacePlan,
  spec: CommandSpec,
): { argv: string[]; env: Record<string, string>; cwd: string } | undefined {
  if (sandbox.kind !== 'bwrap' || !sandbox.asRoot || effectiveNetwork(sandbox, plan, spec) !== 'none') return undefined;
  return { argv: [...spec.argv], env: commandEnv(plan, spec, plan.home), cwd: spec.cwd };
}

/**
 * Build the launch chain of one command. Env values (possibly secrets) never enter argv — argv is
 * world-readable in /proc — they go into fd 3, which the supervisor opens from a root-only file.
 * `pidns`: the holder of the workspace's pid namespace (root + bwrap); the command joins it.
 */
export function buildLaunch(
  sandbox: SandboxHost,
  hostUid: number,
  plan: WorkspacePlan,
  paths: WorkspaceHostPaths,
  spec: CommandSpec,
  pidns?: { pid: number; start: string },
): Launch {
  const join = pidns !== undefined && sandbox.kind === 'bwrap';
  // An open stdin comes as fd 9 (the supervisor puts /dev/null on 0): bwrap's host-side process keeps
  // its own stdin open for its lifetime, and would be a second reader of the pipe — a command that
  // closes its stdin would then never be noticed. bwrap closes fd 9 in itself; the payload moves it to 0.
  const argv = spec.openStdin ? ['/bin/sh', '-c', 'exec 0<&9 9<&-; exec "$@"', 'wsp-stdin', ...spec.argv] : spec.argv;
  const prefix = [...limitArgs(plan), ...(sandbox.asRoot ? dropToUid(hostUid) : [])];
  if (sandbox.kind === 'bwrap') {
    const network = effectiveNetwork(sandbox, plan, spec);
    // net-egress.sh runs first, as root: it starts the rest of the chain and attaches slirp4netns.
    const egress = network === 'egress' ? ['/bin/sh', NET_EGRESS_SCRIPT, sandbox.slirp4netnsPath!, '--'] : [];
    const env = commandEnv(plan, spec, plan.home);
    const args = ['--clearenv', ...Object.entries(env).flatMap(([k, v]) => ['--setenv', k, v])];
    // Every bwrap option travels in fd 3 (`--args`), argv holds none: until it execs the command,
    // bwrap's child sits in the workspace's pid namespace with bwrap's argv, and the mounts name host
    // paths (the workspace's dirs) that its `ps` must not learn.
    const options = [
      ...args,
      // The workspace's user namespace (its uid mapping is the holder's: host uid -> plan uid) or,
      // without a holder, one of the command's own.
      ...(join ? ['--userns', '7', '--pidns', '8'] : ['--unshare-user']),
      ...workspaceIdentityArgs(plan),
      ...networkArgs(network),
      // Without root there is no per-workspace uid and no holder: a pid namespace per command instead
      // (background processes end with the command).
      ...(sandbox.asRoot ? [] : ['--unshare-pid', '--die-with-parent']),
      ...workspaceMountArgs(sandbox, plan, paths),
      '--chdir',
      spec.cwd,
      '--cap-drop',
      'ALL',
    ];
    const chain = [...egress, ...prefix, sandbox.bwrapPath ?? 'bwrap', '--args', '3', '--', ...argv];
    return {
      chain,
      fd3: Buffer.from(options.map((a) => `${a}\0`).join(''), 'utf8'),
      ...(join ? { joinNamespacesOf: pidns } : {}),
    };
  }
  // No sandbox: guest paths do not exist on the host, so they are mapped onto the workspace's dirs.
  const cwd = guestToHost(plan, paths, spec.cwd);
  if (cwd === undefined) throw new BadRequestError('cwd must be inside the workspace home', { field: 'cwd' });
  const env = commandEnv(plan, spec, paths.home);
  const script = Object.entries(env)
    .map(([k, v]) => `export ${k}=${shellQuote(v)}\n`)
    .join('');
  // The env script is read from fd 3 (root-only file opened by the supervisor), then fd 3 is closed.
  const runner = 'eval "$(cat <&3)"; exec 3<&-; cd "$1" || exit 126; shift; exec "$@"';
  const chain = [...prefix, 'env', '-i', 'sh', '-c', runner, 'wsp-run', cwd, ...argv];
  return { chain, fd3: Buffer.from(script, 'utf8') };
}

/** Host path of a guest path under plan.home, /tmp or plan.transferDir (no-sandbox mode only). */
export function guestToHost(plan: WorkspacePlan, paths: WorkspaceHostPaths, guest: string): string | undefined {
  const normal = path.posix.normalize(guest);
  for (const [guestBase, hostBase] of [
    [plan.home, paths.home],
    ['/tmp', paths.tmp],
    [plan.transferDir, paths.transfer],
  ] as const) {
    const rel = path.posix.relative(guestBase, normal);
    if (rel === '') return hostBase;
    if (!rel.startsWith('..') && !path.posix.isAbsolute(rel)) return path.join(hostBase, rel);
  }
  return undefined;
}

/**
 * /etc/passwd and /etc/group for the sandbox: root, the plan user (so `id`, `whoami`, git and ssh
 * see its name and home rather than whichever host account has its uid) and nobody.
 */
export function accountFiles(plan: WorkspacePlan): { passwd: string; group: string } {
  const { name, uid, gid } = plan.user;
  const passwd = [
    `root:x:0:0:root:/root:/bin/sh`,
    `${name}:x:${uid}:${gid}:${name}:${plan.home}:/bin/sh`,
    'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
  ];
  const group = ['root:x:0:', `${name}:x:${gid}:`, 'nogroup:x:65534:'];
  const unique = (lines: string[]): string[] =>
    lines.filter((l, i) => lines.findIndex((m) => m.split(':')[0] === l.split(':')[0]) === i);
  return { passwd: `${unique(passwd).join('\n')}\n`, group: `${unique(group).join('\n')}\n` };
}

/** System dirs shared read-only with every sandbox; merged-/usr symlinks are recreated as symlinks. */
const SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc'];

/**
 * True when a bwrap mount other than the home (system dirs, /proc, /dev, /tmp, the transfer dir,
 * /etc/passwd and /etc/group) lies inside plan.home or contains it: the workspace's view of
 * plan.home then differs from the host directory bound there.
 */
export function mountsOverlapHome(plan: WorkspacePlan): boolean {
  const within = (inner: string, outer: string): boolean => {
    const rel = path.posix.relative(outer, inner);
    return rel === '' || (rel !== '..' && !rel.startsWith('../') && !path.posix.isAbsolute(rel));
  };
  const home = path.posix.normalize(plan.home);
  const mounts = [...SYSTEM_DIRS, '/proc', '/dev', '/tmp', plan.transferDir, '/etc/passwd', '/etc/group'];
  return mounts.some((m) => within(m, home) || within(home, m));
}

export async function rootfsArgs(): Promise<string[]> {
  const args: string[] = [];
  for (const dir of SYSTEM_DIRS) {
    try {
      const st = await fs.lstat(dir);
      if (st.isSymbolicLink()) args.push('--symlink', await fs.readlink(dir), dir);
      else if (st.isDirectory()) args.push('--ro-bind', dir, dir);
    } catch {
      // not on this host
    }
  }
  return args;
}
