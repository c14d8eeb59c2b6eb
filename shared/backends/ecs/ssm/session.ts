/**
 * One SSM data-channel session (the client side of ECS Exec) over an `SsmTransport`.
 *
 * Protocol duties (after `src/datachannel/streaming.go` of `aws/session-manager-plugin`):
 *  - first frame: the token text frame;
 *  - every `output_stream_data` is acknowledged — duplicates too, because a duplicate means the
 *    agent missed our earlier ack and will keep resending until it gets one;
 *  - output is delivered in sequence order from 0: later frames are buffered, earlier ones dropped;
 *  - our own `input_stream_data` is numbered from 0 (handshake response, sizes and keystrokes share
 *    the counter) and resent every `retransmitMs` until the agent acknowledges it;
 *  - the agent's HandshakeRequest is answered by echoing its SessionType; if none arrives within
 *    `handshakeTimeoutMs` (default 15 s, the agent's own window) the session fails;
 *  - `pause_publication` / `start_publication` hold back and release our new input;
 *  - `channel_closed` ends the session normally.
 * Input written before the handshake is queued and sent after the handshake response.
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
import { realTimers, type SsmTimers, type SsmTransport } from './transport.js';

export interface SsmSessionOptions {
  /** `session.tokenValue` from ECS ExecuteCommand. Secret. */
  tokenValue: string;
  clientId?: string;
  clientVersion?: string;
  /** Fail if no HandshakeRequest arrives within this many ms. Default 15000. */
  handshakeTimeoutMs?: number;
  /** Resend an unacknowledged input message after this many ms. Default 1000. */
  retransmitMs?: number;
  /** Give up (session fails) after this many resends of one message. Default 30. */
  maxRetransmits?: number;
  /** Most out-of-order output frames held back; beyond it frames are dropped unacked (the agent resends). Default 10000. */
  maxBufferedFrames?: number;
  /** Sent right after the handshake response when set. */
  terminalSize?: { cols: number; rows: number };
  timers?: SsmTimers;
}

export interface SsmSessionEnd {
  reason: 'channel_closed' | 'closed_by_client';
  /** The agent's reason text from `channel_closed`, if any. */
  output: string;
}

interface PendingInput {
  msg: ClientMessage;
  frame: Buffer;
  resends: number;
  timer: unknown;
}

export class SsmSession {
  /** Resolves when the session ends normally; rejects with BackendUnavailableError on failure. */
  readonly ended: Promise<SsmSessionEnd>;
  /** Resolves with the agreed session type once the handshake response is sent. */
  readonly handshake: Promise<{ sessionType: string | undefined; agentVersion: string }>;

  private readonly opts: Required<Omit<SsmSessionOptions, 'terminalSize' | 'clientId'>> &
    Pick<SsmSessionOptions, 'terminalSize' | 'clientId'>;
  private outputHandlers: Array<(chunk: Buffer, payloadType: number) => void> = [];
  private expectedSeq = 0;
  private readonly outOfOrder = new Map<number, ClientMessage>();
  private nextInputSeq = 0;
  private readonly unacked = new Map<number, PendingInput>();
  private queuedInput: Array<{ payload: Buffer; payloadType: number }> = [];
  private handshakeDone = false;
  private paused = false;
  private done = false;
  private handshakeTimer: unknown;
  private resolveEnded!: (v: SsmSessionEnd) => void;
  private rejectEnded!: (e: Error) => void;
  private resolveHandshake!: (v: { sessionType: string | undefined; agentVersion: string }) => void;
  private rejectHandshake!: (e: Error) => void;

