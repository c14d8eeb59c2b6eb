import path from 'node:path';
import type { CommandStatus, WorkspaceCommands } from '../contract/backend.js';
import { BadRequestError, ConflictError, StepFailedError, WspError } from '../contract/errors.js';
import type {
  FileDeleteParams,
  FileListParams,
  FilePathParams,
  FileReadOptions,
  FileWriteParams,
} from '../contract/inputs.js';
import type { FileContent, FileEntry, FileList, FileStat, FileType } from '../contract/views.js';
import type { WorkspacePlan } from '../contract/plan.js';
import type { WorkspaceRecord } from '../contract/workspace.js';
import { bestEffort } from '../lib/best-effort.js';
import { FILE_EXIT, fileOpArgv } from '../workspace/file-ops.js';
import type { ServiceDeps } from './deps.js';
import { refuseIfOverDisk } from './disk-limit.js';
import { newSystemCommandId } from './ids.js';
import type { WorkspaceRecords } from './records.js';
import type { WorkspaceGate } from './workspace-gate.js';

/** Room for the header line `size first\n` a read writes before the bytes. */
const READ_HEADER_BYTES = 64;
/** Largest piece of command output asked for at once. */
const READ_PAGE_BYTES = 8 * 1024 * 1024;
/** A stat record, or an error line: small. */
const SMALL_OUTPUT_BYTES = 64 * 1024;
/** Bytes per list entry at most: 4 KiB path + target + fields. */
const LIST_ENTRY_BYTES = 8 * 1024 + 64;

/**
 * The Files API. Each operation is one short command inside the workspace, as its user, running the
 * script of shared/workspace/file-ops.ts — so it works the same on every backend, symlinks resolve in
 * the sandbox's view of the filesystem, and nothing is done with more rights than the workspace has.
 * Uploads travel as the command's stdin, downloads as its stdout (each backend's own path for them:
 * Fargate carries a large stdin through S3).
 *
 * Like a command start, an operation needs the workspace ready (409 otherwise) and runs inside the
 * workspace gate: a reset or delete begun meanwhile waits for it to end (and refuses new ones), so an
 * upload is never half-written under a reset. Across processes the record is read again beside the
 * operation; a workspace that left `ready` meanwhile gets the operation killed and a 409.
 */
export class Files {
  constructor(
    private readonly deps: ServiceDeps,
    private readonly records: WorkspaceRecords,
    private readonly gate: WorkspaceGate,
  ) {}

  async read(workspaceId: string, input: FilePathParams, options: FileReadOptions = {}): Promise<FileContent> {
    const { range } = options;
    const max = Math.min(this.deps.config.files.maxBytes, options.maxBytes ?? Number.MAX_SAFE_INTEGER);
    const kind =
      range === undefined
        ? ['all']
        : 'suffix' in range
          ? ['suffix', String(range.suffix)]
          : ['range', String(range.first), range.last === undefined ? '' : String(range.last)];
    return this.run(workspaceId, input.path, async (plan, abs, exec) => {
      const out = await exec(fileOpArgv('read', plan.home, [abs, String(max), ...kind]), {
        maxOutputBytes: max + READ_HEADER_BYTES,
        stdoutOnExit: [0, FILE_EXIT.range, FILE_EXIT.tooLarge],
      });
      const newline = out.stdout.indexOf(0x0a);
      const [size, first] = out.stdout.subarray(0, Math.max(newline, 0)).toString('latin1').split(' ').map(Number);
      if (newline < 0 || !Number.isSafeInteger(size) || !Number.isSafeInteger(first))
        throw new StepFailedError('file read', 'no size line in the answer from the workspace');
      if (out.code === FILE_EXIT.range)
        throw new WspError('range_not_satisfiable', `the range is outside the file (${size} bytes)`, {
          details: { size },
        });
      if (out.code === FILE_EXIT.tooLarge)
        throw new WspError(
          'payload_too_large',
          `the file is ${size} bytes; more than ${max} bytes at once: read it in ranges (Range: bytes=…)`,
          { details: { size, maxBytes: max } },
        );
      const data = out.stdout.subarray(newline + 1);
      // The bytes actually read: a file that shrank meanwhile gives fewer (never more: dd counts).
      return {
        data,
        size: size!,
        ...(range === undefined ? {} : { range: { first: first!, last: first! + data.length - 1 } }),
      };
    });
  }

