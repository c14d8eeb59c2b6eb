import { z } from 'zod';
import { envMap, gitRef, relativePath, webhookEvents, webhookUrl } from '../config/schema.js';
import { WEBHOOK_EVENT_TYPES } from '../contract/webhooks.js';
import type { AllTrue, Equal } from './same-type.js';
import type {
  CreateSessionParams,
  CreateSnapshotParams,
  CreateWorkspaceParams,
  ForkParams,
  FetchParams,
  FileDeleteParams,
  FileListParams,
  FilePathParams,
  FileWriteParams,
  OperationWaitParams,
  ReadCommandParams,
  ResetParams,
  RunCommandParams,
  RunInSessionParams,
  SessionWaitParams,
  StdinParams,
  TerminalSizeParams,
} from '../contract/inputs.js';
import type {
  ArchiveWritten,
  ChangesView,
  CommandView,
  FetchResult,
  FileEntry,
  FileList,
  FileStat,
  ForkView,
  OperationView,
  ResetResult,
  SessionRunView,
  SessionView,
  SnapshotResult,
  SnapshotView,
  StreamView,
  UsageView,
  WorkspaceView,
} from '../contract/views.js';

/**
 * Request and response schemas of the HTTP API. The route table validates requests with these,
 * and /openapi.json is generated from the same objects (z.toJSONSchema), so the two cannot drift.
 * The types themselves belong to the contract (shared/contract/inputs.ts, views.ts: the service's
 * language); `SchemasMatchContract` below fails to compile if a schema and its type disagree.
 */

export const workspaceId = z.string().regex(/^ws-[a-z0-9]{8,40}$/, 'is not a workspace id');
export const commandId = z.string().regex(/^(cmd|sys)-[a-z0-9]{8,40}$/, 'is not a command id');
export const operationId = z.string().regex(/^op-[a-f0-9]{8,40}$/, 'is not an operation id');
const labelMap = z.record(z.string().regex(/^[A-Za-z0-9._/-]{1,63}$/, 'is not a valid label key'), z.string().max(256));
const repoName = relativePath.or(z.literal('.'));

export const createWorkspaceBody = z
  .object({
    /** Ref (branch, tag or commit) per repository name (its configured path). */
    refs: z.record(repoName, gitRef).optional(),
    env: envMap.optional(),
    labels: labelMap.optional(),
    ttlSeconds: z
      .number()
      .int()
      .min(60)
      .max(30 * 24 * 3600)
      .optional(),
    idempotencyKey: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[\x21-\x7e]+$/)
      .optional(),
    /** Start from this snapshot (its files, git state and plan) instead of provisioning; not with `refs`. */
    fromSnapshot: z
      .string()
      .regex(/^snap-[a-f0-9]{8,40}$/, 'is not a snapshot id')
      .optional(),
    /** This workspace's own lifecycle webhook, besides the configured ones (docs/webhooks.md). */
    webhook: z
      .object({
        url: webhookUrl,
        events: webhookEvents,
        /** The signing key (16..256 printable characters; `whsec_<base64>` is read as Standard Webhooks does). */
        secret: z
          .string()
          .min(16)
          .max(256)
          .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces'),
      })
      .strict()
      .optional(),
  })
  .strict();

/** A terminal's size in character cells. */
export const terminalSize = z
  .object({ rows: z.number().int().min(1).max(1000), cols: z.number().int().min(1).max(1000) })
  .strict();

export const runCommandBody = z
  .object({
    argv: z.array(z.string().max(131_072)).min(1).max(4096).optional(),
    /** A shell string, run with `bash -lc` if bash exists, else `sh -c`. */
    command: z.string().min(1).max(131_072).optional(),
    /** Relative to the workspace's workdir, or absolute; must stay inside the workspace home. */
    cwd: z.string().min(1).max(4096).optional(),
    env: envMap.optional(),
    stdin: z
      .string()
      .max(8 * 1024 * 1024)
      .optional(),
    stdinEncoding: z.enum(['utf8', 'base64']).default('utf8'),
    /** Keep stdin open (after `stdin`) for POST …/commands/{cid}/stdin, until `?eof=true`. */
    openStdin: z.boolean().optional(),
    /** Run under a pseudo-terminal of this size: stdout is what it shows, stderr stays empty; implies openStdin. */
    tty: terminalSize.optional(),
    timeoutMs: z
      .number()
      .int()
      .min(0)
      .max(24 * 3600_000)
      .optional(),
    waitMs: z.number().int().min(0).max(25_000).optional(),
  })
  .strict()
  .refine((b) => (b.argv === undefined) !== (b.command === undefined), {
    message: 'exactly one of argv or command is required',
  });

