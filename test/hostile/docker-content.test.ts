import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ConfigInput } from '../../shared/config/schema.js';
import { BASE_IMAGE, DOCKER_SOCKET, dockerUnavailable } from '../support/docker-daemon.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';
import { describeTree, inodes } from '../tree/helpers.js';

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
  execFileSync('docker', ['-H', `unix://${DOCKER_SOCKET}`, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });

describe.skipIf(dockerUnavailable !== undefined)('hostile workspace content (Docker backend, real provider)', () => {
  let root: string | undefined;
  let wsp: TestProvider | undefined;

  afterEach(async () => {
    if (wsp) {
      // Containers and images outlive a provider by design; a test's must not outlive the test.
      const backend = wsp.provider.deps.backend;
      for (const ws of await backend.listResources()) await backend.destroy(ws.ref).catch(() => undefined);
      for (const snap of await backend.listSnapshots()) await backend.deleteSnapshot(snap).catch(() => undefined);
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
  async function start(setup: string, extra: Partial<ConfigInput> = {}): Promise<{ sentinel: string; untouched: () => void }> {
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
    wsp = await startTestProvider({ ...DOCKER, setup: { script: setup }, workspace: { network: 'none' }, ...extra }, { dataDir });
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
    const settled = attack.finally(() => { done = true; });
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
    const { sentinel, untouched } = await start('cd ~ && mv workspace workspace.real && ln -s /usr/local/bin workspace');
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
      const planted = await wsp!.exec(cached.body.id, [
        `printf '#!/bin/sh\\nfor d in /run/wsp-runner/cmd/*/; do ln -sf ${sentinel}/secret "$d/stdout.x" 2>/dev/null && mv -f "$d/stdout.x" "$d/stdout"; done\\nexec /usr/bin/setsid "$@"\\n' > /usr/local/bin/setsid 2>/dev/null && chmod +x /usr/local/bin/setsid && echo planted || echo refused`,
      ].join('\n'));
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
});
