import { parseArgs } from 'node:util';

/**
 * Command-line parsing for `wsp` (node:util parseArgs, no dependency). One option table for all
 * subcommands; each subcommand then says which options it accepts, so a misplaced flag is a usage
 * error (exit 2) rather than silently ignored.
 */

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

const OPTIONS = {
  url: { type: 'string' },
  token: { type: 'string' },
  'data-dir': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  ref: { type: 'string', multiple: true },
  env: { type: 'string', multiple: true },
  label: { type: 'string', multiple: true },
  'ttl-seconds': { type: 'string' },
  'idempotency-key': { type: 'string' },
  'no-wait': { type: 'boolean' },
  'timeout-ms': { type: 'string' },
  cwd: { type: 'string' },
  command: { type: 'string', short: 'c' },
  'no-stdin': { type: 'boolean' },
  repo: { type: 'string', multiple: true },
  checkout: { type: 'string' },
  recreate: { type: 'boolean' },
  mode: { type: 'string' },
  recursive: { type: 'boolean', short: 'r' },
  count: { type: 'string', short: 'n' },
  name: { type: 'string' },
  'from-snapshot': { type: 'string' },
  shell: { type: 'string' },
  progress: { type: 'boolean' },
} as const;

type OptionName = keyof typeof OPTIONS;
const GLOBAL: OptionName[] = ['url', 'token', 'data-dir', 'json', 'help'];

/** Subcommand → [positional names (`?`: optional, last only), extra options]. */
export const SUBCOMMANDS = {
  setup: [
    [],
    ['ref', 'env', 'label', 'ttl-seconds', 'idempotency-key', 'no-wait', 'timeout-ms', 'from-snapshot', 'progress'],
  ],
  create: [
    [],
    ['ref', 'env', 'label', 'ttl-seconds', 'idempotency-key', 'no-wait', 'timeout-ms', 'from-snapshot', 'progress'],
  ],
  ls: [[], []],
  show: [['id'], []],
  exec: [['id'], ['cwd', 'timeout-ms', 'env', 'command', 'no-stdin']],
  shell: [['id'], ['cwd', 'env']],
  fetch: [['id'], ['repo', 'checkout']],
  reset: [['id'], ['ref', 'recreate']],
  changes: [['id'], []],
  events: [['id'], []],
  usage: [['id'], []],
  rm: [['id'], []],
  cp: [
    ['source', 'destination'],
    ['mode', 'recursive', 'progress'],
  ],
  files: [['action', 'id', 'path?'], ['recursive']],
  smoke: [[], ['timeout-ms']],
  fork: [['id'], ['count', 'label', 'ttl-seconds', 'no-wait', 'timeout-ms', 'progress']],
  snapshot: [
    ['action', 'arg?'],
    ['name', 'label'],
  ],
  session: [
    ['action', 'id', 'sid?'],
    ['cwd', 'env', 'shell', 'command', 'timeout-ms'],
  ],
  mcp: [[], []],
} as const satisfies Record<string, readonly [readonly string[], readonly OptionName[]]>;

export type Subcommand = keyof typeof SUBCOMMANDS;

/** Every flag `subcommand` accepts (its own and the global ones), as typed: `--name` and `-x`. */
export function optionsOf(subcommand: Subcommand): string[] {
  const names = [...new Set<OptionName>([...GLOBAL, ...(SUBCOMMANDS[subcommand][1] as readonly OptionName[])])];
  return names.flatMap((n) => {
    const short = (OPTIONS[n] as { short?: string }).short;
    return short === undefined ? [`--${n}`] : [`--${n}`, `-${short}`];
  });
}

export interface ParsedArgs {
  subcommand: Subcommand | undefined;
  /** Positionals after the subcommand, before `--`. */
  positionals: string[];
  /** Everything after `--` (exec's argv). */
  rest: string[];
  values: {
    url?: string;
    token?: string;
    'data-dir'?: string;
    json?: boolean;
    help?: boolean;
    ref?: string[];
    env?: string[];
    label?: string[];
    'ttl-seconds'?: string;
    'idempotency-key'?: string;
    'no-wait'?: boolean;
    'timeout-ms'?: string;
    cwd?: string;
    command?: string;
    'no-stdin'?: boolean;
    recreate?: boolean;
    mode?: string;
    recursive?: boolean;
    repo?: string[];
    checkout?: string;
    count?: string;
    name?: string;
    'from-snapshot'?: string;
    shell?: string;
    progress?: boolean;
  };
}

function tokenize(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true, tokens: true });
  } catch (error) {
    const message = (error as Error).message;
    const unknown = /Unknown option '([^']+)'/.exec(message)?.[1];
    if (unknown) throw new UsageError(`unknown option '${unknown}' (arguments of the command itself go after --)`);
    throw new UsageError(message.split('\n')[0] ?? message);
  }
}

