/**
 * One SSM data-channel session (the client side of ECS Exec) over an `SsmTransport`.
 *
 * Protocol summary, checked against the Apache-2.0 Go sources (plugin = aws/session-manager-plugin
 * `src/datachannel/streaming.go`, `src/sessionmanagerplugin/session/*`; agent = aws/amazon-ssm-agent
 * `agent/session/datachannel/datachannel.go`, `agent/session/shell/*`):
 *  - first websocket frame: the token text frame (plugin `FinalizeDataChannelHandshake`);
 *  - each side numbers its own `*_stream_data` messages from 0; control messages (`acknowledge`,
 *    `channel_closed`, ...) carry sequence 0, flags 3;
 *  - the agent opens with HandshakeRequest (payload type 5), waits up to 15 s for our
 *    HandshakeResponse (6), then sends HandshakeComplete (7) and only then starts the command.
 *    The agent acknowledges and DISCARDS any other input that arrives before its handshake is
 *    complete (agent `processStreamDataMessage`), and the plugin starts keyboard/resize handlers only
 *    after HandshakeComplete (plugin `handleHandshakeComplete` → `isSessionTypeSet`). So we send the
 *    response at once but hold keystrokes and terminal sizes until HandshakeComplete arrives.
 *    An agent that skips the handshake starts with plain Output; that also opens the gate
 *    (plugin `ProcessFirstMessage`);
 *  - output is delivered in sequence order; later frames wait in a reorder buffer (acked), earlier
 *    ones are duplicates. The plugin does not ack duplicates, the agent does (`handleStreamDataMessage`
 *    "Resending acknowledge for already processed message"); we ack them like the agent — harmless to
 *    the sender and it stops a resend loop whose first ack was lost;
 *  - a frame that fails parsing/validation is dropped without an ack, not fatal: the plugin's
 *    websocket callback ignores `OutputMessageHandler`'s error, and the agent resends the frame;
 *  - our unacked input is resent oldest-first only (plugin `ResendStreamDataMessageScheduler` resends
 *    only the front of its buffer), after `retransmitMs` (1 s, the plugin's maximum RTO, which its
 *    adaptive RTO reaches under ECS's ~1 s latency); the plugin gives up after ~5 min of resends
 *    (ResendMaxAttempt) and so do we by default (300 × 1 s);
 *  - a websocket ping ("keepalive") every 5 minutes (plugin `StartPings`, `PingTimeInterval`), which also
 *    keeps idle-timeout middleboxes (a NAT gateway drops idle flows after 350 s) from forgetting us;
 *  - not in the plugin, opt-in (`ackTimeoutMs`): input that gets no answer at all — no frame, no pong —
 *    within that time means the path is dead (the agent acks every input message at once), and the
 *    session fails instead of resending into the void for 5 minutes. A peer that stays silent while
 *    nothing is owed to us is never a failure;
 *  - a websocket TEXT frame after the token is not a protocol message: the plugin hands it to the same
 *    handler, which fails to parse it, logs and goes on (`websocketchannel.go` accepts text and binary,
 *    `OutputMessageHandler`'s error is ignored). We ignore it too (counted, logged once per session);
 *  - keystrokes travel in frames of at most 1024 bytes (plugin `StdinBufferLimit`);
 *  - `pause_publication` holds our new input and resends until `start_publication` or any stream
 *    data/ack from the peer (the agent's own rule, `handlePausePublicationMessage` and
 *    `dataChannel.Pause = false` on incoming traffic; the plugin ignores both messages);
 *  - `channel_closed` ends the session normally. InteractiveCommands (ECS Exec) never sends an exit
 *    code: when the process ends the agent waits at most 2 s for its output to be acked
 *    (`PrepareToCloseChannel`), then reports Terminating to the service, which closes the channel. So
 *    on a slow path a dropped frame may never be resent: with later frames still waiting for it, the
 *    session FAILS (the plugin exits 0 and loses them silently); a lost tail cannot be seen.
 */
