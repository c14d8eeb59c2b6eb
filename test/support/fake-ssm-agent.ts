import type { ChildProcessWithoutNullStreams } from 'node:child_process';
/**
 * A loopback (127.0.0.1) websocket server that plays the AGENT side of SSM data channels — the
 * amazon-ssm-agent and the Message Gateway Service in one — bridging each session to a real process
 * the test spawns. Behaviour follows the Apache-2.0 Go agent (`agent/session/datachannel/datachannel.go`,
 * `agent/session/shell/shell.go`, `shell_unix.go`, `plugins/sessionplugin/sessionplugin.go`):
 *  - the client's first frame must be the token text frame with a token this server issued for
 *    that session (else the socket is closed, code 1008);
 *  - the agent's stream numbers from 0, SYN flag on sequence 0: HandshakeRequest (SessionType
 *    InteractiveCommands) → waits up to 15 s for the HandshakeResponse (any action status ≠ 1 cancels
 *    the session) → HandshakeComplete → only then the process is started;
 *  - client input (`input_stream_data`): in order → processed, then acked; ahead → buffered and acked;
 *    behind → re-acked (duplicates are acked). Input other than the response that arrives before
 *    the handshake is complete is acked and DISCARDED (counted in `inputDiscardedBeforeHandshake`).
 *    Input while the process is not started yet is not acked (ErrHandlerNotReady), so the client resends;
 *  - payload type 1 is written to the process, 3 (size) is recorded, 10 (flags) is ignored;
 *  - process output goes out as `output_stream_data` payload type 1 in reads of ≤ 1024 bytes, an
 *    incomplete UTF-8 sequence at the end of a read held back for the next one (`processStdoutData`,
 *    including its quirk: a literal U+FFFD in the output loses its last two bytes);
 *  - unacked output: only the oldest is resent, once it is older than the RTO (200 ms, then adaptive,
 *    ≤ 1 s; checked every 100 ms), with no attempt limit;
 *  - process end → wait (≤ 2 s, `closeDrainMs`) for all output to be acked → `channel_closed` (what the
 *    service sends after the agent reports Terminating) → socket closed, also when frames are still
 *    unacked (counted in `outputFramesUnackedAtClose`). InteractiveCommands sends no exit code.
 * Deliberate differences: frames failing `decodeClientMessage` (which checks the payload digest, the
 * agent does not) are dropped and counted in `invalidFrames`; `dropEveryNthOutput` /
 * `duplicateEveryNthOutput` / `dropInputSeqsOnce` simulate a lossy path (a dropped frame is only ever
 * recovered by the sender's resend).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  decodeClientMessage,
  encodeClientMessage,
  MessageType,
  PayloadType,
  type ClientMessage,
} from '../../shared/backends/ecs/ssm/codec.js';

export interface AgentProcess {
  write(data: Buffer): void;
  onData(cb: (b: Buffer) => void): void;
  onExit(cb: (code: number | null) => void): void;
  kill(): void;
}

/**
 * A local child process as the agent's session process: its stdout is the session's output, writes
 * go to its stdin (ignored once it has exited), `onExit` fires once with its exit code.
 */
export function childAgentProcess(child: ChildProcessWithoutNullStreams): AgentProcess {
  const exitHandlers: Array<(code: number | null) => void> = [];
  let exit: number | null | undefined;
  child.on('close', (code) => {
    exit = code;
    for (const h of exitHandlers) h(code);
  });
  child.stdin.on('error', () => undefined); // writes racing the exit
  return {
    write: (data) => {
      if (exit === undefined) child.stdin.write(data);
    },
    onData: (cb) => child.stdout.on('data', cb),
    onExit: (cb) => {
      if (exit !== undefined) cb(exit);
      else exitHandlers.push(cb);
    },
    kill: () => child.kill('SIGKILL'),
  };
}