/** How long a request that starts or reads a long operation waits for its end (the provider caps it). */
export const operationWaitQuery = z
  .object({
    waitMs: z.coerce
      .number()
      .int()
      .min(0)
      .max(60 * 60_000)
      .optional(),
  })
  .strict();

export const readCommandQuery = z
  .object({
    stdoutOffset: z.coerce.number().int().min(0).default(0),
    stderrOffset: z.coerce.number().int().min(0).default(0),
    /**
     * Max bytes per stream in this answer. An entry point may send fewer (the Lambda API: ≤ 2 MiB, and
     * only what fits its 6 MB answer); `nextOffset` always says where to read on.
     */
    limit: z.coerce
      .number()
      .int()
      .min(0)
      .max(8 * 1024 * 1024)
      .default(1024 * 1024),
    /** Long-poll: wait up to this long for the command to end. */
    waitMs: z.coerce.number().int().min(0).max(25_000).default(0),
  })
  .strict();

export const fetchBody = z
  .object({
    /** Repository names to fetch; all git repositories when absent. */
    repos: z.array(repoName).min(1).optional(),
    /** Check out this ref in this repository after fetching. */
    checkout: z.object({ repo: repoName, ref: gitRef }).strict().optional(),
  })
  .strict();

export const resetBody = z
  .object({
    /** Move to new refs as part of the reset; the new state becomes the baseline. */
    refs: z.record(repoName, gitRef).optional(),
    /**
     * 'restore' (default): back to the baseline in place (only what changed is rewritten).
     * 'recreate': new compute from the workspace's cache entry, at the baseline commits; that becomes
     * the new baseline (same files and HEAD, new git metadata — see resetResult).
     */
    mode: z.enum(['restore', 'recreate']).optional(),
  })
  .strict();

// ---- responses (documentation + client types) ----

const streamView = z.object({
  /** Base64 when `encoding` is base64 (non-UTF-8 output), else text. */
  data: z.string(),
  encoding: z.enum(['utf8', 'base64']),
  offset: z.number(),
  nextOffset: z.number(),
  bytes: z.number(),
  truncated: z.boolean(),
});

export const commandView = z.object({
  id: z.string(),
  workspaceId: z.string(),
  state: z.enum(['running', 'exited', 'killed', 'lost']),
  exitCode: z.number().nullable(),
  signal: z.string().nullable(),
  reason: z.string().optional(),
  argv: z.array(z.string()),
  cwd: z.string(),
  stdout: streamView,
  stderr: streamView,
  startedAt: z.string(),
  endedAt: z.string().optional(),
  durationMs: z.number().optional(),
});

export const workspaceView = z.object({
  id: z.string(),
  status: z.enum(['provisioning', 'ready', 'resetting', 'deleting', 'deleted', 'failed']),
  plan: z
    .object({
      home: z.string(),
      root: z.string(),
      workdir: z.string(),
      user: z.object({ name: z.string(), uid: z.number(), gid: z.number() }),
      repos: z.array(
        z.object({
          name: z.string(),
          path: z.string(),
          target: z.string(),
          source: z.object({ kind: z.string() }).loose(),
        }),
      ),
    })
    .loose(),
  repos: z.array(
    z.object({ name: z.string(), path: z.string(), commit: z.string().optional(), ref: z.string().optional() }),
  ),
  cache: z
    .object({
      key: z.string(),
      hit: z.boolean(),
      reason: z.string(),
      /** A miss that started from an older entry (only a cacheKeyFiles file differed) and re-ran setup on top. */
      restoredFrom: z.string().optional(),
    })
    .optional(),
  baselineFingerprint: z.string().optional(),
  labels: z.record(z.string(), z.string()),
  failure: z.object({ step: z.string(), message: z.string() }).optional(),
  warnings: z.array(z.string()),
  steps: z.array(z.object({ at: z.string(), step: z.string(), message: z.string() })),
  setupCommandId: z.string().optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
  expiresAt: z.number().optional(),
  /** Made from this snapshot (a user snapshot or a fork point). */
  fromSnapshot: z.string().optional(),
  /** A fork: the workspace it was forked from. */
  forkedFrom: z.string().optional(),
  /** Its own lifecycle webhook (given at create), without the secret. */
  webhook: z.object({ url: z.string(), events: z.array(z.enum(WEBHOOK_EVENT_TYPES)) }).optional(),
});