import { BackendUnavailableError } from '../../../contract/errors.js';
import { decodeClientMessage, encodeClientMessage, MessageType, PayloadType, type ClientMessage } from './codec.js';
import {
  buildAcknowledge,
  buildHandshakeResponse,
  buildInputMessage,
  buildTerminalSize,
  buildTokenFrame,
  parseAcknowledge,
  parseChannelClosed,
  parseHandshakeRequest,
  requestedSessionType,
  CLIENT_VERSION,
} from './messages.js';
import { silentLogger, type Logger } from '../../../log.js';
import { realTimers, type SsmTimers, type SsmTransport } from './transport.js';

/** Bytes per keystroke frame, as the plugin reads stdin (`StdinBufferLimit`). */
const MAX_INPUT_FRAME_BYTES = 1024;
/** The PTY's end-of-file character (VEOF, Ctrl-D). */
const EOF_CHAR = 0x04;

export interface SsmSessionOptions {
  /** `session.tokenValue` from ECS ExecuteCommand. Secret. */
  tokenValue: string;
  clientId?: string;
  clientVersion?: string;
  /** Fail unless the handshake completes (HandshakeComplete received) within this many ms. Default 15000. */
  handshakeTimeoutMs?: number;
  /** Resend the oldest unacknowledged input message after this many ms. Default 1000. */
  retransmitMs?: number;
  /** Give up (session fails) after this many resends of one message. Default 300 (~5 min, as the plugin). */
  maxRetransmits?: number;
  /** Most out-of-order output frames held back; beyond it frames are dropped unacked (the agent resends). Default 10000. */
  maxBufferedFrames?: number;
  /** Largest keystroke frame in bytes. Default 1024. */
  maxInputFrameBytes?: number;
  /** Websocket ping interval in ms (0: none). Default 300000, the plugin's. */
  pingIntervalMs?: number;
  /**
   * Fail the session when input we sent is followed by no traffic at all from the peer (no frame, no
   * pong) for this long, while not paused. 0 (default): off — the plugin has no such rule.
   */
  ackTimeoutMs?: number;
  /** Sent right after the handshake completes when set. */
  terminalSize?: { cols: number; rows: number };
  timers?: SsmTimers;
  /** Where the odd-but-harmless goes (an ignored text frame). Default silent. */
  log?: Logger;
}

export interface SsmSessionEnd {
  reason: 'channel_closed' | 'closed_by_client';
  /** The agent's reason text from `channel_closed`, if any. */
  output: string;
}

export interface SsmHandshakeResult {
  /** The session type the agent asked for; `Standard_Stream` when it skipped the handshake. */
  sessionType: string | undefined;
  /** Empty when the agent skipped the handshake. */
  agentVersion: string;
}

interface PendingInput {
  msg: ClientMessage;
  frame: Buffer;
  resends: number;
}

export class SsmSession {
  /** Resolves when the session ends normally; rejects with BackendUnavailableError on failure. */
  readonly ended: Promise<SsmSessionEnd>;
  /** Resolves once HandshakeComplete arrived (input flows from then on). */
  readonly handshake: Promise<SsmHandshakeResult>;

  private readonly opts: Required<Omit<SsmSessionOptions, 'terminalSize' | 'clientId' | 'log'>> &
    Pick<SsmSessionOptions, 'terminalSize' | 'clientId'>;
  private outputHandlers: Array<(chunk: Buffer, payloadType: number) => void> = [];
  private expectedSeq = 0;
  private readonly outOfOrder = new Map<number, ClientMessage>();
  private nextInputSeq = 0;
  /** Sent, not yet acknowledged, in sequence order (Map keeps insertion order). */
  private readonly unacked = new Map<number, PendingInput>();
  private resendTimer: unknown;
  private queuedInput: Array<{ payload: Buffer; payloadType: number }> = [];
  private handshakeResult: SsmHandshakeResult | undefined;
  private handshakeDone = false;
  private paused = false;
  private done = false;
  private dropped = 0;
  private textFrames = 0;
  private readonly log: Logger;
  private lastInputByte: number | undefined;
  private drainWaiters: Array<() => void> = [];
  private handshakeTimer: unknown;
  private pingTimer: unknown;
  /** Armed while input is owed an answer: fires when the peer stays silent for ackTimeoutMs. */
  private silenceTimer: unknown;
  private resolveEnded!: (v: SsmSessionEnd) => void;
  private rejectEnded!: (e: Error) => void;
  private resolveHandshake!: (v: SsmHandshakeResult) => void;
  private rejectHandshake!: (e: Error) => void;