export interface FakeSsmAgentOptions {
  /** Starts the command of a session once its handshake is complete (the agent's pty start). */
  spawn: (session: { sessionId: string; command: string }) => Promise<AgentProcess>;
  /** Do not send every Nth first transmission of an output stream frame (1-based count per session). */
  dropEveryNthOutput?: number;
  /** Send every Nth output stream frame twice. */
  duplicateEveryNthOutput?: number;
  /** Lose the first arrival of the client's input stream messages with these sequence numbers (no ack: the client must resend). */
  dropInputSeqsOnce?: number[];
  /** How long the agent waits for the HandshakeResponse. Default 15000 (the agent's `handshakeTimeout`). */
  handshakeTimeoutMs?: number;
  /**
   * How long a process's end waits for its output to be acked before channel_closed. Default 2000 (the
   * agent's PrepareToCloseChannel). Longer in tests of delivery under loss on a loaded machine.
   */
  closeDrainMs?: number;
  /** Fixed resend timeout in ms instead of the agent's adaptive one (200 ms start, ≤ 1 s). */
  resendAfterMs?: number;
  agentVersion?: string;
}

export type FakeSessionState = 'issued' | 'handshaking' | 'running' | 'stalled' | 'closing' | 'closed';

/** What a test can observe about one session. */
export interface FakeAgentSession {
  readonly sessionId: string;
  readonly command: string;
  state: FakeSessionState;
  clientVersion?: string;
  terminalSize?: { cols: number; rows: number };
  /** Input frames (any payload type) acknowledged. */
  inputFramesAcked: number;
  /** Keystroke bytes written to the process. */
  inputBytes: number;
  /** Input frames lost on purpose (`dropInputSeqsOnce`). */
  inputFramesDropped: number;
  inputDiscardedBeforeHandshake: number;
  outputFramesSent: number;
  outputFramesDropped: number;
  outputFramesDuplicated: number;
  resends: number;
  /** Output frames still unacknowledged when channel_closed was sent (lost to the client). */
  outputFramesUnackedAtClose: number;
  invalidFrames: number;
  rejectedConnections: number;
  exitCode?: number | null;
  /** Why the session closed: 'exited', 'killed', 'handshake failed: …', 'client closed'. */
  closeReason?: string;
}

const RESEND_CHECK_MS = 100; // agent ResendSleepInterval
const MAX_RTO_MS = 1000; // agent MaxTransmissionTimeout
const CLOSE_DRAIN_MS = 2000; // agent PrepareToCloseChannel
const READ_SIZE = 1024; // agent StreamDataPayloadSize
const INCOMING_CAPACITY = 100_000;

interface Outgoing {
  seq: number;
  frame: Buffer;
  lastSent: number;
}

class AgentConnection {
  private outSeq = 0;
  private readonly outgoing: Outgoing[] = [];
  private expectedIn = 0;
  private readonly incoming = new Map<number, ClientMessage>();
  private readonly droppedInput = new Set<number>();
  private handshakeComplete = false;
  private proc: AgentProcess | undefined;
  private firstFrame = true;
  private frameCount = 0;
  private rtt = 100;
  private rttVar = 0;
  private rto = 200;
  private carry: Buffer = Buffer.alloc(0);
  private readonly resendTimer: ReturnType<typeof setInterval>;
  private handshakeTimer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  /** A dead path: nothing in or out (frames and pings vanish), the socket stays open. */
  private stalled = false;

  constructor(
    private readonly ws: WebSocket,
    readonly info: FakeAgentSession,
    private readonly token: string,
    private readonly opts: FakeSsmAgentOptions,
  ) {
    this.resendTimer = setInterval(() => this.resendOldest(), RESEND_CHECK_MS);
    ws.on('message', (raw, isBinary) => this.onMessage(raw as Buffer, isBinary));
    // Pongs by hand (the server has autoPong off), so a stalled path answers no ping either.
    ws.on('ping', (data) => {
      if (!this.stalled && ws.readyState === ws.OPEN) ws.pong(data);
    });
    ws.on('close', () => {
      if (!this.closed) this.shutdown('client closed');
    });
  }

