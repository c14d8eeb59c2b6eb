import type { z } from 'zod';
import { statusForCode } from '../api/errors.js';
import type {
  CommandList,
  SessionList,
  SnapshotList,
  WebhookEventList,
  WorkspaceList,
} from '../api/response-schemas.js';
import type {
  createSessionBody,
  createSnapshotBody,
  createWorkspaceBody,
  fetchBody,
  forkBody,
  readCommandQuery,
  resetBody,
  runCommandBody,
  runInSessionBody,
} from '../api/schemas.js';
import type {
  ArchiveWritten,
  ChangesView,
  CommandEvent,
  CommandView,
  FetchResult,
  FileList,
  FileStat,
  ForkView,
  OperationEvent,
  OperationView,
  ResetResult,
  SessionRunView,
  SessionView,
  SnapshotView,
  WebhookEventView,
  UsageView,
  WorkspaceEvent,
  WorkspaceView,
} from '../contract/views.js';
import { apiErrorFrom, WspApiError, WspTimeoutError } from './errors.js';
import { parseSse } from './sse.js';
import { sleep } from '../lib/sleep.js';

export { WspApiError, WspTimeoutError } from './errors.js';

/** Request types as a caller writes them (defaults optional). */
export type CreateWorkspaceInput = z.input<typeof createWorkspaceBody>;
export type RunCommandInput = z.input<typeof runCommandBody>;
export type ReadCommandOptions = Partial<z.input<typeof readCommandQuery>>;
export type FetchInput = z.input<typeof fetchBody>;
export type ResetInput = z.input<typeof resetBody>;
export type ForkInput = z.input<typeof forkBody>;
export type CreateSnapshotInput = z.input<typeof createSnapshotBody>;
export type CreateSessionInput = z.input<typeof createSessionBody>;
export type RunInSessionInput = z.input<typeof runInSessionBody>;

export interface OperationOptions {
  /** How long the POST itself may wait on the server before it hands back the operation (server-capped). */
  waitMs?: number;
  /** Give up waiting (WspTimeoutError) after this long; the operation goes on. Default: no limit. */
  timeoutMs?: number;
  /** Called when the server answered 202: the operation being polled. */
  onAccepted?: (operation: OperationView) => void;
}

/** Bytes moved so far of `total` (a download without a length: total is undefined). */
export type TransferProgress = (done: number, total: number | undefined) => void;

export interface WspClientOptions {
  /** e.g. `http://127.0.0.1:7070` (a trailing slash is fine). */
  baseUrl: string;
  /** Bearer token; omit when the server runs without auth. */
  token?: string;
  /** Default: the global fetch (Node 20+). */
  fetch?: typeof fetch;
}

const SETTLED: ReadonlySet<WorkspaceView['status']> = new Set(['ready', 'failed', 'deleted']);
/** The server holds a long-poll at most 25 s. */
const LONG_POLL_MS = 25_000;

/**
 * Typed client for the Workspace Provider API. Every method throws WspApiError on an error answer
 * (its `code`/`message`/`details` are the API's) and for an unreachable server (status 0).
 *
 *   const wsp = new WspClient({ baseUrl, token });
 *   const ws = await wsp.waitForWorkspace((await wsp.createWorkspace({ refs: { app: 'main' } })).id, { timeoutMs: 600_000 });
 *   const result = await wsp.runCommand(ws.id, { command: 'npm test' }); // waits for the end
 */
export class WspClient {
  readonly baseUrl: string;
  readonly #token: string | undefined;
  readonly #fetch: typeof fetch;

  constructor(options: WspClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#token = options.token;
    this.#fetch = options.fetch ?? globalThis.fetch;
  }

  // ---- workspaces ----

