import type { WspClient } from '../../shared/client/client.js';
import type { CommandView } from '../../shared/contract/views.js';
import { exitCodeOf, type Io } from './io.js';

/** The login shell of the workspace's user when there is bash, else sh. */
const DEFAULT_SHELL = ['sh', '-c', 'if command -v bash >/dev/null 2>&1; then exec bash -il; fi; exec sh -i'];

export interface ShellOptions {
  workspaceId: string;
  /** What to run under the terminal (default: an interactive shell). */
  argv?: string[];
  cwd?: string;
  env?: Record<string, string>;
  /** Our terminal (default: process.stdin / process.stdout). */
  input?: NodeJS.ReadStream;
  output?: NodeJS.WriteStream;
  /** Print the ended command's view on stdout; the screen then goes to stderr (still this terminal). */
  json?: boolean;
}

/**
 * `wsp shell ID`: an interactive terminal in the workspace — a command under a pseudo-terminal of
 * our terminal's size, attached over a WebSocket (the local server): keys go in raw (Ctrl-C
 * included: the workspace's terminal turns it into SIGINT), the screen comes back as it is drawn,
 * a resize of our window resizes it. Exits with its exit code. `--json`: the screen is drawn on
 * stderr and the command's final view printed on stdout (`wsp shell --json ID -- make > end.json`).
 */
export async function runShell(client: WspClient, io: Io, options: ShellOptions): Promise<number> {
  const input = options.input ?? process.stdin;
  const output = options.output ?? (options.json ? process.stderr : process.stdout);
  const size = () => ({ rows: output.rows || 24, cols: output.columns || 80 });
  const started = await client.runCommand(
    options.workspaceId,
    {
      argv: options.argv ?? DEFAULT_SHELL,
      tty: size(),
      env: { TERM: process.env.TERM || 'xterm-256color', ...(options.env ?? {}) },
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
      timeoutMs: 0,
      waitMs: 0,
    },
    { wait: false },
  );
  const ws = await client.attach(options.workspaceId, started.id);
  const raw = input.isTTY === true;
  if (raw) input.setRawMode(true);
  const onKeys = (data: Buffer) => ws.send(data, { binary: true });
  const onResize = () => ws.send(JSON.stringify({ type: 'resize', ...size() }));
  input.on('data', onKeys);
  input.once('end', () => ws.send(JSON.stringify({ type: 'eof' })));
  output.on('resize', onResize);
  input.resume();
  try {
    const end = await new Promise<CommandView | undefined>((resolve, reject) => {
      let last: CommandView | undefined;
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (isBinary) {
          output.write(data.subarray(1));
          return;
        }
        const message = JSON.parse(data.toString('utf8')) as {
          type: string;
          command?: CommandView;
          error?: { message: string };
        };
        if (message.type === 'end') last = message.command;
        else if (message.type === 'error') void io.err(`wsp: ${message.error?.message ?? 'error'}\r\n`);
      });
      ws.once('close', () => resolve(last));
      ws.once('error', reject);
    });
    if (options.json && end !== undefined) await io.out(`${JSON.stringify(end, null, 2)}\n`);
    return end === undefined ? 1 : exitCodeOf(end);
  } finally {
    input.off('data', onKeys);
    output.off('resize', onResize);
    if (raw) input.setRawMode(false);
    input.pause();
    ws.terminate();
  }
}