  /** A websocket TEXT frame from the service side (the plugin ignores them; so must a client). */
  sendText(text: string): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(text, { binary: false });
  }

  /** From now on the path is dead: nothing is received or sent, no resend, no pong; the socket stays open. */
  stall(): void {
    this.stalled = true;
    this.info.state = 'stalled';
  }

  /** Agent-side termination: 'drop' = the socket vanishes (task gone); 'close' = channel_closed first. */
  kill(mode: 'drop' | 'close'): void {
    if (this.closed) return;
    this.proc?.kill();
    if (mode === 'close') this.sendChannelClosed('Session terminated by the agent.');
    this.shutdown('killed');
    if (mode === 'drop') this.ws.terminate();
    else this.ws.close(1000);
  }

  private onMessage(raw: Buffer, isBinary: boolean): void {
    if (this.closed || this.stalled) return;
    if (this.firstFrame) {
      this.firstFrame = false;
      this.onToken(raw, isBinary);
      return;
    }
    if (!isBinary) return;
    let msg: ClientMessage;
    try {
      msg = decodeClientMessage(raw);
    } catch {
      this.info.invalidFrames++;
      return;
    }
    switch (msg.messageType) {
      case MessageType.InputStreamData:
        if (this.opts.dropInputSeqsOnce?.includes(msg.sequenceNumber) && !this.droppedInput.has(msg.sequenceNumber)) {
          this.droppedInput.add(msg.sequenceNumber);
          this.info.inputFramesDropped++;
          return;
        }
        this.onInput(msg);
        return;
      case MessageType.Acknowledge:
        this.onAck(msg);
        return;
      default:
        return;
    }
  }

  private onToken(raw: Buffer, isBinary: boolean): void {
    let frame: Record<string, unknown> | undefined;
    try {
      frame = isBinary ? undefined : (JSON.parse(raw.toString('utf8')) as Record<string, unknown>);
    } catch {
      frame = undefined;
    }
    if (
      frame?.MessageSchemaVersion !== '1.0' ||
      frame.TokenValue !== this.token ||
      typeof frame.RequestId !== 'string'
    ) {
      this.info.rejectedConnections++;
      this.closed = true;
      clearInterval(this.resendTimer);
      this.ws.close(1008, 'invalid token');
      return;
    }
    if (typeof frame.ClientVersion === 'string') this.info.clientVersion = frame.ClientVersion;
    this.info.state = 'handshaking';
    this.sendStream(
      PayloadType.HandshakeRequest,
      Buffer.from(
        JSON.stringify({
          AgentVersion: this.opts.agentVersion ?? '3.3.2299.0',
          RequestedClientActions: [
            {
              ActionType: 'SessionType',
              ActionParameters: {
                SessionType: 'InteractiveCommands',
                Properties: { commands: this.info.command, runAsElevated: true },
              },
            },
          ],
        }),
      ),
    );
    this.handshakeTimer = setTimeout(
      () =>
        this.failHandshake(
          'Handshake timed out. Please ensure that you have the latest version of the session manager plugin.',
        ),
      this.opts.handshakeTimeoutMs ?? 15_000,
    );
  }

  private failHandshake(why: string): void {
    if (this.closed) return;
    this.sendChannelClosed(`Encountered error while initiating handshake. ${why}`);
    this.shutdown(`handshake failed: ${why}`);
    this.ws.close(1000);
  }

  /** agent handleStreamDataMessage */
  private onInput(msg: ClientMessage): void {
    if (msg.sequenceNumber === this.expectedIn) {
      if (!this.processInput(msg)) return; // not ready: no ack, the client resends
      this.ack(msg);
      this.expectedIn++;
      for (let next = this.incoming.get(this.expectedIn); next; next = this.incoming.get(this.expectedIn)) {
        if (!this.processInput(next)) return; // stays buffered (as in the agent)
        this.incoming.delete(this.expectedIn);
        this.expectedIn++;
      }
    } else if (msg.sequenceNumber > this.expectedIn) {
      if (this.incoming.size < INCOMING_CAPACITY) {
        this.ack(msg);
        this.incoming.set(msg.sequenceNumber, msg);
      }
    } else {
      this.ack(msg); // "Resending acknowledge for already processed message"
    }
  }

  /** agent processStreamDataMessage + shell InputStreamMessageHandler; false = handler not ready. */
  private processInput(msg: ClientMessage): boolean {
    if (this.closed) return false;
    if (msg.payloadType === PayloadType.HandshakeResponse) {
      this.onHandshakeResponse(msg.payload);
      return true;
    }
    if (!this.handshakeComplete) {
      this.info.inputDiscardedBeforeHandshake++;
      return true;
    }
    if (!this.proc) return false;
    if (msg.payloadType === PayloadType.Output) {
      this.proc.write(msg.payload);
      this.info.inputBytes += msg.payload.length;
    } else if (msg.payloadType === PayloadType.Size) {
      try {
        const size = JSON.parse(msg.payload.toString('utf8')) as { cols: number; rows: number };
        this.info.terminalSize = { cols: size.cols, rows: size.rows };
      } catch {
        return true; // the agent returns an error here; the message is then neither acked nor retried usefully
      }
    }
    return true;
  }

  private onHandshakeResponse(payload: Buffer): void {
    if (this.handshakeComplete) return;
    clearTimeout(this.handshakeTimer);
    let actions: Array<{ ActionType?: string; ActionStatus?: number; Error?: string }> = [];
    try {
      const body = JSON.parse(payload.toString('utf8')) as { ProcessedClientActions?: typeof actions };
      actions = body.ProcessedClientActions ?? [];
    } catch {
      this.failHandshake('Unmarshalling of HandshakeResponse message failed');
      return;
    }
    const bad = actions.find((a) => a.ActionStatus !== 1);
    if (bad) {
      this.failHandshake(
        `${bad.ActionType} failed on client with status ${bad.ActionStatus} error: ${bad.Error ?? ''}`,
      );
      return;
    }
    this.sendStream(
      PayloadType.HandshakeComplete,
      Buffer.from(JSON.stringify({ HandshakeTimeToComplete: 1_000_000, CustomerMessage: '' })),
    );
    this.handshakeComplete = true;
    this.info.state = 'running';
    void this.startProcess();
  }

  private async startProcess(): Promise<void> {
    let proc: AgentProcess;
    try {
      proc = await this.opts.spawn({ sessionId: this.info.sessionId, command: this.info.command });
    } catch (err) {
      this.sendChannelClosed(`Unable to start command: ${(err as Error).message}`);
      this.shutdown('spawn failed');
      this.ws.close(1000);
      return;
    }
    if (this.closed) {
      proc.kill();
      return;
    }
    this.proc = proc;
    proc.onData((b) => this.pumpOutput(b));
    proc.onExit((code) => void this.onExit(code));
  }

  /** agent writePump / processStdoutData: 1024-byte reads, incomplete UTF-8 tail carried over. */
  private pumpOutput(data: Buffer): void {
    for (let i = 0; i < data.length; i += READ_SIZE) {
      const bytes = Buffer.concat([this.carry, data.subarray(i, i + READ_SIZE)]);
      const { out, rest } = splitUtf8LikeGo(bytes);
      this.carry = rest;
      this.sendStream(PayloadType.Output, out);
    }
  }

  private async onExit(code: number | null): Promise<void> {
    if (this.closed) return;
    this.info.exitCode = code;
    this.info.state = 'closing';
    const deadline = Date.now() + (this.opts.closeDrainMs ?? CLOSE_DRAIN_MS);
    while (this.outgoing.length > 0 && Date.now() < deadline && !this.closed) {
      await new Promise((r) => setTimeout(r, 10));
    }
    if (this.closed) return;
    this.info.outputFramesUnackedAtClose = this.outgoing.length;
    this.sendChannelClosed('');
    this.shutdown('exited');
    this.ws.close(1000);
  }

  private sendStream(payloadType: number, payload: Buffer): void {
    if (payload.length === 0 || this.closed) return; // the agent ignores empty stream payloads
    const seq = this.outSeq++;
    const frame = encodeClientMessage({
      messageType: MessageType.OutputStreamData,
      schemaVersion: 1,
      createdDate: Date.now(),
      sequenceNumber: seq,
      flags: seq === 0 ? 1 : 0,
      messageId: randomUUID(),
      payloadType,
      payload,
    });
    this.outgoing.push({ seq, frame, lastSent: Date.now() });
    const n = ++this.frameCount;
    if (this.opts.dropEveryNthOutput && n % this.opts.dropEveryNthOutput === 0) {
      this.info.outputFramesDropped++;
      return;
    }
    this.sendRaw(frame);
    this.info.outputFramesSent++;
    if (this.opts.duplicateEveryNthOutput && n % this.opts.duplicateEveryNthOutput === 0) {
      this.sendRaw(frame);
      this.info.outputFramesDuplicated++;
    }
  }

  private sendControl(messageType: string, payload: Buffer): void {
    this.sendRaw(
      encodeClientMessage({
        messageType,
        schemaVersion: 1,
        createdDate: Date.now(),
        sequenceNumber: 0,
        flags: 3,
        messageId: randomUUID(),
        payloadType: PayloadType.None,
        payload,
      }),
    );
  }

  private ack(msg: ClientMessage): void {
    this.info.inputFramesAcked++;
    this.sendControl(
      MessageType.Acknowledge,
      Buffer.from(
        JSON.stringify({
          AcknowledgedMessageType: msg.messageType,
          AcknowledgedMessageId: msg.messageId,
          AcknowledgedMessageSequenceNumber: msg.sequenceNumber,
          IsSequentialMessage: true,
        }),
      ),
    );
  }

  private sendChannelClosed(output: string): void {
    this.sendControl(
      MessageType.ChannelClosed,
      Buffer.from(
        JSON.stringify({
          MessageId: randomUUID(),
          CreatedDate: new Date().toISOString(),
          DestinationId: 'ecs:fake',
          SessionId: this.info.sessionId,
          MessageType: MessageType.ChannelClosed,
          SchemaVersion: 1,
          Output: output,
        }),
      ),
    );
  }

  /** agent ProcessAcknowledgedMessage + calculateRetransmissionTimeout */
  private onAck(msg: ClientMessage): void {
    let seq: number;
    try {
      seq = (JSON.parse(msg.payload.toString('utf8')) as { AcknowledgedMessageSequenceNumber: number })
        .AcknowledgedMessageSequenceNumber;
    } catch {
      return;
    }
    const i = this.outgoing.findIndex((o) => o.seq === seq);
    if (i < 0) return;
    const [o] = this.outgoing.splice(i, 1);
    const sample = Date.now() - o!.lastSent;
    this.rttVar = 0.75 * this.rttVar + 0.25 * Math.abs(this.rtt - sample);
    this.rtt = 0.875 * this.rtt + 0.125 * sample;
    this.rto = Math.min(MAX_RTO_MS, this.rtt + Math.max(10, 4 * this.rttVar));
  }

  /** agent ResendStreamDataMessageScheduler: only the front, once it is older than the RTO. */
  private resendOldest(): void {
    const front = this.outgoing[0];
    if (!front || this.closed) return;
    if (Date.now() - front.lastSent > (this.opts.resendAfterMs ?? this.rto)) {
      this.sendRaw(front.frame);
      front.lastSent = Date.now();
      this.info.resends++;
    }
  }

  private sendRaw(frame: Buffer): void {
    if (this.stalled) return;
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(frame, { binary: true });
  }

  private shutdown(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.resendTimer);
    clearTimeout(this.handshakeTimer);
    this.info.state = 'closed';
    this.info.closeReason ??= reason;
    if (reason === 'client closed') this.proc?.kill();
  }
}

