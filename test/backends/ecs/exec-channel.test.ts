/**
 * ExecChannels (the runner's ECS Exec sessions) against the loopback FakeSsmAgent, whose sessions run
 * the real `runner.sh rpc` in a real PTY on this host; ECS itself is faked at the SDK boundary. What is
 * tested: a session whose path died unseen (a Lambda frozen between invocations) is found dead quickly
 * and replaced within the invocation, and no request outlives the invocation's remaining time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DescribeTasksCommand, ECSClient, ExecuteCommandCommand } from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { ExecChannels, type ExecChannelOptions } from '../../../shared/backends/ecs/exec-channel.js';
import { RUNNER_SCRIPT } from '../../../shared/backends/runner/command-files.js';
import { runnerRpcCommand } from '../../../shared/backends/runner/rpc.js';
import { defaultRetryPolicy } from '../../../shared/backends/ecs/retry.js';
import { BackendUnavailableError } from '../../../shared/contract/errors.js';
import { FakeSsmAgent, type AgentProcess, childAgentProcess } from '../../support/fake-ssm-agent.js';

const TASK = 'arn:aws:ecs:us-east-1:123456789012:task/wsp-test/0123456789abcdef';
const children: ChildProcess[] = [];
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** The runner in a PTY, as the agent runs it (`script` gives it a terminal). */
function runnerProcess(command: string, workRoot: string): AgentProcess {
  const child = spawn('script', ['-qfec', command, '/dev/null'], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TERM: 'xterm', WSP_RPC_WORK_ROOT: workRoot },
    stdio: 'pipe',
  });
  children.push(child);
  return childAgentProcess(child);
}

async function setUp(options: Partial<ExecChannelOptions> = {}) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-exec-channel-'));
  cleanups.push(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const cmdRoot = path.join(tmp, 'cmd');
  fs.mkdirSync(cmdRoot);
  const agent = await FakeSsmAgent.start({
    spawn: async ({ command }) => runnerProcess(command, path.join(tmp, 'rpc')),
  });
  cleanups.push(() => agent.stop());
  const ecs = new ECSClient({
    region: 'us-east-1',
    credentials: { accessKeyId: 'AKIDFAKE', secretAccessKey: 'fake' },
    maxAttempts: 1,
  });
  const mock = mockClient(ecs);
  cleanups.push(() => mock.restore());
  mock.on(ExecuteCommandCommand).callsFake(async (input: { command: string }) => {
    const session = agent.openSession(input.command);
    return { session: { sessionId: session.sessionId, streamUrl: session.streamUrl, tokenValue: session.tokenValue } };
  });
  mock
    .on(DescribeTasksCommand)
    .resolves({ tasks: [{ taskArn: TASK, lastStatus: 'RUNNING', desiredStatus: 'RUNNING' }] });
  const channels = new ExecChannels(ecs, {
    cluster: 'wsp-test',
    container: 'workspace',
    command: runnerRpcCommand(RUNNER_SCRIPT),
    retry: { ...defaultRetryPolicy, attempts: 1 },
    ...options,
  });
  cleanups.push(() => channels.closeAll());
  const listCommands = (what: string) => channels.with(TASK, what, (rpc) => rpc.statusMany(cmdRoot));
  const live = () => [...agent.sessions.values()].filter((s) => s.state === 'running');
  return { agent, channels, listCommands, live, mock };
}

/** What a Lambda invocation of the API function has: 29 s from its start. */
function invocation(ms: number): () => number {
  const deadline = Date.now() + ms;
  return () => deadline - Date.now();
}

describe('ExecChannels: dead sessions and the invocation deadline', () => {
  it('a session that died unseen (frozen Lambda) is replaced within the invocation, not after 120 s', async () => {
    const { agent, listCommands, live } = await setUp({ ackTimeoutMs: 2_000, remainingMs: invocation(29_000) });
    await expect(listCommands('first request')).resolves.toEqual([]);
    expect(live()).toHaveLength(1);
    agent.stall(live()[0]!.sessionId); // the path dies; our socket still looks open

    const started = Date.now();
    await expect(listCommands('after the freeze')).resolves.toEqual([]);
    expect(Date.now() - started).toBeLessThan(15_000);
    // The dead one was given up (closed by us), the new one serves.
    expect([...agent.sessions.values()].map((s) => [s.state, s.closeReason])).toEqual([
      ['closed', 'client closed'],
      ['running', undefined],
    ]);
  }, 40_000);

  it('a throttled ExecuteCommand is retried only while the invocation can afford the backoff and one more try', async () => {
    const throttled = () => Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
    const retry = { ...defaultRetryPolicy, attempts: 6, sleep: async () => undefined };
    // Plenty of time: all six attempts.
    const roomy = await setUp({ retry, remainingMs: invocation(600_000) });
    roomy.mock.on(ExecuteCommandCommand).rejects(throttled());
    await expect(roomy.listCommands('open')).rejects.toBeInstanceOf(BackendUnavailableError);
    expect(roomy.mock.commandCalls(ExecuteCommandCommand)).toHaveLength(6);
    // 6 s left (less the 1 s answer reserve): not the 5 s backoff cap plus a 2 s attempt — no retry.
    const tight = await setUp({ retry, remainingMs: invocation(6_000) });
    tight.mock.on(ExecuteCommandCommand).rejects(throttled());
    await expect(tight.listCommands('open')).rejects.toBeInstanceOf(BackendUnavailableError);
    expect(tight.mock.commandCalls(ExecuteCommandCommand)).toHaveLength(1);
  });

  it('no request outlives the invocation: the remaining time bounds it (here ~3 s, not 120 s)', async () => {
    // Detection by silence is off (a long ack timeout): only the deadline can end the wait.
    const { agent, listCommands, live } = await setUp({ ackTimeoutMs: 600_000, remainingMs: invocation(4_000) });
    await listCommands('first request');
    agent.stall(live()[0]!.sessionId);
    const started = Date.now();
    const error = await listCommands('after the freeze').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as Error).message).toMatch(/time left|did not answer/);
    expect(Date.now() - started).toBeLessThan(4_000);
  }, 40_000);
});