export const fetchResult = z.object({
  repos: z.array(
    z.object({
      name: z.string(),
      before: z.string().optional(),
      after: z.string().optional(),
      heads: z.record(z.string(), z.string()),
      checkedOut: z.string().optional(),
    }),
  ),
});

export const resetResult = z.object({
  fingerprint: z.string(),
  baselineFingerprint: z.string(),
  matches: z.boolean(),
  restored: z.number().optional(),
  removed: z.number().optional(),
  /** mode 'recreate': new compute and a new baseline (its fingerprint is `baselineFingerprint`). */
  recreated: z.boolean().optional(),
  /** mode 'recreate': the replaced baseline's fingerprint (the new one differs: git's index and reflogs are rewritten). */
  previousBaselineFingerprint: z.string().optional(),
  durationMs: z.number(),
});

export const changesView = z.object({
  repos: z.array(
    z.object({
      name: z.string(),
      path: z.string(),
      baseCommit: z.string().optional(),
      head: z.string().optional(),
      status: z.array(z.object({ code: z.string(), path: z.string(), origPath: z.string().optional() })),
      /**
       * Changed files git had been told to hide from the workspace's own status/diff, and how: an index
       * flag (skip-worktree, assume-unchanged), an ignore rule added since the baseline or
       * .git/info/exclude ('ignored'), attributes added since the baseline ('attributes'), or git's
       * index saying unchanged while the content differs ('index'). Each is also in `status`.
       */
      hidden: z.array(
        z.object({
          path: z.string(),
          how: z.enum(['skip-worktree', 'assume-unchanged', 'ignored', 'attributes', 'index']),
        }),
      ),
      diff: z.string(),
      diffTruncated: z.boolean(),
    }),
  ),
});

const unknownOr = (what: string) => z.number().nullable().describe(`${what}; null: this backend cannot tell`);
const limitOr = (what: string) =>
  z.number().nullable().describe(`${what}; null: none is set, or this backend cannot tell`);

/** GET /workspaces/{id}/usage: measured by the backend, never by anything the workspace controls. */
export const usageView = z
  .object({
    workspaceId: z.string(),
    at: z.string().describe('When it was measured (ISO 8601)'),
    source: z
      .string()
      .describe(
        "Where the numbers come from, for people: 'cgroup v2', 'cgroup v1', 'proc scan', 'docker stats', 'task cgroup v1', …",
      ),
    cpu: z.object({ usageSeconds: unknownOr('CPU seconds used (user + system) since the workspace compute began') }),
    memory: z.object({
      currentBytes: unknownOr('Memory charged to the workspace, page cache and tmpfs files included'),
      limitBytes: limitOr('Its memory limit'),
    }),
    disk: z.object({
      usedBytes: unknownOr('Bytes its writable content takes (what the disk limit, resources.diskMb, is measured by)'),
      limitBytes: limitOr('resources.diskMb in bytes'),
    }),
    pids: z.object({
      current: unknownOr('Tasks (processes and threads) now'),
      limit: limitOr('Its tasks limit'),
    }),
  })
  .describe(
    "What the workspace uses now, from its backend: the host's view of its cgroup (local), Docker's stats (docker), the task's cgroup files read as root (Fargate). The whole compute counts, the provider's helpers inside it too.",
  );

/** A 'snapshot' operation's result (it took a fork point or a user snapshot). */
const snapshotResult = z.object({ snapshotId: z.string(), sizeBytes: z.number() });

export const operationView = z.object({
  id: z.string(),
  workspaceId: z.string(),
  kind: z.enum(['fetch', 'reset', 'snapshot']),
  status: z.enum(['running', 'succeeded', 'failed']),
  /** While running: the phase it is in (a reset: begin → restore, or replace → sync; then move with refs; verify). */
  phase: z.enum(['begin', 'restore', 'replace', 'sync', 'move', 'verify']).optional(),
  /** The request body that started it. */
  input: z.record(z.string(), z.unknown()),
  /** Once succeeded: what the request would have answered (a fetch or reset result; a snapshot's id). */
  result: z.union([fetchResult, resetResult, snapshotResult]).optional(),
  /** Once failed: the error the request would have answered (its code maps to the same HTTP status). */
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }).optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
  endedAt: z.string().optional(),
});

