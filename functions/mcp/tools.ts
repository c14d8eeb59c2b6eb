import { z } from 'zod';
import * as api from '../../shared/api/schemas.js';
import { WspTimeoutError, type WspClient } from '../../shared/client/client.js';
import type { SessionRunView, StreamView, WorkspaceView } from '../../shared/contract/views.js';

/**
 * The tools `wsp mcp` offers: each one request (or a request and a wait) of the typed client. Input
 * schemas are built from the API's own zod objects (shared/api/schemas.ts): a tool takes the route's
 * body fields plus the ids of its path. Refinements across fields (run_command: argv XOR command) stay
 * with the API, which checks the same body again and answers bad_request naming the field — that
 * answer comes back to the agent as an isError result like every other API error.
 */

/** Tell the agent's client how a long call is going (an MCP progress notification when it asked for them). */
export type Progress = (message: string) => void;

export interface Tool {
  name: string;
  description: string;
  input: z.ZodObject;
  annotations: { readOnlyHint?: boolean; destructiveHint?: boolean; idempotentHint?: boolean };
  run(client: WspClient, args: Record<string, unknown>, progress: Progress): Promise<Record<string, unknown>>;
}

function tool<S extends z.ZodObject>(spec: {
  name: string;
  description: string;
  input: S;
  annotations?: Tool['annotations'];
  run(client: WspClient, args: z.output<S>, progress: Progress): Promise<Record<string, unknown>>;
}): Tool {
  return { annotations: {}, ...spec, run: spec.run as Tool['run'] };
}

/**
 * A tool's input: the ids in the route's path, then the API body's own fields (its shape: a refined
 * zod object cannot be extended, and what it refines is checked by the API anyway), minus the ones
 * that make no sense over MCP (streaming stdin, a terminal, the HTTP wait).
 */
function input<
  Extra extends z.ZodRawShape,
  Shape extends z.ZodRawShape = Record<never, never>,
  Drop extends keyof Shape = never,
>(extra: Extra, body?: { shape: Shape }, drop: readonly Drop[] = []) {
  const fields = Object.fromEntries(
    Object.entries(body?.shape ?? {}).filter(([key]) => !(drop as readonly string[]).includes(key)),
  ) as Omit<Shape, Drop>;
  return z.object({ ...extra, ...fields }).strict();
}

const ws = { workspaceId: api.workspaceId.describe('The workspace id (ws-…), as create_workspace answered.') };
const sess = { ...ws, sessionId: api.sessionId.describe('The session id (sess-…), as session_create answered.') };
const waitTimeoutMs = z
  .number()
  .int()
  .min(0)
  .max(60 * 60_000)
  .default(10 * 60_000)
  .describe(
    'How long to wait for the workspace(s) to be ready (default 10 minutes); past it, the answer says the status so far.',
  );

/** A workspace in a few fields (the whole view: get_workspace). */
function summary(w: WorkspaceView): Record<string, unknown> {
  return {
    id: w.id,
    status: w.status,
    workdir: w.plan.workdir,
    repos: w.repos,
    labels: w.labels,
    ...(w.cache ? { cache: { hit: w.cache.hit, reason: w.cache.reason } } : {}),
    ...(w.failure ? { failure: w.failure } : {}),
    ...(w.warnings.length > 0 ? { warnings: w.warnings } : {}),
    ...(w.expiresAt !== undefined ? { expiresAt: new Date(w.expiresAt * 1000).toISOString() } : {}),
  };
}

/** stdout/stderr of a run: text (base64 when it was not UTF-8), and whether any was left out. */
function streams(run: { stdout: StreamView; stderr: StreamView }): Record<string, unknown> {
  const one = (name: 'stdout' | 'stderr') => {
    const s = run[name];
    return {
      [name]: s.data,
      ...(s.encoding === 'base64' ? { [`${name}Encoding`]: 'base64' } : {}),
      [`${name}Truncated`]: s.truncated || s.nextOffset < s.bytes,
    };
  };
  return { ...one('stdout'), ...one('stderr') };
}

