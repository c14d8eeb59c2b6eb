import { afterEach, describe, expect, it } from 'vitest';
import { SsmSession, type SsmSessionOptions } from '../../../shared/backends/ecs/ssm/session.js';
import type { SsmTimers } from '../../../shared/backends/ecs/ssm/transport.js';
import { openWsTransport } from '../../../shared/backends/ecs/ssm/ws-transport.js';
import { AgentPeer, until } from './agent-peer.js';

/** Manual clock: timers fire only when the test advances it. */
class ManualTimers implements SsmTimers {
  now = 0;
  private seq = 0;
  private readonly pending = new Map<number, { at: number; fn: () => void }>();
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.pending.set(id, { at: this.now + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }
  advance(ms: number): void {
    this.now += ms;
    for (const [id, t] of [...this.pending].sort((a, b) => a[1].at - b[1].at)) {
      if (t.at <= this.now && this.pending.delete(id)) t.fn();
    }
  }
}

let peer: AgentPeer;
afterEach(async () => {
  await peer?.stop();
});

async function connect(opts: Partial<SsmSessionOptions> = {}): Promise<{ session: SsmSession; output: () => string }> {
  peer = await AgentPeer.start();
  const session = new SsmSession(await openWsTransport(peer.url), { tokenValue: 'secret-token', ...opts });
  const chunks: Buffer[] = [];
  session.onOutput((c, type) => {
    if (type === 1) chunks.push(c);
  });
  // A test that fails midway leaves the session to be torn down by afterEach; keep that quiet.
  session.ended.catch(() => undefined);
  session.start();
  await until(() => peer.tokenFrame !== undefined, 'token frame');
  return { session, output: () => Buffer.concat(chunks).toString() };
}

describe('SsmSession against a loopback agent', () => {
  it('handshakes, acks every output frame, orders and de-duplicates output, then ends on channel_closed', async () => {
    const { session, output } = await connect({ terminalSize: { cols: 100, rows: 30 } });
    expect(peer.tokenFrame).toMatchObject({ MessageSchemaVersion: '1.0', TokenValue: 'secret-token' });

    peer.sendHandshakeRequest(0);
    await expect(session.handshake).resolves.toEqual({ sessionType: 'InteractiveCommands', agentVersion: '3.3.0.0' });
    await until(() => peer.inputs().length >= 2, 'handshake response and size');
    const [resp, size] = peer.inputs();
    expect(resp).toMatchObject({ sequenceNumber: 0, payloadType: 6 });
    const body = JSON.parse(resp!.payload.toString());
    expect(body.ProcessedClientActions).toEqual([
      expect.objectContaining({ ActionType: 'SessionType', ActionStatus: 1 }),
    ]);
    expect(size).toMatchObject({ sequenceNumber: 1, payloadType: 3 });
    expect(JSON.parse(size!.payload.toString())).toEqual({ cols: 100, rows: 30 });

    // Out of order and duplicated: 2, 1, 1, 3, 2 must come out as 1, 2, 3 once each.
    peer.sendOutput(2, 'world');
    peer.sendOutput(1, 'hello ');
    peer.sendOutput(1, 'hello ');
    peer.sendOutput(3, '!');
    peer.sendOutput(2, 'world');
    await until(() => peer.acks().length >= 6, 'six acknowledgements');
    expect(output()).toBe('hello world!');
    expect(peer.acks().map((a) => a.AcknowledgedMessageSequenceNumber)).toEqual([0, 2, 1, 1, 3, 2]);
    expect(peer.acks().every((a) => a.IsSequentialMessage)).toBe(true);

    session.sendInput('ls\n');
    await until(() => peer.inputs().length >= 3, 'input');
    expect(peer.inputs()[2]).toMatchObject({ sequenceNumber: 2, payloadType: 1 });
    expect(peer.inputs()[2]!.payload.toString()).toBe('ls\n');

    peer.sendChannelClosed('Exiting session with sessionId: s-1.');
    await expect(session.ended).resolves.toEqual({ reason: 'channel_closed', output: 'Exiting session with sessionId: s-1.' });
    await until(() => peer.closedByClient, 'client closes the socket');
  });

  it('queues input written before the handshake behind the handshake response', async () => {
    const { session } = await connect();
    session.sendInput('early');
    peer.sendHandshakeRequest(0);
    await until(() => peer.inputs().length >= 2, 'two inputs');
    expect(peer.inputs().map((m) => [m.sequenceNumber, m.payloadType])).toEqual([
      [0, 6],
      [1, 1],
    ]);
    session.close();
    await expect(session.ended).resolves.toMatchObject({ reason: 'closed_by_client' });
  });

  it('retransmits input the agent does not acknowledge, and stops once it does', async () => {
    const { session } = await connect({ retransmitMs: 20 });
    peer.sendHandshakeRequest(0);
    await session.handshake; // the response is now in flight and counted as unacknowledged
    await until(() => session.unacknowledgedCount === 0, 'acked handshake response');

    peer.autoAck = false;
    session.sendInput('pwd\n');
    await until(() => peer.inputs().filter((m) => m.sequenceNumber === 1).length >= 3, 'two resends of input 1');
    const copies = peer.inputs().filter((m) => m.sequenceNumber === 1);
    expect(new Set(copies.map((m) => m.messageId)).size).toBe(1);
    expect(copies.every((m) => m.payload.toString() === 'pwd\n')).toBe(true);
    expect(session.unacknowledgedCount).toBe(1);

    peer.ack(copies[0]!);
    await until(() => session.unacknowledgedCount === 0, 'ack processed');
    session.close();
  });

  it('gives up with a clear error after maxRetransmits resends without an ack', async () => {
    const timers = new ManualTimers();
    const { session } = await connect({ timers, retransmitMs: 100, maxRetransmits: 2 });
    peer.autoAck = false;
    peer.sendHandshakeRequest(0);
    await session.handshake;
    await until(() => peer.inputs().length === 1, 'handshake response');
    timers.advance(100);
    timers.advance(100);
    await until(() => peer.inputs().length === 3, 'two resends');
    timers.advance(100);
    await expect(session.ended).rejects.toThrow(/input message 0 not acknowledged after 2 resends/);
  });

  it('leaves out-of-order frames unacknowledged when the reorder buffer is full', async () => {
    const { session, output } = await connect({ maxBufferedFrames: 1 });
    peer.sendHandshakeRequest(0);
    await session.handshake;
    peer.sendOutput(2, 'b'); // buffered, acked
    peer.sendOutput(3, 'c'); // buffer full: dropped, not acked
    peer.sendOutput(1, 'a'); // drains 2
    peer.sendOutput(3, 'c'); // the agent's resend
    await until(() => peer.acks().length === 4, 'four acks');
    expect(peer.acks().map((a) => a.AcknowledgedMessageSequenceNumber)).toEqual([0, 2, 1, 3]);
    expect(output()).toBe('abc');
    session.close();
  });

  it('holds input back while the agent paused publication', async () => {
    const { session } = await connect();
    peer.sendHandshakeRequest(0);
    await until(() => peer.inputs().length === 1, 'handshake response');
    peer.sendControl('pause_publication');
    peer.sendOutput(1, 'marker'); // once its ack arrives, the pause has been processed
    await until(() => peer.acks().length === 2, 'ack of marker');
    session.sendInput('held');
    peer.sendOutput(2, 'marker2');
    await until(() => peer.acks().length === 3, 'ack of marker2');
    expect(peer.inputs()).toHaveLength(1);
    peer.sendControl('start_publication');
    await until(() => peer.inputs().length === 2, 'released input');
    expect(peer.inputs()[1]!.payload.toString()).toBe('held');
    session.close();
  });

  it('fails with a clear error when the agent never sends a handshake request (15 s)', async () => {
    const timers = new ManualTimers();
    const { session } = await connect({ timers });
    let settled = false;
    session.ended.then(
      () => (settled = true),
      () => (settled = true),
    );
    timers.advance(14_999);
    await new Promise((r) => setTimeout(r, 10));
    expect(settled).toBe(false);
    timers.advance(1);
    await expect(session.ended).rejects.toThrow(/no handshake request from the agent within 15000 ms/);
    await expect(session.handshake).rejects.toThrow(/no handshake request/);
    await until(() => peer.closedByClient, 'client closes the socket');
  });

  it('fails on a corrupt frame from the agent', async () => {
    const { session } = await connect();
    peer.sendHandshakeRequest(0);
    await session.handshake;
    const frame = Buffer.alloc(123);
    frame.writeUInt32BE(116, 0);
    frame.write('output_stream_data', 4, 'ascii');
    frame.writeUInt32BE(3, 116);
    frame.write('abc', 120); // digest left zero → mismatch
    peer.sendRaw(frame);
    await expect(session.ended).rejects.toThrow(/digest mismatch/);
  });

  it('fails when the socket drops without channel_closed', async () => {
    const { session } = await connect();
    peer.terminate();
    await expect(session.ended).rejects.toThrow(/websocket closed before channel_closed/);
  });
});