/**
 * Go's processStdoutData over one buffer: valid runes pass; an invalid byte passes alone; an invalid
 * sequence within the last 3 bytes is held back. `utf8.RuneError` is compared by value, so a literal
 * U+FFFD (EF BF BD) counts as invalid: one byte is written and three consumed.
 */
export function splitUtf8LikeGo(bytes: Buffer): { out: Buffer; rest: Buffer } {
  const out: number[] = [];
  let i = 0;
  while (i < bytes.length) {
    const { rune, size } = decodeRune(bytes, i);
    if (rune === 0xfffd) {
      if (bytes.length - i < 4) break;
      out.push(bytes[i]!);
    } else {
      for (let k = 0; k < size; k++) out.push(bytes[i + k]!);
    }
    i += size;
  }
  return { out: Buffer.from(out), rest: Buffer.from(bytes.subarray(i)) };
}

/** Go utf8.DecodeRune: (RuneError, 1) for anything invalid or incomplete. */
function decodeRune(b: Buffer, i: number): { rune: number; size: number } {
  const c0 = b[i]!;
  if (c0 < 0x80) return { rune: c0, size: 1 };
  const need = c0 >= 0xc2 && c0 <= 0xdf ? 2 : c0 >= 0xe0 && c0 <= 0xef ? 3 : c0 >= 0xf0 && c0 <= 0xf4 ? 4 : 0;
  if (need === 0 || i + need > b.length) return { rune: 0xfffd, size: 1 };
  const c1 = b[i + 1]!;
  // Second-byte ranges that exclude overlongs, surrogates and > U+10FFFF.
  const lo = c0 === 0xe0 ? 0xa0 : c0 === 0xf0 ? 0x90 : 0x80;
  const hi = c0 === 0xed ? 0x9f : c0 === 0xf4 ? 0x8f : 0xbf;
  if (c1 < lo || c1 > hi) return { rune: 0xfffd, size: 1 };
  let rune = need === 2 ? c0 & 0x1f : need === 3 ? c0 & 0x0f : c0 & 0x07;
  rune = (rune << 6) | (c1 & 0x3f);
  for (let k = 2; k < need; k++) {
    const c = b[i + k]!;
    if (c < 0x80 || c > 0xbf) return { rune: 0xfffd, size: 1 };
    rune = (rune << 6) | (c & 0x3f);
  }
  return { rune, size: need };
}

