import { PassThrough } from 'node:stream';
import Docker from 'dockerode';
import { BackendUnavailableError } from '../../contract/errors.js';
import { sleep } from '../../lib/sleep.js';

/** How long exec waits for a container that is (re)starting: 15 × 200 ms. */
const RESTARTING_RETRIES = 15;
const RESTARTING_PAUSE_MS = 200;

/**
 * The dockerode seam: connecting, one-shot execs with their exit code, and error classification.
 * dockerode types never leave shared/backends/docker/.
 */

export type DockerClient = Docker;

/** Default socket when neither config nor WSP_DOCKER_SOCKET names one. */
export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';

export function connectDocker(socketPath: string): DockerClient {
  return new Docker({ socketPath });
}

/** HTTP status of a Docker API error (404 no such container/image, 409 conflict, …), if any. */
export function dockerStatus(error: unknown): number | undefined {
  const code = (error as { statusCode?: unknown })?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

export const isNotFound = (error: unknown): boolean => dockerStatus(error) === 404;

/** Throws BackendUnavailableError naming the socket when the daemon does not answer. */
export async function pingDocker(docker: DockerClient, socketPath: string): Promise<void> {
  try {
    await docker.ping();
  } catch (error) {
    throw new BackendUnavailableError(
      `the Docker daemon at ${socketPath} does not answer (start it, or set docker.socketPath)`,
      error,
    );
  }
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * Run argv in a running container (as `user`, default root) and wait for it: its output and exit
 * code. The argv must carry no secret (it is visible to the daemon and in the container's process
 * list). Throws BackendUnavailableError when the exec cannot be created or started.
 */
export async function execIn(
  docker: DockerClient,
  container: string,
  argv: string[],
  user = '0:0',
): Promise<ExecResult> {
  const r = await execBytes(docker, container, argv, user);
  return { exitCode: r.exitCode, stdout: r.stdout.toString('utf8'), stderr: r.stderr };
}

/**
 * execIn with stdout as bytes (names that are not UTF-8 survive) and, optionally, `stdin` written to
 * the process and then closed.
 */
export async function execBytes(
  docker: DockerClient,
  container: string,
  argv: string[],
  user = '0:0',
  stdin?: Buffer,
): Promise<{ exitCode: number; stdout: Buffer; stderr: string }> {
  let exec!: Docker.Exec;
  let stream!: NodeJS.ReadWriteStream;
  const withStdin = stdin !== undefined;
  for (let attempt = 0; ; attempt++) {
    try {
      exec = await docker.getContainer(container).exec({
        Cmd: argv,
        User: user,
        AttachStdout: true,
        AttachStderr: true,
        AttachStdin: withStdin,
        Tty: false,
      });
      stream = (await exec.start({ hijack: true, stdin: withStdin })) as NodeJS.ReadWriteStream;
      break;
    } catch (error) {
      // 409 "is restarting" / "is not running": a container just started (or brought back by its
      // restart policy) answers exec a moment later; seen under load right after create. Bounded.
      if (dockerStatus(error) === 409 && attempt < RESTARTING_RETRIES) {
        await sleep(RESTARTING_PAUSE_MS);
        continue;
      }
      throw new BackendUnavailableError(`cannot exec in container ${container}`, error);
    }
  }
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  stdout.on('data', (b: Buffer) => out.push(b));
  stderr.on('data', (b: Buffer) => err.push(b));
  docker.modem.demuxStream(stream, stdout, stderr);
  const ended = new Promise<void>((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', reject);
  });
  // Half-closing the hijacked connection is the process's end of input.
  if (withStdin) stream.end(stdin);
  await ended;
  const info = await exec.inspect();
  return {
    exitCode: info.ExitCode ?? -1,
    stdout: Buffer.concat(out),
    stderr: Buffer.concat(err).toString('utf8'),
  };
}

/** execIn that throws BackendUnavailableError (with the first line of stderr) on a non-zero exit. */
export async function execChecked(
  docker: DockerClient,
  container: string,
  what: string,
  argv: string[],
  user = '0:0',
): Promise<ExecResult> {
  const result = await execIn(docker, container, argv, user);
  if (result.exitCode !== 0) {
    const detail = result.stderr.trim().split('\n').slice(-1)[0] ?? '';
    throw new BackendUnavailableError(
      `${what} failed in container ${container} (exit ${result.exitCode}${detail ? `: ${detail.slice(0, 300)}` : ''})`,
    );
  }
  return result;
}
