import type { CommandStatus, OutputStream } from '../../contract/backend.js';
import { BackendUnavailableError } from '../../contract/errors.js';
import { shellQuote } from '../../lib/shell-quote.js';
import { checkReadArgs, statusFromRecord, type StoredSpec } from './command-record.js';

/**
 * The provider's side of `runner.sh rpc` (issue 5 item 2): requests to the in-workspace runner over a
 * PTY — ECS Exec in a Fargate task, where the PTY echoes, turns "\n" into "\r\n", interprets control
 * characters and may print a motd first. No Node APIs beyond Buffer: it sits on any byte pipe.
 *
 * Wire format (the runner's side is cmd_rpc in runner.sh):
 *   runner → provider, once:   <<<wsp:ready:0:<base64 '{"rpc":1}'>>>\n        (after its stty)
 *   provider → runner:         WSPREQ <id>\n
 *                              <base64 of the shell-quoted argv, in lines of <= 1000 chars>\n ...
 *                              WSPEND <id> <base64 length without newlines>\n
 *   runner → provider:         <<<wsp:<id>:<status>:<base64 payload>>>\n
 * id: [A-Za-z0-9]+, fresh per request (a session nonce + a counter), so an answer is never taken for
 * another request's. status: the runner subcommand's exit status (0 ok, 1 failed, 2 bad arguments or a
 * request damaged in transit, 3 no such command dir, other: whatever the subcommand returned);
 * payload: its stdout when status is 0, else (the last 64 KiB of) its stderr. Requests are printable
 * ASCII only and no line is longer than 1000 characters, so any tty mode carries them intact; the
 * answer's sentinels contain '<', '>' and ':', which no request line does, so echoed input never looks
 * like an answer. Command output only ever travels base64-encoded inside an answer.
 */

/** What ECS Exec runs to speak to a runner at `runnerPath` (the image has it at /opt/wsp/runner.sh). The path must not need shell quoting. */
export const runnerRpcCommand = (runnerPath: string): string => `sh ${runnerPath} rpc`;

/** A terminal session: bytes in, bytes out (echo and "\r\n" included), and its end. */
export interface PtyLike {
  write(data: string): void;
  onData(cb: (b: Buffer) => void): void;
  /** Called once when the session ends (err: why, if it failed). */
  onClose(cb: (err?: Error) => void): void;
  close(): void;
}

export interface RunnerRpcOptions {
  /** How long ready() waits for the runner's banner. Default 30 s. */
  readyTimeoutMs?: number;
  /** A request without an answer in this time fails — and ends the session. Default 120 s. */
  requestTimeoutMs?: number;
  /**
   * Time the caller may still spend (e.g. what is left of a Lambda invocation), read at each request
   * and at the start: every timeout (ready, request, a request's own) is cut to it. undefined: no bound.
   */
  remainingMs?: () => number | undefined;
}

export interface RpcAnswer {
  /** The runner subcommand's exit status. */
  status: number;
  /** Its stdout when status is 0, else its stderr. */
  payload: Buffer;
}

/** Longest request line (the tty's canonical-mode limit is 4095; this stays far below it). */
export const REQUEST_LINE_CHARS = 1000;
const START = '<<<wsp:';
const END = '>>>';
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The request lines for one call (see the wire format above). */
export function encodeRpcRequest(id: string, argv: readonly string[]): string {
  const body = Buffer.from(argv.map(shellQuote).join(' '), 'utf8').toString('base64');
  const lines: string[] = [`WSPREQ ${id}`];
  for (let i = 0; i < body.length; i += REQUEST_LINE_CHARS) lines.push(body.slice(i, i + REQUEST_LINE_CHARS));
  lines.push(`WSPEND ${id} ${body.length}`);
  return `${lines.join('\n')}\n`;
}

export interface RpcFrame {
  id: string;
  status: number;
  payload: Buffer;
}

