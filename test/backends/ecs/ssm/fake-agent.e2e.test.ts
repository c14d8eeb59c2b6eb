/**
 * Our SsmSession end to end against FakeSsmAgent, which bridges each session to a real process in a
 * real PTY (`script -qfec CMD /dev/null`, spawned here), over loopback websockets.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { SsmSession, type SsmSessionOptions } from '../../../../shared/backends/ecs/ssm/session.js';
import { openWsTransport } from '../../../../shared/backends/ecs/ssm/ws-transport.js';
import {
  FakeSsmAgent,
  splitUtf8LikeGo,
  type AgentProcess,
  type FakeSsmAgentOptions,
  childAgentProcess,
} from '../../../support/fake-ssm-agent.js';
import { until } from './agent-peer.js';

const children: ChildProcess[] = [];
let agent: FakeSsmAgent | undefined;

afterEach(async () => {
  await agent?.stop();
  agent = undefined;
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** The command in a PTY, as the agent runs it (stdout+stderr merged, echo on, \n → \r\n). */
function ptyProcess(command: string): AgentProcess {
  const child = spawn('script', ['-qfec', command, '/dev/null'], {
    env: { ...process.env, SHELL: '/bin/sh' },
    stdio: 'pipe',
  });
  children.push(child);
  return childAgentProcess(child);
}

async function startAgent(extra: Partial<FakeSsmAgentOptions> = {}): Promise<FakeSsmAgent> {
  agent = await FakeSsmAgent.start({ spawn: async ({ command }) => ptyProcess(command), ...extra });
  return agent;
}

async function connect(
  command: string,
  opts: Partial<SsmSessionOptions> = {},
): Promise<{ session: SsmSession; sessionId: string; output: () => Buffer }> {
  const opened = agent!.openSession(command);
  const session = new SsmSession(await openWsTransport(opened.streamUrl), { tokenValue: opened.tokenValue, ...opts });
  const chunks: Buffer[] = [];
  session.onOutput((c, type) => {
    if (type === 1) chunks.push(c);
  });
  session.ended.catch(() => undefined);
  session.start();
  return { session, sessionId: opened.sessionId, output: () => Buffer.concat(chunks) };
}

