import type { CommandView, StreamView } from '../../shared/contract/views.js';
import { WspApiError, type RunCommandInput, type WspClient } from '../../shared/client/client.js';
import { exitCodeOf, readPipedStdin, type Io } from './io.js';

export interface ExecOptions {
  workspaceId: string;
  argv?: string[];
  command?: string;
  cwd?: string;
  timeoutMs?: number;
  env?: Record<string, string>;
  /** Do not send stdin even when it is piped. */
  noStdin?: boolean;
  json?: boolean;
}

/**
 * `wsp exec`: starts the command, streams its output live (SSE) to our stdout/stderr, and returns
 * its exit code. Output is tracked by byte offset per stream, so nothing is printed twice or lost:
 * whatever the stream did not deliver (a gap, a dropped connection, an already-finished command)
 * is read with GET from the last offset written. Ctrl-C cancels the command.
 */
export async function runExec(client: WspClient, io: Io, options: ExecOptions): Promise<number> {
  const body: RunCommandInput = {
    ...(options.argv ? { argv: options.argv } : { command: options.command ?? '' }),
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.env ? { env: options.env } : {}),
    waitMs: 0,
  };
  const stdin = options.noStdin ? undefined : await readPipedStdin();
  if (stdin !== undefined && stdin.length > 0)
    Object.assign(body, { stdin: stdin.toString('base64'), stdinEncoding: 'base64' });

  const first = await client.runCommand(options.workspaceId, body, { wait: false });
  const id = first.id;
  const onInterrupt = (): void => {
    void client
      .cancelCommand(options.workspaceId, id)
      .catch(() => {})
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', onInterrupt);
  try {
    if (options.json) {
      const final = first.state === 'running' ? await client.waitForCommand(options.workspaceId, id) : first;
      await io.out(`${JSON.stringify(final, null, 2)}\n`);
      return exitCodeOf(final);
    }
    const printer = new OffsetPrinter(io);
    await printer.view(first);
    let final: CommandView | undefined = first.state === 'running' ? undefined : first;
    if (!final) {
      try {
        for await (const event of client.watchCommand(options.workspaceId, id)) {
          if (event.type === 'end') {
            final = event.command;
            break;
          }
          if (event.offset > printer.written[event.stream]) await catchUp(client, printer, options.workspaceId, id);
          await printer.chunk(event.stream, Buffer.from(event.data, 'utf8'), event.offset);
        }
      } catch (error) {
        // No stream (or it broke): the long-poll below still gets the end and the output.
        if (error instanceof WspApiError && error.code === 'not_found') throw error;
      }
    }
    if (!final || final.state === 'running') final = await waitEnded(client, options.workspaceId, id);
    await catchUp(client, printer, options.workspaceId, id);
    for (const stream of ['stdout', 'stderr'] as const) {
      if (final[stream].truncated)
        await io.err(`wsp: ${stream} truncated: the command wrote ${final[stream].bytes} bytes, more than is kept\n`);
    }
    if (final.state === 'killed')
      await io.err(
        `wsp: command killed${final.signal ? ` by ${final.signal}` : ''}${final.reason ? ` (${final.reason})` : ''}\n`,
      );
    if (final.state === 'lost') await io.err(`wsp: command lost${final.reason ? `: ${final.reason}` : ''}\n`);
    return exitCodeOf(final);
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}

async function waitEnded(client: WspClient, workspaceId: string, id: string): Promise<CommandView> {
  let view = await client.getCommand(workspaceId, id, { waitMs: 25_000, limit: 0 });
  while (view.state === 'running') view = await client.getCommand(workspaceId, id, { waitMs: 25_000, limit: 0 });
  return view;
}

/** Reads (GET) and prints everything past what was written, until no stream makes progress. */
async function catchUp(client: WspClient, printer: OffsetPrinter, workspaceId: string, id: string): Promise<void> {
  for (;;) {
    const before = { ...printer.written };
    const view = await client.getCommand(workspaceId, id, { stdoutOffset: before.stdout, stderrOffset: before.stderr });
    await printer.view(view);
    const progressed = printer.written.stdout > before.stdout || printer.written.stderr > before.stderr;
    const behind = view.stdout.nextOffset < view.stdout.bytes || view.stderr.nextOffset < view.stderr.bytes;
    if (!progressed || !behind) return;
  }
}

/** Prints output chunks by byte offset, skipping bytes already printed. */
class OffsetPrinter {
  readonly written = { stdout: 0, stderr: 0 };
  constructor(private readonly io: Io) {}

  async view(view: CommandView): Promise<void> {
    for (const stream of ['stdout', 'stderr'] as const)
      await this.chunk(stream, decode(view[stream]), view[stream].offset);
  }

  async chunk(stream: 'stdout' | 'stderr', data: Buffer, offset: number): Promise<void> {
    const from = this.written[stream] - offset;
    if (from < 0 || from >= data.length) return; // a gap (caught up by GET) or nothing new
    const fresh = data.subarray(from);
    if (stream === 'stdout') await this.io.out(fresh);
    else await this.io.err(fresh);
    this.written[stream] = offset + data.length;
  }
}

function decode(view: StreamView): Buffer {
  return Buffer.from(view.data, view.encoding === 'base64' ? 'base64' : 'utf8');
}
