import type { SessionShell } from '../contract/session.js';

/**
 * What a session's shell is sent and what it answers (pure; shared/service/sessions.ts drives it).
 *
 * The shell is INTERACTIVE (`-i`) without a terminal: no job control, no readline (`--noediting`), no
 * prompts, no history. Interactive because SIGINT then abandons the input line being run, like Ctrl-C
 * at a terminal — a shell loop (`while true; do sleep 1; done`) ends too. A non-interactive shell that
 * traps INT (`trap ':' INT`) only loses the loop's current child and runs the loop on: an interrupt
 * could never end it. Interactive bash also ignores SIGTERM (a timeout's second signal reaches only
 * what it runs) and expands aliases.
 *
 * One run is one line: the command, base64 (any bytes but NUL, one line whatever it holds), eval'd in
 * the shell itself (cd, variables, functions, aliases persist), stdin from /dev/null (a run never eats
 * the shell's input), stdout/stderr into per-run files (never the shell's own output, which is capped
 * for the command's whole life); then `<nonce>:<seq> <exit code>` on the shell's stdout. An interrupted
 * line prints no sentinel: the provider writes one itself after the signal (`interruptedLine`); a
 * duplicate for the same seq is harmless (the first one after the run's offset counts).
 */

/** Where a session keeps its runs' output inside the workspace (0700, the workspace user's). */
export const sessionDir = (sessionId: string): string => `/tmp/.wsp-session-${sessionId}`;

export const runOutputPath = (sessionId: string, seq: number, stream: 'out' | 'err'): string =>
  `${sessionDir(sessionId)}/${seq}.${stream}`;

/**
 * The shell's argv: bash if asked and present, else sh — both interactive, without rc files. SIGINT
 * back to its default first where `env --default-signal` exists (GNU coreutils ≥ 8.31): a command that
 * a shell started in the background (runner.sh's supervisor on Docker and Fargate) inherits SIGINT
 * IGNORED, and a shell cannot undo that — nor could what it runs, so no interrupt would ever land.
 */
export function shellArgv(shell: SessionShell): string[] {
  const reset = "d=; if env --default-signal=INT true >/dev/null 2>&1; then d='env --default-signal=INT'; fi; ";
  const sh = 'exec $d sh -i';
  if (shell === 'sh') return ['sh', '-c', reset + sh];
  return [
    'sh',
    '-c',
    `${reset}if command -v bash >/dev/null 2>&1; then exec $d bash --noprofile --norc --noediting -i; fi; ${sh}`,
  ];
}

/** The shell's first input: quiet, no history, its output dir made. */
export function setupInput(sessionId: string): string {
  const dir = sessionDir(sessionId);
  return [
    'PS1= PS2= PS4=',
    'unset PROMPT_COMMAND MAILCHECK HISTFILE 2>/dev/null',
    'set +H 2>/dev/null; set +o history 2>/dev/null',
    `\\command -p mkdir -p -m 700 '${dir}'`,
    '',
  ].join('\n');
}

/**
 * The line that runs `command` as run `seq`, dropping the previous run's output files first. It says
 * `<nonce>:<seq> started` first: a SIGINT that reaches the shell before it has READ the line is lost
 * (the shell abandons an empty input line, then reads this one and runs it whole), so an interrupt
 * waits for that word before it signals (sessions.ts).
 */
export function runLine(sessionId: string, nonce: string, seq: number, command: string): string {
  const b64 = Buffer.from(command, 'utf8').toString('base64');
  const dir = sessionDir(sessionId);
  return (
    `\\command printf '%s started\\n' '${nonce}:${seq}'; ` +
    `\\command -p rm -f '${dir}/${seq - 1}.out' '${dir}/${seq - 1}.err'; ` +
    `{ eval "$(\\command printf %s '${b64}' | \\command -p base64 -d)"; } </dev/null ` +
    `>'${runOutputPath(sessionId, seq, 'out')}' 2>'${runOutputPath(sessionId, seq, 'err')}'; ` +
    `\\command printf '%s %d\\n' '${nonce}:${seq}' "$?"\n`
  );
}

/** After an interrupt: the sentinel the abandoned line no longer prints (exit `code`). */
export function interruptedLine(nonce: string, seq: number, code: number): string {
  return `\\command printf '%s %d\\n' '${nonce}:${seq}' ${code}\n`;
}

/**
 * Run `seq`'s sentinel in `stdout` (the shell's output from the run's offset): its exit code and where
 * its line ends (just past the newline); undefined while there is none. `<nonce>:<seq> started` is not one.
 */
export function findSentinel(stdout: Buffer, nonce: string, seq: number): { code: number; end: number } | undefined {
  const text = stdout.toString('latin1');
  const marker = `${nonce}:${seq} `;
  let at = text.indexOf(marker);
  while (at >= 0) {
    if (at === 0 || text[at - 1] === '\n') {
      const end = text.indexOf('\n', at);
      if (end < 0) return undefined; // the line is still being written
      const word = text.slice(at + marker.length, end);
      if (/^\d+$/.test(word)) return { code: Number(word), end: end + 1 };
    }
    at = text.indexOf(marker, at + 1);
  }
  return undefined;
}

/** Has run `seq` begun (its `started` word is in `stdout`, the shell's output from the run's offset)? */
export function runStarted(stdout: Buffer, nonce: string, seq: number): boolean {
  const text = stdout.toString('latin1');
  const line = `${nonce}:${seq} started\n`;
  const at = text.indexOf(line);
  return at === 0 || (at > 0 && text[at - 1] === '\n');
}

/**
 * A script (run as a system command through the Files machinery) printing both output files of a run,
 * each cut at `max` bytes: a header line `<out size> <err size>`, then min(size, max) bytes of each.
 * A missing file counts as empty. The files only grow while the run runs, so the head is within size.
 */
export const READ_RUN_SCRIPT = [
  'max=$1; out=$2; err=$3',
  'size() { if [ -f "$1" ]; then wc -c < "$1" | tr -d " "; else echo 0; fi; }',
  'so=$(size "$out"); se=$(size "$err")',
  'ko=$so; [ "$ko" -gt "$max" ] && ko=$max',
  'ke=$se; [ "$ke" -gt "$max" ] && ke=$max',
  'printf "%s %s\\n" "$so" "$se"',
  '[ "$ko" -gt 0 ] && head -c "$ko" "$out"',
  '[ "$ke" -gt 0 ] && head -c "$ke" "$err"',
  'exit 0',
].join('\n');

export interface RunOutput {
  stdout: { data: Buffer; bytes: number; truncated: boolean };
  stderr: { data: Buffer; bytes: number; truncated: boolean };
}

/** READ_RUN_SCRIPT's answer → both streams (undefined when it is not one). */
export function parseRunOutput(answer: Buffer, max: number): RunOutput | undefined {
  const newline = answer.indexOf(0x0a);
  if (newline < 0) return undefined;
  const [so, se] = answer.subarray(0, newline).toString('latin1').split(' ').map(Number);
  if (!Number.isSafeInteger(so) || !Number.isSafeInteger(se)) return undefined;
  const ko = Math.min(so!, max);
  const ke = Math.min(se!, max);
  const body = answer.subarray(newline + 1);
  return {
    stdout: { data: body.subarray(0, ko), bytes: so!, truncated: so! > max },
    stderr: { data: body.subarray(ko, ko + ke), bytes: se!, truncated: se! > max },
  };
}