  constructor(
    private readonly transport: SsmTransport,
    options: SsmSessionOptions,
  ) {
    this.opts = {
      clientVersion: CLIENT_VERSION,
      handshakeTimeoutMs: 15_000,
      retransmitMs: 1_000,
      maxRetransmits: 300,
      maxBufferedFrames: 10_000,
      maxInputFrameBytes: MAX_INPUT_FRAME_BYTES,
      pingIntervalMs: 300_000,
      ackTimeoutMs: 0,
      timers: realTimers,
      ...options,
    };
    this.log = options.log ?? silentLogger;
    if (!(this.opts.maxInputFrameBytes >= 1))
      throw new BackendUnavailableError('ssm session: maxInputFrameBytes must be >= 1');
    this.ended = new Promise((res, rej) => {
      this.resolveEnded = res;
      this.rejectEnded = rej;
    });
    this.handshake = new Promise((res, rej) => {
      this.resolveHandshake = res;
      this.rejectHandshake = rej;
    });
    // Callers that only await `ended` must not see an unhandled rejection from `handshake`.
    this.handshake.catch(() => undefined);
  }

  /** Register a consumer of output payloads (in sequence order). payloadType: 1 Output, 11 StdErr, 12 ExitCode. */
  onOutput(handler: (chunk: Buffer, payloadType: number) => void): void {
    this.outputHandlers.push(handler);
  }

  /**
   * Called once when the session ends: `err` set when it failed (BackendUnavailableError), else
   * `end` says why. Registering after the end still fires (asynchronously).
   */
  onClose(handler: (err: Error | undefined, end: SsmSessionEnd | undefined) => void): void {
    this.ended.then(
      (end) => handler(undefined, end),
      (err: Error) => handler(err, undefined),
    );
  }

  /** Send the token frame and start waiting for the handshake. Call once, after the socket is open. */
  start(): void {
    this.transport.onMessage((data) => this.onFrame(data));
    this.transport.onPong?.(() => this.heardFromPeer());
    this.transport.onClose((err) => {
      if (!this.done) {
        this.fail(new BackendUnavailableError('ssm data channel: websocket closed before channel_closed', err));
      }
    });
    this.transport.send(
      buildTokenFrame({
        tokenValue: this.opts.tokenValue,
        clientVersion: this.opts.clientVersion,
        ...(this.opts.clientId === undefined ? {} : { clientId: this.opts.clientId }),
      }),
    );
    this.handshakeTimer = this.opts.timers.setTimeout(() => {
      const stage = this.handshakeResult ? 'no handshake complete' : 'no handshake request';
      this.fail(
        new BackendUnavailableError(
          `ssm data channel: ${stage} from the agent within ${this.opts.handshakeTimeoutMs} ms`,
        ),
      );
    }, this.opts.handshakeTimeoutMs);
    this.armPing();
  }

  /**
   * Keystrokes / stdin bytes, split into frames of at most `maxInputFrameBytes`. Queued until the
   * handshake is complete. Throws BackendUnavailableError once the session has ended. Empty input is ignored.
   */
  write(data: Buffer | string): void {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    if (this.done) throw new BackendUnavailableError('ssm data channel: session already ended');
    const step = this.opts.maxInputFrameBytes;
    for (let i = 0; i < buf.length; i += step) {
      this.enqueue(Buffer.from(buf.subarray(i, i + step)), PayloadType.Output);
    }
    if (buf.length > 0) this.lastInputByte = buf[buf.length - 1];
  }

