import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { chmod, lstat } from 'node:fs/promises';
import { StepFailedError } from '../../../contract/errors.js';
import { sealedStdio, TOOL_ENV } from '../exec.js';

/**
 * Writes into a workspace's home and /tmp, done AS THE WORKSPACE'S OWN HOST UID.
 *
 * The workspace controls every name in its home and may have a process alive that swaps a directory
 * for a symlink at any moment. Whatever follows a path there must therefore hold no more power than
 * the workspace itself: removals (GNU `rm -rf`, which is fd-relative and handles trees of any depth)
 * and extraction (`tar -x`) run under `setpriv` as the workspace's uid/gid with no groups and no
 * capabilities, with their cwd set (by the root parent, before the drop) to the directory they work
 * in. A symlink trick then reaches only what that uid may touch anyway: its own files.
 *
 * What the provider itself reads as root is only ever root-owned and immutable (a snapshot, a
 * provider-given host dir): it streams those bytes as a tar archive into the writer's stdin.
 *
 * `AsUser` undefined = the provider's own identity; only for a provider that is not root (its
 * workspaces run as its own uid) and for tests on provider-owned trees. Never pass undefined as root
 * for a tree a workspace controls.
 */

export type AsUser = { uid: number; gid: number } | undefined;

/** A runaway or stopped writer (a live process of the same uid can SIGSTOP it) must not hang the provider. */
const DEFAULT_TIMEOUT_MS = 30 * 60_000;
const STDERR_TAIL = 600;

function asUserArgv(user: AsUser, argv: readonly string[]): string[] {
  if (user === undefined) return [...argv];
  return [
    'setpriv',
    `--reuid=${user.uid}`,
    `--regid=${user.gid}`,
    '--clear-groups',
    '--inh-caps=-all',
    '--no-new-privs',
    '--',
    ...argv,
  ];
}

/**
 * Tool output for an error message: at most a short tail, with every absolute path that starts with
 * `hide` replaced (the tools run with relative names; this is belt and braces for host paths).
 */
function tail(stderr: string, hide: readonly string[]): string {
  let text = stderr.trim();
  for (const h of hide) if (h.length > 1) text = text.split(h).join('<workspace>');
  return text.length > STDERR_TAIL ? `…${text.slice(-STDERR_TAIL)}` : text;
}

interface Spawned {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: string | null; stderr: string }>;
}

/**
 * Spawn with sealed stdio (no inherited provider descriptor reaches a process the workspace's uid
 * could ptrace), the fixed tool env, `cwd` entered before any uid drop, and a kill after the timeout.
 * `stdin`: a readable child stream to read from, or 'pipe'. `extra`: Buffers written to fds 3, 4…
 */
