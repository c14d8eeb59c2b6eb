import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ConfigInput } from '../../shared/config/schema.js';
import { BASE_IMAGE, DOCKER_SOCKET, dockerUnavailable } from '../support/docker-daemon.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';
import { describeTree, inodes } from '../backends/local/tree/helpers.js';

// The Docker backend's content operations against a hostile workspace, through a real provider on
// the real daemon (test/hostile/content.test.ts is the local backend's). On Docker the provider never
// walks the home itself: a reset is a new container from the baseline image, a snapshot is `docker
// commit`, a delete removes the container, the fingerprint runs inside as the workspace uid. What the
// provider DOES touch on the host is the workspace's host dir, bind-mounted at /run/wsp-runner/cmd
// (command files it reads back as root). So the attacker here aims at escaping to the host through a
// path the provider or the daemon follows, and at becoming root in the container (root there can
// write the bind mount). Every case: a host sentinel dir next to the provider's data dir stays exactly
// as it was, its secret never reaches the workspace, a snapshot or an API answer, and /healthz answers
// quickly while the attack runs.

const SECRET = `host-secret-${randomBytes(12).toString('hex')}`;
const DOCKER: ConfigInput = { mode: 'docker', docker: { socketPath: DOCKER_SOCKET, baseImage: BASE_IMAGE } };
const docker = (...args: string[]): string =>
  execFileSync('docker', ['-H', `unix://${DOCKER_SOCKET}`, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  });

