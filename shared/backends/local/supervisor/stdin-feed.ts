import fs from 'node:fs';
import net from 'node:net';

const CLOSED_BY_COMMAND = 'its stdin is closed: the command no longer reads it';

/**
 * The open stdin of a command started with `openStdin` (supervisor side): this process holds the
 * write end of the pipe the command reads, so the command sees end of file only when asked (or
 * when it ends) — even across provider restarts, since the supervisor outlives the provider. Writes
 * go out in order through a non-blocking stream; what the command has not read yet waits here, at
 * most `maxPending` bytes beyond what the pipe holds.
 */
export class StdinFeed {
  private readonly stream: net.Socket | undefined;
  private closed: string | undefined;
  /** Writes not yet handed to the pipe; with `ending`, the descriptor closes when the last one is. */
  private inFlight = 0;
  private ending = false;

  /** `fd`: the write end (this feed owns it); undefined: the command closed its stdin already. */
  constructor(
    fd: number | undefined,
    private readonly maxPending: number,
  ) {
    if (fd === undefined) {
      this.closed = CLOSED_BY_COMMAND;
      return;
    }
    try {
      this.stream = new net.Socket({ fd, readable: false, writable: true });
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
    // The command closed its stdin or ended (EPIPE: the feed is its only writer, the command its only reader).
    this.stream.on('error', () => this.close(CLOSED_BY_COMMAND));
  }

  /**
   * Queue `data` (then close when `eof`); refused with a reason when closed or too much is waiting.
   * `initial`: the bytes given at start, which the cap does not count against.
   */
  write(data: Buffer, eof: boolean, initial = false): string | undefined {
    const stream = this.stream;
    if (this.closed !== undefined || stream === undefined) return this.closed ?? CLOSED_BY_COMMAND;
    if (!initial && stream.writableLength + data.length > this.maxPending)
      return `stdin is full: the command is not reading (${stream.writableLength} bytes wait unread)`;
    if (data.length > 0) {
      this.inFlight++;
      stream.write(data, () => {
        if (--this.inFlight === 0 && this.ending) stream.destroy();
      });
    }
    if (eof) {
      this.closed = 'its stdin is closed (eof was sent)';
      // A pipe has no half-close: the descriptor closes once everything queued is written.
      this.ending = true;
      if (this.inFlight === 0) stream.destroy();
    }
    return undefined;
  }

  /** The command ended: drop what waits, close the pipe. */
  close(why: string): void {
    this.closed ??= why;
    this.stream?.destroy();
  }
}