  constructor(
    private readonly transport: SsmTransport,
    options: SsmSessionOptions,
  ) {
    this.opts = {
      clientVersion: CLIENT_VERSION,
      handshakeTimeoutMs: 15_000,
      retransmitMs: 1_000,
      maxRetransmits: 30,
      maxBufferedFrames: 10_000,
      timers: realTimers,
      ...options,
    };
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

  /** Send the token frame and start waiting for the handshake. Call once, after the socket is open. */
  start(): void {
    this.transport.onMessage((data) => this.onFrame(data));
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
      this.fail(
        new BackendUnavailableError(
          `ssm data channel: no handshake request from the agent within ${this.opts.handshakeTimeoutMs} ms`,
        ),
      );
    }, this.opts.handshakeTimeoutMs);
  }

  /** Keystrokes / stdin bytes. Queued until the handshake is done. */
  sendInput(data: Buffer | string): void {
    this.enqueue(typeof data === 'string' ? Buffer.from(data) : data, PayloadType.Output);
  }

  sendTerminalSize(cols: number, rows: number): void {
    this.enqueue(buildTerminalSize(cols, rows), PayloadType.Size);
  }

  /** Number of our input messages not yet acknowledged by the agent. */
  get unacknowledgedCount(): number {
    return this.unacked.size;
  }

  /** Close from our side: the session ends with reason `closed_by_client`. */
  close(): void {
    if (this.done) return;
    this.finish();
    this.resolveEnded({ reason: 'closed_by_client', output: '' });
  }

  private enqueue(payload: Buffer, payloadType: number): void {
    if (this.done) throw new BackendUnavailableError('ssm data channel: session already ended');
    if (!this.handshakeDone || this.paused) {
      this.queuedInput.push({ payload, payloadType });
      return;
    }
    this.sendStream(payload, payloadType);
  }

  private sendStream(payload: Buffer, payloadType: number): void {
    const msg = buildInputMessage(this.nextInputSeq++, payload, payloadType);
    const pending: PendingInput = { msg, frame: encodeClientMessage(msg), resends: 0, timer: undefined };
    this.unacked.set(msg.sequenceNumber, pending);
    this.transmit(pending);
  }

  private transmit(p: PendingInput): void {
    try {
      this.transport.send(p.frame);
    } catch (err) {
      this.fail(new BackendUnavailableError('ssm data channel: send failed', err));
      return;
    }
    p.timer = this.opts.timers.setTimeout(() => {
      if (this.done || !this.unacked.has(p.msg.sequenceNumber)) return;
      if (p.resends >= this.opts.maxRetransmits) {
        this.fail(
          new BackendUnavailableError(
            `ssm data channel: input message ${p.msg.sequenceNumber} not acknowledged after ${p.resends} resends`,
          ),
        );
        return;
      }
      p.resends++;
      this.transmit(p);
    }, this.opts.retransmitMs);
  }

  private flushQueue(): void {
    const queued = this.queuedInput;
    this.queuedInput = [];
    for (const q of queued) this.sendStream(q.payload, q.payloadType);
  }

  private onFrame(data: Buffer | string): void {
    if (this.done) return;
    // The agent only speaks binary frames after the token; a text frame is a protocol error.
    if (typeof data === 'string') {
      this.fail(new BackendUnavailableError('ssm data channel: unexpected text frame from the agent'));
      return;
    }
    let msg: ClientMessage;
    try {
      msg = decodeClientMessage(data);
    } catch (err) {
      this.fail(err instanceof Error ? err : new BackendUnavailableError('ssm data channel: bad frame', err));
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
        if (msg.sequenceNumber > this.expectedSeq && !this.outOfOrder.has(msg.sequenceNumber) &&
            this.outOfOrder.size >= this.opts.maxBufferedFrames) {
          return; // no room: leave it unacknowledged so the agent sends it again later
        }
        this.transport.send(encodeClientMessage(buildAcknowledge(msg)));
        if (msg.sequenceNumber === this.expectedSeq) {
          this.process(msg);
          this.expectedSeq++;
          // Drain frames that were waiting for this one.
          for (let next = this.outOfOrder.get(this.expectedSeq); next; next = this.outOfOrder.get(this.expectedSeq)) {
            this.outOfOrder.delete(this.expectedSeq);
            this.process(next);
            if (this.done) return;
            this.expectedSeq++;
          }
        } else if (msg.sequenceNumber > this.expectedSeq) {
          this.outOfOrder.set(msg.sequenceNumber, msg);
        } // else: a duplicate of something already delivered — acked above, otherwise dropped.
        return;
      case MessageType.Acknowledge: {
        const ack = parseAcknowledge(msg.payload);
        const p = this.unacked.get(ack.AcknowledgedMessageSequenceNumber);
        if (p) {
          this.opts.timers.clearTimeout(p.timer);
          this.unacked.delete(ack.AcknowledgedMessageSequenceNumber);
        }
        return;
      }
      case MessageType.ChannelClosed: {
        const closed = parseChannelClosed(msg.payload);
        this.finish();
        this.resolveEnded({ reason: 'channel_closed', output: closed.Output });
        return;
      }
      case MessageType.PausePublication:
        this.paused = true;
        return;
      case MessageType.StartPublication:
        this.paused = false;
        if (this.handshakeDone) this.flushQueue();
        return;
      default:
        return; // unknown control messages are ignored, as the plugin does
    }
  }

  /** Handle one in-order output stream message. */
  private process(msg: ClientMessage): void {
    switch (msg.payloadType) {
      case PayloadType.HandshakeRequest: {
        const req = parseHandshakeRequest(msg.payload);
        this.opts.timers.clearTimeout(this.handshakeTimer);
        this.handshakeDone = true;
        this.sendStream(buildHandshakeResponse(req, this.opts.clientVersion), PayloadType.HandshakeResponse);
        if (this.opts.terminalSize) {
          this.sendStream(
            buildTerminalSize(this.opts.terminalSize.cols, this.opts.terminalSize.rows),
            PayloadType.Size,
          );
        }
        this.resolveHandshake({ sessionType: requestedSessionType(req), agentVersion: req.AgentVersion });
        if (!this.paused) this.flushQueue();
        return;
      }
      case PayloadType.HandshakeComplete:
        return;
      case PayloadType.Output:
      case PayloadType.StdErr:
      case PayloadType.ExitCode:
        for (const h of this.outputHandlers) h(msg.payload, msg.payloadType);
        return;
      default:
        return;
    }
  }

  private finish(handshakeError?: Error): void {
    this.done = true;
    this.opts.timers.clearTimeout(this.handshakeTimer);
    for (const p of this.unacked.values()) this.opts.timers.clearTimeout(p.timer);
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