async function spawnTool(
  argv: readonly string[],
  cwd: string,
  stdin: 'pipe' | 'ignore',
  stdout: 'pipe' | 'ignore' | NodeJS.WritableStream,
  extra: Buffer[] = [],
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<Spawned> {
  const devNull = openSync('/dev/null', 'r+');
  let child: ChildProcess;
  try {
    const stdio = (await sealedStdio(devNull)) as unknown[];
    stdio[0] = stdin;
    stdio[1] = stdout;
    stdio[2] = 'pipe';
    for (let i = 0; i < extra.length; i++) stdio[3 + i] = 'pipe';
    const [cmd, ...args] = argv;
    child = spawn(cmd!, args, { cwd, env: { ...TOOL_ENV }, stdio: stdio as StdioOptions });
  } finally {
    closeSync(devNull);
  }
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    stderr = (stderr + d).slice(-4096);
  });
  for (let i = 0; i < extra.length; i++) {
    const w = child.stdio[3 + i] as import('node:stream').Writable;
    w.on('error', () => undefined); // the tool may exit early; its status tells
    w.end(extra[i]);
  }
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<{ code: number | null; signal: string | null; stderr: string }>((resolve) => {
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, stderr: `cannot run ${argv[0]}: ${e.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
  return { child, done };
}

function check(
  step: string,
  what: string,
  r: { code: number | null; signal: string | null; stderr: string },
  hide: readonly string[],
): void {
  if (r.code === 0) return;
  throw new StepFailedError(step, `${what} exited ${r.code ?? r.signal}: ${tail(r.stderr, hide)}`);
}

/**
 * The writer starts in `dir` (provider-chosen: a home, a /tmp, in a root-owned parent — never a
 * symlink) and resolves every name from there, which needs u+rwx on it: a user who locked its own
 * home (chmod 000) would otherwise block its reset. The provider opens it up here (a restore puts
 * the snapshot's mode back at the end).
 */
async function openUpOwnDir(dir: string): Promise<void> {
  const st = await lstat(dir);
  if (st.isDirectory() && (st.mode & 0o700) !== 0o700) await chmod(dir, (st.mode & 0o7777) | 0o700);
}

/**
 * The shell that removes its arguments (relative to its cwd). A directory the user made
 * unwritable or unreadable (chmod 000) fails the first `rm`; as its owner the writer may open it
 * up (chmod -R never follows a symlink while it recurses) and try again.
 */
const REMOVE_SCRIPT =
  'rm -rf --one-file-system -- "$@" 2>/dev/null || { chmod -Rf u+rwx -- "$@"; rm -rf --one-file-system -- "$@"; }';

const nulList = (names: readonly Buffer[]): Buffer => Buffer.concat(names.flatMap((n) => [n, Buffer.from([0])]));

/**
 * As `user`, in `dir`: `chmod u+rwx` each of `openDirs` (so the user's own locked directories can be
 * written into; callers restore their modes afterwards), then remove each of `remove` (whole
 * subtrees). Names are relative to `dir`, raw bytes, parents before children in `openDirs`.
 */
export async function removeAs(
  step: string,
  user: AsUser,
  dir: string,
  remove: readonly Buffer[],
  openDirs: readonly Buffer[] = [],
): Promise<void> {
  if (remove.length === 0 && openDirs.length === 0) return;
  await openUpOwnDir(dir);
  const script = '{ xargs -0 -r chmod -f u+rwx -- <&3 || true; }; xargs -0 -r sh -c "$0" rm';
  const { child, done } = await spawnTool(
    asUserArgv(user, ['sh', '-c', script, REMOVE_SCRIPT]),
    dir,
    'pipe',
    'ignore',
    [nulList(openDirs)],
  );
  child.stdin!.on('error', () => undefined);
  child.stdin!.end(nulList(remove)); // stdin carries the removal list
  check(step, 'rm', await done, [dir]);
}

/**
 * As `user`, remove everything inside `dir` (not `dir` itself), at any depth.
 */
export async function wipeAs(step: string, user: AsUser, dir: string): Promise<void> {
  await openUpOwnDir(dir);
  const script = 'find . -mindepth 1 -maxdepth 1 -exec sh -c "$0" rm {} +';
  const { done } = await spawnTool(asUserArgv(user, ['sh', '-c', script, REMOVE_SCRIPT]), dir, 'ignore', 'ignore');
  check(step, 'rm', await done, [dir]);
}

export interface TarOptions {
  /** Extract into this directory relative to destDir, made (mkdir -p) by the writer. */
  subdir?: string;
  /**
   * Before extracting, the writer does what removeAs does — `chmod u+rwx` of `openDirs`, then
   * removes `remove` (relative to destDir): one process as the user for a whole restore.
   */
  prelude?: { remove: readonly Buffer[]; openDirs: readonly Buffer[] };
}

/**
 * Stream entries of `srcDir` (root-owned, immutable: read by the provider) as a tar archive into a
 * `tar -x` running as `user` in `destDir`. `members` (raw relative names, parents before children)
 * are archived one by one without recursion ('.' for the directory itself); undefined = all of it.
 * Modes are kept exactly (-p); owners become `user`'s (or are kept when `user` is undefined and the
 * provider is root); directory modes and times are applied at the end, so a read-only directory
 * can still be filled. Hard links among the members stay hard links.
 */
export async function tarAs(
  step: string,
  user: AsUser,
  srcDir: string,
  destDir: string,
  members?: readonly Buffer[],
  options: TarOptions = {},
): Promise<void> {
  if (members !== undefined && members.length === 0) {
    if (options.prelude !== undefined)
      await removeAs(step, user, destDir, options.prelude.remove, options.prelude.openDirs);
    return;
  }
  await openUpOwnDir(destDir);
  // posix (pax) format: nanosecond mtimes (a linked snapshot compares them exactly), any name length.
  const create = [
    'tar',
    '-c',
    '-f',
    '-',
    '--numeric-owner',
    '--format=posix',
    '--pax-option=delete=atime,delete=ctime',
  ];
  if (members === undefined) create.push('.');
  else create.push('--no-recursion', '--null', '--verbatim-files-from', '--no-unquote', '-T', '-');
  const owner = user === undefined && process.getuid?.() === 0 ? '--same-owner' : '--no-same-owner';
  let extract = ['tar', '-x', '-f', '-', '-p', owner, '--delay-directory-restore'];
  if (options.subdir !== undefined && options.subdir !== '') {
    // Into `subdir` (relative to destDir), made by the writer: whatever non-directory (or symlink)
    // sits at that name is replaced by a directory; an existing directory is merged into.
    const script =
      'if [ -L "$1" ] || { [ -e "$1" ] && [ ! -d "$1" ]; }; then rm -f -- "$1"; fi; mkdir -p -- "$1" && cd -- "$1" && shift && exec "$@"';
    extract = ['sh', '-c', script, 'wsp-put', options.subdir, ...extract];
  }
  let lists: Buffer[] = [];
  if (options.prelude !== undefined) {
    // The same writer first opens up and removes (lists on fds 3 and 4; xargs gives its commands
    // /dev/null as stdin, so the archive waiting on stdin is left for tar).
    const prelude =
      '{ xargs -0 -r chmod -f u+rwx -- <&3 || true; }; exec 3<&-; xargs -0 -r sh -c "$0" rm <&4 || exit $?; exec 4<&-; exec "$@"';
    extract = ['sh', '-c', prelude, REMOVE_SCRIPT, ...extract];
    lists = [nulList(options.prelude.openDirs), nulList(options.prelude.remove)];
  }
  // The writer first, waiting on its stdin pipe; the reader gets that pipe as its stdout (a
  // descriptor handed over, no copy through the provider), then our end of it is closed.
  const writer = await spawnTool(asUserArgv(user, extract), destDir, 'pipe', 'ignore', lists);
  let reader: Spawned;
  try {
    reader = await spawnTool(create, srcDir, members === undefined ? 'ignore' : 'pipe', writer.child.stdin!);
  } catch (error) {
    // The writer may have ended already (its prelude failed: its stdin is gone): its status tells why.
    const endedFirst = writer.child.exitCode !== null || writer.child.signalCode !== null;
    writer.child.kill('SIGKILL');
    const w = await writer.done;
    if (endedFirst) check(step, 'tar (extract)', w, [srcDir, destDir]);
    throw new StepFailedError(step, `cannot start tar: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  writer.child.stdin!.destroy();
  if (members !== undefined) {
    reader.child.stdin!.on('error', () => undefined);
    reader.child.stdin!.end(nulList(members));
  }
  const [r, w] = await Promise.all([reader.done, writer.done]);
  check(step, 'tar (extract)', w, [srcDir, destDir]);
  check(step, 'tar (read snapshot)', r, [srcDir, destDir]);
}
