import { constants } from 'node:os';
import type { CommandView } from '../../shared/contract/views.js';

/** Where the CLI writes: waits for 'drain' so large outputs are not buffered without bound. */
export interface Io {
  out(data: string | Buffer): Promise<void>;
  err(data: string | Buffer): Promise<void>;
  /** Set when stderr is a terminal (progress redraws a status line there), with its current width. */
  readonly errTerminal?: { columns: number } | undefined;
}

export function processIo(): Io {
  const write = (stream: NodeJS.WriteStream, data: string | Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      if (stream.write(data)) resolve();
      else stream.once('drain', resolve).once('error', reject);
    });
  return {
    out: (d) => write(process.stdout, d),
    err: (d) => write(process.stderr, d),
    get errTerminal() {
      return process.stderr.isTTY ? { columns: process.stderr.columns || 80 } : undefined;
    },
  };
}

/** Reads stdin to the end when it is not a terminal (piped or redirected); undefined for a TTY. */
export async function readPipedStdin(): Promise<Buffer | undefined> {
  if (process.stdin.isTTY) return undefined;
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * A finished command's process exit code, shell-style: its own code; killed by a signal → 128 +
 * the signal number; `lost` (the provider could not learn how it ended) → 255.
 */
export function exitCodeOf(command: CommandView): number {
  if (command.state === 'exited') return command.exitCode ?? 1;
  if (command.state === 'killed') {
    const number = command.signal
      ? (constants.signals as Record<string, number | undefined>)[command.signal]
      : undefined;
    return 128 + (number ?? 9);
  }
  return 255;
}
