import { constants } from 'node:fs';
import fs from 'node:fs';
import net from 'node:net';

/** How often the count past the cap (`<file>.rest`) is rewritten while a stream floods. */
const REST_EVERY_MS = 200;

/**
 * One output stream of a command, capped while it runs: the command writes into a pipe (a FIFO, as
 * a shell would give it: `/dev/stdout` opens), this keeps at most `max` bytes in `<file>` — as they
 * come, so readers stream the file while it grows — and counts the rest into `<file>.rest`, so the
 * exit record holds the real byte count (command-record.ts streamBytes reads both).
 */
export class CappedStream {
  private kept = 0;
  private rest = 0;
  private restTimer: NodeJS.Timeout | undefined;
  private readonly fd: number;
  /** Resolves when every writer of the pipe has closed it (or reading failed). */
  readonly ended: Promise<void>;

  constructor(
    private readonly file: string,
    private readonly max: number,
    /** Read end of the pipe (non-blocking); owned from now on. */
    readFd: number,
  ) {
    this.fd = fs.openSync(file, constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW);
    this.kept = fs.fstatSync(this.fd).size;
    const pipe = new net.Socket({ fd: readFd, readable: true, writable: false });
    this.ended = new Promise((resolve) => {
      let done = false;
      const end = () => {
        if (done) return;
        done = true;
        pipe.destroy();
        this.flushRest();
        fs.closeSync(this.fd);
        resolve();
      };
      pipe.on('data', (chunk: Buffer) => this.take(chunk));
      pipe.once('end', end);
      pipe.once('close', end);
      pipe.once('error', end);
    });
  }

  /** Bytes the stream has produced so far: kept + counted past the cap. */
  get bytes(): number {
    return this.kept + this.rest;
  }

  private take(chunk: Buffer): void {
    const room = Math.max(0, this.max - this.kept);
    const keep = chunk.subarray(0, room);
    for (let off = 0; off < keep.length; ) off += fs.writeSync(this.fd, keep, off);
    this.kept += keep.length;
    const over = chunk.length - keep.length;
    if (over === 0) return;
    const first = this.rest === 0;
    this.rest += over;
    // The first byte past the cap is recorded at once: a running command already reads as truncated.
    if (first) this.flushRest();
    else this.restTimer ??= setTimeout(() => this.flushRest(), REST_EVERY_MS);
  }

  private flushRest(): void {
    if (this.restTimer !== undefined) clearTimeout(this.restTimer);
    this.restTimer = undefined;
    if (this.rest === 0) return;
    fs.writeFileSync(`${this.file}.rest.tmp`, `${this.rest}\n`, { mode: 0o600 });
    fs.renameSync(`${this.file}.rest.tmp`, `${this.file}.rest`);
  }
}
