import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeRequest } from '../../../shared/backends/docker/channel.js';
import {
  envScript,
  readStatus,
  RUNNER_SCRIPT,
  supervisorAlive,
  writeCommandDir,
} from '../../../shared/backends/runner/command-files.js';
import { readSpec } from '../../../shared/backends/runner/command-record.js';
import { configSchema } from '../../../shared/config/schema.js';
import { shellQuote } from '../../../shared/lib/shell-quote.js';
import { rootUnavailable } from '../../support/root.js';

// runner.sh and its encodings on the host itself (no Docker needed): the runner is plain POSIX sh +
// coreutils + setsid, so it runs here as it does inside any container (and later over ECS Exec).
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-runner-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const sh = (script: string, args: string[] = [], input?: string): string =>
  execFileSync('sh', ['-c', script, 'sh', ...args], {
    input,
    encoding: 'utf8',
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
  });

const awkward = [
  'a b',
  "it's",
  '"double"',
  '$HOME',
  '*',
  '',
  'ünïcødé ✓',
  'back\\slash',
  'semi;colon && x',
  '-n',
  'new\nline',
  "'",
];

describe('runner encodings', () => {
  it('envScript survives eval byte for byte', () => {
    const env = Object.fromEntries(awkward.map((v, i) => [`V${i}`, v]));
    const out = sh(
      'eval "$(cat)"; for i in $(seq 0 11); do eval "printf \'[%s]\' \\"\\$V$i\\""; done',
      [],
      envScript(env),
    );
    expect(out).toBe(awkward.map((v) => `[${v}]`).join(''));
  });

  it('a channel request decodes to the same argv (base64, shell-quoted)', () => {
    const line = encodeRequest(7, awkward);
    expect(line.endsWith('\n')).toBe(true);
    expect(line.slice(0, -1)).not.toContain('\n');
    const [id, b64] = line.trim().split(' ');
    expect(id).toBe('7');
    const out = sh('script=$(printf %s "$1" | base64 -d) && eval "set -- $script" && printf "[%s]" "$@"', [b64!]);
    expect(out).toBe(awkward.map((v) => `[${v}]`).join(''));
    expect(shellQuote("a'b")).toBe("'a'\\''b'");
  });
});