export function parseCli(argv: string[]): ParsedArgs {
  const parsed = tokenize(argv);
  const terminator = parsed.tokens.find((t) => t.kind === 'option-terminator')?.index ?? Infinity;
  const before = parsed.tokens
    .filter((t) => t.kind === 'positional' && t.index < terminator)
    .map((t) => (t as { value: string }).value);
  const rest = parsed.tokens
    .filter((t) => t.kind === 'positional' && t.index > terminator)
    .map((t) => (t as { value: string }).value);
  const [name, ...positionals] = before;
  const values = parsed.values as ParsedArgs['values'];
  if (name === undefined) return { subcommand: undefined, positionals: [], rest, values };
  if (!(name in SUBCOMMANDS)) throw new UsageError(`unknown command '${name}'`);
  const subcommand = name as Subcommand;
  const [allNames, extra] = SUBCOMMANDS[subcommand];
  const names = (allNames as readonly string[]).filter((n) => !n.endsWith('?'));
  const allowed = new Set<string>([...GLOBAL, ...extra]);
  for (const token of parsed.tokens) {
    if (token.kind === 'option' && !allowed.has(token.name))
      throw new UsageError(`${token.rawName} does not apply to '${subcommand}'`);
  }
  if (!values.help) {
    if (positionals.length < names.length)
      throw new UsageError(`'${subcommand}' needs ${names.map((n) => `<${n}>`).join(' ')}`);
    if (positionals.length > allNames.length)
      throw new UsageError(
        `unexpected argument '${positionals[allNames.length]}' (arguments of the command itself go after --)`,
      );
    if (rest.length > 0 && subcommand !== 'exec' && subcommand !== 'shell' && subcommand !== 'session')
      throw new UsageError(`'${subcommand}' takes no arguments after --`);
  }
  return { subcommand, positionals, rest, values };
}

/** `--env K=V` style values → a map; a value without '=' or with an empty key is a usage error. */
export function keyValues(flag: string, values: string[] | undefined): Record<string, string> | undefined {
  if (values === undefined || values.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const item of values) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`--${flag} expects KEY=VALUE, got '${item}'`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

/** A non-negative integer flag, or undefined when absent. */
export function integer(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${flag} expects a non-negative integer, got '${value}'`);
  return Number(value);
}

export const USAGE = `Usage: wsp <command> [options]

Commands:
  serve [provider flags]                 run the provider (same as npm start; see --config, --port, --mode)
  completion bash                        a bash completion script: source <(wsp completion bash)
  setup [--ref NAME=REF]... [--env K=V]... [--label K=V]... [--ttl-seconds N]
        [--idempotency-key KEY] [--no-wait] [--timeout-ms N]
                                         create a workspace, show progress, print its id
  create [setup's options] [--from-snapshot SID]
                                         the same (setup); --from-snapshot: from a snapshot
  ls                                     list workspaces
  show <id>                              show one workspace
  exec <id> [--cwd DIR] [--timeout-ms N] [--env K=V]... [--no-stdin] -- ARGV...
  exec <id> -c "SHELL STRING"            run a command, stream its output, exit with its exit code
                                         (stdin is sent when it is not a terminal)
  shell <id> [--cwd DIR] [--env K=V]... [-- ARGV...]
                                         an interactive terminal in the workspace (its shell, or
                                         ARGV) of this terminal's size; keys go in raw (local server)
  fetch <id> [--repo NAME]... [--checkout NAME=REF]
                                         fetch new commits (provider-side credentials)
  reset <id> [--ref NAME=REF]... [--recreate]
                                         return to the baseline (optionally at new refs);
                                         --recreate: new compute from the cache entry instead
  changes <id>                           status and diff against the baseline
  events <id>                            its lifecycle webhook events and how each delivery went
  usage <id>                             CPU, memory, disk and pids of the workspace now
  smoke [--timeout-ms N]                 the whole loop once with timings (create, command, reset,
                                         delete): run it after a deployment; exit 1 if a check failed
  rm <id>                                delete a workspace
  cp <src> <dest> [--mode 0644]          copy a file into or out of a workspace: one side is ID:PATH
                                         (PATH relative to the workdir or absolute; ID:dir/ keeps the
                                         name), the other a local path or - (stdin / stdout)
  cp -r <srcdir> <destdir>               copy a directory's contents into or out of a workspace (the
                                         archive routes; the local tar packs/unpacks, - = a tar on
                                         stdin / stdout); destdir is created if missing
  files ls <id> [path] [-r]              list a directory of the workspace (-r: the whole tree)
  files stat <id> <path>                 type, mode, size, mtime of one path (a symlink itself)
  files rm <id> <path> [-r]              delete a file, symlink or directory (-r: a non-empty one)
  fork <id> [-n N] [--label K=V]... [--ttl-seconds N] [--no-wait] [--timeout-ms N]
                                         N workspaces from the workspace's current state (files,
                                         git state; not its processes); prints their ids once ready
  snapshot create <id> [--name NAME] [--label K=V]...
                                         a snapshot of the current state; prints its id
  snapshot ls | show <sid> | rm <sid>    list, show, delete snapshots
  session create <id> [--cwd DIR] [--env K=V]... [--shell bash|sh]
                                         a persistent shell (cd, variables, functions persist
                                         between runs); prints its id
  session run <id> <sid> [--timeout-ms N] (-c "SHELL STRING" | -- WORDS...)
                                         one command in it: its stdout/stderr, exits with its code
  session interrupt <id> <sid>           Ctrl-C what it runs (the shell lives on)
  session rm <id> <sid> | ls <id> [sid]  end one (kills the shell) | list them (or show one)
  mcp                                    an MCP server on stdin/stdout: workspaces, commands, sessions,
                                         files, fetch, reset, changes and fork as tools for an agent,
                                         forwarded to this server (--url/--token as for every command)

Options (every command):
  --url URL          server (env WSP_URL, default http://127.0.0.1:7070)
  --token TOKEN      bearer token (env WSP_TOKEN; prefer the env: flags are visible to other users)
                     default: the contents of <data dir>/auth-token
  --data-dir DIR     provider data dir for the token file (env WSP_DATA_DIR, default .wsp)
  --json             print one JSON document on stdout (the API's answer); an error as the API's
                     error body on stderr; the exit codes stay the same
  -h, --help         this help

Progress (setup, create, fork, cp) goes to stderr: a status line redrawn in place when stderr is a
terminal, plain lines otherwise; none with --json unless --progress is given.

Exit codes: 0 ok; 1 API or connection error (exec: the command's own exit code); 2 usage error.
`;