  /** Starts provisioning (status 'provisioning'); an idempotent repeat returns the earlier workspace. */
  async createWorkspace(body: CreateWorkspaceInput = {}): Promise<WorkspaceView> {
    return (await this.#json<WorkspaceView>('POST', '/workspaces', { body })).body;
  }

  async getWorkspace(id: string): Promise<WorkspaceView> {
    return (await this.#json<WorkspaceView>('GET', `/workspaces/${enc(id)}`)).body;
  }

  async listWorkspaces(): Promise<WorkspaceView[]> {
    return (await this.#json<WorkspaceList>('GET', '/workspaces')).body.workspaces;
  }

  /** Idempotent; the view's status is 'deleted' or, while tearing down, 'deleting'. */
  async deleteWorkspace(id: string): Promise<WorkspaceView> {
    return (await this.#json<WorkspaceView>('DELETE', `/workspaces/${enc(id)}`)).body;
  }

  /** Provisioning progress as it happens (SSE), until the workspace settles or `signal` aborts. */
  async *watchWorkspace(id: string, options: { signal?: AbortSignal } = {}): AsyncGenerator<WorkspaceEvent> {
    for await (const data of this.#sse(`/workspaces/${enc(id)}/events`, options.signal)) yield data as WorkspaceEvent;
  }

  /**
   * Resolves with the workspace once it is ready, failed or deleted (check `status`: a failed
   * workspace is returned, not thrown). Follows the SSE stream (`onEvent` sees every event) and
   * falls back to polling every `pollIntervalMs` (default 1000) if streaming is not possible.
   * Throws WspTimeoutError after `timeoutMs`.
   */
  async waitForWorkspace(
    id: string,
    options: { timeoutMs: number; onEvent?: (event: WorkspaceEvent) => void; pollIntervalMs?: number },
  ): Promise<WorkspaceView> {
    const deadline = Date.now() + options.timeoutMs;
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), options.timeoutMs);
    try {
      for await (const event of this.watchWorkspace(id, { signal: timeout.signal })) {
        options.onEvent?.(event);
        if (event.type === 'status' && SETTLED.has(event.status)) return event.workspace;
      }
    } catch (error) {
      // Answers about the workspace itself are final; anything else (no SSE through a proxy, a
      // dropped stream, a server-side stream error) falls back to polling.
      if (
        error instanceof WspApiError &&
        ['not_found', 'unauthorized', 'forbidden', 'bad_request'].includes(error.code)
      )
        throw error;
    } finally {
      clearTimeout(timer);
    }
    for (;;) {
      const workspace = await this.getWorkspace(id);
      if (SETTLED.has(workspace.status)) return workspace;
      if (Date.now() >= deadline)
        throw new WspTimeoutError(`workspace ${id} still ${workspace.status} after ${options.timeoutMs} ms`);
      await sleep(Math.min(options.pollIntervalMs ?? 1000, Math.max(0, deadline - Date.now())));
    }
  }

  // ---- commands ----

  /**
   * Runs a command. By default waits for its end: if the server answers 202 (still running after
   * `waitMs`), long-polls until the command ends, then returns the final view with output from
   * offset 0. `{ wait: false }` returns the first answer as is (state may be 'running').
   */
  async runCommand(id: string, body: RunCommandInput, options: { wait?: boolean } = {}): Promise<CommandView> {
    const first = await this.#json<CommandView>('POST', `/workspaces/${enc(id)}/commands`, { body });
    if (first.status !== 202 || options.wait === false) return first.body;
    return this.waitForCommand(id, first.body.id);
  }

  /** Long-polls (no output transferred) until the command ends, then returns its full view. */
  async waitForCommand(id: string, commandId: string): Promise<CommandView> {
    let view = await this.getCommand(id, commandId, { waitMs: LONG_POLL_MS, limit: 0 });
    while (view.state === 'running') view = await this.getCommand(id, commandId, { waitMs: LONG_POLL_MS, limit: 0 });
    return this.getCommand(id, commandId);
  }

  /** State and output from the given byte offsets (`limit` bytes per stream, default 1 MiB). */
  async getCommand(id: string, commandId: string, query: ReadCommandOptions = {}): Promise<CommandView> {
    return (await this.#json<CommandView>('GET', `/workspaces/${enc(id)}/commands/${enc(commandId)}`, { query })).body;
  }

  async listCommands(id: string): Promise<CommandView[]> {
    return (await this.#json<CommandList>('GET', `/workspaces/${enc(id)}/commands`)).body.commands;
  }

  async cancelCommand(id: string, commandId: string): Promise<CommandView> {
    return (await this.#json<CommandView>('DELETE', `/workspaces/${enc(id)}/commands/${enc(commandId)}`)).body;
  }

  /**
   * Feed a running command started with `openStdin: true` (bytes or text, in call order); `eof`
   * closes its stdin after them. At most 1 MiB per call, and 1 MiB waiting unread (409 beyond).
   */
  async writeStdin(
    id: string,
    commandId: string,
    data: Uint8Array | string,
    options: { eof?: boolean } = {},
  ): Promise<void> {
    const res = await this.#send('POST', `/workspaces/${enc(id)}/commands/${enc(commandId)}/stdin`, {
      query: { eof: options.eof ?? false },
      accept: 'application/json',
      raw: typeof data === 'string' ? new TextEncoder().encode(data) : data,
    });
    if (!res.ok) throw await errorOf(res);
  }

  /** New size for the terminal of a running command started with `tty`. */
  async resizeCommand(id: string, commandId: string, size: { rows: number; cols: number }): Promise<void> {
    await this.#json<undefined>('POST', `/workspaces/${enc(id)}/commands/${enc(commandId)}/resize`, { body: size });
  }

  /**
   * A WebSocket to a running command (local server only; Node, with the `ws` package): see the
   * attach route in /openapi.json for its frames. Resolves once it is open.
   */
  async attach(
    id: string,
    commandId: string,
    offsets: { stdoutOffset?: number; stderrOffset?: number } = {},
  ): Promise<import('ws').WebSocket> {
    const { WebSocket } = await import('ws');
    const url = new URL(`${this.baseUrl}/workspaces/${enc(id)}/commands/${enc(commandId)}/attach`);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    for (const [k, v] of Object.entries(offsets)) if (v !== undefined) url.searchParams.set(k, String(v));
    const ws = new WebSocket(url, {
      headers: this.#token !== undefined ? { authorization: `Bearer ${this.#token}` } : {},
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (d: Buffer) => {
          text += d.toString();
        });
        res.on('end', () => {
          const body = (() => {
            try {
              return JSON.parse(text) as { error?: { code?: string; message?: string } };
            } catch {
              return {};
            }
          })();
          reject(
            new WspApiError(
              res.statusCode ?? 0,
              body.error?.code ?? 'http_error',
              body.error?.message ?? text.slice(0, 200),
            ),
          );
        });
      });
      ws.once('error', reject);
    });
    return ws;
  }

  // ---- persistent shell sessions ----

  /** A persistent shell: cd, variables, functions, aliases persist between its runs. */
  async createSession(id: string, body: CreateSessionInput = {}): Promise<SessionView> {
    return (await this.#json<SessionView>('POST', `/workspaces/${enc(id)}/sessions`, { body })).body;
  }

  /**
   * Runs one command line in the session. By default waits for its end like runCommand: on 202 it
   * long-polls the session until this run ended. `{ wait: false }` returns the first answer as is.
   */
  async runInSession(
    id: string,
    sessionId: string,
    body: RunInSessionInput,
    options: { wait?: boolean } = {},
  ): Promise<SessionRunView> {
    const route = `/workspaces/${enc(id)}/sessions/${enc(sessionId)}`;
    const first = await this.#json<SessionRunView>('POST', `${route}/run`, { body });
    if (first.status !== 202 || options.wait === false) return first.body;
    for (;;) {
      const session = await this.getSession(id, sessionId, { waitMs: LONG_POLL_MS });
      const run = session.lastRun;
      if (run === undefined || run.runId !== first.body.runId)
        return { ...first.body, state: 'lost', reason: 'the session forgot the run' };
      if (run.state !== 'running') return run;
    }
  }

  /** The session and its current or last run; `waitMs` long-polls for the run's end. */
  async getSession(id: string, sessionId: string, query: { waitMs?: number } = {}): Promise<SessionView> {
    return (await this.#json<SessionView>('GET', `/workspaces/${enc(id)}/sessions/${enc(sessionId)}`, { query })).body;
  }

  async listSessions(id: string): Promise<SessionView[]> {
    return (await this.#json<SessionList>('GET', `/workspaces/${enc(id)}/sessions`)).body.sessions;
  }

  /** SIGINT to what the session runs (Ctrl-C); the shell survives. */
  async interruptSession(id: string, sessionId: string): Promise<SessionView> {
    return (await this.#json<SessionView>('POST', `/workspaces/${enc(id)}/sessions/${enc(sessionId)}/interrupt`)).body;
  }

  /** Kills the shell and forgets the session (the answer's state is 'closed'). */
  async deleteSession(id: string, sessionId: string): Promise<SessionView> {
    return (await this.#json<SessionView>('DELETE', `/workspaces/${enc(id)}/sessions/${enc(sessionId)}`)).body;
  }

  /** Output as it comes (`output` events, `offset` = byte offset in its stream), then one `end` event. */
  async *watchCommand(
    id: string,
    commandId: string,
    options: { signal?: AbortSignal } = {},
  ): AsyncGenerator<CommandEvent> {
    for await (const data of this.#sse(`/workspaces/${enc(id)}/commands/${enc(commandId)}/events`, options.signal))
      yield data as CommandEvent;
  }

  /** Follow a long operation (server-sent events, local server only): its steps, then `end` with its view. */
  async *watchOperation(
    id: string,
    operationId: string,
    options: { signal?: AbortSignal } = {},
  ): AsyncGenerator<OperationEvent> {
    for await (const data of this.#sse(`/workspaces/${enc(id)}/operations/${enc(operationId)}/events`, options.signal))
      yield data as OperationEvent;
  }

  // ---- git and baseline ----

  /** Fetch new commits; waits for the end (polling the operation past the server's wait). */
  async fetch(id: string, body: FetchInput = {}, options: OperationOptions = {}): Promise<FetchResult> {
    return this.#operation<FetchResult>(id, 'git/fetch', body, options);
  }

  /** Back to the baseline (or to new refs); waits for the end (polling the operation past the server's wait). */
  async reset(id: string, body: ResetInput = {}, options: OperationOptions = {}): Promise<ResetResult> {
    return this.#operation<ResetResult>(id, 'reset', body, options);
  }

  async getOperation(id: string, operationId: string, query: { waitMs?: number } = {}): Promise<OperationView> {
    return (
      await this.#json<OperationView>('GET', `/workspaces/${enc(id)}/operations/${enc(operationId)}`, {
        query: { ...query },
      })
    ).body;
  }

  async listOperations(id: string): Promise<OperationView[]> {
    return (await this.#json<{ operations: OperationView[] }>('GET', `/workspaces/${enc(id)}/operations`)).body
      .operations;
  }

  /** Wait for a long operation: until it ends (its result, or its error thrown as the API's) or `timeoutMs`. */
  async waitForOperation(
    id: string,
    operationId: string,
    options: { timeoutMs?: number } = {},
  ): Promise<OperationView> {
    const deadline = Date.now() + (options.timeoutMs ?? Number.POSITIVE_INFINITY);
    for (;;) {
      const left = deadline - Date.now();
      const op = await this.getOperation(id, operationId, { waitMs: Math.max(0, Math.min(LONG_POLL_MS, left)) });
      if (op.status !== 'running') return op;
      if (Date.now() >= deadline) throw new WspTimeoutError(`operation ${operationId} still running`);
    }
  }

  /**
   * POST a long operation: its result when the server answers 200 within its wait, else (202) the
   * operation is polled until it ends; a failure is thrown as the API error the request would have
   * answered. `onAccepted` sees the operation when the server handed it back.
   */
  async #operation<T>(id: string, route: string, body: unknown, options: OperationOptions): Promise<T> {
    const started = await this.#json<T | OperationView>('POST', `/workspaces/${enc(id)}/${route}`, {
      body,
      ...(options.waitMs !== undefined ? { query: { waitMs: options.waitMs } } : {}),
    });
    if (started.status !== 202) return started.body as T;
    const accepted = started.body as OperationView;
    options.onAccepted?.(accepted);
    const op = await this.waitForOperation(
      id,
      accepted.id,
      options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {},
    );
    if (op.status === 'succeeded') return op.result as T;
    const error = op.error ?? { code: 'internal', message: 'operation failed' };
    throw new WspApiError(statusForCode(error.code), error.code, error.message, { details: error.details });
  }

  // ---- fork and snapshots (issue 13) ----

  /**
   * `count` new workspaces from the workspace's current state (files, git state; not its processes).
   * Answers the fork point and the workspaces (provisioning: waitForWorkspace each). A secret in the
   * workspace fails the fork (409) before any workspace is made.
   */
  async fork(id: string, body: ForkInput, options: { waitMs?: number } = {}): Promise<ForkView> {
    return (
      await this.#json<ForkView>('POST', `/workspaces/${enc(id)}/fork`, {
        body,
        ...(options.waitMs !== undefined ? { query: { waitMs: options.waitMs } } : {}),
      })
    ).body;
  }

  /** A named snapshot of the workspace's current state; waits until it is taken (or failed: thrown). */
  async createSnapshot(
    id: string,
    body: CreateSnapshotInput = {},
    options: { waitMs?: number; timeoutMs?: number } = {},
  ): Promise<SnapshotView> {
    const started = (
      await this.#json<SnapshotView>('POST', `/workspaces/${enc(id)}/snapshots`, {
        body,
        ...(options.waitMs !== undefined ? { query: { waitMs: options.waitMs } } : {}),
      })
    ).body;
    const deadline = Date.now() + (options.timeoutMs ?? Number.POSITIVE_INFINITY);
    let snap = started;
    while (snap.status === 'creating') {
      if (Date.now() >= deadline) throw new WspTimeoutError(`snapshot ${snap.id} still being taken`);
      await sleep(1000);
      snap = await this.getSnapshot(snap.id);
    }
    if (snap.status === 'failed')
      throw new WspApiError(409, 'conflict', snap.failure?.message ?? `snapshot ${snap.id} failed`);
    return snap;
  }

