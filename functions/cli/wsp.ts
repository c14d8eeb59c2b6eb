#!/usr/bin/env -S npx tsx
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { WspApiError, WspTimeoutError } from '../../shared/client/client.js';
import { WspError } from '../../shared/contract/errors.js';
import { parseCli, USAGE, UsageError } from './args.js';
import { runSubcommand } from './commands.js';
import { bashCompletion } from './completion.js';
import { clientFromArgs } from './connection.js';
import { processIo, type Io } from './io.js';

/**
 * `wsp` — the Workspace Provider CLI (`npm run wsp -- <command>`). `serve` runs the provider; every
 * other command talks to a running provider through the typed client (shared/client/client.ts).
 * Exit codes: 0 ok, 1 API/connection error, 2 usage error; `exec` exits with the command's code.
 * With `--json` every command prints one JSON document on stdout, and an error as the API's error
 * body (`{"error": {"code", "message", "details"?}}`) on stderr, with the same exit code.
 */
export async function main(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  io: Io = processIo(),
): Promise<number> {
  try {
    // `serve` hands its flags to the provider's own parser (--config, --port, …), untouched.
    if (argv[0] === 'serve') return await serve(argv.slice(1), io);
    if (argv[0] === 'completion') {
      if (argv[1] !== 'bash' || argv.length > 2)
        throw new UsageError("completion takes one shell: 'wsp completion bash'");
      await io.out(bashCompletion());
      return 0;
    }
    const args = parseCli(argv);
    if (args.values.help) {
      await io.out(USAGE);
      return 0;
    }
    if (args.subcommand === undefined) throw new UsageError('missing command');
    return await runSubcommand(clientFromArgs(args.values, env), io, args);
  } catch (error) {
    return reportError(error, io, wantsJson(argv));
  }
}

/** `--json` among the CLI's own arguments (before `--`), known even when they did not parse. */
function wantsJson(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

async function serve(flags: string[], io: Io): Promise<number> {
  // Imported lazily: client commands need none of the provider's code.
  const { startProvider } = await import('../server/main.js');
  const running = await startProvider(flags);
  await io.out(`wsp: serving on ${running.url}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await running.close();
  return 0;
}

async function reportError(error: unknown, io: Io, json: boolean): Promise<number> {
  const [code, exit] = errorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  if (json) {
    const details = error instanceof WspApiError || error instanceof WspError ? error.details : undefined;
    await io.err(`${JSON.stringify({ error: { code, message, ...(details !== undefined ? { details } : {}) } })}\n`);
  } else if (error instanceof UsageError) {
    await io.err(`wsp: ${message}\nRun 'wsp --help' for usage.\n`);
  } else if (error instanceof WspApiError) {
    await io.err(`wsp: ${error.code}: ${message}\n`);
    if (Array.isArray(error.details)) {
      for (const d of error.details as Array<{ path?: unknown; message?: unknown }>) {
        if (typeof d?.path === 'string' && typeof d.message === 'string') await io.err(`  ${d.path}: ${d.message}\n`);
      }
    }
  } else if (error instanceof WspTimeoutError || error instanceof WspError) {
    // WspError: from `serve`, e.g. an invalid configuration (bad input → 2, like a usage error).
    await io.err(`wsp: ${message}\n`);
  } else {
    await io.err(`wsp: unexpected error: ${message}\n`);
  }
  return exit;
}

/** The error's code as the API spells it (the CLI's own: usage, timeout) and the exit code it means. */
function errorCode(error: unknown): [string, number] {
  if (error instanceof UsageError) return ['usage', 2];
  if (error instanceof WspApiError) return [error.code, 1];
  if (error instanceof WspTimeoutError) return ['timeout', 1];
  if (error instanceof WspError) return [error.code, error.code === 'bad_request' ? 2 : 1];
  return ['internal', 1];
}

/** Run when executed (directly, through npm run, or through the `bin` symlink), not when imported. */
if (process.argv[1] && fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(import.meta.url))) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    () => process.exit(1),
  );
}