// ---- files ----

/** A Files API path: relative to the workdir or absolute; the service confines it (home or /tmp). */
const filePath = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => !p.includes('\0'), 'must not contain NUL');
/** `?recursive=true|false` (default false). */
const queryFlag = z
  .enum(['true', 'false'])
  .default('false')
  .transform((v) => v === 'true');

/** `?eof=true`: close the command's stdin after this body. */
export const stdinQuery = z.object({ eof: queryFlag }).strict();

export const filePathQuery = z.object({ path: filePath }).strict();
export const fileWriteQuery = z
  .object({
    path: filePath,
    /** Permission bits in octal (0644, 755); setuid/setgid/sticky are not offered. */
    mode: z
      .string()
      .regex(/^0?[0-7]{3}$/, 'must be octal permission bits such as 0644')
      .transform((m) => m.padStart(4, '0'))
      .optional(),
  })
  .strict();
export const fileListQuery = z.object({ path: filePath.default('.'), recursive: queryFlag }).strict();
export const fileDeleteQuery = z.object({ path: filePath, recursive: queryFlag }).strict();

export const fileStat = z.object({
  type: z.enum(['file', 'dir', 'symlink', 'other']),
  size: z.number().int(),
  mode: z.string(),
  mtime: z.string(),
  target: z.string().optional(),
});
const fileEntry = fileStat.extend({ name: z.string(), path: z.string() });
export const fileList = z.object({
  path: z.string(),
  entries: z.array(fileEntry),
  truncated: z.boolean(),
  skippedNonUtf8: z.number().int(),
});

// ---- fork and snapshots (issue 13) ----

export const snapshotId = z.string().regex(/^snap-[a-f0-9]{8,40}$/, 'is not a snapshot id');

export const forkBody = z
  .object({
    /** How many copies (1..config fork.maxCount, 400 beyond it). */
    count: z.number().int().min(1).max(256),
    /** Labels of the new workspaces (the source's are not copied). */
    labels: labelMap.optional(),
    ttlSeconds: z
      .number()
      .int()
      .min(60)
      .max(30 * 24 * 3600)
      .optional(),
  })
  .strict();

export const createSnapshotBody = z
  .object({
    name: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[\x20-\x7e]+$/, 'must be printable ASCII')
      .optional(),
    labels: labelMap.optional(),
  })
  .strict();

