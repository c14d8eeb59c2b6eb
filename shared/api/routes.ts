import { z } from 'zod';
import type { CommandEvent, OperationEvent, OperationView, WorkspaceEvent } from '../contract/views.js';
import { operationError } from '../service/operations.js';
import { BadRequestError, WspError } from '../contract/errors.js';
import { errorBody } from './errors.js';
import { parseRange } from './range.js';
import { prefersJson } from './accept.js';
import { fitCommandView } from './answer-fit.js';
import { buildOpenApiDocument } from './openapi.js';
import {
  commandEventSchema,
  commandList,
  healthBody,
  operationEventSchema,
  operationList,
  sessionList,
  snapshotList,
  webhookEventList,
  workspaceEventSchema,
  workspaceList,
} from './response-schemas.js';
import { defineRoute, type Route, type HandlerResult, type SseEvent } from './route-types.js';
import {
  archiveWritten,
  changesView,
  commandId,
  commandView,
  createSnapshotBody,
  createWorkspaceBody,
  errorBody as errorBodySchema,
  fetchBody,
  fetchResult,
  fileDeleteQuery,
  fileList,
  fileListQuery,
  filePathQuery,
  fileStat,
  fileWriteQuery,
  forkBody,
  forkView,
  operationId,
  operationView,
  operationWaitQuery,
  readCommandQuery,
  resetBody,
  resetResult,
  runCommandBody,
  createSessionBody,
  runInSessionBody,
  sessionId,
  sessionView,
  sessionRunView,
  sessionWaitQuery,
  snapshotId,
  snapshotView,
  stdinQuery,
  terminalSize,
  usageView,
  workspaceId,
  workspaceView,
} from './schemas.js';

/**
 * The HTTP API as data: every route, its schemas, its handler (one service call, then the response
 * shape). Served by functions/server (node http) and the Lambda handlers alike, via dispatch().
 */

const wsParams = z.object({ id: workspaceId }).strict();
const cmdParams = z.object({ id: workspaceId, cid: commandId }).strict();
const opParams = z.object({ id: workspaceId, oid: operationId }).strict();
const snapParams = z.object({ sid: snapshotId }).strict();
const sessParams = z.object({ id: workspaceId, sid: sessionId }).strict();

/** Service events → SSE events named by their `type`. */
async function* toSse<E extends { type: string }>(events: AsyncIterable<E>): AsyncIterable<SseEvent> {
  for await (const event of events) yield { event: event.type, data: event };
}

const workspaceLocation = (id: string) => `/workspaces/${id}`;
const commandLocation = (id: string, cid: string) => `/workspaces/${id}/commands/${cid}`;
const sessionLocation = (id: string, sid: string) => `/workspaces/${id}/sessions/${sid}`;
const operationLocation = (id: string, oid: string) => `/workspaces/${id}/operations/${oid}`;

/**
 * A long operation's answer: its result (200) once it succeeded within the wait, its error (same
 * status as if it had run inline) once it failed, else 202 with the operation to poll.
 */
function operationAnswer(view: OperationView): HandlerResult {
  if (view.status === 'succeeded') return { status: 200, body: view.result };
  if (view.status === 'failed') throw operationError(view);
  return { status: 202, body: view, headers: { location: operationLocation(view.workspaceId, view.id) } };
}

const operationResponses = (what: string, result: z.ZodType) => ({
  200: { description: `${what} done within the wait: its result`, schema: result },
  202: {
    description: `${what} still running after the wait (?waitMs=, capped by the provider): poll the operation (Location)`,
    schema: operationView,
  },
});

/** GET routes that need the workspace ready say so (other methods get the 409 documented anyway). */
const notReady = {
  409: { description: 'The workspace is not ready (provisioning, resetting, …)', schema: errorBodySchema },
};

let openApiCache: unknown;

/** The error body of a domain error answered by a route itself (416 needs its Content-Range header). */
function errorBodyOf(error: WspError): unknown {
  return errorBody(error.code, error.message, error.details);
}

