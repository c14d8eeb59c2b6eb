/**
 * A tiny in-process readers/writer lock: many readers at once, or one writer. Writers are not
 * starved: once a writer waits, new readers queue behind it.
 */
export class ReadWriteLock {
  private readers = 0;
  private writing = false;
  private readonly queue: { write: boolean; wake: () => void }[] = [];

  /** Run `fn` while holding a shared lock. */
  async read<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(false);
    try {
      return await fn();
    } finally {
      this.readers -= 1;
      this.drain();
    }
  }

  /** Run `fn` while holding the exclusive lock. */
  async write<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(true);
    try {
      return await fn();
    } finally {
      this.writing = false;
      this.drain();
    }
  }

  private acquire(write: boolean): Promise<void> {
    return new Promise((wake) => {
      this.queue.push({ write, wake });
      this.drain();
    });
  }

  /** Admit waiters in order while they are compatible with the current holders. */
  private drain(): void {
    while (this.queue.length > 0 && !this.writing) {
      const next = this.queue[0]!;
      if (next.write && this.readers > 0) return;
      this.queue.shift();
      if (next.write) this.writing = true;
      else this.readers += 1;
      next.wake();
      if (next.write) return;
    }
  }
}