  async write(workspaceId: string, input: FileWriteParams, body: Buffer): Promise<FileStat> {
    const max = this.deps.config.files.maxBytes;
    if (body.length > max)
      throw new WspError('payload_too_large', `the upload is ${body.length} bytes; files.maxBytes is ${max}`, {
        details: { maxBytes: max },
      });
    return this.run(workspaceId, input.path, async (plan, abs, exec) => {
      const out = await exec(fileOpArgv('write', plan.home, [abs, input.mode ?? '']), {
        stdin: body,
        maxOutputBytes: SMALL_OUTPUT_BYTES,
      });
      return parseStat(out.stdout);
    });
  }

  async stat(workspaceId: string, input: FilePathParams): Promise<FileStat> {
    return this.run(workspaceId, input.path, async (plan, abs, exec) => {
      const out = await exec(fileOpArgv('stat', plan.home, [abs]), { maxOutputBytes: SMALL_OUTPUT_BYTES });
      return parseStat(out.stdout);
    });
  }

  async list(workspaceId: string, input: FileListParams): Promise<FileList> {
    const cap = this.deps.config.files.maxListEntries;
    return this.run(workspaceId, input.path, async (plan, abs, exec) => {
      const out = await exec(fileOpArgv('list', plan.home, [abs, String(input.recursive), String(cap)]), {
        maxOutputBytes: (cap + 1) * LIST_ENTRY_BYTES,
      });
      return parseList(abs, out.stdout, cap);
    });
  }

  async remove(workspaceId: string, input: FileDeleteParams): Promise<void> {
    await this.run(workspaceId, input.path, async (plan, abs, exec) => {
      await exec(fileOpArgv('delete', plan.home, [abs, String(input.recursive)]), {
        maxOutputBytes: SMALL_OUTPUT_BYTES,
      });
    });
  }

  /**
   * One operation on a ready workspace, inside its gate: the path checked, then `op` given a runner
   * that starts the script as a system command and waits for it. Also the archive routes' (archive.ts).
   */
  run<T>(
    workspaceId: string,
    rawPath: string,
    op: (plan: WorkspacePlan, abs: string, exec: Exec) => Promise<T>,
  ): Promise<T> {
    return this.gate.start(workspaceId, async () => {
      const ws = await this.ready(workspaceId);
      const abs = confinedPath(ws.plan, rawPath);
      return op(ws.plan, abs, (argv, options) => this.exec(ws, argv, options));
    });
  }

  /**
   * The script as one system command, forgotten once its result is read or the operation failed
   * (WorkspaceCommands.forget): its dir would otherwise stay for the workspace's life, a download's with
   * a whole copy of the file. The id is fresh and never started again, so forgetting it breaks no
   * start's idempotency; a command that could not be stopped is refused by the backend (logged).
   */
  private async exec(ws: WorkspaceRecord, argv: string[], options: ExecOptions): Promise<ExecResult> {
    const { commands } = this.deps.backend.open(ws.backend!, ws.plan);
    const commandId = newSystemCommandId();
    try {
      return await this.execOnce(ws, commands, commandId, argv, options);
    } finally {
      if (commands.forget)
        await bestEffort(commands.forget(commandId), this.deps.log, 'forgetting a file operation command');
    }
  }

