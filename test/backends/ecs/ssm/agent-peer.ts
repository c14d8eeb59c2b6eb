/**
 * A loopback websocket server on 127.0.0.1 that plays the SSM agent's side of a data channel:
 * records the token frame and every decoded client frame, optionally acks client input, and lets
 * the test send output stream frames with any sequence number (for out-of-order / duplicates).
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  decodeClientMessage,
  encodeClientMessage,
  type ClientMessage,
} from '../../../../shared/backends/ecs/ssm/codec.js';

const HANDSHAKE_REQUEST = {
  AgentVersion: '3.3.0.0',
  RequestedClientActions: [
    { ActionType: 'SessionType', ActionParameters: { SessionType: 'InteractiveCommands', Properties: null } },
  ],
};

export class AgentPeer {
  readonly received: ClientMessage[] = [];
  tokenFrame: Record<string, unknown> | undefined;
  /** When true, every client input_stream_data is acknowledged as it arrives. */
  autoAck = true;
  closedByClient = false;
  /** Websocket pings received from the client (answered with a pong by `ws` itself). */
  pings = 0;
  private socket: WebSocket | undefined;
  private constructor(private readonly server: WebSocketServer) {
    server.on('connection', (ws) => {
      this.socket = ws;
      ws.on('ping', () => {
        this.pings++;
      });
      ws.on('close', () => {
        this.closedByClient = true;
      });
      ws.on('message', (raw, isBinary) => {
        const buf = raw as Buffer;
        if (!isBinary) {
          this.tokenFrame = JSON.parse(buf.toString('utf8')) as Record<string, unknown>;
          return;
        }
        const msg = decodeClientMessage(buf);
        this.received.push(msg);
        if (this.autoAck && msg.messageType === 'input_stream_data') this.ack(msg);
      });
    });
  }

  static async start(): Promise<AgentPeer> {
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    return new AgentPeer(server);
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1/data-channel/test`;
  }

  private sendMsg(
    m: Omit<ClientMessage, 'schemaVersion' | 'createdDate' | 'messageId' | 'flags'> & { messageId?: string },
  ): void {
    if (!this.socket) throw new Error('no client connected');
    this.socket.send(
      encodeClientMessage({
        schemaVersion: 1,
        createdDate: Date.now(),
        flags: 0,
        messageId: m.messageId ?? randomUUID(),
        ...m,
      }),
    );
  }

  sendRaw(frame: Buffer): void {
    this.socket?.send(frame);
  }

  sendOutput(sequenceNumber: number, payload: string | Buffer, payloadType = 1, messageId?: string): void {
    this.sendMsg({
      messageType: 'output_stream_data',
      sequenceNumber,
      payloadType,
      payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
      ...(messageId ? { messageId } : {}),
    });
  }

  sendHandshakeRequest(sequenceNumber = 0): void {
    this.sendOutput(sequenceNumber, JSON.stringify(HANDSHAKE_REQUEST), 5);
  }

  sendHandshakeComplete(sequenceNumber: number): void {
    this.sendOutput(sequenceNumber, JSON.stringify({ HandshakeTimeToComplete: 1_000_000, CustomerMessage: '' }), 7);
  }

  ack(of: ClientMessage): void {
    this.sendMsg({
      messageType: 'acknowledge',
      sequenceNumber: 0,
      payloadType: 0,
      payload: Buffer.from(
        JSON.stringify({
          AcknowledgedMessageType: of.messageType,
          AcknowledgedMessageId: of.messageId,
          AcknowledgedMessageSequenceNumber: of.sequenceNumber,
          IsSequentialMessage: true,
        }),
      ),
    });
  }

  sendChannelClosed(output: string): void {
    this.sendMsg({
      messageType: 'channel_closed',
      sequenceNumber: 0,
      payloadType: 0,
      payload: Buffer.from(
        JSON.stringify({ MessageId: randomUUID(), SessionId: 's-1', Output: output, SchemaVersion: 1 }),
      ),
    });
  }

  /** A payload-less control message such as `pause_publication`. */
  sendControl(messageType: string): void {
    this.sendMsg({ messageType, sequenceNumber: 0, payloadType: 0, payload: Buffer.alloc(0) });
  }

  /** Drop the socket without channel_closed. */
  terminate(): void {
    this.socket?.terminate();
  }

  inputs(): ClientMessage[] {
    return this.received.filter((m) => m.messageType === 'input_stream_data');
  }

  acks(): Array<{
    AcknowledgedMessageSequenceNumber: number;
    AcknowledgedMessageId: string;
    IsSequentialMessage: boolean;
  }> {
    return this.received
      .filter((m) => m.messageType === 'acknowledge')
      .map((m) => JSON.parse(m.payload.toString()) as never);
  }

  async stop(): Promise<void> {
    for (const c of this.server.clients) c.terminate();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Poll (on real timers) until `cond` holds; throws with `what` after `limitMs`. */
export async function until(cond: () => boolean, what: string, limitMs = 5000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
