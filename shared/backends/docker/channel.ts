import { PassThrough, type Duplex } from 'node:stream';
import { shellQuote } from '../../lib/shell-quote.js';
import type { Logger } from '../../log.js';
import { execChecked, execIn, type DockerClient } from './client.js';
import { GUEST_RUNNER } from './layout.js';

/**
 * The persistent channel into a workspace container (issue 3 item 5): one long-lived attached exec
 * running `runner.sh serve`, which takes runner requests on stdin — so a command start costs a pipe
 * write instead of a new `docker exec` (~90 ms here). When the channel is not there or dies, the
 * request goes through a plain exec instead (`runner.sh` subcommands are idempotent, so a request
 * that may or may not have run on a dead channel is safe to repeat).
 */

/** A request not answered in this time fails over to an exec (the request is idempotent). */
const REQUEST_TIMEOUT_MS = 30_000;
/** How long to wait for the serve loop's "ready" before giving up on the channel. */
const OPEN_TIMEOUT_MS = 10_000;

/**
 * One request line: "<id> =<quoted argv>" when the quoted argv holds no newline or CR (the serve loop
 * evaluates it as it is: no base64 process per request), else "<id> <base64 of the quoted argv>"
 * (no newline can split a request). The quoting keeps every byte but NUL (NULs are rejected before this).
 */
export const encodeRequest = (id: number, argv: readonly string[]): string => {
  const quoted = argv.map(shellQuote).join(' ');
  return /[\n\r]/.test(quoted) ? `${id} ${Buffer.from(quoted).toString('base64')}\n` : `${id} =${quoted}\n`;
};

interface Pending {
  resolve(code: number): void;
  reject(error: Error): void;
}

class Channel {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private buffered = '';
  private ready!: Promise<void>;
  dead = false;

  constructor(private readonly stream: Duplex) {}

  /**
   * The socket keeps the process alive only while something waits on it: an idle channel must not
   * keep a provider from exiting, a pending request must (else the process could end mid-await).
   */
  private hold(on: boolean): void {
    const s = this.stream as Duplex & { ref?: () => void; unref?: () => void };
    if (on) s.ref?.();
    else s.unref?.();
  }

  /** Wire up the output; resolves at the serve loop's "ready" line. */
  open(docker: DockerClient): Promise<void> {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    docker.modem.demuxStream(this.stream, stdout, stderr);
    stderr.resume();
    let markReady: () => void = () => undefined;
    let failReady: (e: Error) => void = () => undefined;
    this.ready = new Promise<void>((resolve, reject) => {
      markReady = resolve;
      failReady = reject;
    });
    const timer = setTimeout(() => failReady(new Error('runner channel did not become ready')), OPEN_TIMEOUT_MS);
    timer.unref();
    stdout.on('data', (chunk: Buffer) => {
      this.buffered += chunk.toString('utf8');
      for (let nl = this.buffered.indexOf('\n'); nl >= 0; nl = this.buffered.indexOf('\n')) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        if (line === 'ready') {
          clearTimeout(timer);
          markReady();
          continue;
        }
        const [id, code] = line.split(' ');
        const p = this.pending.get(Number(id));
        if (p === undefined) continue;
        this.pending.delete(Number(id));
        p.resolve(Number(code));
      }
    });
    const die = (error: Error): void => {
      if (this.dead) return;
      this.dead = true;
      clearTimeout(timer);
      failReady(error);
      for (const p of this.pending.values()) p.reject(error);
      this.pending.clear();
    };
    this.stream.on('end', () => die(new Error('runner channel closed')));
    this.stream.on('close', () => die(new Error('runner channel closed')));
    this.stream.on('error', (e: Error) => die(e));
    this.hold(true);
    return this.ready.finally(() => this.hold(false));
  }

  request(argv: readonly string[]): Promise<number> {
    if (this.dead) return Promise.reject(new Error('runner channel closed'));
    const id = this.nextId++;
    return new Promise<number>((resolve, reject) => {
      const settle = (): void => {
        clearTimeout(timer);
        if (this.pending.size === 0) this.hold(false);
      };
      const timer = setTimeout(() => {
        this.pending.delete(id);
        settle();
        reject(new Error('runner channel request timed out'));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, {
        resolve: (c) => {
          settle();
          resolve(c);
        },
        reject: (e) => {
          settle();
          reject(e);
        },
      });
      this.hold(true);
      this.stream.write(encodeRequest(id, argv));
    });
  }

  close(): void {
    this.dead = true;
    this.stream.destroy();
  }
}

/** Channels by container name; a channel belongs to one container instance (restore makes a new one). */
export class RunnerChannels {
  private readonly channels = new Map<string, Promise<Channel>>();

  constructor(
    private readonly docker: DockerClient,
    private readonly log: Logger,
  ) {}

  /**
   * Run `runner.sh <argv>` in the container: over the channel when it is up, else by exec. Throws
   * BackendUnavailableError (naming `what`) when the runner reports failure or the container is gone.
   */
  async run(container: string, what: string, argv: readonly string[]): Promise<void> {
    let code: number | undefined;
    try {
      const channel = await this.channel(container);
      code = await channel.request(argv);
    } catch (error) {
      this.log.warn('runner channel unavailable; using docker exec', { container, error: (error as Error).message });
      this.forget(container);
    }
    if (code === 0) return;
    // Not answered, or failed: the exec gives the same request again, with its stderr for the error.
    await execChecked(this.docker, container, what, ['/bin/sh', GUEST_RUNNER, ...argv]);
  }

  /**
   * `runner.sh <argv>` answered with its exit status, whatever it is (over the channel; by exec when the
   * channel is not there or dies — with the exec's stderr as the message). Only for idempotent requests
   * whose argv may show in the container's process list (the exec fallback puts it there).
   */
  async request(
    container: string,
    what: string,
    argv: readonly string[],
  ): Promise<{ status: number; message: string }> {
    try {
      const channel = await this.channel(container);
      return { status: await channel.request(argv), message: '' };
    } catch (error) {
      this.log.warn('runner channel unavailable; using docker exec', { container, error: (error as Error).message });
      this.forget(container);
    }
    const r = await execIn(this.docker, container, ['/bin/sh', GUEST_RUNNER, ...argv]);
    return { status: r.exitCode, message: r.stderr.trim().split('\n').slice(-1)[0] ?? `${what} failed` };
  }

  /** Drop (and close) the channel of a container that is being removed or replaced. */
  forget(container: string): void {
    const existing = this.channels.get(container);
    this.channels.delete(container);
    void existing?.then(
      (c) => c.close(),
      () => undefined,
    );
  }

  private channel(container: string): Promise<Channel> {
    const existing = this.channels.get(container);
    if (existing !== undefined) {
      return existing.then((c) => {
        if (!c.dead) return c;
        if (this.channels.get(container) === existing) this.channels.delete(container);
        return this.channel(container);
      });
    }
    const opening = this.open(container);
    this.channels.set(container, opening);
    opening.catch(() => {
      if (this.channels.get(container) === opening) this.channels.delete(container);
    });
    return opening;
  }

  private async open(container: string): Promise<Channel> {
    const exec = await this.docker.getContainer(container).exec({
      Cmd: ['/bin/sh', GUEST_RUNNER, 'serve'],
      User: '0:0',
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
    });
    const stream = (await exec.start({ hijack: true, stdin: true })) as Duplex;
    const channel = new Channel(stream);
    try {
      await channel.open(this.docker);
    } catch (error) {
      channel.close();
      throw error;
    }
    return channel;
  }
}
