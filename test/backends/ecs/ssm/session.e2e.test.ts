import { afterEach, describe, expect, it } from 'vitest';
import { SsmSession, type SsmSessionOptions } from '../../../../shared/backends/ecs/ssm/session.js';
import type { SsmTimers } from '../../../../shared/backends/ecs/ssm/transport.js';
import { openWsTransport } from '../../../../shared/backends/ecs/ssm/ws-transport.js';
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

/** Handshake request (seq 0) and complete (seq 1); returns once the session has the complete. */
async function handshake(session: SsmSession): Promise<void> {
  peer.sendHandshakeRequest(0);
  await until(() => peer.inputs().some((m) => m.payloadType === 6), 'handshake response');
  peer.sendHandshakeComplete(1);
  await session.handshake;
}

describe('SsmSession against a loopback agent', () => {
  it('handshakes, acks every output frame, orders and de-duplicates output, then ends on channel_closed', async () => {
    const { session, output } = await connect({ terminalSize: { cols: 100, rows: 30 } });
    expect(peer.tokenFrame).toMatchObject({ MessageSchemaVersion: '1.0', TokenValue: 'secret-token' });

    await handshake(session);
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

    // Out of order and duplicated: 3, 2, 2, 4, 3 must come out as 2, 3, 4 once each.
    peer.sendOutput(3, 'world');
    peer.sendOutput(2, 'hello ');
    peer.sendOutput(2, 'hello ');
    peer.sendOutput(4, '!');
    peer.sendOutput(3, 'world');
    await until(() => peer.acks().length >= 7, 'seven acknowledgements');
    expect(output()).toBe('hello world!');
    // Duplicates are acked too — the agent's rule (datachannel.go handleStreamDataMessage), not the plugin's.
    expect(peer.acks().map((a) => a.AcknowledgedMessageSequenceNumber)).toEqual([0, 1, 3, 2, 2, 4, 3]);
    expect(peer.acks().every((a) => a.IsSequentialMessage)).toBe(true);

    session.write('ls\n');
    await until(() => peer.inputs().length >= 3, 'input');
    expect(peer.inputs()[2]).toMatchObject({ sequenceNumber: 2, payloadType: 1 });
    expect(peer.inputs()[2]!.payload.toString()).toBe('ls\n');

    peer.sendChannelClosed('Exiting session with sessionId: s-1.');
    await expect(session.ended).resolves.toEqual({
      reason: 'channel_closed',
      output: 'Exiting session with sessionId: s-1.',
    });
    await until(() => peer.closedByClient, 'client closes the socket');
  });

  // Agent datachannel.go processStreamDataMessage acks and DISCARDS input that arrives before its
  // handshake is complete; plugin session.go starts the shell handlers only after HandshakeComplete
  // (streaming.go handleHandshakeComplete). So keystrokes and sizes wait for HandshakeComplete.
  it('sends the handshake response at once but holds keystrokes and sizes until HandshakeComplete', async () => {
    const { session } = await connect({ terminalSize: { cols: 80, rows: 24 } });
    session.write('early');
    peer.sendHandshakeRequest(0);
    await until(() => peer.inputs().length >= 1, 'handshake response');
    session.write('still early');
    peer.sendOutput(1, 'x', 1 + 0); // any later frame: once its ack is back, the writes above were processed
    await until(() => peer.acks().length >= 2, 'ack of the marker');
    expect(peer.inputs().map((m) => m.payloadType)).toEqual([6]);

    peer.sendHandshakeComplete(2);
    await until(() => peer.inputs().length >= 4, 'released input');
    expect(peer.inputs().map((m) => [m.sequenceNumber, m.payloadType, m.payload.toString()])).toEqual([
      [0, 6, expect.any(String)],
      [1, 3, '{"cols":80,"rows":24}'],
      [2, 1, 'early'],
      [3, 1, 'still early'],
    ]);
    session.close();
    await expect(session.ended).resolves.toMatchObject({ reason: 'closed_by_client' });
  });

  // Plugin session.go ProcessFirstMessage: an agent that skips the handshake starts with plain output.
  it('treats output without any handshake as a skipped handshake and lets input flow', async () => {
    const { session, output } = await connect();
    session.write('typed');
    peer.sendOutput(0, '$ ');
    await expect(session.handshake).resolves.toEqual({ sessionType: 'Standard_Stream', agentVersion: '' });
    await until(() => peer.inputs().length === 1, 'input');
    expect(peer.inputs()[0]).toMatchObject({ sequenceNumber: 0, payloadType: 1 });
    expect(output()).toBe('$ ');
    session.close();
  });

  // Plugin shellsession_unix.go handleKeyboardInput reads stdin 1024 bytes at a time (StdinBufferLimit).
  it('splits written bytes into frames of at most 1024 bytes, in order', async () => {
    const { session } = await connect();
    await handshake(session);
    const big = Buffer.alloc(2500, 'a');
    big.write('END', 2497);
    session.write(big);
    await session.drained();
    const keys = peer.inputs().filter((m) => m.payloadType === 1);
    expect(keys.map((m) => m.payload.length)).toEqual([1024, 1024, 452]);
    expect(Buffer.concat(keys.map((m) => m.payload)).equals(big)).toBe(true);
    session.close();
  });

  it('end() types Ctrl-D (twice after a partial line, so the reader sees EOF)', async () => {
    const { session } = await connect();
    await handshake(session);
    session.write('partial');
    session.end();
    session.write('line\n');
    session.end();
    await session.drained();
    expect(
      peer
        .inputs()
        .slice(1)
        .map((m) => m.payload.toString('hex')),
    ).toEqual([Buffer.from('partial').toString('hex'), '0404', Buffer.from('line\n').toString('hex'), '04']);
    session.close();
  });

  it('retransmits input the agent does not acknowledge, and stops once it does', async () => {
    const { session } = await connect({ retransmitMs: 20 });
    await handshake(session);
    await session.drained();

    peer.autoAck = false;
    session.write('pwd\n');
    await until(() => peer.inputs().filter((m) => m.sequenceNumber === 1).length >= 3, 'two resends of input 1');
    const copies = peer.inputs().filter((m) => m.sequenceNumber === 1);
    expect(new Set(copies.map((m) => m.messageId)).size).toBe(1);
    expect(copies.every((m) => m.payload.toString() === 'pwd\n')).toBe(true);
    expect(session.unacknowledgedCount).toBe(1);

    peer.ack(copies[0]!);
    await until(() => session.unacknowledgedCount === 0, 'ack processed');
    session.close();
  });

  // Plugin streaming.go ResendStreamDataMessageScheduler resends only the front of the outgoing buffer.
  it('resends only the oldest unacknowledged message', async () => {
    const timers = new ManualTimers();
    const { session } = await connect({ timers, retransmitMs: 100 });
    await handshake(session);
    await session.drained();
    peer.autoAck = false;
    session.write('a');
    session.write('b');
    session.write('c');
    await until(() => peer.inputs().length === 4, 'three inputs');
    timers.advance(100);
    timers.advance(100);
    await until(() => peer.inputs().length === 6, 'two resends');
    expect(
      peer
        .inputs()
        .slice(4)
        .map((m) => m.sequenceNumber),
    ).toEqual([1, 1]);
    peer.ack(peer.inputs()[1]!); // the oldest is acked: the next one becomes the front
    await until(() => session.unacknowledgedCount === 2, 'ack of 1');
    timers.advance(100);
    await until(() => peer.inputs().length === 7, 'next resend');
    expect(peer.inputs()[6]!.sequenceNumber).toBe(2);
    session.close();
  });

  // Plugin websocketchannel.go StartPings: a websocket ping ("keepalive") every 5 minutes
  // (config.PingTimeInterval), which also keeps NAT and load-balancer idle timers from expiring.
  it('pings the websocket every 5 minutes while the session lives', async () => {
    const timers = new ManualTimers();
    const { session } = await connect({ timers });
    await handshake(session);
    timers.advance(299_999);
    await new Promise((r) => setTimeout(r, 50));
    expect(peer.pings).toBe(0);
    timers.advance(1);
    await until(() => peer.pings === 1, 'first ping');
    timers.advance(300_000);
    await until(() => peer.pings === 2, 'second ping');
    session.close();
    timers.advance(600_000);
    await new Promise((r) => setTimeout(r, 50));
    expect(peer.pings).toBe(2);
  });

  // Not in the plugin: a dead path (e.g. a socket that died while a Lambda was frozen) shows as input
  // that nothing answers. The agent acks every input message at once, so silence is death.
  it('with ackTimeoutMs, fails when input gets no answer at all from the peer in that time', async () => {
    const timers = new ManualTimers();
    const { session } = await connect({ timers, ackTimeoutMs: 5_000 });
    await handshake(session);
    await session.drained();
    timers.advance(60_000); // idle: nothing is owed, nothing fails
    peer.autoAck = false;
    session.write('x');
    await until(() => peer.inputs().length === 2, 'input sent');
    timers.advance(4_000);
    peer.sendOutput(2, 'still here'); // traffic: the peer lives, the wait starts over
    await until(() => peer.acks().length === 3, 'output acked');
    timers.advance(4_000);
    timers.advance(1_000);
    await expect(session.ended).rejects.toThrow(/no answer from the agent within 5000 ms/);
  });

  it('gives up with a clear error after maxRetransmits resends without an ack (default 300, ~5 min as the plugin)', async () => {
    const timers = new ManualTimers();
    const { session } = await connect({ timers, retransmitMs: 100 });
    peer.autoAck = false;
    peer.sendHandshakeRequest(0);
    await until(() => peer.inputs().length === 1, 'handshake response');
    peer.sendHandshakeComplete(1);
    await session.handshake;
    for (let i = 0; i < 300; i++) timers.advance(100);
    await until(() => peer.inputs().length === 301, '300 resends');
    let settled = false;
    session.ended.catch(() => (settled = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(settled).toBe(false);
    timers.advance(100);
    await expect(session.ended).rejects.toThrow(/input message 0 not acknowledged after 300 resends/);
  });

  it('leaves out-of-order frames unacknowledged when the reorder buffer is full', async () => {
    const { session, output } = await connect({ maxBufferedFrames: 1 });
    await handshake(session);
    peer.sendOutput(3, 'b'); // buffered, acked
    peer.sendOutput(4, 'c'); // buffer full: dropped, not acked
    peer.sendOutput(2, 'a'); // drains 3
    peer.sendOutput(4, 'c'); // the agent's resend
    await until(() => peer.acks().length === 5, 'five acks');
    expect(peer.acks().map((a) => a.AcknowledgedMessageSequenceNumber)).toEqual([0, 1, 3, 2, 4]);
    expect(output()).toBe('abc');
    session.close();
  });

  // Agent datachannel.go: pause_publication stops sending and resending until start_publication or
  // any incoming stream data / acknowledge clears it.
  it('holds input back while the agent paused publication; start_publication or new traffic releases it', async () => {
    const { session } = await connect();
    await handshake(session);
    await session.drained();
    peer.sendControl('pause_publication');
    await until(() => session.isPaused, 'pause processed');
    session.write('held');
    peer.sendControl('some_unknown_control'); // processed in order: after it, 'held' would have been sent
    peer.sendControl('pause_publication');
    await until(() => session.isPaused, 'still paused');
    expect(peer.inputs()).toHaveLength(1);
    peer.sendControl('start_publication');
    await until(() => peer.inputs().length === 2, 'released input');
    expect(peer.inputs()[1]!.payload.toString()).toBe('held');

    peer.sendControl('pause_publication');
    await until(() => session.isPaused, 'paused again');
    session.write('held2');
    peer.sendOutput(2, 'traffic');
    await until(() => peer.inputs().length === 3, 'released by traffic');
    expect(peer.inputs()[2]!.payload.toString()).toBe('held2');
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

  it('fails when the handshake request comes but HandshakeComplete never does', async () => {
    const timers = new ManualTimers();
    const { session } = await connect({ timers });
    peer.sendHandshakeRequest(0);
    await until(() => peer.inputs().length === 1, 'handshake response');
    timers.advance(15_000);
    await expect(session.ended).rejects.toThrow(/no handshake complete from the agent within 15000 ms/);
  });

  // Plugin session.go OpenDataChannel: the websocket callback ignores OutputMessageHandler's error, so
  // an invalid frame is dropped unacknowledged and the agent's resend delivers it.
  it('drops a corrupt frame without acking it and takes the resend', async () => {
    const { session, output } = await connect();
    await handshake(session);
    const frame = Buffer.alloc(123);
    frame.writeUInt32BE(116, 0);
    frame.fill(0x20, 4, 36);
    frame.write('output_stream_data', 4, 'ascii');
    frame.writeBigUInt64BE(1n, 40);
    frame.writeBigInt64BE(2n, 48);
    frame.writeUInt32BE(1, 112);
    frame.writeUInt32BE(3, 116);
    frame.write('abc', 120); // digest left zero → mismatch
    peer.sendRaw(frame);
    peer.sendOutput(2, 'abc'); // the agent's resend
    await until(() => peer.acks().length === 3, 'ack of the resend');
    expect(session.droppedFrames).toBe(1);
    expect(peer.acks().map((a) => a.AcknowledgedMessageSequenceNumber)).toEqual([0, 1, 2]);
    expect(output()).toBe('abc');
    session.close();
  });

  it('onClose reports the end, and a failure', async () => {
    const { session } = await connect();
    const seen: Array<[string | undefined, string | undefined]> = [];
    session.onClose((err, end) => seen.push([err?.message, end?.reason]));
    await handshake(session);
    peer.sendChannelClosed('');
    await session.ended;
    await until(() => seen.length === 1, 'onClose');
    expect(seen).toEqual([[undefined, 'channel_closed']]);
    await expect(session.drained()).rejects.toThrow(/already ended/);
    expect(() => session.write('x')).toThrow(/already ended/);
  });

  // The agent waits at most 2 s for its output to be acked before it reports Terminating
  // (datachannel.go PrepareToCloseChannel); the service then sends channel_closed even if a frame was
  // never delivered. The plugin exits 0 then; we say that output is missing instead of ending "normally".
  it('fails, naming the gap, when channel_closed comes while a dropped output frame was never resent', async () => {
    const { session, output } = await connect();
    await handshake(session);
    peer.sendOutput(2, 'a');
    peer.sendOutput(4, 'c'); // 3 was lost; 4 waits in the reorder buffer
    await until(() => peer.acks().length === 4, 'four acks');
    peer.sendChannelClosed('');
    await expect(session.ended).rejects.toThrow(
      /channel_closed while output was missing from sequence 3 \(1 later frame/,
    );
    expect(output()).toBe('a');
  });

  it('fails when the socket drops without channel_closed', async () => {
    const { session } = await connect();
    const errs: string[] = [];
    session.onClose((err) => errs.push(err?.message ?? 'none'));
    peer.terminate();
    await expect(session.ended).rejects.toThrow(/websocket closed before channel_closed/);
    await until(() => errs.length === 1, 'onClose');
    expect(errs[0]).toMatch(/websocket closed before channel_closed/);
  });
});
