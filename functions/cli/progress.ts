import type { Io } from './io.js';

/**
 * Progress of a long CLI operation, always on stderr (stdout carries only the answer: ids or JSON).
 * Three ways to show it:
 *   - 'tty': stderr is a terminal — one status line redrawn in place (`\r`, erase line), with lines
 *     worth keeping printed above it; cleared when done, so what follows starts on a clean line.
 *   - 'plain': stderr is a file or pipe — the kept lines and each milestone as a line of its own.
 *   - 'off': `--json` without `--progress` — nothing.
 */
export type ProgressMode = 'tty' | 'plain' | 'off';

/** `--json` silences progress unless `--progress` asks for it; the terminal decides how it looks. */
export function progressMode(values: { json?: boolean; progress?: boolean }, io: Io): ProgressMode {
  if (values.json && !values.progress) return 'off';
  return io.errTerminal ? 'tty' : 'plain';
}

export class Progress {
  #status = '';
  #writes: Promise<void> = Promise.resolve();

  constructor(
    private readonly io: Io,
    readonly mode: ProgressMode,
  ) {}

  /** A line to keep (a step, a line of output): printed in every mode but 'off'. */
  line(text: string): void {
    if (this.mode === 'off') return;
    const body = text.endsWith('\n') ? text : `${text}\n`;
    if (this.mode === 'plain') this.#write(body);
    else this.#write(`${CLEAR_LINE}${body}${this.#fit(this.#status)}`);
  }

  /** Raw output to pass through as it comes (plain mode only: on a terminal it would break the status line). */
  passthrough(data: string): void {
    if (this.mode === 'plain') this.#write(data);
  }

  /** The status line: redrawn on a terminal; in plain mode printed only when `milestone` says so. */
  status(text: string, milestone = false): void {
    if (this.mode === 'tty') {
      if (text === this.#status) return;
      this.#status = text;
      this.#write(`${CLEAR_LINE}${this.#fit(text)}`);
    } else if (this.mode === 'plain' && milestone) this.#write(`${text}\n`);
  }

  /** Clears the status line; resolves once everything written has been taken by stderr. */
  async done(): Promise<void> {
    if (this.mode === 'tty' && this.#status !== '') this.#write(CLEAR_LINE);
    this.#status = '';
    await this.#writes;
  }

  #write(data: string): void {
    this.#writes = this.#writes.then(() => this.io.err(data));
  }

  /** One terminal row at most: a status line that wrapped could not be redrawn in place. */
  #fit(text: string): string {
    const width = Math.max(20, (this.io.errTerminal?.columns ?? 80) - 1);
    const flat = text.replace(/[\r\n\t]+/g, ' ');
    return flat.length > width ? `${flat.slice(0, width - 1)}…` : flat;
  }
}

const CLEAR_LINE = '\r\x1b[2K';

/**
 * Bytes moved as `done / total (percent)` on the status line; plain mode prints a line at each
 * quarter of transfers of at least 1 MiB (smaller ones finish before progress would tell anything).
 */
export function transferProgress(progress: Progress, label: string): (done: number, total: number | undefined) => void {
  let quarter = 0;
  let shown = '';
  return (done, total) => {
    const percent = total ? Math.floor((done / total) * 100) : undefined;
    const text = `wsp: ${label} ${size(done)}${total !== undefined ? ` / ${size(total)} (${percent}%)` : ''}`;
    if (text === shown) return;
    shown = text;
    const reached = total && total >= 1024 * 1024 ? Math.floor((done / total) * 4) : 0;
    const milestone = reached > quarter;
    if (milestone) quarter = reached;
    progress.status(text, milestone);
  };
}

/** 1536 → '1.5 KiB'. */
function size(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}