export const snapshotView = z.object({
  id: z.string(),
  status: z.enum(['creating', 'ready', 'failed']),
  /** 'user': kept until deleted; 'fork': a fork point, removed once every copy is made and settled. */
  kind: z.enum(['user', 'fork']),
  name: z.string().optional(),
  sourceWorkspaceId: z.string(),
  /** The 'snapshot' operation on the source that takes it (GET /workspaces/{id}/operations/{oid}). */
  operationId: z.string(),
  labels: z.record(z.string(), z.string()),
  sizeBytes: z.number().optional(),
  failure: z.object({ step: z.string(), message: z.string() }).optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export const forkView = z.object({ snapshot: snapshotView, workspaces: z.array(workspaceView) });

// biome-ignore lint/correctness/noUnusedVariables: a compile-time check, never referenced
type SnapshotSchemasMatchContract = AllTrue<
  [
    Equal<z.output<typeof forkBody>, ForkParams>,
    Equal<z.output<typeof createSnapshotBody>, CreateSnapshotParams>,
    Equal<z.output<typeof snapshotView>, SnapshotView>,
    Equal<z.output<typeof forkView>, ForkView>,
    Equal<z.output<typeof snapshotResult>, SnapshotResult>,
  ]
>;

// ---- persistent shell sessions (issue 13) ----

export const sessionId = z.string().regex(/^sess-[a-f0-9]{8,40}$/, 'is not a session id');

export const createSessionBody = z
  .object({
    /** Relative to the workspace's workdir, or absolute; must stay inside the workspace home. */
    cwd: z.string().min(1).max(4096).optional(),
    env: envMap.optional(),
    /** Default bash (sh where bash is absent). */
    shell: z.enum(['bash', 'sh']).optional(),
  })
  .strict();

export const runInSessionBody = z
  .object({
    command: z.string().min(1).max(131_072),
    /** 0 = no limit; default commands.defaultTimeoutMs. On expiry: SIGINT, then SIGTERM, then the shell is killed. */
    timeoutMs: z
      .number()
      .int()
      .min(0)
      .max(24 * 3600_000)
      .optional(),
    /** How long the request waits for the run's end (default commands.defaultWaitMs); still running → 202. */
    waitMs: z.number().int().min(0).max(25_000).optional(),
  })
  .strict();

export const sessionWaitQuery = z
  .object({
    waitMs: z.coerce.number().int().min(0).max(25_000).default(0),
  })
  .strict();

export const sessionRunView = z.object({
  runId: z.string(),
  state: z.enum(['running', 'exited', 'killed', 'interrupted', 'lost']),
  exitCode: z.number().nullable(),
  reason: z.string().optional(),
  /** Output from offset 0, at most commands.maxOutputBytes each (`bytes`: all the run wrote; `truncated`). */
  stdout: streamView,
  stderr: streamView,
  startedAt: z.string(),
  endedAt: z.string().optional(),
  durationMs: z.number().optional(),
});

export const sessionView = z.object({
  id: z.string(),
  workspaceId: z.string(),
  state: z.enum(['idle', 'busy', 'lost', 'closed']),
  cwd: z.string(),
  shell: z.enum(['bash', 'sh']),
  reason: z.string().optional(),
  createdAt: z.string(),
  /** The run going on, or the last one (with its output while the session is not lost). */
  lastRun: sessionRunView.optional(),
});

// biome-ignore lint/correctness/noUnusedVariables: a compile-time check, never referenced
type SessionSchemasMatchContract = AllTrue<
  [
    Equal<z.output<typeof createSessionBody>, CreateSessionParams>,
    Equal<z.output<typeof runInSessionBody>, RunInSessionParams>,
    Equal<z.output<typeof sessionWaitQuery>, SessionWaitParams>,
    Equal<z.output<typeof sessionRunView>, SessionRunView>,
    Equal<z.output<typeof sessionView>, SessionView>,
  ]
>;

/** PUT /workspaces/{id}/archive's answer. */
export const archiveWritten = z.object({ path: z.string(), entries: z.number().int() });

export const errorBody = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
});

// ---- the schemas parse into / document exactly the contract's types (z.output: after defaults) ----

// biome-ignore lint/correctness/noUnusedVariables: a compile-time check, never referenced
type SchemasMatchContract = AllTrue<
  [
    Equal<z.output<typeof createWorkspaceBody>, CreateWorkspaceParams>,
    Equal<z.output<typeof runCommandBody>, RunCommandParams>,
    Equal<z.output<typeof stdinQuery>, StdinParams>,
    Equal<z.output<typeof terminalSize>, TerminalSizeParams>,
    Equal<z.output<typeof readCommandQuery>, ReadCommandParams>,
    Equal<z.output<typeof fetchBody>, FetchParams>,
    Equal<z.output<typeof resetBody>, ResetParams>,
    Equal<z.output<typeof streamView>, StreamView>,
    Equal<z.output<typeof commandView>, CommandView>,
    Equal<z.output<typeof workspaceView>, WorkspaceView>,
    Equal<z.output<typeof fetchResult>, FetchResult>,
    Equal<z.output<typeof resetResult>, ResetResult>,
    Equal<z.output<typeof changesView>, ChangesView>,
    Equal<z.output<typeof usageView>, UsageView>,
    Equal<z.output<typeof operationWaitQuery>, OperationWaitParams>,
    Equal<z.output<typeof operationView>, OperationView>,
    Equal<z.output<typeof filePathQuery>, FilePathParams>,
    Equal<z.output<typeof fileWriteQuery>, FileWriteParams>,
    Equal<z.output<typeof fileListQuery>, FileListParams>,
    Equal<z.output<typeof fileDeleteQuery>, FileDeleteParams>,
    Equal<z.output<typeof fileStat>, FileStat>,
    Equal<z.output<typeof fileEntry>, FileEntry>,
    Equal<z.output<typeof fileList>, FileList>,
    Equal<z.output<typeof archiveWritten>, ArchiveWritten>,
  ]
>;