  /** Same as `write` (kept for callers of the first version). */
  sendInput(data: Buffer | string): void {
    this.write(data);
  }

  /**
   * End of input: types the PTY's EOF character (Ctrl-D). In canonical mode Ctrl-D after a partial
   * line only flushes that line, so a second one is sent then; the process reading stdin sees EOF.
   * The session itself ends when the process exits (channel_closed) — await `ended`.
   */
  end(): void {
    const needsTwo = this.lastInputByte !== undefined && this.lastInputByte !== 0x0a && this.lastInputByte !== 0x0d;
    this.write(Buffer.from(needsTwo ? [EOF_CHAR, EOF_CHAR] : [EOF_CHAR]));
  }

  sendTerminalSize(cols: number, rows: number): void {
    if (this.done) throw new BackendUnavailableError('ssm data channel: session already ended');
    this.enqueue(buildTerminalSize(cols, rows), PayloadType.Size);
  }

  /** Number of our input messages not yet acknowledged by the agent. */
  get unacknowledgedCount(): number {
    return this.unacked.size;
  }

  /** Frames from the agent dropped because they failed validation (the agent resends them). */
  get droppedFrames(): number {
    return this.dropped;
  }

  /** Websocket text frames from the service, ignored (the plugin ignores them too). */
  get ignoredTextFrames(): number {
    return this.textFrames;
  }

  /** True while the peer has paused publication. */
  get isPaused(): boolean {
    return this.paused;
  }