  async getSnapshot(sid: string): Promise<SnapshotView> {
    return (await this.#json<SnapshotView>('GET', `/snapshots/${enc(sid)}`)).body;
  }

  async listSnapshots(): Promise<SnapshotView[]> {
    return (await this.#json<SnapshotList>('GET', '/snapshots')).body.snapshots;
  }

  async deleteSnapshot(sid: string): Promise<void> {
    await this.#json<undefined>('DELETE', `/snapshots/${enc(sid)}`);
  }

  // ---- files (inside the workspace, as its user; paths relative to the workdir or absolute) ----

  /**
   * A file's bytes; with `range` ({first, last?} or {suffix}) only those (`range` in the answer says
   * which, `size` is the whole file's). A file over the server's limit throws 413: read it in ranges.
   */
  async readFile(
    id: string,
    path: string,
    options: { range?: { first: number; last?: number } | { suffix: number }; onProgress?: TransferProgress } = {},
  ): Promise<{ data: Buffer; size: number; range?: { first: number; last: number } }> {
    const headers: Record<string, string> = {};
    const r = options.range;
    if (r) headers['range'] = 'suffix' in r ? `bytes=-${r.suffix}` : `bytes=${r.first}-${r.last ?? ''}`;
    const res = await this.#send('GET', `/workspaces/${enc(id)}/files`, {
      query: { path },
      accept: 'application/octet-stream',
      headers,
    });
    if (!res.ok) throw await errorOf(res);
    const data = await bodyBytes(res, options.onProgress);
    const contentRange = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
    if (res.status === 206 && contentRange) {
      const [, first, last, size] = contentRange.map(Number) as [number, number, number, number];
      return { data, size, range: { first, last } };
    }
    return { data, size: data.length };
  }