/**
 * Finds answer frames in PTY output, whatever surrounds them (echo, "\r\n", ANSI sequences, a motd,
 * a fake "<<<wsp:" without an end). A frame that is not well-formed is reported as `corrupt` with the
 * id if one can be read, so the waiting request fails instead of hanging.
 */
export class RpcFrameParser {
  private buffer = '';

  /** Feed output; returns the frames completed by it, in order. */
  push(chunk: Buffer): Array<RpcFrame | { id: string | undefined; corrupt: string }> {
    // latin1: one char per byte, so no byte sequence can hide or split a sentinel.
    this.buffer += chunk.toString('latin1');
    const frames: Array<RpcFrame | { id: string | undefined; corrupt: string }> = [];
    for (;;) {
      const first = this.buffer.indexOf(START);
      if (first < 0) {
        // Keep a tail that may be the start of a sentinel.
        this.buffer = this.buffer.slice(-(START.length - 1));
        return frames;
      }
      const end = this.buffer.indexOf(END, first + START.length);
      if (end < 0) {
        this.buffer = this.buffer.slice(first);
        return frames;
      }
      // The last start before this end: an earlier start without an end was noise.
      const start = this.buffer.lastIndexOf(START, end - START.length);
      const body = this.buffer.slice(start + START.length, end);
      this.buffer = this.buffer.slice(end + END.length);
      frames.push(parseFrame(body));
    }
  }
}

function parseFrame(body: string): RpcFrame | { id: string | undefined; corrupt: string } {
  const m = /^([A-Za-z0-9]+):(\d{1,3}):([\s\S]*)$/.exec(body);
  if (m === null) return { id: /^([A-Za-z0-9]+):/.exec(body)?.[1], corrupt: 'an answer without id and status' };
  // A PTY may add "\r" or break lines; base64 has neither.
  const b64 = m[3]!.replace(/[\r\n]/g, '');
  if (!BASE64.test(b64) || b64.length % 4 !== 0) return { id: m[1], corrupt: 'an answer whose payload is not base64' };
  return { id: m[1]!, status: Number(m[2]), payload: Buffer.from(b64, 'base64') };
}

interface Waiter {
  id: string;
  resolve(answer: RpcAnswer): void;
  reject(error: Error): void;
}

/**
 * One runner session. Calls are serialised (the runner answers one request at a time); when the
 * session ends or a request times out, that call and every queued one fail with
 * BackendUnavailableError and the session is closed — the caller opens a new one and repeats what it
 * needs. Every runner request is safe to repeat: `prepare` answers `exists` for a dir made already,
 * `start` claims the dir (a second start only waits like the first), kill/killall record the first
 * reason, `stdin` applies each write id once, reads and statuses change nothing. A request that reached the runner whole runs to its end
 * even if the session drops meanwhile (the runner runs it in a session of its own).
 */
export class RunnerRpc {
  private readonly parser = new RpcFrameParser();
  private readonly nonce =
    Math.random()
      .toString(36)
      .slice(2, 10)
      .replace(/[^a-z0-9]/g, '') || 'n';
  private counter = 0;
  private tail: Promise<unknown> = Promise.resolve();
  private current: Waiter | undefined;
  private readonly queued = new Set<(error: Error) => void>();
  private closedWith: Error | undefined;
  private readonly readyPromise: Promise<void>;
  private markReady: () => void = () => undefined;
  private failReady: (e: Error) => void = () => undefined;
  private readonly requestTimeoutMs: number;
  private readonly remainingMs: () => number | undefined;

