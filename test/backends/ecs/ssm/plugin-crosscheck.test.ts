/**
 * The cross-check: AWS's own Session Manager client (session-manager-plugin 1.2.0.0, prebuilt in
 * ../shared/tools/session-manager-plugin/, see its README) against our FakeSsmAgent, so the fake — the
 * peer every other test of our client trusts — is checked against AWS's implementation rather than
 * against our reading of it. Loopback only: the plugin's AWS endpoint is a closed 127.0.0.1 port and
 * it is only called on failures (ResumeSession, TerminateSession).
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeSsmAgent, type AgentProcess, childAgentProcess } from '../../../support/fake-ssm-agent.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const PLUGIN = path.resolve(REPO, '../shared/tools/session-manager-plugin/session-manager-plugin');

/** Why the plugin cannot run here (undefined = it can). */
const pluginUnavailable: string | undefined = (() => {
  if (!fs.existsSync(PLUGIN)) return `${PLUGIN} is absent`;
  const run = spawnSync(PLUGIN, ['--version'], { encoding: 'utf8', timeout: 20_000 });
  if (run.error || run.status !== 0)
    return `${PLUGIN} cannot execute here (${run.error?.message ?? `exit ${run.status}: ${run.stderr.trim()}`})`;
  return undefined;
})();

if (pluginUnavailable !== undefined) {
  // CI has ../shared beside the repository: there a missing plugin is a failure, never a skip.
  if (process.env.CI === 'true') throw new Error(`session-manager-plugin is required in CI: ${pluginUnavailable}`);
  console.warn(`\n!!!!!!!!!! SESSION-MANAGER-PLUGIN CROSS-CHECK SKIPPED: ${pluginUnavailable} !!!!!!!!!!\n`);
}

let agent: FakeSsmAgent | undefined;
const cleanups: Array<() => void> = [];
afterEach(async () => {
  await agent?.stop();
  agent = undefined;
  for (const c of cleanups.splice(0)) c();
});

/** A plain process on pipes (no PTY), so the bytes both ways are exact. */
function pipeProcess(argv: string[]): AgentProcess {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: 'pipe' });
  cleanups.push(() => child.kill('SIGKILL'));
  return childAgentProcess(child);
}

/** Runs the plugin as the AWS CLI does; resolves with its exit code and stdout once it exits. */
function runPlugin(
  session: { sessionId: string; streamUrl: string; tokenValue: string },
  stdin: Buffer,
): { done: Promise<{ code: number | null; stdout: Buffer }> } {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-smp-home-'));
  cleanups.push(() => fs.rmSync(home, { recursive: true, force: true }));
  const child = spawn(
    PLUGIN,
    [
      JSON.stringify({ SessionId: session.sessionId, StreamUrl: session.streamUrl, TokenValue: session.tokenValue }),
      'us-east-1',
      'StartSession',
      '',
      JSON.stringify({ Target: 'ecs:wsp-test_0123456789abcdef_0123456789abcdef-1' }),
      'http://127.0.0.1:9',
    ],
    {
      stdio: 'pipe',
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: home,
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_ACCESS_KEY_ID: 'AKIDFAKE',
        AWS_SECRET_ACCESS_KEY: 'fake',
      },
    },
  );
  cleanups.push(() => child.kill('SIGKILL'));
  const out: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.resume();
  child.stdin.on('error', () => undefined);
  // stdin stays open until the plugin exits: at EOF it would end the session itself.
  child.stdin.write(stdin);
  const done = new Promise<{ code: number | null; stdout: Buffer }>((resolve) => {
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out) }));
  });
  return { done };
}

describe.skipIf(pluginUnavailable !== undefined)('AWS session-manager-plugin against FakeSsmAgent', () => {
  it('handshake, input, output, acks, resends both ways and channel_closed: exit 0, exact bytes, no invalid frame', async () => {
    // Valid UTF-8 ending on a rune (the agent's output pump holds an incomplete rune back), and no
    // newline at all: the plugin turns a stdin read of exactly "\n" into "\r".
    const unit = 'wsp ✓ ünïcødé — ';
    const input = Buffer.from(unit.repeat(Math.floor(5000 / Buffer.byteLength(unit))));
    expect(input.includes(0x0a)).toBe(false);
    const expectedOutput = input.toString('utf8').replace(/[a-z]/g, (c) => c.toUpperCase());
    agent = await FakeSsmAgent.start({
      // Reads exactly our input, answers it upper-cased, exits: the agent then closes the channel.
      spawn: async () => pipeProcess(['sh', '-c', `head -c ${input.length} | tr a-z A-Z`]),
      dropEveryNthOutput: 3, // the plugin must ack the resends and put them back in order
      dropInputSeqsOnce: [2, 4], // the plugin must resend its own input until it is acked
      closeDrainMs: 30_000,
    });
    const opened = agent.openSession('wsp-crosscheck');
    const { code, stdout } = await runPlugin(opened, input).done;

    const info = agent.sessions.get(opened.sessionId)!;
    expect(code).toBe(0);
    expect(stdout.toString('utf8')).toBe(
      `\nStarting session with SessionId: ${opened.sessionId}\n` +
        expectedOutput +
        `\n\nExiting session with sessionId: ${opened.sessionId}.\n\n`,
    );
    expect(info).toMatchObject({
      state: 'closed',
      closeReason: 'exited',
      exitCode: 0,
      clientVersion: '1.2.0.0',
      invalidFrames: 0,
      rejectedConnections: 0,
      inputDiscardedBeforeHandshake: 0,
      inputBytes: input.length,
      inputFramesDropped: 2,
      outputFramesUnackedAtClose: 0,
      terminalSize: { cols: 300, rows: 100 }, // the plugin's size when stdout is no terminal
    });
    expect(info.outputFramesDropped).toBeGreaterThanOrEqual(2);
    expect(info.resends).toBeGreaterThanOrEqual(info.outputFramesDropped);
  }, 60_000);
});