  /** Write a file (atomically, parents created); `mode` e.g. '0644'. Answers the new file's stat. */
  async writeFile(
    id: string,
    path: string,
    data: Uint8Array,
    options: { mode?: string; onProgress?: TransferProgress } = {},
  ): Promise<FileStat> {
    const res = await this.#send('PUT', `/workspaces/${enc(id)}/files`, {
      query: { path, ...(options.mode !== undefined ? { mode: options.mode } : {}) },
      accept: 'application/json',
      raw: data,
      ...(options.onProgress ? { onUpload: options.onProgress } : {}),
    });
    if (!res.ok) throw await errorOf(res);
    return (await res.json()) as FileStat;
  }

  /** The entry itself (a symlink is not followed). */
  async statFile(id: string, path: string): Promise<FileStat> {
    return (await this.#json<FileStat>('GET', `/workspaces/${enc(id)}/files/stat`, { query: { path } })).body;
  }

  async listFiles(id: string, path = '.', options: { recursive?: boolean } = {}): Promise<FileList> {
    return (
      await this.#json<FileList>('GET', `/workspaces/${enc(id)}/files/list`, {
        query: { path, recursive: options.recursive ?? false },
      })
    ).body;
  }

  /** A non-empty directory needs `recursive` (else 409). */
  async deleteFile(id: string, path: string, options: { recursive?: boolean } = {}): Promise<void> {
    await this.#json<undefined>('DELETE', `/workspaces/${enc(id)}/files`, {
      query: { path, recursive: options.recursive ?? false },
    });
  }

  /**
   * A directory of the workspace as a tar (symlinks stored as links). Larger than the server's limit
   * (files.maxBytes; Lambda 4 MiB) throws 413.
   */
  async readArchive(id: string, path: string, options: { onProgress?: TransferProgress } = {}): Promise<Buffer> {
    const res = await this.#send('GET', `/workspaces/${enc(id)}/archive`, {
      query: { path },
      accept: 'application/x-tar',
    });
    if (!res.ok) throw await errorOf(res);
    return bodyBytes(res, options.onProgress);
  }

  /** Extract a tar into a directory of the workspace (created if missing); a hostile archive throws 400. */
  async writeArchive(
    id: string,
    path: string,
    tar: Uint8Array,
    options: { onProgress?: TransferProgress } = {},
  ): Promise<ArchiveWritten> {
    const res = await this.#send('PUT', `/workspaces/${enc(id)}/archive`, {
      query: { path },
      accept: 'application/json',
      raw: tar,
      contentType: 'application/x-tar',
      ...(options.onProgress ? { onUpload: options.onProgress } : {}),
    });
    if (!res.ok) throw await errorOf(res);
    return (await res.json()) as ArchiveWritten;
  }

  async changes(id: string): Promise<ChangesView> {
    return (await this.#json<ChangesView>('GET', `/workspaces/${enc(id)}/changes`)).body;
  }

  /** The workspace's lifecycle webhook events, each with every delivery attempt (oldest first): GET …/events as JSON. */
  async listWebhookEvents(id: string): Promise<WebhookEventView[]> {
    return (await this.#json<WebhookEventList>('GET', `/workspaces/${enc(id)}/events`)).body.events;
  }

  /** CPU, memory, disk and pids of a ready workspace now (null where its backend cannot tell). */
  async usage(id: string): Promise<UsageView> {
    return (await this.#json<UsageView>('GET', `/workspaces/${enc(id)}/usage`)).body;
  }

  async health(): Promise<{ ok: true }> {
    return (await this.#json<{ ok: true }>('GET', '/healthz')).body;
  }

  // ---- transport ----

  async #send(
    method: string,
    path: string,
    options: {
      body?: unknown;
      /** Raw bytes sent as `contentType` (default application/octet-stream) instead of a JSON body. */
      raw?: Uint8Array;
      contentType?: string;
      /** Told as `raw` is handed to the connection (then it is streamed, with its content-length). */
      onUpload?: TransferProgress;
      query?: Record<string, unknown>;
      accept: string;
      headers?: Record<string, string>;
      signal?: AbortSignal;
    },
  ): Promise<Response> {
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(options.query ?? {}))
      if (value !== undefined) url.searchParams.set(key, String(value));
    const headers: Record<string, string> = { ...(options.headers ?? {}), accept: options.accept };
    if (this.#token !== undefined) headers['authorization'] = `Bearer ${this.#token}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (options.raw !== undefined) headers['content-type'] = options.contentType ?? 'application/octet-stream';
    const raw =
      options.raw !== undefined && options.onUpload !== undefined
        ? countedUpload(options.raw, options.onUpload, headers)
        : options.raw;
    try {
      return await this.#fetch(url, {
        method,
        headers,
        ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
        ...(raw !== undefined ? { body: raw } : {}),
        ...(raw instanceof ReadableStream ? { duplex: 'half' } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (error) {
      if (options.signal?.aborted) throw error;
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      const reason = cause?.code ?? cause?.message ?? (error as Error).message;
      throw new WspApiError(0, 'unreachable', `cannot reach ${this.baseUrl}: ${reason}`, { cause: error });
    }
  }

  async #json<T>(
    method: string,
    path: string,
    options: { body?: unknown; query?: Record<string, unknown> } = {},
  ): Promise<{ status: number; body: T }> {
    const res = await this.#send(method, path, { ...options, accept: 'application/json' });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      throw new WspApiError(res.status, 'bad_response', `HTTP ${res.status} answer is not JSON`);
    }
    if (!res.ok) throw apiErrorFrom(res.status, parsed);
    return { status: res.status, body: parsed as T };
  }

  /** Parsed `data` of each SSE event; an `error` event throws the API error it carries. */
  async *#sse(path: string, signal: AbortSignal | undefined): AsyncGenerator<unknown> {
    const res = await this.#send('GET', path, { accept: 'text/event-stream', ...(signal ? { signal } : {}) });
    if (!res.ok) {
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      throw apiErrorFrom(res.status, parsed);
    }
    if (!res.body || !(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
      await res.body?.cancel();
      throw new WspApiError(res.status, 'bad_response', 'expected an event stream');
    }
    for await (const message of parseSse(res.body)) {
      const data = JSON.parse(message.data) as unknown;
      if (message.event === 'error') {
        const error = apiErrorFrom(0, data);
        throw new WspApiError(statusForCode(error.code), error.code, error.message, { details: error.details });
      }
      yield data;
    }
  }
}

const enc = encodeURIComponent;

const UPLOAD_CHUNK_BYTES = 256 * 1024;

/**
 * `data` as a stream of chunks that reports each one as fetch takes it (so: as the connection sends,
 * give or take its buffers), with the content-length set — the same request a Uint8Array body makes.
 */
function countedUpload(
  data: Uint8Array,
  onProgress: TransferProgress,
  headers: Record<string, string>,
): ReadableStream<Uint8Array> {
  headers['content-length'] = String(data.length);
  let offset = 0;
  onProgress(0, data.length);
  return new ReadableStream({
    pull(controller) {
      if (offset >= data.length) {
        controller.close();
        return;
      }
      const chunk = data.subarray(offset, offset + UPLOAD_CHUNK_BYTES);
      offset += chunk.length;
      controller.enqueue(chunk);
      onProgress(offset, data.length);
    },
  });
}

/** A response body's bytes, reported as they arrive against its content-length when asked. */
async function bodyBytes(res: Response, onProgress: TransferProgress | undefined): Promise<Buffer> {
  if (onProgress === undefined || res.body === null) return Buffer.from(await res.arrayBuffer());
  const length = Number(res.headers.get('content-length') ?? Number.NaN);
  const total = Number.isFinite(length) ? length : undefined;
  const chunks: Uint8Array[] = [];
  let done = 0;
  onProgress(0, total);
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    chunks.push(chunk);
    done += chunk.length;
    onProgress(done, total);
  }
  return Buffer.concat(chunks);
}

/** The API error an answer that is not ok carries (its JSON error body, when there is one). */
async function errorOf(res: Response): Promise<WspApiError> {
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return apiErrorFrom(res.status, parsed);
}