export class FakeSsmAgent {
  private readonly infos = new Map<string, FakeAgentSession>();
  private readonly tokens = new Map<string, string>();
  private readonly connections = new Map<string, AgentConnection>();

  private constructor(
    private readonly server: WebSocketServer,
    private readonly opts: FakeSsmAgentOptions,
  ) {
    server.on('connection', (ws, req) => this.onConnection(ws, req.url ?? ''));
  }

  static async start(opts: FakeSsmAgentOptions): Promise<FakeSsmAgent> {
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0, autoPong: false });
    await new Promise<void>((resolve, reject) => {
      server.once('listening', () => resolve());
      server.once('error', reject);
    });
    return new FakeSsmAgent(server, opts);
  }

  /** Sessions by id, as a test observes them. */
  get sessions(): ReadonlyMap<string, FakeAgentSession> {
    return this.infos;
  }

  /** What ExecuteCommand returns: register a session for `command`, return { sessionId, streamUrl, tokenValue }. */
  openSession(command: string): { sessionId: string; streamUrl: string; tokenValue: string } {
    const sessionId = `ecs-execute-command-${randomBytes(9).toString('hex')}`;
    const tokenValue = randomBytes(48).toString('base64');
    this.tokens.set(sessionId, tokenValue);
    this.infos.set(sessionId, {
      sessionId,
      command,
      state: 'issued',
      inputFramesAcked: 0,
      inputBytes: 0,
      inputFramesDropped: 0,
      inputDiscardedBeforeHandshake: 0,
      outputFramesSent: 0,
      outputFramesDropped: 0,
      outputFramesDuplicated: 0,
      resends: 0,
      outputFramesUnackedAtClose: 0,
      invalidFrames: 0,
      rejectedConnections: 0,
    });
    const port = (this.server.address() as AddressInfo).port;
    return {
      sessionId,
      streamUrl: `ws://127.0.0.1:${port}/v1/data-channel/${sessionId}?role=publish_subscribe&cell-number=AAEAAQ==`,
      tokenValue,
    };
  }

  /**
   * The session's path dies silently (what a Lambda finds after a freeze when the connection was
   * dropped on the way: no FIN, no RST): the socket stays open but nothing gets through either way.
   */
  stall(sessionId: string): void {
    this.connections.get(sessionId)?.stall();
  }

  /** Send a websocket text frame on a live session (what the service might send; not a protocol message). */
  sendText(sessionId: string, text: string): void {
    this.connections.get(sessionId)?.sendText(text);
  }

  /**
   * Terminate a session from the agent side (task stopped). Default 'drop': the process is killed and
   * the socket vanishes without channel_closed; 'close' sends channel_closed first.
   */
  kill(sessionId: string, mode: 'drop' | 'close' = 'drop'): void {
    this.connections.get(sessionId)?.kill(mode);
    const info = this.infos.get(sessionId);
    if (info && info.state === 'issued') {
      info.state = 'closed';
      info.closeReason = 'killed';
    }
  }

  async stop(): Promise<void> {
    for (const id of this.connections.keys()) this.kill(id);
    for (const c of this.server.clients) c.terminate();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(ws: WebSocket, url: string): void {
    const path = new URL(url, 'http://127.0.0.1').pathname;
    const sessionId = path.startsWith('/v1/data-channel/') ? path.slice('/v1/data-channel/'.length) : '';
    const info = this.infos.get(sessionId);
    const token = this.tokens.get(sessionId);
    if (!info || token === undefined || info.state !== 'issued' || this.connections.has(sessionId)) {
      if (info) info.rejectedConnections++;
      ws.close(1008, 'unknown or used session');
      return;
    }
    this.connections.set(sessionId, new AgentConnection(ws, info, token, this.opts));
  }
}