  constructor(
    private readonly pty: PtyLike,
    opts: RunnerRpcOptions = {},
  ) {
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 120_000;
    this.remainingMs = opts.remainingMs ?? (() => undefined);
    this.readyPromise = new Promise<void>((resolve, reject) => {
      this.markReady = resolve;
      this.failReady = reject;
    });
    // Nobody may be waiting yet; a failure still surfaces through ready() and call().
    this.readyPromise.catch(() => undefined);
    const timer = setTimeout(
      () => this.fail(new BackendUnavailableError('the workspace runner did not answer (no rpc banner)')),
      this.bounded(opts.readyTimeoutMs ?? 30_000),
    );
    this.readyPromise.then(
      () => clearTimeout(timer),
      () => clearTimeout(timer),
    );
    pty.onData((chunk) => this.onData(chunk));
    pty.onClose((err) => this.fail(new BackendUnavailableError('the runner session ended', err)));
  }

  /** Resolves at the runner's banner; rejects (BackendUnavailableError) if the session ends or it never comes. */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  /** The session has ended (closed, timed out or failed): every call fails at once. */
  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /**
   * `runner.sh <argv>` in the workspace. Resolves with the runner's status and payload whatever the
   * status; rejects with BackendUnavailableError only when the session fails (then it is closed).
   */
  call(argv: readonly string[], opts: { timeoutMs?: number } = {}): Promise<RpcAnswer> {
    if (this.closedWith !== undefined) return Promise.reject(this.closedWith);
    let cancel: (error: Error) => void = () => undefined;
    const turn = new Promise<void>((resolve, reject) => {
      cancel = reject;
      this.tail.then(
        () => resolve(),
        () => resolve(),
      );
    });
    this.queued.add(cancel);
    const result = turn.then(() => {
      this.queued.delete(cancel);
      return this.send(argv, opts.timeoutMs ?? this.requestTimeoutMs);
    });
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Ends the session (the runner then sees a hangup). Pending calls fail. */
  close(): void {
    this.fail(new BackendUnavailableError('the runner session was closed'));
  }

  private async send(argv: readonly string[], timeoutMs: number): Promise<RpcAnswer> {
    await this.readyPromise;
    if (this.closedWith !== undefined) throw this.closedWith;
    const id = `${this.nonce}${++this.counter}`;
    const limitMs = this.bounded(timeoutMs);
    const cut = limitMs < timeoutMs ? ' (all the time left to this caller)' : '';
    return new Promise<RpcAnswer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(
          new BackendUnavailableError(
            `the workspace runner did not answer '${String(argv[0])}' in ${limitMs} ms${cut}`,
          ),
        );
      }, limitMs);
      this.current = {
        id,
        resolve: (a) => {
          clearTimeout(timer);
          resolve(a);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      try {
        this.pty.write(encodeRpcRequest(id, argv));
      } catch (error) {
        this.fail(new BackendUnavailableError('cannot write to the runner session', error));
      }
    });
  }

  /** `ms` cut to the caller's remaining time (never below 0). */
  private bounded(ms: number): number {
    const left = this.remainingMs();
    return left === undefined ? ms : Math.max(0, Math.min(ms, left));
  }

  private onData(chunk: Buffer): void {
    for (const frame of this.parser.push(chunk)) {
      if (frame.id === 'ready' && 'status' in frame) {
        this.markReady();
        continue;
      }
      const waiter = this.current;
      if (waiter === undefined || frame.id !== waiter.id) continue; // noise, or an answer of another session
      this.current = undefined;
      if ('corrupt' in frame) {
        this.fail(new BackendUnavailableError(`the runner session garbled ${frame.corrupt}`));
        waiter.reject(this.closedWith!);
      } else {
        waiter.resolve({ status: frame.status, payload: frame.payload });
      }
    }
  }

  private fail(error: Error): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = error;
    this.failReady(error);
    const waiter = this.current;
    this.current = undefined;
    waiter?.reject(error);
    for (const cancel of this.queued) cancel(error);
    this.queued.clear();
    try {
      this.pty.close();
    } catch {
      // closing a session that is already gone
    }
  }

  // --- typed requests ---------------------------------------------------------------------------

  /**
   * Create a command dir (runner `prepare`): stdin, env script, empty stdout/stderr, spec.json last,
   * atomically. 'exists' when it was made before (a retried start: call `start` anyway, it is
   * idempotent on the dir and may not have run). Throws BackendUnavailableError on a runner failure.
   */
  async prepare(dir: string, specJson: string, envScript: string, stdin: Buffer): Promise<'created' | 'exists'> {
    const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');
    const answer = await this.ok('prepare', ['prepare', dir, b64(specJson), b64(envScript), b64(stdin)]);
    const word = answer.toString('utf8').trim();
    if (word !== 'created' && word !== 'exists')
      throw new BackendUnavailableError(`runner prepare answered '${word.slice(0, 40)}'`);
    return word;
  }

  /** The status of the command in `dir` (statusFromRecord over the runner's view); undefined: no such command. */
  async status(dir: string): Promise<CommandStatus | undefined> {
    const { status, payload } = await this.call(['status', dir]);
    if (status === 3) return undefined;
    if (status !== 0) throw runnerFailed('status', status, payload);
    return statusFromAnswer(parseJson('status', payload));
  }

  /** Every complete command dir under `cmdRoot` with its status (for killAll). */
  async statusMany(cmdRoot: string): Promise<Array<{ id: string; status: CommandStatus }>> {
    const list = parseJson('status-many', await this.ok('status-many', ['status-many', cmdRoot]));
    if (!Array.isArray(list)) throw new BackendUnavailableError('runner status-many did not answer a list');
    return list.map((item: unknown) => ({ id: String((item as { id?: unknown }).id), status: statusFromAnswer(item) }));
  }

  /**
   * Bytes [offset, min(offset + limit, kept)) of a stream, kept = min(size, maxOutputBytes) — what
   * readStream returns from host files. undefined: no such command. Throws BadRequestError for bad args.
   */
  async read(dir: string, stream: OutputStream, offset: number, limit: number): Promise<Buffer | undefined> {
    checkReadArgs(stream, offset, limit);
    const { status, payload } = await this.call(['read', dir, stream, String(offset), String(limit)]);
    if (status === 3) return undefined;
    if (status !== 0) throw runnerFailed('read', status, payload);
    return payload;
  }

  /** Ask the runner to end the session (it answers, then exits), then close it. */
  async bye(): Promise<void> {
    try {
      await this.call(['bye'], { timeoutMs: 5_000 });
    } finally {
      this.close();
    }
  }

  /** A request that must succeed: its stdout, or BackendUnavailableError with the runner's message. */
  private async ok(what: string, argv: readonly string[]): Promise<Buffer> {
    const { status, payload } = await this.call(argv);
    if (status !== 0) throw runnerFailed(what, status, payload);
    return payload;
  }
}