  private async execOnce(
    ws: WorkspaceRecord,
    commands: WorkspaceCommands,
    commandId: string,
    argv: string[],
    options: ExecOptions,
  ): Promise<ExecResult> {
    const timeoutMs = this.deps.config.files.timeoutMs;
    await commands.start({
      commandId,
      argv,
      cwd: ws.plan.home,
      env: { ...ws.plan.env },
      timeoutMs,
      maxOutputBytes: options.maxOutputBytes,
      network: 'none',
      ...(options.stdin ? { stdin: options.stdin } : {}),
    });
    const [status] = await Promise.all([this.waitEnd(commands, commandId, timeoutMs), this.stillReady(ws, commandId)]);
    const stderr = (await commands.read(commandId, 'stderr', 0, SMALL_OUTPUT_BYTES)).data.toString('utf8').trim();
    const code = status.state === 'exited' ? status.exitCode : null;
    const ok = code !== null && (options.stdoutOnExit ?? [0]).includes(code);
    if (!ok) throw fileError(status, stderr);
    if (status.stdout.truncated)
      throw new StepFailedError('file operation', 'its answer exceeded the output kept from the workspace');
    return { code: code!, stdout: await readAll(commands, commandId, status.stdout.bytes), stderr };
  }

  private async waitEnd(commands: WorkspaceCommands, commandId: string, timeoutMs: number): Promise<CommandStatus> {
    // The command's own timeout kills it; the margin covers the backend's report of that.
    const deadline = Date.now() + timeoutMs + 30_000;
    let status = await commands.wait(commandId, Math.min(25_000, timeoutMs + 5_000));
    while (status.state === 'running' && Date.now() < deadline) status = await commands.wait(commandId, 25_000);
    if (status.state === 'running') {
      await bestEffort(commands.kill(commandId, 'file operation overran'), this.deps.log, 'killing a file operation');
      throw new StepFailedError('file operation', `still running after ${timeoutMs} ms`);
    }
    return status;
  }

  /** See the class comment: another process may have begun a reset or delete since the ready check. */
  private async stillReady(ws: WorkspaceRecord, commandId: string): Promise<void> {
    const now = await this.records.get(ws.id);
    if (now.status === 'ready' && now.backend !== undefined) return;
    await bestEffort(
      this.deps.backend.open(ws.backend!, ws.plan).commands.kill(commandId, `workspace became ${now.status}`),
      this.deps.log,
      'killing a file operation started while the workspace left ready',
    );
    throw new ConflictError(`workspace '${ws.id}' is ${now.status}; files need it ready`, {
      details: { status: now.status },
    });
  }

  private async ready(workspaceId: string): Promise<WorkspaceRecord> {
    const ws = await this.records.get(workspaceId);
    if (ws.status !== 'ready' || !ws.backend)
      throw new ConflictError(`workspace '${workspaceId}' is ${ws.status}; files need it ready`, {
        details: { status: ws.status },
      });
    refuseIfOverDisk(ws);
    return ws;
  }
}

export interface ExecOptions {
  stdin?: Buffer;
  maxOutputBytes: number;
  /** Exit codes whose stdout the operation reads itself (default: only 0). */
  stdoutOnExit?: number[];
}
export interface ExecResult {
  code: number;
  stdout: Buffer;
  /** Its first 64 KiB, trimmed. */
  stderr: string;
}
export type Exec = (argv: string[], options: ExecOptions) => Promise<ExecResult>;

/** Every kept byte of a finished command's stdout: by the backend's bulk path when it has one, else in pages. */
async function readAll(commands: WorkspaceCommands, commandId: string, bytes: number): Promise<Buffer> {
  if (commands.readAll) {
    const data = await commands.readAll(commandId, 'stdout', bytes);
    if (data.length !== bytes) throw new StepFailedError('file operation', 'its answer could not be read back whole');
    return data;
  }
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset < bytes) {
    const chunk = await commands.read(commandId, 'stdout', offset, Math.min(READ_PAGE_BYTES, bytes - offset));
    if (chunk.data.length === 0) break;
    parts.push(chunk.data);
    offset = chunk.nextOffset;
  }
  if (offset < bytes) throw new StepFailedError('file operation', 'its answer could not be read back whole');
  return Buffer.concat(parts);
}

/**
 * The absolute guest path `raw` names (relative: to the workdir), checked lexically: inside the home or
 * /tmp. The script checks again inside the workspace, after symlinks (file-ops.ts).
 */