function sessionRun(run: SessionRunView): Record<string, unknown> {
  return {
    runId: run.runId,
    state: run.state,
    exitCode: run.exitCode,
    ...(run.reason ? { reason: run.reason } : {}),
    ...streams(run),
    ...(run.durationMs !== undefined ? { durationMs: run.durationMs } : {}),
  };
}

/** Wait for a workspace to settle, telling `progress` each provisioning step as it happens. */
async function waitReady(
  client: WspClient,
  w: WorkspaceView,
  timeoutMs: number,
  progress: Progress,
): Promise<WorkspaceView> {
  try {
    return await client.waitForWorkspace(w.id, {
      timeoutMs,
      onEvent: (event) => {
        if (event.type === 'step') progress(`${w.id}: ${event.step}${event.message ? ` — ${event.message}` : ''}`);
      },
    });
  } catch (error) {
    if (!(error instanceof WspTimeoutError)) throw error;
    return client.getWorkspace(w.id);
  }
}

/** A workspace that settled as failed is the agent's problem to see: an error result with the step. */
class WorkspaceFailed extends Error {
  readonly code = 'step_failed';
  readonly details: unknown;
  constructor(w: WorkspaceView) {
    super(`workspace ${w.id} ${w.status}${w.failure ? ` at step ${w.failure.step}: ${w.failure.message}` : ''}`);
    this.details = summary(w);
  }
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true });

