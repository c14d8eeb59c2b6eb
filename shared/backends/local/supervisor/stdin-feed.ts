import fs from 'node:fs';
import net from 'node:net';

/**
 * The open stdin of a command started with `openStdin` (supervisor side): this process holds the
 * write end of the pipe the command reads, so the command sees end of file only when asked (or
 * when it ends) — even across provider restarts, since the supervisor outlives the provider. Writes
 * go out in order through a non-blocking stream; what the command has not read yet waits here, at
 * most `maxPending` bytes beyond what the pipe holds.
 */
export class StdinFeed {
  private readonly stream: net.Socket;
  private closed: string | undefined;
  /** Writes not yet handed to the pipe; with `ending`, the descriptor closes when the last one is. */
  private inFlight = 0;
  private ending = false;

  /** `fd`: the write end (this feed owns it). */
  constructor(
    fd: number,
    private readonly maxPending: number,
  ) {
    try {
      this.stream = new net.Socket({ fd, readable: false, writable: true });
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
    // The command ended (EPIPE) or the fd went: later writes are refused.
    this.stream.on('error', () => this.close('the command no longer reads its stdin'));
  }

  /**
   * Queue `data` (then close when `eof`); refused with a reason when closed or too much is waiting.
   * `initial`: the bytes given at start, which the cap does not count against.
   */
  write(data: Buffer, eof: boolean, initial = false): string | undefined {
    if (this.closed !== undefined) return this.closed;
    if (!initial && this.stream.writableLength + data.length > this.maxPending)
      return `stdin is full: the command is not reading (${this.stream.writableLength} bytes wait unread)`;
    if (data.length > 0) {
      this.inFlight++;
      this.stream.write(data, () => {
        if (--this.inFlight === 0 && this.ending) this.stream.destroy();
      });
    }
    if (eof) {
      this.closed = 'its stdin is closed (eof was sent)';
      // A pipe has no half-close: the descriptor closes once everything queued is written.
      this.ending = true;
      if (this.inFlight === 0) this.stream.destroy();
    }
    return undefined;
  }

  /** The command ended: drop what waits, close the pipe. */
  close(why: string): void {
    this.closed ??= why;
    this.stream.destroy();
  }
}
