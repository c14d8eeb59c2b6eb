import { BadRequestError, StepFailedError, WspError } from '../contract/errors.js';
import type { ArchiveReadOptions, FilePathParams } from '../contract/inputs.js';
import type { ArchiveWritten } from '../contract/views.js';
import { ARCHIVE_EXIT, archiveOpArgv } from '../workspace/archive-ops.js';
import type { ServiceDeps } from './deps.js';
import type { Files } from './files.js';

/** The count `archive-in` prints, or a refusal line. */
const SMALL_OUTPUT_BYTES = 64 * 1024;

/**
 * The archive routes (GET/PUT /workspaces/{id}/archive): a directory as a tar, out and in, made and
 * unpacked by GNU tar INSIDE the workspace as its user (shared/workspace/archive-ops.ts says what an
 * extraction refuses). They run as Files operations do — same readiness, gate, confinement, and the
 * backend's own path for large stdin/stdout (Fargate: S3, never the exec PTY) — through Files.run.
 */
export class Archives {
  constructor(
    private readonly deps: ServiceDeps,
    private readonly files: Files,
  ) {}

  /** A tar of the directory; over files.maxBytes (or the entry point's cap) → 413. */
  async read(workspaceId: string, input: FilePathParams, options: ArchiveReadOptions = {}): Promise<Buffer> {
    const max = Math.min(this.deps.config.files.maxBytes, options.maxBytes ?? Number.MAX_SAFE_INTEGER);
    return this.files.run(workspaceId, input.path, async (plan, abs, exec) => {
      const out = await exec(archiveOpArgv('archive-out', plan.home, abs, [String(max)]), {
        // The script cuts the tar after max + 1 bytes: one more than allowed says "too large".
        maxOutputBytes: max + 1,
        stdoutOnExit: [0, ARCHIVE_EXIT.failed],
      });
      // Looked at before the exit code: the cut itself makes tar fail (SIGPIPE).
      if (out.stdout.length > max)
        throw new WspError(
          'payload_too_large',
          `the archive of '${input.path}' is larger than ${max} bytes (files.maxBytes, or what one answer may carry): archive a smaller directory, or read the files one by one`,
          { details: { maxBytes: max } },
        );
      if (out.code === ARCHIVE_EXIT.failed) throw new StepFailedError('archive', firstLine(out.stderr));
      return out.stdout;
    });
  }

  /** Extract a tar into the directory (created if missing); refusals are 400 naming the rule. */
  async write(workspaceId: string, input: FilePathParams, body: Buffer): Promise<ArchiveWritten> {
    const max = this.deps.config.files.maxBytes;
    if (body.length > max)
      throw new WspError('payload_too_large', `the archive is ${body.length} bytes; files.maxBytes is ${max}`, {
        details: { maxBytes: max },
      });
    return this.files.run(workspaceId, input.path, async (plan, abs, exec) => {
      const out = await exec(archiveOpArgv('archive-in', plan.home, abs, []), {
        stdin: body,
        maxOutputBytes: SMALL_OUTPUT_BYTES,
        stdoutOnExit: [0, ARCHIVE_EXIT.failed],
      });
      if (out.code === ARCHIVE_EXIT.failed) {
        const message = firstLine(out.stderr);
        throw new BadRequestError(message, [{ path: 'body', message }]);
      }
      const entries = Number(out.stdout.toString('latin1').trim());
      if (!Number.isSafeInteger(entries)) throw new StepFailedError('archive', 'no entry count in the answer');
      return { path: abs, entries };
    });
  }
}

function firstLine(stderr: string): string {
  return stderr.replace(/^wsp-files: /, '').split('\n')[0] || 'failed';
}