export const TOOLS: Tool[] = [
  tool({
    name: 'create_workspace',
    description:
      'Create a fresh, isolated workspace (the configured repositories cloned, setup run) and wait until it is ready. ' +
      'refs: branch/tag/commit per repository name; env: variables for its commands; labels: key/value tags; ' +
      'ttlSeconds: delete it automatically after this long; fromSnapshot: start from a snapshot instead (not with refs). ' +
      'Answers the workspace id, its status (ready, or provisioning if waitTimeoutMs passed first) and its workdir. ' +
      'Commands, files and sessions take this id.',
    input: input({ waitTimeoutMs }, api.createWorkspaceBody),
    async run(client, { waitTimeoutMs, ...body }, progress) {
      const created = await client.createWorkspace(body);
      progress(`${created.id}: provisioning`);
      const settled = await waitReady(client, created, waitTimeoutMs, progress);
      if (settled.status === 'failed') throw new WorkspaceFailed(settled);
      return summary(settled);
    },
  }),
  tool({
    name: 'list_workspaces',
    description: 'List the workspaces of this provider: id, status, workdir, repositories and labels of each.',
    input: input({}),
    annotations: { readOnlyHint: true },
    async run(client) {
      return { workspaces: (await client.listWorkspaces()).map(summary) };
    },
  }),
  tool({
    name: 'get_workspace',
    description:
      'Everything about one workspace: status, plan (home, workdir, user), repositories at their commits, cache hit or miss, provisioning steps, failure, warnings.',
    input: input(ws),
    annotations: { readOnlyHint: true },
    async run(client, { workspaceId }) {
      return { ...(await client.getWorkspace(workspaceId)) };
    },
  }),
  tool({
    name: 'delete_workspace',
    description:
      'Delete a workspace: its processes are killed and its files removed. Idempotent; answers status deleting or deleted.',
    input: input(ws),
    annotations: { destructiveHint: true, idempotentHint: true },
    async run(client, { workspaceId }) {
      const w = await client.deleteWorkspace(workspaceId);
      return { id: w.id, status: w.status };
    },
  }),
  tool({
    name: 'run_command',
    description:
      'Run one command in a workspace and wait for its end. Give exactly one of argv (an argument vector, no shell) or command ' +
      '(a shell string, run with bash -lc). cwd: relative to the workdir or absolute inside the home; env: extra variables; ' +
      'stdin: text (or base64 with stdinEncoding) fed to it; timeoutMs: kill it after this long. Answers state (exited, killed, lost), ' +
      'exitCode, stdout and stderr (with truncated flags when output was cut). Nothing persists between calls but files: use a session for cd and variables.',
    input: input(ws, api.runCommandBody, ['openStdin', 'tty', 'waitMs']),
    async run(client, { workspaceId, ...body }) {
      const c = await client.runCommand(workspaceId, body);
      return {
        commandId: c.id,
        state: c.state,
        exitCode: c.exitCode,
        ...(c.signal ? { signal: c.signal } : {}),
        ...(c.reason ? { reason: c.reason } : {}),
        ...streams(c),
        ...(c.durationMs !== undefined ? { durationMs: c.durationMs } : {}),
      };
    },
  }),
  tool({
    name: 'session_create',
    description:
      'Start a persistent shell session in a workspace: cd, exported variables, functions and aliases persist between session_run calls. ' +
      'cwd: where it starts; env: extra variables; shell: bash (default) or sh. Answers the session id.',
    input: input(ws, api.createSessionBody),
    async run(client, { workspaceId, ...body }) {
      const s = await client.createSession(workspaceId, body);
      return { sessionId: s.id, state: s.state, cwd: s.cwd, shell: s.shell };
    },
  }),
  tool({
    name: 'session_run',
    description:
      'Run one command line in a shell session and wait for its end; the shell keeps its state (cwd, variables) for the next run. ' +
      'timeoutMs: interrupt it after this long (0: no limit). Answers state (exited, killed, interrupted, lost), exitCode, stdout, stderr.',
    input: input(sess, api.runInSessionBody, ['waitMs']),
    async run(client, { workspaceId, sessionId, ...body }) {
      return sessionRun(await client.runInSession(workspaceId, sessionId, body));
    },
  }),
  tool({
    name: 'session_interrupt',
    description: 'Send Ctrl-C (SIGINT) to what a session is running; the shell itself lives on.',
    input: input(sess),
    async run(client, { workspaceId, sessionId }) {
      const s = await client.interruptSession(workspaceId, sessionId);
      return { sessionId: s.id, state: s.state, cwd: s.cwd, ...(s.lastRun ? { lastRun: sessionRun(s.lastRun) } : {}) };
    },
  }),
  tool({
    name: 'session_delete',
    description: 'End a shell session (its shell is killed).',
    input: input(sess),
    annotations: { destructiveHint: true, idempotentHint: true },
    async run(client, { workspaceId, sessionId }) {
      const s = await client.deleteSession(workspaceId, sessionId);
      return { sessionId: s.id, state: s.state };
    },
  }),
  tool({
    name: 'read_file',
    description:
      "Read a file of a workspace (path relative to the workdir, or absolute inside the home or /tmp). Answers its content as text, or base64 (encoding: 'base64') when it is not UTF-8, " +
      'and its whole size. offset/length read only those bytes (for large files).',
    input: input({
      ...ws,
      path: api.filePathQuery.shape.path,
      offset: z.number().int().min(0).optional().describe('First byte to read (default 0).'),
      length: z.number().int().min(1).optional().describe('How many bytes to read (default: to the end).'),
    }),
    annotations: { readOnlyHint: true },
    async run(client, { workspaceId, path, offset, length }) {
      const range =
        offset === undefined && length === undefined
          ? undefined
          : { first: offset ?? 0, ...(length !== undefined ? { last: (offset ?? 0) + length - 1 } : {}) };
      const file = await client.readFile(workspaceId, path, range ? { range } : {});
      let content: string;
      let encoding: 'utf8' | 'base64' = 'utf8';
      try {
        content = fatalUtf8.decode(file.data);
      } catch {
        content = file.data.toString('base64');
        encoding = 'base64';
      }
      return { path, size: file.size, ...(file.range ? { range: file.range } : {}), encoding, content };
    },
  }),
  tool({
    name: 'write_file',
    description:
      "Write a whole file in a workspace (atomically; parent directories are created). content: text, or base64 with encoding 'base64'; " +
      'mode: octal permission bits such as 0644 or 0755. Answers the new file (type, size, mode).',
    input: input({
      ...ws,
      ...api.fileWriteQuery.shape,
      content: z.string().describe('The file content.'),
      encoding: z.enum(['utf8', 'base64']).default('utf8').describe("'base64' when content is base64 (binary files)."),
    }),
    async run(client, { workspaceId, path, mode, content, encoding }) {
      const data = Buffer.from(content, encoding);
      const stat = await client.writeFile(workspaceId, path, data, mode !== undefined ? { mode } : {});
      return { path, ...stat };
    },
  }),
  tool({
    name: 'list_files',
    description:
      'List a directory of a workspace (default: the workdir): name, path, type, size, mode and mtime of each entry; recursive: the whole tree.',
    input: input({
      ...ws,
      path: api.fileListQuery.shape.path,
      recursive: z.boolean().default(false).describe('The whole tree under path, not just its entries.'),
    }),
    annotations: { readOnlyHint: true },
    async run(client, { workspaceId, path, recursive }) {
      return { ...(await client.listFiles(workspaceId, path, { recursive })) };
    },
  }),
  tool({
    name: 'fetch',
    description:
      "git fetch in a workspace through the provider's credentials (the workspace holds none). repos: which repositories (default all); " +
      'checkout: {repo, ref} to check out afterwards. Answers each repository before/after and its branch heads.',
    input: input(ws, api.fetchBody),
    async run(client, { workspaceId, ...body }) {
      return { ...(await client.fetch(workspaceId, body)) };
    },
  }),
  tool({
    name: 'reset',
    description:
      "Throw away every change since the workspace was ready: files, git state and /tmp back to the baseline (processes are killed). refs: move to new refs as part of it (the new state becomes the baseline); mode 'recreate': new compute from the cache entry. Answers whether the fingerprint matches the baseline.",
    input: input(ws, api.resetBody),
    annotations: { destructiveHint: true },
    async run(client, { workspaceId, ...body }) {
      return { ...(await client.reset(workspaceId, body)) };
    },
  }),
  tool({
    name: 'changes',
    description:
      'What changed in each repository of a workspace since its baseline: git status entries, the diff (diffTruncated when cut) and files git was told to hide.',
    input: input(ws),
    annotations: { readOnlyHint: true },
    async run(client, { workspaceId }) {
      return { ...(await client.changes(workspaceId)) };
    },
  }),
  tool({
    name: 'usage',
    description:
      'What a workspace uses now, measured by its backend: CPU seconds, memory (bytes, and its limit), disk (bytes its files take, and the disk limit) and pids (tasks, and their limit); null where the backend cannot tell.',
    input: input(ws),
    annotations: { readOnlyHint: true },
    async run(client, { workspaceId }) {
      return { ...(await client.usage(workspaceId)) };
    },
  }),
  tool({
    name: 'fork',
    description:
      "Make count new workspaces from a workspace's current state (its files and git state, not its processes) and wait until they are ready. " +
      'labels, ttlSeconds: for the new workspaces. Answers the fork point and each new workspace id and status.',
    input: input({ ...ws, waitTimeoutMs }, api.forkBody),
    async run(client, { workspaceId, waitTimeoutMs, ...body }, progress) {
      const forked = await client.fork(workspaceId, body);
      let ready = 0;
      const settled = await Promise.all(
        forked.workspaces.map(async (w) => {
          const done = await waitReady(client, w, waitTimeoutMs, () => {});
          progress(`${++ready} of ${forked.workspaces.length} forks settled (${done.id}: ${done.status})`);
          return done;
        }),
      );
      return { snapshotId: forked.snapshot.id, workspaces: settled.map(summary) };
    },
  }),
];
