import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import { bearerMatches } from '../../shared/api/auth.js';
import { toErrorResponse } from '../../shared/api/errors.js';
import {
  commandId as commandIdSchema,
  terminalSize,
  workspaceId as workspaceIdSchema,
} from '../../shared/api/schemas.js';
import { BadRequestError } from '../../shared/contract/errors.js';
import type { CommandView } from '../../shared/contract/views.js';
import { errorFields, type Logger } from '../../shared/log.js';
import type { WorkspaceService } from '../../shared/service/types.js';

/**
 * `GET /workspaces/{id}/commands/{cid}/attach` upgraded to a WebSocket (the local server only): what
 * a terminal UI needs — output as it comes, input as it is typed, resizes. The same service calls as
 * the HTTP routes (getCommand from offsets, writeStdin, resizeCommand), so the same checks hold; the
 * bearer token is required on the upgrade request itself.
 *
 * Frames: server → client binary `[stream byte: 1 stdout, 2 stderr] + bytes`, then one text frame
 * `{"type":"end","command":…}` and a normal close. Client → server binary = stdin bytes; text
 * `{"type":"resize","rows","cols"}`, `{"type":"eof"}`. An error is a text frame
 * `{"type":"error","status","error":{code,message}}` (the socket stays open for the next input).
 */

const ATTACH_PATH = /^\/workspaces\/([^/]+)\/commands\/([^/]+)\/attach$/;
/** Output polling: quick while output flows (typing echoes), slower when idle. */
const POLL_BUSY_MS = 15;
const POLL_IDLE_MS = 100;
const READ_LIMIT = 256 * 1024;

export interface AttachOptions {
  service: WorkspaceService;
  authToken: string | undefined;
  log: Logger;
}

/** Serve attach upgrades on `server`; returns what closes every attached socket. */
export function serveAttach(server: Server, options: AttachOptions): () => void {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    void upgrade(wss, req, socket, head, options).catch((error: unknown) => {
      options.log.error('attach failed', errorFields(error));
      socket.destroy();
    });
  });
  return () => {
    for (const client of wss.clients) client.terminate();
    wss.close();
  };
}

async function upgrade(
  wss: WebSocketServer,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  { service, authToken, log }: AttachOptions,
): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const m = ATTACH_PATH.exec(url.pathname);
  if (m === null) return refuse(socket, 404, { code: 'not_found', message: 'no WebSocket here' });
  if (authToken !== undefined && !bearerMatches(req.headers.authorization, authToken))
    return refuse(socket, 401, { code: 'unauthorized', message: 'missing or wrong bearer token' });
  const id = workspaceIdSchema.safeParse(decodeURIComponent(m[1]!));
  const cid = commandIdSchema.safeParse(decodeURIComponent(m[2]!));
  if (!id.success || !cid.success)
    return refuse(socket, 400, { code: 'bad_request', message: 'not a workspace/command id' });
  const offsets = { stdout: offsetParam(url, 'stdoutOffset'), stderr: offsetParam(url, 'stderrOffset') };
  try {
    await service.getCommand(id.data, cid.data, { stdoutOffset: 0, stderrOffset: 0, limit: 0, waitMs: 0 });
  } catch (error) {
    const answer = toErrorResponse(error, log);
    return refuse(socket, answer.status, answer.body.error);
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    log.info('attached', { workspaceId: id.data, commandId: cid.data });
    attach(ws, service, log, id.data, cid.data, offsets);
  });
}

function attach(
  ws: WebSocket,
  service: WorkspaceService,
  log: Logger,
  id: string,
  cid: string,
  offsets: { stdout: number; stderr: number },
): void {
  const closed = new AbortController();
  ws.on('close', () => closed.abort());
  ws.on('error', () => closed.abort());
  const fail = (error: unknown) => {
    if (ws.readyState !== ws.OPEN) return;
    const answer = toErrorResponse(error, log);
    ws.send(JSON.stringify({ type: 'error', status: answer.status, error: answer.body.error }));
  };
  // Input in arrival order: each message waits for the one before.
  let input = Promise.resolve();
  ws.on('message', (data: RawData, isBinary: boolean) => {
    input = input.then(() => deliver(service, id, cid, data, isBinary)).catch(fail);
  });
  void pump(ws, service, id, cid, offsets, closed.signal).catch((error: unknown) => {
    fail(error);
    ws.close(1011, 'output failed');
  });
}

async function deliver(service: WorkspaceService, id: string, cid: string, data: RawData, isBinary: boolean) {
  const bytes = Buffer.isBuffer(data) ? data : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]);
  if (isBinary) return service.writeStdin(id, cid, bytes, { eof: false });
  let message: { type?: unknown; rows?: unknown; cols?: unknown };
  try {
    message = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new BadRequestError('a text frame is a JSON message');
  }
  if (message.type === 'eof') return service.writeStdin(id, cid, Buffer.alloc(0), { eof: true });
  if (message.type === 'resize') {
    const size = terminalSize.safeParse({ rows: message.rows, cols: message.cols });
    if (!size.success) throw new BadRequestError('resize needs rows and cols in 1..1000');
    return service.resizeCommand(id, cid, size.data);
  }
  throw new BadRequestError(`unknown message type '${String(message.type)}'`);
}

/** Output from the offsets on, as it comes; then the end. */
async function pump(
  ws: WebSocket,
  service: WorkspaceService,
  id: string,
  cid: string,
  offsets: { stdout: number; stderr: number },
  signal: AbortSignal,
): Promise<void> {
  let idle = 0;
  while (!signal.aborted) {
    const view = await service.getCommand(id, cid, {
      stdoutOffset: offsets.stdout,
      stderrOffset: offsets.stderr,
      limit: READ_LIMIT,
      waitMs: 0,
    });
    let moved = false;
    for (const [stream, tag] of [
      ['stdout', 1],
      ['stderr', 2],
    ] as const) {
      const s = view[stream];
      if (s.nextOffset <= offsets[stream]) continue;
      const bytes = Buffer.from(s.data, s.encoding === 'base64' ? 'base64' : 'utf8');
      ws.send(Buffer.concat([Buffer.from([tag]), bytes]), { binary: true });
      offsets[stream] = s.nextOffset;
      moved = true;
    }
    if (view.state !== 'running' && !moved) {
      ws.send(JSON.stringify({ type: 'end', command: withoutOutput(view) }));
      ws.close(1000, view.state);
      return;
    }
    idle = moved ? 0 : idle + 1;
    await new Promise((r) => setTimeout(r, idle < 20 ? POLL_BUSY_MS : POLL_IDLE_MS));
  }
}

function withoutOutput(view: CommandView): CommandView {
  return { ...view, stdout: { ...view.stdout, data: '' }, stderr: { ...view.stderr, data: '' } };
}

function offsetParam(url: URL, name: string): number {
  const n = Number(url.searchParams.get(name) ?? 0);
  return Number.isInteger(n) && n >= 0 ? n : 0;
}

/** An HTTP answer on the raw socket, before any upgrade. */
function refuse(socket: Duplex, status: number, error: { code: string; message: string }): void {
  const body = JSON.stringify({ error });
  socket.end(
    `HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}
