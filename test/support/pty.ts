import { spawn } from 'node:child_process';
import type { Duplex } from 'node:stream';
import type Docker from 'dockerode';
import type { PtyLike } from '../../shared/backends/runner/rpc.js';

/**
 * Real PTYs for the runner's rpc tests, as PtyLike — the shape ECS Exec gives the provider: a terminal
 * with echo on, canonical mode, "\n" → "\r\n" and control characters interpreted until the program
 * changes it. Closing one hangs up the terminal (SIGHUP to the program), as a dropped ECS Exec
 * session does.
 */

/** `script -qfec <command> /dev/null` (util-linux): the command runs on a new pty; our pipes are its master side. */
export function localPty(command: string, env: Record<string, string> = {}): PtyLike & { pid: number } {
  const child = spawn('script', ['-qfec', command, '/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', TERM: 'xterm', ...env },
  });
  child.stdin.on('error', () => undefined);
  child.stderr.resume();
  const closers: Array<(err?: Error) => void> = [];
  let ended = false;
  const end = (err?: Error): void => {
    if (ended) return;
    ended = true;
    for (const cb of closers) cb(err);
  };
  child.on('exit', () => end());
  child.on('error', (e) => end(e));
  return {
    pid: child.pid ?? -1,
    write: (data) => {
      child.stdin.write(data);
    },
    onData: (cb) => {
      child.stdout.on('data', cb);
    },
    onClose: (cb) => {
      if (ended) cb();
      else closers.push(cb);
    },
    close: () => {
      // script hangs up its pty when it ends: the runner gets SIGHUP, as from a dropped ECS Exec session.
      if (!ended) child.kill('SIGTERM');
    },
  };
}

/**
 * `docker exec -it <container> <argv>` over dockerode (Tty: true: one raw, hijacked stream). close()
 * destroys the stream and sends SIGHUP to the exec'd process: the daemon alone would leave it running.
 */
export async function dockerPty(
  docker: Docker,
  container: string,
  argv: string[],
  env: string[] = [],
): Promise<PtyLike> {
  const exec = await docker.getContainer(container).exec({
    Cmd: argv,
    User: '0:0',
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    Tty: true,
    Env: ['TERM=xterm', ...env],
  });
  const stream = (await exec.start({ hijack: true, stdin: true, Tty: true })) as Duplex;
  const closers: Array<(err?: Error) => void> = [];
  let ended = false;
  const end = (err?: Error): void => {
    if (ended) return;
    ended = true;
    for (const cb of closers) cb(err);
  };
  stream.on('end', () => end());
  stream.on('close', () => end());
  stream.on('error', (e: Error) => end(e));
  return {
    write: (data) => {
      stream.write(data);
    },
    onData: (cb) => {
      stream.on('data', cb);
    },
    onClose: (cb) => {
      if (ended) cb();
      else closers.push(cb);
    },
    close: () => {
      void exec
        .inspect()
        .then((info: { Pid?: number; Running?: boolean }) => {
          if (info.Running && info.Pid) process.kill(info.Pid, 'SIGHUP');
        })
        .catch(() => undefined)
        .finally(() => stream.destroy());
    },
  };
}