describe.skipIf(rootUnavailable !== undefined)('runner.sh on the host (root)', () => {
  const start = async (id: string, argv: string[], timeoutMs = 0, stdin = ''): Promise<string> => {
    const dir = path.join(tmp, id);
    const spec = {
      commandId: id,
      argv,
      cwd: '/tmp',
      env: { WSP_X: "it's" },
      timeoutMs,
      maxOutputBytes: 1000,
      stdin: Buffer.from(stdin),
    };
    expect(await writeCommandDir(dir, spec, { PATH: '/usr/bin:/bin', ...spec.env })).toBe(true);
    const r = spawnSync(
      'sh',
      [RUNNER_SCRIPT, 'start', dir, '65534', '65534', String(timeoutMs), '1000', '/tmp', '--', ...argv],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    return dir;
  };
  const waitEnd = async (dir: string) => {
    const spec = (await readSpec(dir))!;
    for (let i = 0; i < 500; i++) {
      const s = await readStatus(dir, spec);
      if (s.state !== 'running') return s;
      await new Promise((r) => setTimeout(r, 20));
    }
    return readStatus(dir, spec);
  };

  it('runs as the given uid in cwd with the env file, stdin, and an atomic exit record', async () => {
    const dir = await start('c1', ['sh', '-c', 'id -u; pwd; echo "$WSP_X"; cat; exit 3'], 0, 'in\n');
    const status = await waitEnd(dir);
    expect(status).toMatchObject({ state: 'exited', exitCode: 3 });
    expect(fs.readFileSync(path.join(dir, 'stdout'), 'utf8')).toBe("65534\n/tmp\nit's\nin\n");
    expect(fs.existsSync(path.join(dir, 'env'))).toBe(false);
    // The record is the supervisor's last step; its exit follows within moments.
    let alive = true;
    for (let i = 0; i < 50 && alive; i++) {
      alive = await supervisorAlive(dir);
      if (alive) await new Promise((r) => setTimeout(r, 20));
    }
    expect(alive).toBe(false);
  });

  it('kill ends the group with the reason; a dead supervisor reads lost', async () => {
    const dir = await start('c2', ['sleep', '300']);
    expect(await supervisorAlive(dir)).toBe(true);
    execFileSync('sh', [RUNNER_SCRIPT, 'kill', dir, 'cancelled']);
    expect(await waitEnd(dir)).toMatchObject({ state: 'killed', reason: 'cancelled', signal: 'SIGKILL' });

    const lost = await start('c3', ['sleep', '300']);
    const pid = Number(fs.readFileSync(path.join(lost, 'pid'), 'utf8'));
    const pgid = Number(fs.readFileSync(path.join(lost, 'pgid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    process.kill(-pgid, 'SIGKILL');
    expect(await waitEnd(lost)).toMatchObject({ state: 'lost', reason: 'process vanished' });
  });

  it('output is capped while the command runs; a background process holding stdout does not hold the exit record', async () => {
    // maxOutputBytes is 1000: 5000 bytes now, then the command ends while its child writes on.
    const dir = await start('c5', [
      'sh',
      '-c',
      'head -c 5000 /dev/zero; (sleep 0.5; head -c 3000 /dev/zero; sleep 30) & echo done >&2',
    ]);
    const t0 = Date.now();
    const status = await waitEnd(dir);
    expect(Date.now() - t0).toBeLessThan(5_000); // the 1 s grace, not the child's 30 s
    expect(status).toMatchObject({
      state: 'exited',
      exitCode: 0,
      stdout: { truncated: true },
      stderr: { bytes: 5, truncated: false },
    });
    // The count in the record is what was known at exit (the first byte past the cap at least).
    expect(status.stdout.bytes).toBeGreaterThan(1000);
    // The child's later output is still cut: the kept file never passes the cap; once the stream
    // ends, the rest is counted exactly.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(fs.statSync(path.join(dir, 'stdout')).size).toBe(1000);
    process.kill(-Number(fs.readFileSync(path.join(dir, 'pgid'), 'utf8')), 'SIGKILL');
    let rest = 0;
    for (let i = 0; i < 100 && rest !== 7000; i++) {
      await new Promise((r) => setTimeout(r, 20));
      rest = Number(fs.readFileSync(path.join(dir, 'stdout.rest'), 'utf8'));
    }
    expect(rest).toBe(7000);
    expect(fs.statSync(path.join(dir, 'stdout')).size).toBe(1000);
  });

  it('a second start of the same dir starts nothing new', async () => {
    const dir = await start('c4', ['sh', '-c', 'echo once']);
    const r = spawnSync(
      'sh',
      [RUNNER_SCRIPT, 'start', dir, '65534', '65534', '0', '1000', '/tmp', '--', 'sh', '-c', 'echo twice'],
      { encoding: 'utf8' },
    );
    expect(r.status).toBe(0);
    await waitEnd(dir);
    expect(fs.readFileSync(path.join(dir, 'stdout'), 'utf8')).toBe('once\n');
  });
});

describe.skipIf(rootUnavailable !== undefined)('runner.sh open stdin on the host (root)', () => {
  const startOpen = async (id: string, argv: string[], stdin = ''): Promise<string> => {
    const dir = path.join(tmp, id);
    const spec = {
      commandId: id,
      argv,
      cwd: '/tmp',
      env: {},
      timeoutMs: 0,
      maxOutputBytes: 1000,
      stdin: Buffer.from(stdin),
    };
    expect(await writeCommandDir(dir, spec, { PATH: '/usr/bin:/bin' })).toBe(true);
    const r = spawnSync(
      'sh',
      [RUNNER_SCRIPT, 'start', dir, '65534', '65534', '0', '1000', '/tmp', '--open-stdin', '--', ...argv],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    return dir;
  };
  const write = (dir: string, id: string, data: string, eof = false) =>
    spawnSync(
      'sh',
      [RUNNER_SCRIPT, 'stdin', dir, id, eof ? '1' : '0', '1048576', Buffer.from(data).toString('base64')],
      {
        encoding: 'utf8',
      },
    );
  const until = async (check: () => boolean): Promise<boolean> => {
    for (let i = 0; i < 250 && !check(); i++) await new Promise((r) => setTimeout(r, 20));
    return check();
  };
  const keepers = (dir: string): string[] =>
    fs
      .readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(`keep-stdin\0${dir}`);
        } catch {
          return false;
        }
      });

  it('a retried write (same write id) goes in once, also when its first attempt lost the notice', async () => {
    const dir = await startOpen('s1', ['cat'], 'first\n');
    expect(write(dir, 'w1', 'one\n').status).toBe(0);
    expect(write(dir, 'w1', 'one\n').status).toBe(0);
    // A first attempt that queued its bytes and died before telling the keeper: the retry tells it.
    fs.writeFileSync(path.join(dir, 'stdin.q', 'w2'), 'two\n');
    expect(write(dir, 'w2', 'two\n').status).toBe(0);
    expect(write(dir, 'w3', 'three\n', true).status).toBe(0);
    expect(write(dir, 'w3', 'three\n', true).status).toBe(0); // the eof write, retried
    expect(write(dir, 'w4', 'late\n').status).toBe(6);
    expect(await until(() => fs.existsSync(path.join(dir, 'exit')))).toBe(true);
    expect(fs.readFileSync(path.join(dir, 'stdout'), 'utf8')).toBe('first\none\ntwo\nthree\n');
    // Everything but the records is gone with the command, and so is the keeper.
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('stdin'))).toEqual(['stdin.eof', 'stdin.fed']);
    expect(keepers(dir)).toEqual([]);
  });

  it('the FIFO is root-only 0600; the keeper is root, in a session of its own, and ends if the supervisor dies', async () => {
    const dir = await startOpen('s2', ['cat']);
    const fifo = fs.statSync(path.join(dir, 'stdin.fifo'));
    expect(fifo.isFIFO()).toBe(true);
    expect([fifo.uid, fifo.mode & 0o777]).toEqual([0, 0o600]);
    // Fields 5 and 6 (pgid, session) counted from 3 after the name. The keeper's subshells share its
    // command line for a moment: the keeper is the one of them that leads a session — its own.
    const idsOf = (pid: string) => fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ').slice(2, 4);
    const keeper = keepers(dir).find((p) => {
      try {
        return idsOf(p)[1] === p;
      } catch {
        return false; // a subshell gone meanwhile
      }
    });
    expect(keeper).toBeDefined();
    const pgid = Number(fs.readFileSync(path.join(dir, 'pgid'), 'utf8'));
    expect(idsOf(keeper!)).toEqual([keeper, keeper]);
    expect(Number(keeper)).not.toBe(pgid);
    expect(fs.statSync(`/proc/${keeper}`).uid).toBe(0);
    // A supervisor killed outright (nothing writes the record): the keeper reads EOF on its control
    // FIFO and ends, closing the command's stdin, so cat ends too.
    process.kill(Number(fs.readFileSync(path.join(dir, 'pid'), 'utf8')), 'SIGKILL');
    expect(await until(() => keepers(dir).length === 0)).toBe(true);
    expect(
      await until(
        () => !fs.existsSync(`/proc/${pgid}`) || fs.readFileSync(`/proc/${pgid}/stat`, 'utf8').includes(') Z'),
      ),
    ).toBe(true);
  });

  it('refuses bad arguments, an unknown dir and a command without open stdin', async () => {
    expect(write(path.join(tmp, 'nope'), 'w1', 'x').status).toBe(3);
    const plain = path.join(tmp, 's3');
    await writeCommandDir(
      plain,
      { commandId: 's3', argv: ['true'], cwd: '/tmp', env: {}, timeoutMs: 0, maxOutputBytes: 10 },
      {},
    );
    expect(write(plain, 'w1', 'x').status).toBe(4);
    expect(write(plain, 'bad/id', 'x').status).toBe(2);
    expect(spawnSync('sh', [RUNNER_SCRIPT, 'stdin', plain, 'w1', '2', '10']).status).toBe(2);
    expect(fs.readdirSync(plain).filter((f) => f.startsWith('stdin.in'))).toEqual([]);
  });
});

describe('docker config section', () => {
  it('defaults to the wsp-base:bookworm image and no explicit socket', () => {
    expect(configSchema.parse({}).docker).toEqual({ baseImage: 'wsp-base:bookworm' });
    expect(
      configSchema.parse({ docker: { socketPath: '/run/d.sock', baseImage: 'registry.local:5000/img:Tag-1' } }).docker,
    ).toEqual({ socketPath: '/run/d.sock', baseImage: 'registry.local:5000/img:Tag-1' });
  });

  it('rejects a relative socket, a bad image reference and unknown keys', () => {
    for (const docker of [
      { socketPath: 'docker.sock' },
      { baseImage: 'bad image' },
      { baseImage: '' },
      { pull: true },
    ]) {
      expect(configSchema.safeParse({ docker }).success, JSON.stringify(docker)).toBe(false);
    }
  });
});