describe.skipIf(dockerUnavailable !== undefined)('hostile workspace content (Docker backend, real provider)', () => {
  let root: string | undefined;
  let wsp: TestProvider | undefined;

  afterEach(async () => {
    if (wsp) {
      // Containers and images outlive a provider by design; a test's must not outlive the test.
      const backend = wsp.provider.deps.backend;
      for (const ws of await backend.listResources()) await backend.destroy(ws.ref).catch(() => undefined);
      for (const snap of await backend.snapshots.list()) await backend.snapshots.delete(snap).catch(() => undefined);
      await wsp.close();
    }
    if (root) fs.rmSync(root, { recursive: true, force: true });
    wsp = undefined;
    root = undefined;
  }, 120_000);

  /**
   * A provider whose data dir sits next to a host sentinel dir (root-owned, 0755, a 0600 secret):
   * the host path an attacker would aim at, with a name it can guess from the layout.
   */
  async function start(
    setup: string | ((sentinel: string) => string),
  ): Promise<{ sentinel: string; untouched: () => void }> {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-dcontent-'));
    const sentinel = path.join(root, 'sentinel');
    fs.mkdirSync(path.join(sentinel, 'sub'), { recursive: true, mode: 0o755 });
    fs.chmodSync(root, 0o755);
    fs.writeFileSync(path.join(sentinel, 'file'), 'sentinel file\n');
    fs.writeFileSync(path.join(sentinel, 'sub', 'deep.txt'), 'sentinel deep\n');
    fs.writeFileSync(path.join(sentinel, 'secret'), `${SECRET}\n`, { mode: 0o600 });
    const tree = describeTree(sentinel);
    const ino = inodes(sentinel);
    const dataDir = path.join(root, 'data');
    fs.mkdirSync(dataDir, { mode: 0o700 });
    const script = typeof setup === 'string' ? setup : setup(sentinel);
    wsp = await startTestProvider({ ...DOCKER, setup: { script }, workspace: { network: 'none' } }, { dataDir });
    return {
      sentinel,
      untouched: () => {
        expect(describeTree(sentinel)).toEqual(tree);
        expect(inodes(sentinel)).toEqual(ino);
        expect(fs.readFileSync(path.join(sentinel, 'secret'), 'utf8')).toBe(`${SECRET}\n`);
      },
    };
  }

  /** /healthz answers, and fast, while `attack` runs; returns the attack's result and the slowest answer. */
  async function healthyDuring<T>(attack: Promise<T>): Promise<T> {
    let done = false;
    const settled = attack.finally(() => {
      done = true;
    });
    let slowest = 0;
    let probes = 0;
    while (!done) {
      const t0 = Date.now();
      const r = await fetch(`${wsp!.url}/healthz`);
      expect(r.status).toBe(200);
      await r.text();
      slowest = Math.max(slowest, Date.now() - t0);
      probes++;
      await Promise.race([settled.catch(() => undefined), new Promise((res) => setTimeout(res, 100))]);
    }
    expect(probes).toBeGreaterThan(0);
    expect(slowest, 'slowest /healthz answer during the attack (ms)').toBeLessThan(2_000);
    return settled;
  }

  const container = (id: string): string => `wsp-${id}`;

  async function run(id: string, script: string): Promise<any> {
    const r = await wsp!.exec(id, script);
    expect(r, `${r.stdout?.data}\n${r.stderr?.data}`).toMatchObject({ state: 'exited', exitCode: 0 });
    return r;
  }

  /** Every answer the provider gave and every log line: none may hold the host secret. */
  const noSecretAnywhere = (): void => {
    for (const text of [...wsp!.responses, ...wsp!.logs]) expect(text).not.toContain(SECRET);
  };

  it('a workspace root swapped for a symlink by setup does not make the next (cached) workspace root in its container, nor reach the host through the command dir', async () => {
    // The setup (as a package script would) leaves the workspace root as a symlink to /usr/local/bin,
    // first on every PATH, root-owned. A warm start creates the container from the cache image and
    // prepares the user's root as container root: if that follows the link, the user owns
    // /usr/local/bin, and the next runner binary it shadows runs as container root — which can write
    // the host dir bind-mounted at /run/wsp-runner/cmd and plant a symlink the provider reads.
    const { sentinel, untouched } = await start(
      'cd ~ && mv workspace workspace.real && ln -s /usr/local/bin workspace',
    );
    const first = await wsp!.setup();
    const cached = await wsp!.api('POST', '/workspaces', {});
    expect([200, 202]).toContain(cached.status);
    let view: any;
    for (let i = 0; i < 600; i++) {
      view = (await wsp!.api('GET', `/workspaces/${cached.body.id}`)).body;
      if (view.status !== 'provisioning') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    // A warm start: the container comes from the cache image the setup above wrote.
    expect(view.cache?.hit, JSON.stringify(view.cache)).toBe(true);
    if (view.status === 'ready') {
      const owner = docker('exec', container(cached.body.id), 'stat', '-c', '%U:%G', '/usr/local/bin').trim();
      expect(owner, 'the runner prepared the root through the symlink').toBe('root:root');
      // The whole chain, as the attacker would run it: shadow a tool the root runner calls, then
      // read a command's output (the provider reads it on the host).
      const planted = await wsp!.exec(
        cached.body.id,
        [
          `printf '#!/bin/sh\\nfor d in /run/wsp-runner/cmd/*/; do ln -sf ${sentinel}/secret "$d/stdout.x" 2>/dev/null && mv -f "$d/stdout.x" "$d/stdout"; done\\nexec /usr/bin/setsid "$@"\\n' > /usr/local/bin/setsid 2>/dev/null && chmod +x /usr/local/bin/setsid && echo planted || echo refused`,
        ].join('\n'),
      );
      expect(planted.stdout.data).toContain('refused');
      const next = await wsp!.exec(cached.body.id, 'echo hello');
      expect(next.stdout.data).toBe('hello\n');
    } else {
      // Refused with a clear step error that names no host path; the workspace stays deletable.
      expect(view.status).toBe('failed');
      expect(JSON.stringify(view.failure), JSON.stringify(view.failure)).toMatch(/symbolic link/);
      expect(JSON.stringify(view.failure)).not.toContain(wsp!.dataDir);
    }
    for (const id of [first.id, cached.body.id]) {
      const del = await wsp!.api('DELETE', `/workspaces/${id}`);
      expect(del.status, del.text).toBe(200);
    }
    untouched();
    noSecretAnywhere();
  }, 180_000);

  /**
   * A racer of the workspace uid, in the background: swaps ~/victim between a real dir (with junk in
   * it) and a symlink to each target in turn, thousands of times a second, until it is killed.
   */
  const racer = (targets: string[]): string =>
    `(cd ~ && while :; do for t in ${targets.map((t) => `'${t}'`).join(' ')}; do rm -rf victim; mkdir -p victim/sub; echo x > victim/junk; echo x > victim/sub/deep.txt; rm -rf victim; ln -s "$t" victim; done; done) > /dev/null 2>&1 &`;

  it('a racer swapping a dir for symlinks to a host dir and /etc, during snapshot, reset and delete, reaches none of them', async () => {
    // The host sentinel's path is what the attacker aims at (the daemon resolves in-container paths
    // only, but a path-following provider step on the host would hit it); /etc is the container's own.
    const targets = (sentinel: string): string[] => [sentinel, `${sentinel}/sub`, '/etc'];
    // The setup is itself hostile: it races during the cache and baseline commits (the provider kills
    // its leftovers first; the commit pauses the container either way).
    const { sentinel, untouched } = await start(
      (dir) => `echo clean > state.txt && ln -s '${dir}' ~/hostlink && ${racer(targets(dir))} true`,
    );
    const hostTargets = targets(sentinel);
    const ws = await healthyDuring(wsp!.setup());
    const passwd = docker('exec', container(ws.id), 'sha256sum', '/etc/passwd');

    for (let round = 0; round < 3; round++) {
      await run(ws.id, `echo dirty > state.txt; ln -sfn '${sentinel}' ~/hostlink2; ${racer(hostTargets)} echo started`);
      const reset = await healthyDuring(wsp!.api('POST', `/workspaces/${ws.id}/reset`, {}));
      expect(reset.status, reset.text).toBe(200);
      expect(reset.body.matches).toBe(true);
      untouched();
      expect(docker('exec', container(ws.id), 'sha256sum', '/etc/passwd')).toBe(passwd);
      const after = await run(ws.id, 'cat state.txt; ls -a ~');
      expect(after.stdout.data).toMatch(/^clean\n/);
      expect(after.stdout.data).not.toMatch(/hostlink2/);
    }

    // Every snapshot the provider took while the racers ran: the host secret is in none.
    const backend = wsp!.provider.deps.backend;
    const snaps = await backend.snapshots.list();
    expect(snaps.length).toBeGreaterThanOrEqual(2);
    for (const snap of snaps) expect(await backend.snapshots.scan(snap, [SECRET])).toEqual([]);

    await run(ws.id, `${racer(hostTargets)} echo started`);
    const del = await healthyDuring(wsp!.api('DELETE', `/workspaces/${ws.id}`));
    expect(del.status, del.text).toBe(200);
    expect((await backend.listResources()).map((r) => r.workspaceId)).not.toContain(ws.id);
    untouched();
    noSecretAnywhere();
  }, 240_000);

  it('a tree deeper than PATH_MAX and 255-byte names piled on by the agent: reset and delete succeed, the host untouched', async () => {
    // 40 levels of 250-byte names (~10 KB of path, well past PATH_MAX), built one level at a time (cd)
    // so no single call passes PATH_MAX inside; the bottom file is written relative to the deepest
    // dir. (Not 2,200 one-letter levels as on the local backend: on the container's overlayfs such a
    // chain alone takes the attacker minutes to build — quadratic in the depth, measured 5 s for 500
    // levels and 290 s for 2,200. A baseline holding such a tree is a known limit on Docker: the
    // daemon's commit drops what lies beyond PATH_MAX — a reset then reports matches: false.)
    const deep = (name: string): string =>
      `mkdir ${name} && cd ${name} && n=$(printf '%0250d' 0) && i=0; while [ $i -lt 40 ]; do mkdir "$n" && cd "$n" || exit 1; i=$((i+1)); done; echo bottom > f`;
    const long = (dir: string): string =>
      `n=$(printf '%0255d' 0); mkdir -p "${dir}/$n/$n" && echo x > "${dir}/$n/$n/$n"`;
    const { untouched } = await start('echo clean > state.txt # docker-content deep');
    const ws = await wsp!.setup();
    await run(ws.id, `echo dirty > state.txt; (${deep('deep')}); ${long('long')}`);
    const reset = await healthyDuring(wsp!.api('POST', `/workspaces/${ws.id}/reset`, {}));
    expect(reset.status, reset.text).toBe(200);
    expect(reset.body.matches).toBe(true);
    const after = await run(ws.id, 'cat state.txt; ls');
    expect(after.stdout.data).toBe('clean\nstate.txt\nworkspace\n');
    await run(ws.id, `(${deep('deep2')}); ${long('long2')}`);
    const del = await healthyDuring(wsp!.api('DELETE', `/workspaces/${ws.id}`));
    expect(del.status, del.text).toBe(200);
    expect((await wsp!.api('GET', `/workspaces/${ws.id}`)).body.status).toBe('deleted');
    expect((await wsp!.provider.deps.backend.listResources()).map((r) => r.workspaceId)).not.toContain(ws.id);
    untouched();
  }, 240_000);

  it('fifos during snapshot, reset and fingerprint; a hard link to /etc/passwd; runaway output: no hang, no failure, nothing outside changes', async () => {
    const { untouched } = await start('echo clean > state.txt && mkfifo setup.fifo ~/home.fifo');
    const ws = await healthyDuring(wsp!.setup());
    const passwd = docker('exec', container(ws.id), 'sha256sum', '/etc/passwd');
    // The kernel's protected_hardlinks refuses a link to a file the uid neither owns nor may write;
    // if it allowed one, a reset must still not be a way to change /etc/passwd.
    const link = await wsp!.exec(
      ws.id,
      'ln /etc/passwd ~/passwd.link 2>&1 && echo linked || echo refused; mkfifo agent.fifo && echo ok',
    );
    expect(link.stdout.data).toMatch(/(linked|refused)\nok\n$/);
    await run(ws.id, 'echo "evil:x:0:0::/:/bin/sh" >> ~/passwd.link 2>/dev/null; echo dirty > state.txt; true');
    // Runaway output at the default cap, still running while the reset begins.
    const flood = await wsp!.api('POST', `/workspaces/${ws.id}/commands`, { command: 'yes flood', waitMs: 1_500 });
    expect(flood.status).toBeLessThan(300);
    const cap = 8 * 1024 * 1024;
    const status = (await wsp!.api('GET', `/workspaces/${ws.id}/commands/${flood.body.id}`)).body;
    expect(status.stdout.bytes).toBeGreaterThan(0);
    const reset = await healthyDuring(wsp!.api('POST', `/workspaces/${ws.id}/reset`, {}));
    expect(reset.status, reset.text).toBe(200);
    expect(reset.body.matches).toBe(true);
    const ended = (await wsp!.api('GET', `/workspaces/${ws.id}/commands/${flood.body.id}`)).body;
    expect(ended.state).not.toBe('running');
    const kept = fs.statSync(
      path.join(wsp!.dataDir, 'docker', 'workspaces', ws.id, 'cmd', flood.body.id, 'stdout'),
    ).size;
    expect(kept).toBeLessThanOrEqual(cap);
    expect(docker('exec', container(ws.id), 'sha256sum', '/etc/passwd')).toBe(passwd);
    const after = await run(
      ws.id,
      'cat state.txt; ls -a ~ ~/workspace | grep -c fifo; [ -p ~/home.fifo ] && echo fifo-kept',
    );
    expect(after.stdout.data).toBe('clean\n2\nfifo-kept\n');
    // A second workspace (cache hit: a container from the committed image, fifos included).
    const warm = await healthyDuring(wsp!.setup());
    expect(warm.cache?.hit).toBe(true);
    const del = await Promise.all([ws.id, warm.id].map((id) => healthyDuring(wsp!.api('DELETE', `/workspaces/${id}`))));
    for (const d of del) expect(d.status, d.text).toBe(200);
    untouched();
  }, 240_000);
});