function confinedPath(plan: WorkspacePlan, raw: string): string {
  const abs = path.posix.resolve(plan.workdir, raw);
  const within = (dir: string): boolean => {
    const rel = path.posix.relative(dir, abs);
    return !rel.startsWith('..') && !path.posix.isAbsolute(rel);
  };
  if (!within(plan.home) && !within('/tmp'))
    throw new BadRequestError(
      `path '${raw}' is outside the workspace: paths must stay inside the home (${plan.home}) or /tmp`,
      [{ path: 'query.path', message: `must stay inside ${plan.home} or /tmp` }],
    );
  return abs;
}

/** The script's exit code → the domain error (its stderr line is the message). */
function fileError(status: CommandStatus, stderr: string): Error {
  const message = stderr.replace(/^wsp-files: /, '').split('\n')[0] || 'failed';
  if (status.state !== 'exited')
    return new StepFailedError(
      'file operation',
      status.state === 'killed' ? `killed (${status.reason ?? 'timeout'})` : `${status.state}`,
    );
  switch (status.exitCode) {
    case FILE_EXIT.outside:
    case FILE_EXIT.wrongType:
      return new BadRequestError(message, [{ path: 'query.path', message }]);
    case FILE_EXIT.notFound:
      return new WspError('not_found', message);
    case FILE_EXIT.notEmpty:
      return new ConflictError(message);
    case FILE_EXIT.denied:
      return new WspError('forbidden', message);
    default:
      return new StepFailedError('file operation', `exit code ${status.exitCode}: ${message}`);
  }
}

const TYPES: Record<string, FileType> = { f: 'file', d: 'dir', l: 'symlink' };

/** `type\tmode\tsize\tmtime` + target, as find printed them. */
function statFields(fields: string[], target: string): FileStat {
  const [y = '', m = '', s = '', t = ''] = fields;
  const type = TYPES[y] ?? 'other';
  return {
    type,
    size: Number(s),
    mode: m.padStart(4, '0'),
    mtime: new Date(Math.floor(Number(t) * 1000)).toISOString(),
    ...(type === 'symlink' ? { target } : {}),
  };
}

function parseStat(stdout: Buffer): FileStat {
  const [head = '', target = ''] = stdout.toString('utf8').split('\0');
  const fields = head.split('\t');
  if (fields.length !== 4) throw new StepFailedError('file operation', 'no stat record in the answer');
  return statFields(fields, target);
}

/** Records → entries sorted by path; names that are not UTF-8 are counted, not shown. */
function parseList(dir: string, stdout: Buffer, cap: number): FileList {
  const records = splitNul(stdout);
  const entries: FileEntry[] = [];
  let skipped = 0;
  let seen = 0;
  for (let i = 0; i + 1 < records.length && seen < cap; i += 2, seen += 1) {
    const head = records[i]!;
    const tab = nthIndex(head, 0x09, 4);
    const rel = utf8(head.subarray(tab + 1));
    const target = utf8(records[i + 1]!);
    if (rel === undefined || target === undefined) {
      skipped += 1;
      continue;
    }
    const fields = head.subarray(0, tab).toString('latin1').split('\t');
    entries.push({ name: path.posix.basename(rel), path: path.posix.join(dir, rel), ...statFields(fields, target) });
  }
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { path: dir, entries, truncated: records.length / 2 > cap, skippedNonUtf8: skipped };
}

function splitNul(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = data.indexOf(0, start); i >= 0; i = data.indexOf(0, start)) {
    out.push(data.subarray(start, i));
    start = i + 1;
  }
  return out;
}

function nthIndex(data: Buffer, byte: number, n: number): number {
  let at = -1;
  for (let k = 0; k < n; k += 1) at = data.indexOf(byte, at + 1);
  return at;
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });
function utf8(data: Buffer): string | undefined {
  try {
    return STRICT_UTF8.decode(data);
  } catch {
    return undefined;
  }
}