export const routes: readonly Route[] = [
  defineRoute({
    method: 'POST',
    path: '/workspaces',
    operationId: 'createWorkspace',
    summary: 'Set up a workspace; provisioning continues in the background (poll or stream /events).',
    body: createWorkspaceBody,
    responses: {
      202: { description: 'Provisioning started', schema: workspaceView },
      200: {
        description: 'Idempotent repeat: the workspace created earlier with this idempotencyKey',
        schema: workspaceView,
      },
    },
    handler: async (service, { body }) => {
      const { workspace, created } = await service.createWorkspace(body);
      return { status: created ? 202 : 200, body: workspace, headers: { location: workspaceLocation(workspace.id) } };
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces',
    operationId: 'listWorkspaces',
    summary: 'List workspaces.',
    responses: { 200: { description: 'All workspaces', schema: workspaceList } },
    handler: async (service) => ({ status: 200, body: { workspaces: await service.listWorkspaces() } }),
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces/{id}',
    operationId: 'getWorkspace',
    summary: 'Inspect a workspace: status, plan, commits, cache hit or miss and why.',
    params: wsParams,
    responses: { 200: { description: 'The workspace', schema: workspaceView } },
    handler: async (service, { params }) => ({ status: 200, body: await service.getWorkspace(params.id) }),
  }),
  defineRoute({
    method: 'DELETE',
    path: '/workspaces/{id}',
    operationId: 'deleteWorkspace',
    summary: 'Tear a workspace down; idempotent.',
    params: wsParams,
    responses: {
      200: { description: 'Deleted', schema: workspaceView },
      202: { description: 'Deletion in progress', schema: workspaceView },
    },
    handler: async (service, { params }) => {
      const workspace = await service.deleteWorkspace(params.id);
      return { status: workspace.status === 'deleted' ? 200 : 202, body: workspace };
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces/{id}/events',
    operationId: 'watchWorkspace',
    summary:
      "Stream provisioning progress (SSE) until the workspace settles; with `Accept: application/json`, the workspace's lifecycle webhook events instead (workspace.ready|failed|reset|deleted|expiring, command.finished), oldest first, each with the body sent and every delivery attempt per hook (status or error, duration), pending ones with their next attempt. The JSON answer works on the Lambda API too; a deleted workspace keeps its events.",
    params: wsParams,
    responses: {
      200: {
        description: 'Server-Sent Events, one per WorkspaceEvent (or, asked for JSON, the lifecycle events)',
        schema: workspaceEventSchema,
        contentType: 'text/event-stream',
        negotiated: {
          contentType: 'application/json',
          schema: webhookEventList,
          description: 'Accept prefers application/json: the lifecycle webhook events with their delivery attempts',
        },
      },
    },
    handler: async (service, { params, signal, headers }) => {
      if (prefersJson(headers.accept))
        return { status: 200, body: { events: await service.listWebhookEvents(params.id) } };
      // Ask first so an unknown id is an honest 404, not a 200 stream that ends in an error event.
      await service.getWorkspace(params.id);
      return { status: 200, stream: toSse<WorkspaceEvent>(service.watchWorkspace(params.id, signal)) };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/workspaces/{id}/commands',
    operationId: 'runCommand',
    summary: 'Run a command; the result if it ends within waitMs, else 202 with its id (poll or stream).',
    params: wsParams,
    body: runCommandBody,
    responses: {
      201: { description: 'Ran and ended within waitMs', schema: commandView },
      202: { description: 'Still running (state running)', schema: commandView },
    },
    handler: async (service, { params, body, limits }) => {
      const command = fitCommandView(await service.runCommand(params.id, body), limits.answer);
      return {
        status: command.state === 'running' ? 202 : 201,
        body: command,
        headers: { location: commandLocation(params.id, command.id) },
      };
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces/{id}/commands',
    operationId: 'listCommands',
    summary: "List a workspace's commands.",
    params: wsParams,
    responses: { 200: { description: 'Commands', schema: commandList } },
    handler: async (service, { params }) => ({
      status: 200,
      body: { commands: await service.listCommands(params.id) },
    }),
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces/{id}/commands/{cid}',
    operationId: 'getCommand',
    summary: 'State, exit code, signal and output from the given offsets; waitMs long-polls for the end.',
    params: cmdParams,
    query: readCommandQuery,
    responses: { 200: { description: 'The command', schema: commandView } },
    handler: async (service, { params, query, limits }) => {
      const limit = Math.min(query.limit, limits.maxReadBytes ?? query.limit);
      const command = await service.getCommand(params.id, params.cid, { ...query, limit });
      return { status: 200, body: fitCommandView(command, limits.answer) };
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/workspaces/{id}/commands/{cid}',
    operationId: 'cancelCommand',
    summary: 'Cancel (kill) a running command; returns its view.',
    params: cmdParams,
    responses: { 200: { description: 'The command after cancelling', schema: commandView } },
    handler: async (service, { params }) => ({ status: 200, body: await service.cancelCommand(params.id, params.cid) }),
  }),
  defineRoute({
    method: 'POST',
    path: '/workspaces/{id}/commands/{cid}/stdin',
    operationId: 'writeStdin',
    summary:
      'Append the raw body to the stdin of a running command started with `openStdin: true` (in request order); `eof=true` closes its stdin after these bytes. The bytes are held for the command until it reads them: at most 1 MiB may wait unread (more → 409 `stdin is full`), and one request carries at most 1 MiB (413). 409 once the command ended, when it was not started with openStdin, or after eof. Output comes back through GET …/commands/{cid} (polling; the local server also streams it: …/events).',
    params: cmdParams,
    query: stdinQuery,
    rawBody: { description: 'Bytes for the command to read (any bytes; Content-Type is not looked at)' },
    responses: { 204: { description: 'Taken: the command can read them' } },
    handler: async (service, { params, query, rawBody }) => {
      await service.writeStdin(params.id, params.cid, rawBody ?? Buffer.alloc(0), query);
      return { status: 204, body: undefined };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/workspaces/{id}/commands/{cid}/resize',
    operationId: 'resizeCommand',
    summary:
      'New size for the terminal of a running command started with `tty` (its foreground program gets SIGWINCH). 409 once it ended, or when it has no terminal.',
    params: cmdParams,
    body: terminalSize,
    responses: { 204: { description: 'Resized' } },
    handler: async (service, { params, body }) => {
      await service.resizeCommand(params.id, params.cid, body);
      return { status: 204, body: undefined };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/workspaces/{id}/sessions',
    operationId: 'createSession',
    summary:
      'Start a persistent shell (bash, else sh; interactive without a terminal, no rc files) in `cwd` with `env`: cd, variables (exported or not), functions, aliases and an activated virtualenv persist between its runs. At most config sessions.maxPerWorkspace live ones per workspace (409 beyond). It ends with a reset (then `lost`) or the workspace.',
    params: wsParams,
    body: createSessionBody,
    responses: { 201: { description: 'The session (idle)', schema: sessionView } },
    handler: async (service, { params, body }) => {
      const session = await service.createSession(params.id, body);
      return { status: 201, body: session, headers: { location: sessionLocation(params.id, session.id) } };
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces/{id}/sessions',
    operationId: 'listSessions',
    summary: "List a workspace's sessions (each with its last run).",
    params: wsParams,
    responses: { 200: { description: 'Sessions', schema: sessionList } },
    handler: async (service, { params, limits }) => {
      const sessions = await service.listSessions(params.id);
      return {
        status: 200,
        body: {
          sessions: sessions.map((s) =>
            s.lastRun
              ? {
                  ...s,
                  lastRun: fitCommandView(
                    s.lastRun,
                    limits.answer && {
                      ...limits.answer,
                      maxBytes: Math.floor(limits.answer.maxBytes / Math.max(1, sessions.length)),
                    },
                  ),
                }
              : s,
          ),
        },
      };
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces/{id}/sessions/{sid}',
    operationId: 'getSession',
    summary:
      'The session and its current or last run (output so far while it runs: poll it); waitMs long-polls for the run to end. A shell that died says `lost`; an overdue run is interrupted when looked at.',
    params: sessParams,
    query: sessionWaitQuery,
    responses: { 200: { description: 'The session', schema: sessionView } },
    handler: async (service, { params, query, limits }) => {
      const session = await service.getSession(params.id, params.sid, query);
      return {
        status: 200,
        body: session.lastRun ? { ...session, lastRun: fitCommandView(session.lastRun, limits.answer) } : session,
      };
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/workspaces/{id}/sessions/{sid}',
    operationId: 'deleteSession',
    summary: 'Kill the shell and what it runs, and forget the session (the answer says `closed`).',
    params: sessParams,
    responses: { 200: { description: 'The session, closed', schema: sessionView } },
    handler: async (service, { params }) => ({ status: 200, body: await service.deleteSession(params.id, params.sid) }),
  }),
  defineRoute({
    method: 'POST',
    path: '/workspaces/{id}/sessions/{sid}/run',
    operationId: 'runInSession',
    summary:
      "Run one command line in the session's shell (stdin /dev/null). 200 with its exit code and output (each stream at most commands.maxOutputBytes: `bytes`, `truncated`) if it ends within waitMs, else 202: poll GET …/sessions/{sid}?waitMs= (its lastRun). 409 while another run runs (one at a time) or once the session is lost. On timeoutMs: SIGINT, SIGTERM 2 s later, the shell killed 2 s after that (then `lost`); the run ends `killed` and the session stays usable.",
    params: sessParams,
    body: runInSessionBody,
    responses: {
      200: { description: 'Ran and ended within waitMs', schema: sessionRunView },
      202: { description: 'Still running (state running): poll the session (Location)', schema: sessionRunView },
    },
    handler: async (service, { params, body, limits }) => {
      const run = fitCommandView(await service.runInSession(params.id, params.sid, body), limits.answer);
      return {
        status: run.state === 'running' ? 202 : 200,
        body: run,
        headers: { location: sessionLocation(params.id, params.sid) },
      };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/workspaces/{id}/sessions/{sid}/interrupt',
    operationId: 'interruptSession',
    summary:
      'SIGINT to what the shell runs, like Ctrl-C: the shell survives, the run ends `interrupted` (exit 130; a program that ignores SIGINT runs on). Waits up to 5 s for the run to end. Nothing running: the session as is.',
    params: sessParams,
    responses: { 200: { description: 'The session after the interrupt', schema: sessionView } },
    handler: async (service, { params }) => ({
      status: 200,
      body: await service.interruptSession(params.id, params.sid),
    }),
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces/{id}/commands/{cid}/attach',
    operationId: 'attachCommand',
    summary:
      'A WebSocket to a running command (local server only; send `Upgrade: websocket` with the bearer token): binary frames from the server are output, their first byte the stream (1 stdout, 2 stderr), then a text frame `{"type":"end","command":…}`; binary frames from the client are its stdin (openStdin or tty), text frames `{"type":"resize","rows","cols"}` and `{"type":"eof"}`. `stdoutOffset`/`stderrOffset` say where the output starts (default 0: all of it). Without the upgrade (and on Lambda, which has no WebSockets) → 400: there, POST …/stdin and poll GET …/commands/{cid}.',
    params: cmdParams,
    responses: { 101: { description: 'Switching protocols: the WebSocket' } },
    handler: async () => {
      throw new BadRequestError(
        'attach is a WebSocket: send Upgrade: websocket to the local server (on Lambda: POST …/stdin and poll GET …/commands/{cid})',
      );
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces/{id}/commands/{cid}/events',
    operationId: 'watchCommand',
    summary: "Stream a command's output (SSE), then its final view.",
    params: cmdParams,
    responses: {
      200: {
        description: 'Server-Sent Events, one per CommandEvent',
        schema: commandEventSchema,
        contentType: 'text/event-stream',
      },
    },
    handler: async (service, { params, signal }) => {
      await service.getCommand(params.id, params.cid, { stdoutOffset: 0, stderrOffset: 0, limit: 0, waitMs: 0 });
      return { status: 200, stream: toSse<CommandEvent>(service.watchCommand(params.id, params.cid, signal)) };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/workspaces/{id}/git/fetch',
    operationId: 'gitFetch',
    summary: 'Fetch new commits into all or some repositories (optionally check one out).',
    params: wsParams,
    query: operationWaitQuery,
    body: fetchBody,
    responses: operationResponses('Fetch', fetchResult),
    handler: async (service, { params, query, body }) => operationAnswer(await service.fetch(params.id, body, query)),
  }),
  defineRoute({
    method: 'POST',
    path: '/workspaces/{id}/reset',
    operationId: 'resetWorkspace',
    summary: 'Undo everything since the baseline (optionally moving to new refs); reports a fingerprint.',
    params: wsParams,
    query: operationWaitQuery,
    body: resetBody,
    responses: operationResponses('Reset', resetResult),
    handler: async (service, { params, query, body }) => operationAnswer(await service.reset(params.id, body, query)),
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces/{id}/operations',
    operationId: 'listOperations',
    summary: "The workspace's long operations (fetch, reset), oldest first.",
    params: wsParams,
    responses: { 200: { description: 'Operations', schema: operationList } },
    handler: async (service, { params }) => ({
      status: 200,
      body: { operations: await service.listOperations(params.id) },
    }),
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces/{id}/operations/{oid}',
    operationId: 'getOperation',
    summary: 'A long operation (fetch, reset): running, or its result / error; waitMs long-polls for the end.',
    params: opParams,
    query: operationWaitQuery,
    responses: { 200: { description: 'The operation', schema: operationView } },
    handler: async (service, { params, query }) => ({
      status: 200,
      body: await service.getOperation(params.id, params.oid, query),
    }),
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces/{id}/operations/{oid}/events',
    operationId: 'watchOperation',
    summary: "Stream a long operation's progress steps (SSE), then its final view.",
    params: opParams,
    responses: {
      200: {
        description: 'Server-Sent Events, one per OperationEvent',
        schema: operationEventSchema,
        contentType: 'text/event-stream',
      },
    },
    handler: async (service, { params, signal }) => {
      await service.getOperation(params.id, params.oid, { waitMs: 0 });
      return { status: 200, stream: toSse<OperationEvent>(service.watchOperation(params.id, params.oid, signal)) };
    },
  }),
  // ---- fork and snapshots (issue 13; shared/service/snapshots.ts) ----
  defineRoute({
    method: 'POST',
    path: '/workspaces/{id}/fork',
    operationId: 'forkWorkspace',
    summary:
      "N new workspaces from the workspace's CURRENT state: its files and git state (commits, branches, index, dirty files) at the fork point, never its processes; each one's baseline is that state (a reset returns to the fork point). The source keeps running (commands running meanwhile: the copy is crash-consistent per file). The fork point is taken first (waited for up to ?waitMs; a secret found in it → 409, and no workspace is made); the new workspaces then provision from it (poll each). count: 1..config fork.maxCount (400 beyond). The source must be ready (409).",
    params: wsParams,
    query: operationWaitQuery,
    body: forkBody,
    responses: { 202: { description: 'The fork point and the new workspaces (provisioning)', schema: forkView } },
    handler: async (service, { params, query, body }) => ({
      status: 202,
      body: await service.fork(params.id, body, query),
    }),
  }),
  defineRoute({
    method: 'POST',
    path: '/workspaces/{id}/snapshots',
    operationId: 'createSnapshot',
    summary:
      "A named snapshot of the workspace's current state (files and git state, no processes), kept until deleted; POST /workspaces {fromSnapshot} makes workspaces from it. Secret-scanned: a secret value found in it → 409. Taken by a 'snapshot' operation on the workspace: answered once taken within ?waitMs, else 202 (poll GET /snapshots/{sid}).",
    params: wsParams,
    query: operationWaitQuery,
    body: createSnapshotBody,
    responses: {
      201: { description: 'Taken', schema: snapshotView },
      202: { description: 'Still being taken (status creating): poll it (Location)', schema: snapshotView },
    },
    handler: async (service, { params, query, body }) => {
      const snapshot = await service.createSnapshot(params.id, body, query);
      return {
        status: snapshot.status === 'creating' ? 202 : 201,
        body: snapshot,
        headers: { location: `/snapshots/${snapshot.id}` },
      };
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/snapshots',
    operationId: 'listSnapshots',
    summary: 'Snapshots: user snapshots and the fork points of forks still being made.',
    responses: { 200: { description: 'Snapshots', schema: snapshotList } },
    handler: async (service) => ({ status: 200, body: { snapshots: await service.listSnapshots() } }),
  }),
  defineRoute({
    method: 'GET',
    path: '/snapshots/{sid}',
    operationId: 'getSnapshot',
    summary: 'A snapshot: creating, ready (sizeBytes) or failed (why).',
    params: snapParams,
    responses: { 200: { description: 'The snapshot', schema: snapshotView } },
    handler: async (service, { params }) => ({ status: 200, body: await service.getSnapshot(params.sid) }),
  }),
  defineRoute({
    method: 'DELETE',
    path: '/snapshots/{sid}',
    operationId: 'deleteSnapshot',
    summary:
      'Delete a snapshot; 409 while it is being taken or a workspace is being made from it (workspaces made from it keep their own baselines).',
    params: snapParams,
    responses: { 204: { description: 'Deleted' } },
    handler: async (service, { params }) => {
      await service.deleteSnapshot(params.sid);
      return { status: 204, body: undefined };
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces/{id}/changes',
    operationId: 'getChanges',
    summary: 'Per repository: status and diff against the baseline.',
    params: wsParams,
    responses: { 200: { description: 'Changes', schema: changesView } },
    handler: async (service, { params }) => ({ status: 200, body: await service.changes(params.id) }),
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces/{id}/usage',
    operationId: 'getUsage',
    summary:
      'CPU, memory, disk and pids of the workspace now, measured by its backend (cgroup, Docker stats, the task cgroup); null where a backend cannot tell.',
    params: wsParams,
    responses: { 200: { description: 'Its usage now', schema: usageView }, ...notReady },
    handler: async (service, { params }) => ({ status: 200, body: await service.usage(params.id) }),
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces/{id}/files',
    operationId: 'readFile',
    summary:
      "A file's bytes, read inside the workspace as its user. `Range: bytes=a-b` (one range) answers 206; a range outside the file 416. Path: relative to the workdir or absolute, inside the home or /tmp as the workspace sees them (symlinks resolved inside). Larger than files.maxBytes (Lambda: 4 MiB) → 413: read it in ranges.",
    params: wsParams,
    query: filePathQuery,
    responses: {
      200: { description: 'The whole file', contentType: 'application/octet-stream' },
      206: { description: 'The range asked for (Content-Range)', contentType: 'application/octet-stream' },
      413: { description: 'The file is larger than one answer may carry: read it in ranges', schema: errorBodySchema },
      416: { description: 'The range is outside the file (Content-Range: bytes */size)', schema: errorBodySchema },
      ...notReady,
    },
    handler: async (service, { params, query, headers, limits }) => {
      const range = parseRange(headers['range']);
      try {
        const file = await service.readFile(params.id, query, {
          ...(range ? { range } : {}),
          ...(limits.maxFileBytes !== undefined ? { maxBytes: limits.maxFileBytes } : {}),
        });
        const common = { 'accept-ranges': 'bytes' };
        if (!file.range) return { status: 200, bytes: file.data, headers: common };
        const { first, last } = file.range;
        return {
          status: 206,
          bytes: file.data,
          headers: { ...common, 'content-range': `bytes ${first}-${last}/${file.size}` },
        };
      } catch (error) {
        if (!(error instanceof WspError) || error.code !== 'range_not_satisfiable') throw error;
        const size = (error.details as { size: number }).size;
        return {
          status: 416,
          body: errorBodyOf(error),
          headers: { 'content-range': `bytes */${size}` },
        };
      }
    },
  }),
  defineRoute({
    method: 'PUT',
    path: '/workspaces/{id}/files',
    operationId: 'writeFile',
    summary:
      'Write a file from the raw body, inside the workspace as its user: parents created, atomically (a temp file renamed in the same directory). `mode` sets its permission bits (default: an existing file keeps its mode, a new one gets 0644). Bodies over files.maxBytes (Lambda: 2.5 MiB) → 413.',
    params: wsParams,
    query: fileWriteQuery,
    rawBody: { description: 'The file content, any bytes (Content-Type is not looked at)' },
    responses: { 200: { description: 'Written: the new file', schema: fileStat } },
    handler: async (service, { params, query, rawBody }) => ({
      status: 200,
      body: await service.writeFile(params.id, query, rawBody ?? Buffer.alloc(0)),
    }),
  }),
  defineRoute({
    method: 'DELETE',
    path: '/workspaces/{id}/files',
    operationId: 'deleteFile',
    summary:
      'Delete a file, symlink (the link itself) or directory (a non-empty one only with recursive=true, else 409).',
    params: wsParams,
    query: fileDeleteQuery,
    responses: { 204: { description: 'Deleted' } },
    handler: async (service, { params, query }) => {
      await service.deleteFile(params.id, query);
      return { status: 204, body: undefined };
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces/{id}/files/stat',
    operationId: 'statFile',
    summary:
      "Type, size, mode, mtime (and a symlink's target) of a path, the entry itself (a symlink is not followed).",
    params: wsParams,
    query: filePathQuery,
    responses: { 200: { description: 'The entry', schema: fileStat }, ...notReady },
    handler: async (service, { params, query }) => ({ status: 200, body: await service.statFile(params.id, query) }),
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces/{id}/files/list',
    operationId: 'listFiles',
    summary:
      'The entries of a directory (recursive=true: the whole tree), sorted by path, at most files.maxListEntries (`truncated` says there were more). Names that are not UTF-8 are skipped and counted (skippedNonUtf8).',
    params: wsParams,
    query: fileListQuery,
    responses: { 200: { description: 'The entries', schema: fileList }, ...notReady },
    handler: async (service, { params, query }) => ({ status: 200, body: await service.listFiles(params.id, query) }),
  }),
  defineRoute({
    method: 'GET',
    path: '/workspaces/{id}/archive',
    operationId: 'readArchive',
    summary:
      'A directory as a tar (GNU format: `tar -C DIR -cf - .`), made inside the workspace as its user: symlinks are stored as links, never followed. Path: as for files (relative to the workdir or absolute, inside the home or /tmp as the workspace sees them). A tar larger than files.maxBytes (Lambda: 4 MiB, what one answer may carry) → 413: archive a smaller directory or read files one by one. 404: no such directory.',
    params: wsParams,
    query: filePathQuery,
    responses: {
      200: { description: 'The tar', contentType: 'application/x-tar' },
      413: { description: 'The tar is larger than one answer may carry', schema: errorBodySchema },
      ...notReady,
    },
    handler: async (service, { params, query, limits }) => ({
      status: 200,
      bytes: await service.readArchive(
        params.id,
        query,
        limits.maxFileBytes !== undefined ? { maxBytes: limits.maxFileBytes } : {},
      ),
      headers: { 'content-type': 'application/x-tar' },
    }),
  }),
  defineRoute({
    method: 'PUT',
    path: '/workspaces/{id}/archive',
    operationId: 'writeArchive',
    summary:
      'Extract a tar (the raw body) into a directory, created if missing, inside the workspace as its user: owners are not restored, permission bits are except setuid/setgid/sticky; a directory entry replaces a symlink of its name. Refused whole (400, naming the rule) before anything is written: absolute or `..` entries, device nodes and FIFOs, entries under a symlink of the same archive, hard links to anything but an earlier entry, entries under a directory that resolves outside the home and /tmp. Not atomic: tar failing half way (400 with its message) leaves what it extracted. Bodies over files.maxBytes (Lambda: 2.5 MiB) → 413.',
    params: wsParams,
    query: filePathQuery,
    rawBody: { description: 'A tar archive (ustar, GNU or pax; not compressed)', contentType: 'application/x-tar' },
    responses: { 200: { description: 'Extracted', schema: archiveWritten } },
    handler: async (service, { params, query, rawBody }) => ({
      status: 200,
      body: await service.writeArchive(params.id, query, rawBody ?? Buffer.alloc(0)),
    }),
  }),
  defineRoute({
    method: 'GET',
    path: '/openapi.json',
    operationId: 'openApi',
    summary: 'This API as an OpenAPI 3.1 document.',
    responses: { 200: { description: 'OpenAPI document' } },
    handler: async () => {
      openApiCache ??= buildOpenApiDocument(routes);
      return { status: 200, body: openApiCache };
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/healthz',
    operationId: 'health',
    summary: 'Liveness (no auth).',
    public: true,
    responses: { 200: { description: 'Alive', schema: healthBody } },
    handler: async () => ({ status: 200, body: { ok: true } }),
  }),
];