function runnerFailed(what: string, status: number, payload: Buffer): BackendUnavailableError {
  return new BackendUnavailableError(
    `runner ${what} failed (status ${status}): ${payload.toString('utf8').trim().slice(0, 300)}`,
  );
}

function parseJson(what: string, payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8'));
  } catch (error) {
    throw new BackendUnavailableError(`runner ${what} did not answer JSON`, error);
  }
}

const fromB64 = (v: unknown): string | undefined =>
  typeof v === 'string' ? Buffer.from(v, 'base64').toString('utf8') : undefined;

/** One status object of the runner (status_fields in runner.sh) → the CommandStatus Docker would read. */
function statusFromAnswer(answer: unknown): CommandStatus {
  const a = answer as Record<string, unknown>;
  const specText = fromB64(a.spec);
  let spec: StoredSpec;
  try {
    spec = JSON.parse(specText ?? '') as StoredSpec;
  } catch (error) {
    throw new BackendUnavailableError('runner status: the command has no readable spec.json', error);
  }
  return statusFromRecord({
    spec,
    exit: fromB64(a.exit),
    kill: fromB64(a.kill),
    alive: a.alive === true,
    stdoutBytes: Number(a.stdoutBytes) || 0,
    stderrBytes: Number(a.stderrBytes) || 0,
  });
}