  /**
   * Resolves when everything written so far has been acknowledged by the agent (queued input
   * included); rejects if the session ends first.
   */
  drained(): Promise<void> {
    if (this.done)
      return this.ended.then(() =>
        Promise.reject(new BackendUnavailableError('ssm data channel: session already ended')),
      );
    if (this.isDrained()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.drainWaiters.push(resolve);
      this.ended.then(
        () => reject(new BackendUnavailableError('ssm data channel: session ended before input was acknowledged')),
        reject,
      );
    });
  }

  /** Close from our side: the session ends with reason `closed_by_client`. */
  close(): void {
    if (this.done) return;
    this.finish();
    this.resolveEnded({ reason: 'closed_by_client', output: '' });
  }

  private isDrained(): boolean {
    return this.unacked.size === 0 && this.queuedInput.length === 0;
  }

  private enqueue(payload: Buffer, payloadType: number): void {
    if (!this.handshakeDone || this.paused) {
      this.queuedInput.push({ payload, payloadType });
      return;
    }
    this.sendStream(payload, payloadType);
  }

  private sendStream(payload: Buffer, payloadType: number): void {
    const msg = buildInputMessage(this.nextInputSeq++, payload, payloadType);
    const pending: PendingInput = { msg, frame: encodeClientMessage(msg), resends: 0 };
    this.unacked.set(msg.sequenceNumber, pending);
    this.sendFrame(pending.frame);
    if (this.resendTimer === undefined) this.armResend();
    if (this.silenceTimer === undefined) this.armSilence();
  }

  private armPing(): void {
    if (!(this.opts.pingIntervalMs > 0) || !this.transport.ping) return;
    this.pingTimer = this.opts.timers.setTimeout(() => {
      if (this.done) return;
      try {
        this.transport.ping?.();
      } catch {
        return; // the socket is gone: its close event ends the session
      }
      this.armPing();
    }, this.opts.pingIntervalMs);
  }

  /** Starts the wait for any sign of life from the peer (only with ackTimeoutMs). */
  private armSilence(): void {
    this.opts.timers.clearTimeout(this.silenceTimer);
    this.silenceTimer = undefined;
    if (!(this.opts.ackTimeoutMs > 0) || this.done || this.unacked.size === 0) return;
    this.silenceTimer = this.opts.timers.setTimeout(() => {
      this.silenceTimer = undefined;
      if (this.done) return;
      if (this.paused) {
        this.armSilence(); // the peer told us to wait
        return;
      }
      this.fail(
        new BackendUnavailableError(
          `ssm data channel: no answer from the agent within ${this.opts.ackTimeoutMs} ms of sending input; the session is dead`,
        ),
      );
    }, this.opts.ackTimeoutMs);
  }

  /** Any frame or pong: the path lives. What is still owed gets a fresh wait. */
  private heardFromPeer(): void {
    if (this.silenceTimer !== undefined) this.armSilence();
  }

  private sendFrame(frame: Buffer): void {
    if (this.done) return;
    try {
      this.transport.send(frame);
    } catch (err) {
      this.fail(new BackendUnavailableError('ssm data channel: send failed', err));
    }
  }

  /** One timer for the oldest unacknowledged message (only the front is ever resent). */
  private armResend(): void {
    this.opts.timers.clearTimeout(this.resendTimer);
    this.resendTimer = undefined;
    if (this.done || this.unacked.size === 0) return;
    this.resendTimer = this.opts.timers.setTimeout(() => {
      this.resendTimer = undefined;
      if (this.done) return;
      const oldest = this.unacked.values().next().value;
      if (!oldest) return;
      if (!this.paused) {
        if (oldest.resends >= this.opts.maxRetransmits) {
          this.fail(
            new BackendUnavailableError(
              `ssm data channel: input message ${oldest.msg.sequenceNumber} not acknowledged after ${oldest.resends} resends`,
            ),
          );
          return;
        }
        oldest.resends++;
        this.sendFrame(oldest.frame);
      }
      this.armResend();
    }, this.opts.retransmitMs);
  }

  private flushQueue(): void {
    const queued = this.queuedInput;
    this.queuedInput = [];
    for (const q of queued) {
      if (this.done) return;
      this.sendStream(q.payload, q.payloadType);
    }
  }

  private release(): void {
    if (this.handshakeDone && !this.paused) this.flushQueue();
  }

  private onFrame(data: Buffer | string): void {
    if (this.done) return;
    this.heardFromPeer();
    // The agent speaks binary frames; a text frame is no protocol message. The plugin ignores it.
    if (typeof data === 'string') {
      if (this.textFrames++ === 0)
        this.log.warn('ssm data channel: ignoring a websocket text frame from the service', { chars: data.length });
      return;
    }
    let msg: ClientMessage;
    try {
      msg = decodeClientMessage(data);
    } catch {
      this.dropped++; // unacked: the agent resends it
      return;
    }
    try {
      this.dispatch(msg);
    } catch (err) {
      this.fail(err instanceof Error ? err : new BackendUnavailableError('ssm data channel: bad message', err));
    }
  }

  private dispatch(msg: ClientMessage): void {
    switch (msg.messageType) {
      case MessageType.OutputStreamData:
        this.unpauseOnTraffic();
        this.onOutputStream(msg);
        return;
      case MessageType.Acknowledge: {
        let seq: number;
        try {
          seq = parseAcknowledge(msg.payload).AcknowledgedMessageSequenceNumber;
        } catch {
          this.dropped++; // the plugin logs and ignores a malformed ack
          return;
        }
        this.unpauseOnTraffic();
        const wasOldest = this.unacked.keys().next().value === seq;
        if (this.unacked.delete(seq) && wasOldest) this.armResend();
        if (this.unacked.size === 0) this.armSilence(); // nothing owed: clears the wait
        if (this.isDrained()) this.notifyDrained();
        return;
      }
      case MessageType.ChannelClosed: {
        const closed = parseChannelClosed(msg.payload);
        if (this.outOfOrder.size > 0) {
          // The agent gave up on a frame we never got (it waits ≤ 2 s for acks before it closes).
          this.fail(
            new BackendUnavailableError(
              `ssm data channel: channel_closed while output was missing from sequence ${this.expectedSeq} ` +
                `(${this.outOfOrder.size} later frame(s) held back); the agent stopped resending it`,
            ),
          );
          return;
        }
        this.finish();
        this.resolveEnded({ reason: 'channel_closed', output: closed.Output });
        return;
      }
      case MessageType.PausePublication:
        this.paused = true;
        return;
      case MessageType.StartPublication:
        this.paused = false;
        this.release();
        return;
      default:
        return; // unknown control messages are ignored, as the plugin does
    }
  }

  private unpauseOnTraffic(): void {
    if (!this.paused) return;
    this.paused = false;
    this.release();
  }

  private onOutputStream(msg: ClientMessage): void {
    if (
      msg.sequenceNumber > this.expectedSeq &&
      !this.outOfOrder.has(msg.sequenceNumber) &&
      this.outOfOrder.size >= this.opts.maxBufferedFrames
    ) {
      return; // no room: leave it unacknowledged so the agent sends it again later
    }
    this.sendFrame(encodeClientMessage(buildAcknowledge(msg)));
    if (msg.sequenceNumber === this.expectedSeq) {
      this.process(msg);
      this.expectedSeq++;
      // Drain frames that were waiting for this one.
      for (let next = this.outOfOrder.get(this.expectedSeq); next; next = this.outOfOrder.get(this.expectedSeq)) {
        if (this.done) return;
        this.outOfOrder.delete(this.expectedSeq);
        this.process(next);
        this.expectedSeq++;
      }
    } else if (msg.sequenceNumber > this.expectedSeq) {
      this.outOfOrder.set(msg.sequenceNumber, msg);
    } // else: a duplicate of something already delivered — acked above, otherwise dropped.
  }

  /** Handle one in-order output stream message. */
  private process(msg: ClientMessage): void {
    switch (msg.payloadType) {
      case PayloadType.HandshakeRequest: {
        const req = parseHandshakeRequest(msg.payload);
        this.handshakeResult = { sessionType: requestedSessionType(req), agentVersion: req.AgentVersion };
        this.sendStream(buildHandshakeResponse(req, this.opts.clientVersion), PayloadType.HandshakeResponse);
        return;
      }
      case PayloadType.HandshakeComplete:
        this.completeHandshake(this.handshakeResult ?? { sessionType: undefined, agentVersion: '' });
        return;
      case PayloadType.Output:
      case PayloadType.StdErr:
      case PayloadType.ExitCode:
        // An agent that skips the handshake starts right away with output (plugin ProcessFirstMessage).
        if (!this.handshakeDone && !this.handshakeResult) {
          this.completeHandshake({ sessionType: 'Standard_Stream', agentVersion: '' });
        }
        for (const h of this.outputHandlers) h(msg.payload, msg.payloadType);
        return;
      default:
        return;
    }
  }

  private completeHandshake(result: SsmHandshakeResult): void {
    if (this.handshakeDone) return;
    this.handshakeDone = true;
    this.opts.timers.clearTimeout(this.handshakeTimer);
    if (this.opts.terminalSize) {
      // Ahead of queued keystrokes, as the plugin's resize loop starts with the handlers.
      this.queuedInput.unshift({
        payload: buildTerminalSize(this.opts.terminalSize.cols, this.opts.terminalSize.rows),
        payloadType: PayloadType.Size,
      });
    }
    this.resolveHandshake(result);
    this.release();
  }

  private notifyDrained(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  private finish(handshakeError?: Error): void {
    this.done = true;
    this.opts.timers.clearTimeout(this.handshakeTimer);
    this.opts.timers.clearTimeout(this.resendTimer);
    this.resendTimer = undefined;
    this.opts.timers.clearTimeout(this.pingTimer);
    this.opts.timers.clearTimeout(this.silenceTimer);
    this.silenceTimer = undefined;
    this.unacked.clear();
    // No-op when the handshake already resolved.
    this.rejectHandshake(
      handshakeError ?? new BackendUnavailableError('ssm data channel: session ended before the handshake'),
    );
    this.transport.close();
  }

  private fail(err: Error): void {
    if (this.done) return;
    this.finish(err);
    this.rejectEnded(err);
  }
}
