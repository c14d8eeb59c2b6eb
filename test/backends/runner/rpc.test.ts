import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommandSpec, CommandStatus } from '../../../shared/contract/backend.js';
import { BackendUnavailableError } from '../../../shared/contract/errors.js';
import { envScript, readStatus, RUNNER_SCRIPT } from '../../../shared/backends/runner/command-files.js';
import { readSpec } from '../../../shared/backends/runner/command-record.js';
import {
  encodeRpcRequest,
  REQUEST_LINE_CHARS,
  RpcFrameParser,
  RunnerRpc,
  runnerRpcCommand,
  type PtyLike,
} from '../../../shared/backends/runner/rpc.js';
import { BASE_IMAGE, dockerClient, dockerUnavailable } from '../../support/docker-daemon.js';
import { dockerPty, localPty } from '../../support/pty.js';
import { rootUnavailable } from '../../support/root.js';
import { sleep } from '../../../shared/lib/sleep.js';

// The runner's rpc over REAL PTYs (issue 5 item 2): `script` on this host, and a TTY `docker exec` into
// the base image — the two terminals ECS Exec is made of (echo, \r\n, control characters), with the
// runner doing everything through requests only. The host view of the command dirs is used for
// nothing but cross-checks (Fargate has none).

describe('rpc framing (pure)', () => {
  it('request lines are short printable ASCII, never containing an answer sentinel', () => {
    const controls = Array.from({ length: 31 }, (_, i) => String.fromCharCode(i + 1)).join('');
    const argv = ['prepare', 'it\'s "quoted"\n<<<wsp:x:0:AA==>>>', `ünïcødé ✓ ${controls}\x7f`.repeat(200)];
    const text = encodeRpcRequest('abc1', argv);
    const lines = text.split('\n');
    expect(lines.at(-1)).toBe('');
    for (const line of lines.slice(0, -1)) {
      expect(line.length).toBeLessThanOrEqual(REQUEST_LINE_CHARS);
      expect(line).toMatch(/^[\x20-\x7e]+$/);
      expect(line).not.toMatch(/[<>:]/);
    }
    expect(lines[0]).toBe('WSPREQ abc1');
    const body = lines.slice(1, -2).join('');
    expect(lines.at(-2)).toBe(`WSPEND abc1 ${body.length}`);
    // The body decodes, through sh, to the same argv.
    const out = execFileSync(
      'sh',
      ['-c', 'eval "set -- $(printf %s "$1" | base64 -d)"; printf "[%s]" "$@"', 'sh', body],
      { encoding: 'utf8' },
    );
    expect(out).toBe(argv.map((a) => `[${a}]`).join(''));
  });

  it('the parser finds answers in noise, split anywhere, and skips fakes', () => {
    const payload = Buffer.from([0, 1, 2, 0xff, 0x1b, 0x0d, 0x0a]);
    const real = `<<<wsp:id7:0:${payload.toString('base64')}>>>\r\n`;
    const noise =
      'motd \x1b[31m<<<wsp: half a sentinel\r\n\x03\x04 WSPREQ id7\r\nAAAA\r\n<<<wsp:other:0:QQ==>>>\r\n\x1b]0;title\x07';
    const stream = Buffer.from(`${noise + real}<<<wsp:id8:2:bm8=>>>\r\n<<<wsp:id9:0:not base64!>>>`, 'latin1');
    for (const step of [1, 3, 7, stream.length]) {
      const parser = new RpcFrameParser();
      const frames = [];
      for (let i = 0; i < stream.length; i += step) frames.push(...parser.push(stream.subarray(i, i + step)));
      expect(frames).toEqual([
        { id: 'other', status: 0, payload: Buffer.from('A') },
        { id: 'id7', status: 0, payload },
        { id: 'id8', status: 2, payload: Buffer.from('no') },
        { id: 'id9', corrupt: expect.stringContaining('not base64') },
      ]);
    }
  });

  it('a session that never says ready, or closes, fails every call with BackendUnavailableError', async () => {
    const silent: PtyLike & { closed: boolean } = {
      closed: false,
      write: () => undefined,
      onData: () => undefined,
      onClose: () => undefined,
      close() {
        this.closed = true;
      },
    };
    const rpc = new RunnerRpc(silent, { readyTimeoutMs: 50 });
    await expect(rpc.ready()).rejects.toBeInstanceOf(BackendUnavailableError);
    await expect(rpc.call(['status', '/x'])).rejects.toBeInstanceOf(BackendUnavailableError);
    expect(silent.closed).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------

interface OpenOptions {
  /** Leave the tty as it is (echo on, canonical mode): WSP_RPC_KEEP_TTY=1. */
  keepTty?: boolean;
  /** printf %b text printed before the runner starts (a login's motd). */
  motd?: string;
  /** Wrap the pty before the rpc uses it (to cut it at a chosen moment). */
  wrap?: (pty: PtyLike) => PtyLike;
}

interface Env {
  /** Runner-side command root and its host view (cross-checks only). */
  cmdRoot: string;
  hostCmdRoot: string;
  uid: number;
  gid: number;
  cwd: string;
  /** A container of its own: requests that touch /tmp or the home may run. */
  disposable: boolean;
  open(options?: OpenOptions): Promise<{ rpc: RunnerRpc; pty: PtyLike }>;
  /** Kill a command's supervisor and group behind the runner's back (a crash): the record stays without exit. */
  crash(commandId: string): Promise<void>;
  cleanup(): Promise<void>;
}

const motdCommand = (motd: string | undefined, rpcCommand: string): string =>
  motd === undefined ? rpcCommand : `printf '%b' '${motd}'; ${rpcCommand}`;

async function openRpc(raw: PtyLike, wrap?: (pty: PtyLike) => PtyLike): Promise<{ rpc: RunnerRpc; pty: PtyLike }> {
  const pty = wrap === undefined ? raw : wrap(raw);
  const rpc = new RunnerRpc(pty, { readyTimeoutMs: 20_000, requestTimeoutMs: 30_000 });
  await rpc.ready();
  return { rpc, pty };
}

async function localEnv(): Promise<Env> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-rpc-local-'));
  const cmdRoot = path.join(tmp, 'cmd');
  return {
    cmdRoot,
    hostCmdRoot: cmdRoot,
    uid: 65534,
    gid: 65534,
    cwd: '/tmp',
    disposable: false,
    // The channel's work dirs go under the test's temp dir, not the host's /var/lib/wsp.
    open: (o = {}) =>
      openRpc(
        localPty(motdCommand(o.motd, runnerRpcCommand(RUNNER_SCRIPT)), {
          WSP_RPC_WORK_ROOT: path.join(tmp, 'rpc'),
          ...(o.keepTty ? { WSP_RPC_KEEP_TTY: '1' } : {}),
        }),
        o.wrap,
      ),
    async crash(id) {
      const dir = path.join(cmdRoot, id);
      process.kill(Number(fs.readFileSync(path.join(dir, 'pid'), 'utf8')), 'SIGKILL');
      process.kill(-Number(fs.readFileSync(path.join(dir, 'pgid'), 'utf8')), 'SIGKILL');
    },
    async cleanup() {
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
}

async function dockerEnv(): Promise<Env> {
  const docker = dockerClient();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-rpc-docker-'));
  const hostCmdRoot = path.join(tmp, 'cmd');
  fs.mkdirSync(hostCmdRoot, { mode: 0o700 });
  const name = `wsp-rpc-test-${path
    .basename(tmp)
    .replace(/[^A-Za-z0-9]/g, '')
    .toLowerCase()}`;
  const container = await docker.createContainer({
    name,
    Image: BASE_IMAGE,
    Cmd: ['sleep', 'infinity'],
    Labels: { 'wsp.test': 'runner-rpc' },
    HostConfig: {
      Init: true,
      NetworkMode: 'none',
      Binds: [`${path.dirname(RUNNER_SCRIPT)}:/opt/wsp:ro`, `${hostCmdRoot}:/var/lib/wsp/cmd`],
    },
  });
  await container.start();
  const exec = async (argv: string[]): Promise<void> => {
    const e = await container.exec({ Cmd: argv, User: '0:0', AttachStdout: true, AttachStderr: true });
    const s = await e.start({});
    s.resume();
    await new Promise((r) => s.on('end', r));
  };
  return {
    cmdRoot: '/var/lib/wsp/cmd',
    hostCmdRoot,
    uid: 1000,
    gid: 1000,
    cwd: '/home/node',
    disposable: true,
    open: async (o = {}) =>
      openRpc(
        await dockerPty(
          docker,
          name,
          ['sh', '-c', motdCommand(o.motd, 'sh /opt/wsp/runner.sh rpc')],
          o.keepTty ? ['WSP_RPC_KEEP_TTY=1'] : [],
        ),
        o.wrap,
      ),
    async crash(id) {
      await exec(['sh', '-c', 'd=/var/lib/wsp/cmd/$1; kill -KILL "$(cat "$d/pid")" "-$(cat "$d/pgid")"', 'sh', id]);
    },
    async cleanup() {
      await container.remove({ force: true }).catch(() => undefined);
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
}

const envs: Array<[string, () => Promise<Env>, boolean]> = [
  ['local pty (script)', localEnv, rootUnavailable === undefined],
  ['docker exec pty (wsp-base)', dockerEnv, dockerUnavailable === undefined],
];

describe.each(envs)('runner.sh rpc over a %s', (_name, makeEnv, runnable) => {
  let env: Env;
  let rpc: RunnerRpc;
  let n = 0;

  beforeAll(async () => {
    if (!runnable) return;
    env = await makeEnv();
    ({ rpc } = await env.open());
  }, 120_000);
  afterAll(async () => {
    rpc?.close();
    await env?.cleanup();
  });

  const specOf = (argv: string[], extra: Partial<CommandSpec> = {}): CommandSpec => ({
    commandId: `cmd-${++n}-${randomBytes(4).toString('hex')}`,
    argv,
    cwd: env.cwd,
    env: {},
    timeoutMs: 0,
    maxOutputBytes: 1 << 20,
    ...extra,
  });
  const dirOf = (id: string): string => `${env.cmdRoot}/${id}`;

  /** What a backend does for startCommand: prepare (idempotent), then start (idempotent). */
  async function start(r: RunnerRpc, spec: CommandSpec): Promise<'created' | 'exists'> {
    const stored = {
      commandId: spec.commandId,
      timeoutMs: spec.timeoutMs,
      maxOutputBytes: spec.maxOutputBytes,
      startedAt: new Date().toISOString(),
    };
    const made = await r.prepare(
      dirOf(spec.commandId),
      JSON.stringify(stored),
      envScript({ PATH: '/usr/bin:/bin', ...spec.env }),
      spec.stdin ?? Buffer.alloc(0),
    );
    const argv = [
      'start',
      dirOf(spec.commandId),
      String(env.uid),
      String(env.gid),
      String(spec.timeoutMs),
      String(spec.maxOutputBytes),
      spec.cwd,
      '--',
      ...spec.argv,
    ];
    const answer = await r.call(argv);
    expect(answer.status, answer.payload.toString()).toBe(0);
    return made;
  }

  async function waitEnd(r: RunnerRpc, id: string): Promise<CommandStatus> {
    for (let i = 0; i < 600; i++) {
      const s = await r.status(dirOf(id));
      if (s === undefined) throw new Error(`no command ${id}`);
      if (s.state !== 'running') return s;
      await sleep(50);
    }
    throw new Error(`command ${id} did not end`);
  }

  async function readAll(r: RunnerRpc, id: string, stream: 'stdout' | 'stderr', chunk = 100_000): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (let offset = 0; ; ) {
      const data = await r.read(dirOf(id), stream, offset, chunk);
      if (data === undefined) throw new Error(`no command ${id}`);
      if (data.length === 0) return Buffer.concat(parts);
      parts.push(data);
      offset += data.length;
    }
  }

  /** The rpc answer and the host-file reader agree (statusFromRecord is shared: no drift). */
  async function expectSameAsHost(id: string, status: CommandStatus | undefined): Promise<void> {
    const dir = path.join(env.hostCmdRoot, id);
    expect(status).toEqual(await readStatus(dir, (await readSpec(dir))!));
  }

  it.runIf(runnable)('start → status → read: env, stdin, cwd, uid, stderr, exit code', async () => {
    const spec = specOf(
      ['sh', '-c', 'id -u; pwd; printf "%s|%s|%s|%s\\n" "$Q" "$D" "$NL" "$B"; cat; echo oops >&2; exit 3'],
      {
        env: { Q: "it's", D: '"double" $HOME `x`', NL: 'line1\nline2', B: 'back\\slash' },
        stdin: Buffer.from('from stdin\n'),
      },
    );
    expect(await start(rpc, spec)).toBe('created');
    const status = await waitEnd(rpc, spec.commandId);
    expect(status).toMatchObject({ commandId: spec.commandId, state: 'exited', exitCode: 3, signal: null });
    const expected = `${env.uid}\n${env.cwd}\nit's|"double" $HOME \`x\`|line1\nline2|back\\slash\nfrom stdin\n`;
    expect((await readAll(rpc, spec.commandId, 'stdout')).toString()).toBe(expected);
    expect((await readAll(rpc, spec.commandId, 'stderr')).toString()).toBe('oops\n');
    expect(status.stdout).toEqual({ bytes: Buffer.byteLength(expected), truncated: false });
    await expectSameAsHost(spec.commandId, status);
    // Windows of a read, and reads past the end.
    expect((await rpc.read(dirOf(spec.commandId), 'stdout', 2, 3))?.toString()).toBe(expected.slice(2, 5));
    expect((await rpc.read(dirOf(spec.commandId), 'stdout', 10_000, 10))?.length).toBe(0);
    // Unknown commands: undefined, not an error.
    expect(await rpc.status(dirOf('cmd-nope'))).toBeUndefined();
    expect(await rpc.read(dirOf('cmd-nope'), 'stdout', 0, 10)).toBeUndefined();
  });

  it.runIf(runnable)(
    'start is idempotent on the dir: a repeat (also on a new session) runs nothing again',
    async () => {
      const spec = specOf(['sh', '-c', 'echo ran; sleep 0.3']);
      expect(await start(rpc, spec)).toBe('created');
      expect(await start(rpc, spec)).toBe('exists');
      const other = await env.open();
      try {
        expect(await start(other.rpc, spec)).toBe('exists');
      } finally {
        other.rpc.close();
      }
      expect(await waitEnd(rpc, spec.commandId)).toMatchObject({ state: 'exited', exitCode: 0 });
      expect((await readAll(rpc, spec.commandId, 'stdout')).toString()).toBe('ran\n');
    },
  );

  it.runIf(runnable)('exit codes 0, 1, 137 (a signal the command sent itself), 126 (bad cwd)', async () => {
    const cases: Array<[CommandSpec, number]> = [
      [specOf(['true']), 0],
      [specOf(['false']), 1],
      [specOf(['sh', '-c', 'kill -KILL $$']), 137],
      [specOf(['true'], { cwd: '/does/not/exist' }), 126],
    ];
    for (const [spec] of cases) await start(rpc, spec);
    for (const [spec, code] of cases) {
      const status = await waitEnd(rpc, spec.commandId);
      expect(status, spec.argv.join(' ')).toMatchObject({ state: 'exited', exitCode: code });
      await expectSameAsHost(spec.commandId, status);
    }
  });

  it.runIf(runnable)(
    'timeout, kill and killall end the command groups with their reasons; a crashed supervisor reads lost',
    async () => {
      const timed = specOf(['sleep', '30'], { timeoutMs: 300 });
      const cancelled = specOf(['sh', '-c', 'sleep 300 & sleep 300']);
      const all1 = specOf(['sleep', '300']);
      const all2 = specOf(['sh', '-c', 'sleep 300']);
      const crashed = specOf(['sleep', '300']);
      for (const s of [timed, cancelled, all1, all2, crashed]) await start(rpc, s);

      const running = await rpc.status(dirOf(cancelled.commandId));
      expect(running).toMatchObject({ state: 'running', exitCode: null });
      await expectSameAsHost(cancelled.commandId, running);

      expect(await waitEnd(rpc, timed.commandId)).toMatchObject({
        state: 'killed',
        reason: 'timeout',
        signal: 'SIGKILL',
      });

      expect((await rpc.call(['kill', dirOf(cancelled.commandId), 'cancelled'])).status).toBe(0);
      expect(await waitEnd(rpc, cancelled.commandId)).toMatchObject({ state: 'killed', reason: 'cancelled' });

      await env.crash(crashed.commandId);
      const lost = await waitEnd(rpc, crashed.commandId);
      expect(lost).toMatchObject({ state: 'lost', reason: 'process vanished' });
      await expectSameAsHost(crashed.commandId, lost);

      const many = await rpc.statusMany(env.cmdRoot);
      const byId = new Map(many.map((m) => [m.id, m.status]));
      expect(byId.get(all1.commandId)?.state).toBe('running');
      expect(byId.get(all2.commandId)?.state).toBe('running');
      expect(byId.get(timed.commandId)?.state).toBe('killed');
      expect(byId.get(crashed.commandId)?.state).toBe('lost');

      expect((await rpc.call(['killall', env.cmdRoot, 'reset', String(env.uid), String(env.gid)])).status).toBe(0);
      for (const s of [all1, all2])
        expect(await waitEnd(rpc, s.commandId)).toMatchObject({ state: 'killed', reason: 'reset' });
      const after = await rpc.statusMany(env.cmdRoot);
      expect(after.filter((m) => m.status.state === 'running')).toEqual([]);
      expect(after.length).toBe(many.length);
    },
  );

  it.runIf(runnable)(
    'output with control characters, ANSI, fake sentinels and invalid UTF-8 comes back byte for byte',
    async () => {
      const nasty = Buffer.concat([
        Buffer.from('\x03\x04\x1a\x1c\x11\x13\x16\x7f\r\n\x1b[2J\x1b[31mred\x1b[0m\x1b]0;title\x07'),
        Buffer.from('<<<wsp:ready:0:eyJycGMiOjF9>>>\n<<<wsp:'),
        Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0x00, 0x80, 0xed, 0xa0, 0x80]),
        Buffer.from('WSPEND x 4\nWSPREQ y\n'),
      ]);
      const spec = specOf(['sh', '-c', 'cat; cat >&2'], { stdin: nasty });
      // stdin is read by the first cat entirely; stderr gets nothing — then check both streams.
      await start(rpc, spec);
      expect(await waitEnd(rpc, spec.commandId)).toMatchObject({ state: 'exited', exitCode: 0 });
      expect(await readAll(rpc, spec.commandId, 'stdout')).toEqual(nasty);
      // The session still works after carrying all that.
      expect((await rpc.status(dirOf(spec.commandId)))?.state).toBe('exited');
    },
  );

  it.runIf(runnable)('a 256 KiB stdin goes through the pty; output is bounded by maxOutputBytes', async () => {
    const big = randomBytes(256 * 1024);
    const spec = specOf(['cat'], { stdin: big, maxOutputBytes: 200_000 });
    await start(rpc, spec);
    const status = await waitEnd(rpc, spec.commandId);
    expect(status).toMatchObject({ state: 'exited', exitCode: 0, stdout: { bytes: big.length, truncated: true } });
    const out = await readAll(rpc, spec.commandId, 'stdout', 64 * 1024);
    expect(out).toEqual(big.subarray(0, 200_000));
  });

  it.runIf(runnable)('many requests in one session, answered in order', async () => {
    const spec = specOf(['sh', '-c', 'printf abcdefghij']);
    await start(rpc, spec);
    await waitEnd(rpc, spec.commandId);
    const reads = await Promise.all(
      Array.from({ length: 60 }, (_, i) => rpc.read(dirOf(spec.commandId), 'stdout', i % 10, 1)),
    );
    expect(reads.map((b) => b?.toString()).join('')).toBe('abcdefghij'.repeat(6));
  });

  it.runIf(runnable)(
    'in canonical mode with echo on (no stty) behind a noisy motd, the framing still holds',
    async () => {
      const { rpc: raw, pty } = await env.open({
        keepTty: true,
        motd: 'Welcome!\\r\\n\\033[1m<<<wsp:ready:9:\\033[0m <<<wsp:zz:0:QQ==>>>\\r\\n',
      });
      let seen = '';
      pty.onData((b) => (seen += b.toString('latin1')));
      try {
        const spec = specOf(['cat'], { stdin: randomBytes(20_000), env: { X: 'a\nb' } });
        expect(await start(raw, spec)).toBe('created');
        await waitEnd(raw, spec.commandId);
        expect(await readAll(raw, spec.commandId, 'stdout')).toEqual(spec.stdin);
        // The tty really echoed the requests back (with \r\n): the parser had to look past them.
        expect(seen).toMatch(/WSPREQ [a-z0-9]+\r\n/);
      } finally {
        raw.close();
      }
    },
  );

  it.runIf(runnable)(
    'a session dropped mid-request: a half-sent request never runs; a whole one runs; a retry is safe',
    async () => {
      // 1. Only the head of a request arrives before the hangup: nothing happens.
      const half = specOf(['sh', '-c', 'echo half']);
      const { pty } = await env.open();
      const stored = JSON.stringify({
        commandId: half.commandId,
        timeoutMs: 0,
        maxOutputBytes: 1000,
        startedAt: new Date().toISOString(),
      });
      const text = encodeRpcRequest('cut1', [
        'prepare',
        dirOf(half.commandId),
        Buffer.from(stored).toString('base64'),
        '',
        '',
      ]);
      pty.write(text.slice(0, Math.floor(text.length / 2)));
      await sleep(300);
      pty.close();
      await sleep(300);
      expect(await rpc.status(dirOf(half.commandId))).toBeUndefined();

      // 2. A start whose session is dropped right after sending: the caller sees BackendUnavailableError and
      //    retries on a new session; the command runs exactly once either way.
      const spec = specOf(['sh', '-c', 'echo once; sleep 1'], { stdin: randomBytes(64 * 1024) });
      // The pty hangs up right after the start request (the second write) was handed to it.
      let writes = 0;
      const doomed = await env.open({
        wrap: (p) => ({
          ...p,
          write: (d) => {
            p.write(d);
            if (++writes === 2) p.close();
          },
        }),
      });
      const hungUp = new Promise<void>((r) => doomed.pty.onClose(() => r()));
      // Whether the start's answer beats the hangup is timing (a docker exec pty closes asynchronously):
      // a failure must be BackendUnavailableError, and either way the command runs exactly once (below).
      const outcome = await start(doomed.rpc, spec).then(
        () => undefined,
        (e: unknown) => e,
      );
      if (outcome !== undefined) expect(outcome).toBeInstanceOf(BackendUnavailableError);
      await hungUp;
      await expect(doomed.rpc.call(['status', dirOf(spec.commandId)])).rejects.toBeInstanceOf(BackendUnavailableError);
      const retry = await env.open();
      try {
        await start(retry.rpc, spec);
        const status = await retry.rpc.status(dirOf(spec.commandId));
        expect(['running', 'exited']).toContain(status?.state);
        expect(await waitEnd(retry.rpc, spec.commandId)).toMatchObject({ state: 'exited', exitCode: 0 });
        expect((await readAll(retry.rpc, spec.commandId, 'stdout')).toString()).toBe('once\n');
      } finally {
        retry.rpc.close();
      }
    },
  );

  it.runIf(runnable)('bye ends the session; later calls fail at once', async () => {
    const { rpc: s, pty } = await env.open();
    const closed = new Promise<void>((r) => pty.onClose(() => r()));
    await s.bye();
    await closed;
    await expect(s.call(['status', '/x'])).rejects.toBeInstanceOf(BackendUnavailableError);
    // Bad requests answer 2 with the runner's message (and the session lives on).
    const bad = await rpc.call(['read', dirOf('x'), 'stdin', '0', '1']);
    expect(bad.status).toBe(2);
    expect(bad.payload.toString()).toContain('stream must be stdout or stderr');
    expect((await rpc.call(['supervise', '/x'])).status).toBe(2);
  });

  it.runIf(runnable)(
    'pristine-save / pristine-restore reach pristine.sh; clean-tmp empties /tmp but keeps the session',
    async () => {
      if (!env.disposable) return; // the host's /tmp and homes are not ours to reset
      const run = async (script: string): Promise<string> => {
        const spec = specOf(['sh', '-c', script]);
        await start(rpc, spec);
        expect(await waitEnd(rpc, spec.commandId)).toMatchObject({ state: 'exited', exitCode: 0 });
        return (await readAll(rpc, spec.commandId, 'stdout')).toString();
      };
      await run('echo base > /home/node/f; touch /tmp/junk');
      const saved = await rpc.call(['pristine-save', '/home/node', '/var/lib/wsp/pristine/b1']);
      expect(saved.status, saved.payload.toString()).toBe(0);
      expect(saved.payload.toString()).toContain('pristine: saved');
      await run('echo changed > /home/node/f; echo new > /home/node/g');
      const restored = await rpc.call([
        'pristine-restore',
        '/home/node',
        '/var/lib/wsp/pristine/b1',
        String(env.uid),
        String(env.gid),
      ]);
      expect(restored.status, restored.payload.toString()).toBe(0);
      expect(restored.payload.toString()).toMatch(/pristine: rewritten=1 removed=1/);
      expect(await run('cat /home/node/f; ls /home/node; ls -A /tmp')).toBe('base\nf\njunk\n');
      expect((await rpc.call(['clean-tmp'])).status).toBe(0);
      // Empty for the workspace; the channel's own work dir is elsewhere, root-only, and survives.
      expect(await run('ls -A /tmp')).toBe('');
      expect((await rpc.call(['status-many', '/var/lib/wsp/cmd'])).status).toBe(0);
    },
  );
});