describe('SsmSession against FakeSsmAgent and a real PTY process', () => {
  it('echoes keystrokes through the PTY, runs the command, and ends with channel_closed when it exits', async () => {
    await startAgent();
    const { session, sessionId, output } = await connect(`sh -c 'read line; echo "got:$line"'`, {
      terminalSize: { cols: 120, rows: 40 },
    });
    session.write('hello\n'); // before the handshake: our client holds it until HandshakeComplete
    await expect(session.handshake).resolves.toEqual({
      sessionType: 'InteractiveCommands',
      agentVersion: '3.3.2299.0',
    });
    await expect(session.ended).resolves.toEqual({ reason: 'channel_closed', output: '' });
    expect(output().toString()).toBe('hello\r\ngot:hello\r\n');
    const info = agent!.sessions.get(sessionId)!;
    expect(info).toMatchObject({
      state: 'closed',
      closeReason: 'exited',
      exitCode: 0,
      inputDiscardedBeforeHandshake: 0,
      invalidFrames: 0,
      terminalSize: { cols: 120, rows: 40 },
      clientVersion: '1.2.0.0',
    });
    expect(info.inputBytes).toBe(6);
  });

  it('ignores a websocket text frame from the service mid-session (as the plugin does)', async () => {
    await startAgent();
    const { session, sessionId, output } = await connect(`sh -c 'read line; echo "got:$line"'`);
    await session.handshake;
    await until(() => agent!.sessions.get(sessionId)!.state === 'running', 'running');
    agent!.sendText(sessionId, '{"MessageType":"something_new"}');
    session.write('hello\n');
    await expect(session.ended).resolves.toEqual({ reason: 'channel_closed', output: '' });
    expect(output().toString()).toBe('hello\r\ngot:hello\r\n');
    expect(session.ignoredTextFrames).toBe(1);
    expect(agent!.sessions.get(sessionId)!).toMatchObject({ closeReason: 'exited', invalidFrames: 0 });
  });

  it('delivers exact bytes when the agent drops every 3rd and duplicates every 4th output frame', async () => {
    // The agent resends one frame per 100 ms tick and waits only 2 s for acks before closing; on a
    // loaded machine the ~12 resends this needs can outlast that and channel_closed cuts the tail
    // (the real agent would too — see the session test on gaps). What is tested here is our
    // reordering, de-duplication and acks, so the fake waits for every ack before it closes.
    await startAgent({ dropEveryNthOutput: 3, duplicateEveryNthOutput: 4, closeDrainMs: 45_000 });
    const { session, sessionId, output } = await connect('seq 1 6000');
    await expect(session.ended).resolves.toMatchObject({ reason: 'channel_closed' });
    const expected = Array.from({ length: 6000 }, (_, i) => `${i + 1}\r\n`).join('');
    expect(output().toString()).toBe(expected);
    const info = agent!.sessions.get(sessionId)!;
    expect(info.outputFramesUnackedAtClose).toBe(0);
    expect(info.outputFramesDropped).toBeGreaterThanOrEqual(5);
    expect(info.outputFramesDuplicated).toBeGreaterThanOrEqual(4);
    expect(info.resends).toBeGreaterThanOrEqual(info.outputFramesDropped);
  });

  it('is a byte pipe: write, end (Ctrl-D → EOF), then the process exits and the session ends', async () => {
    await startAgent();
    const { session, output } = await connect(`tr a-z A-Z`);
    await session.handshake;
    session.write('abc\n');
    await until(() => output().toString().includes('ABC'), 'transformed line');
    session.write('partial');
    session.end(); // two Ctrl-D: flush the partial line, then EOF
    await expect(session.ended).resolves.toMatchObject({ reason: 'channel_closed' });
    expect(output().toString()).toBe('abc\r\nABC\r\npartialPARTIAL');
  });

  it('fails the client session promptly when the agent side drops the session (task stopped)', async () => {
    await startAgent();
    const { session, sessionId } = await connect('sleep 30');
    await session.handshake;
    await until(() => agent!.sessions.get(sessionId)!.state === 'running', 'running');
    const closes: string[] = [];
    session.onClose((err) => closes.push(err?.message ?? 'ok'));
    agent!.kill(sessionId);
    await expect(session.ended).rejects.toThrow(/websocket closed before channel_closed/);
    await until(() => closes.length === 1, 'onClose');
    await until(() => children[0]!.exitCode !== null || children[0]!.signalCode !== null, 'process killed');
  });

  it('ends the client session with channel_closed when the agent closes it politely', async () => {
    await startAgent();
    const { session, sessionId } = await connect('sleep 30');
    await session.handshake;
    agent!.kill(sessionId, 'close');
    await expect(session.ended).resolves.toEqual({
      reason: 'channel_closed',
      output: 'Session terminated by the agent.',
    });
  });

  it('rejects a client whose token it did not issue', async () => {
    await startAgent();
    const opened = agent!.openSession('true');
    const session = new SsmSession(await openWsTransport(opened.streamUrl), { tokenValue: 'not-the-token' });
    session.start();
    await expect(session.ended).rejects.toThrow(/websocket closed before channel_closed/);
    expect(agent!.sessions.get(opened.sessionId)!.rejectedConnections).toBe(1);
    expect(children).toHaveLength(0);
  });

  it('cancels the session when the client refuses the handshake (any status other than 1)', async () => {
    await startAgent({ agentVersion: '3.3.2299.0' });
    const opened = agent!.openSession('true');
    // A transport wrapper that rewrites our handshake response into a refusal, as a client would send it.
    const inner = await openWsTransport(opened.streamUrl);
    const { decodeClientMessage, encodeClientMessage } = await import('../../../../shared/backends/ecs/ssm/codec.js');
    const session = new SsmSession(
      {
        ...inner,
        onMessage: (h) => inner.onMessage(h),
        onClose: (h) => inner.onClose(h),
        close: () => inner.close(),
        send: (data) => {
          if (typeof data !== 'string') {
            const m = decodeClientMessage(data);
            if (m.payloadType === 6) {
              const body = JSON.parse(m.payload.toString()) as {
                ProcessedClientActions: Array<{ ActionStatus: number }>;
              };
              body.ProcessedClientActions[0]!.ActionStatus = 2;
              data = encodeClientMessage({ ...m, payload: Buffer.from(JSON.stringify(body)) });
            }
          }
          inner.send(data);
        },
      },
      { tokenValue: opened.tokenValue },
    );
    session.ended.catch(() => undefined);
    session.start();
    await expect(session.ended).resolves.toMatchObject({
      reason: 'channel_closed',
      output: expect.stringContaining('SessionType failed on client with status 2'),
    });
    expect(agent!.sessions.get(opened.sessionId)!.closeReason).toMatch(/^handshake failed/);
    expect(children).toHaveLength(0);
  });
});

// Agent shell.go processStdoutData: incomplete UTF-8 at the end of a read waits for the next read.
describe('splitUtf8LikeGo (the agent output pump)', () => {
  it('holds back an incomplete multibyte tail and passes it with the next read', () => {
    const euro = Buffer.from('€'); // e2 82 ac
    const first = splitUtf8LikeGo(Buffer.concat([Buffer.from('ab'), euro.subarray(0, 2)]));
    expect(first.out.toString()).toBe('ab');
    expect(first.rest).toEqual(euro.subarray(0, 2));
    const second = splitUtf8LikeGo(Buffer.concat([first.rest, euro.subarray(2), Buffer.from('c')]));
    expect(second.out.toString()).toBe('€c');
    expect(second.rest.length).toBe(0);
  });

  it('passes invalid bytes one by one, and (the agent quirk) shortens a literal U+FFFD to its first byte', () => {
    expect(splitUtf8LikeGo(Buffer.from([0xff, 0x41, 0x42, 0x43, 0x44])).out).toEqual(
      Buffer.from([0xff, 0x41, 0x42, 0x43, 0x44]),
    );
    const withReplacement = Buffer.concat([Buffer.from('x'), Buffer.from('\ufffd'), Buffer.from('yzw')]);
    expect(splitUtf8LikeGo(withReplacement).out).toEqual(Buffer.from([0x78, 0xef, 0x79, 0x7a, 0x77]));
  });
});
