import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerNetworks } from '../../shared/backends/docker/container.js';
import { createDynamoClients } from '../../shared/state/client.js';
import { DynamoStateStore } from '../../shared/state/dynamo-store.js';
import { BASE_IMAGE, dockerClient } from '../support/docker-daemon.js';
import { hostileBackends } from '../support/hostile-backends.js';
import { createUpstreamRepo } from '../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../support/git-server.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';

// Nothing a workspace can reach speaks for the provider (issue 9, finding 1). The attack that worked:
// from inside a workspace, Scan the embedded DynamoDB on 127.0.0.1 (every record, every request env)
// and rewrite the own record's backend ref to another workspace's — the next command ran as that
// workspace. Here the workspace is the attacker: it tries every TCP port listening on the provider's
// host, looks for the state store, and its record is tampered with through the store itself.

const TOKEN = `net-${randomBytes(10).toString('hex')}`;

/** TCP sockets in LISTEN state on this host (this network namespace), /proc/net/tcp and tcp6 state 0A: inode → port. */
function listeningSockets(): Map<string, number> {
  const portOf = new Map<string, number>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === '0A') portOf.set(cols[9]!, Number.parseInt(cols[1]!.split(':')[1]!, 16));
    }
  }
  return portOf;
}

function hostListeners(): number[] {
  return [...new Set(listeningSockets().values())].sort((a, b) => a - b);
}

/**
 * A shell probe run inside the workspace: for each port, can it open a TCP connection to the
 * loopback (IPv4 and IPv6)? One line per port: "<port> open" or "<port> closed".
 */
function probeScript(ports: number[]): string {
  return [
    `for p in ${ports.join(' ')}; do`,
    '  if timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null || timeout 3 bash -c "exec 3<>/dev/tcp/::1/$p" 2>/dev/null; then echo "$p open"; else echo "$p closed"; fi',
    'done',
  ].join('\n');
}

/**
 * A DynamoDB request (ListTables, unsigned) to each port; prints what answered. dynalite answers
 * any request with a JSON error naming `com.amazon.coral…` or `__type` — that is what must never
 * come back from a port a workspace can reach.
 */
/**
 * TCP ports listened on by this process or its descendants (the provider under test, its embedded
 * store, its git server): other test files running beside this one (their own DynamoDB-speaking
 * servers on 127.0.0.1) are not the provider's.
 */
function ownListeners(): Set<number> {
  const portOf = listeningSockets();
  const children = new Map<number, number[]>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      // gone
    }
  }
  const ports = new Set<number>();
  const todo = [process.pid];
  while (todo.length > 0) {
    const pid = todo.pop()!;
    todo.push(...(children.get(pid) ?? []));
    let fds: string[] = [];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      const link = (() => {
        try {
          return fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
        } catch {
          return '';
        }
      })();
      const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
      const port = inode === undefined ? undefined : portOf.get(inode);
      if (port !== undefined) ports.add(port);
    }
  }
  return ports;
}

function dynamoProbeScript(ports: number[]): string {
  const request =
    'POST / HTTP/1.1\\r\\nHost: localhost\\r\\nX-Amz-Target: DynamoDB_20120810.ListTables\\r\\nContent-Type: application/x-amz-json-1.0\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\n{}';
  return [
    `for p in ${ports.join(' ')}; do`,
    `  out=$(timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$p"' && printf "${request}" >&3 && timeout 2 cat <&3' 2>/dev/null | head -c 2000 | tr -d '\\r' | tr '\\n' ' ')`,
    '  echo "$p $out"',
    'done',
  ].join('\n');
}

/** The same DynamoDB request through the embedded store's unix socket, from the provider's side. */
async function askSocket(socketPath: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const s = net.connect({ path: socketPath }, () => {
      s.end(
        'POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}',
      );
    });
    let data = '';
    s.on('data', (d) => (data += String(d)));
    s.on('end', () => resolve(data));
    s.on('error', reject);
  });
}

const DYNAMO_ANSWER = /com\.amazon|__type|UnrecognizedClient|MissingAuthenticationToken/;

const backends = hostileBackends();

for (const backend of backends) {
  describe.skipIf(backend.skip !== undefined)(`a workspace cannot reach the provider (${backend.name} backend)`, () => {
    let root: string;
    let git: GitServer;
    let canary: net.Server;
    let canaryPort: number;
    const canarySockets = new Set<net.Socket>();
    let wsp: TestProvider;
    let hostNet: TestProvider;
    const env = `WSP_NET_TOKEN_${backend.name.toUpperCase()}`;

    beforeAll(async () => {
      process.env[env] = TOKEN;
      root = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-net-'));
      git = await startGitServer({ token: TOKEN, root });
      createUpstreamRepo(root, 'app', { 'README.md': '# app\n' });
      // A loopback service of the host that answers anyone who connects: the setup probe's target.
      canary = net.createServer((s) => {
        canarySockets.add(s);
        s.on('close', () => canarySockets.delete(s));
        s.on('error', () => undefined);
        s.end('CANARY\n');
      });
      await new Promise<void>((resolve) => canary.listen(0, '127.0.0.1', resolve));
      canaryPort = (canary.address() as net.AddressInfo).port;
      // The default networks (commands: none, setup: egress). Setup, as the attacker's branch
      // could, tries the host's loopback directly and through slirp's host alias 10.0.2.2.
      const setupProbe = [
        'grep -o tap0 /proc/net/dev > "$HOME/setup-net-iface" || true',
        `for target in 127.0.0.1/${canaryPort} 10.0.2.2/${canaryPort} 127.0.0.1/${new URL(git.baseUrl).port} 10.0.2.2/${new URL(git.baseUrl).port}; do`,
        '  if timeout 3 bash -c "exec 3<>/dev/tcp/$target" 2>/dev/null; then echo "$target open"; else echo "$target closed"; fi',
        'done > "$HOME/setup-net"',
      ].join('\n');
      wsp = await startTestProvider({
        ...backend.config,
        repositories: [{ url: git.url('app'), path: 'app', credential: `env:${env}` }],
        setup: { script: setupProbe },
      });
      // The explicit opt-in: the host's network for setup and commands alike.
      hostNet = await startTestProvider({
        ...backend.config,
        workspace: { network: 'host' },
        setup: { network: 'host' },
      });
    }, 180_000);

    afterAll(async () => {
      for (const p of [wsp, hostNet]) {
        if (!p) continue;
        if (backend.name === 'docker') {
          const b = p.provider.deps.backend;
          for (const ws of await b.listResources()) await b.destroy(ws.ref);
          for (const snap of await b.snapshots.list()) await b.snapshots.delete(snap);
        }
        await p.close();
      }
      await git?.close();
      for (const s of canarySockets) s.destroy();
      await new Promise<void>((resolve) => (canary ? canary.close(() => resolve()) : resolve()));
      fs.rmSync(root, { recursive: true, force: true });
      delete process.env[env];
    });

    const run = async (p: TestProvider, id: string, command: string): Promise<string[]> => {
      const r = await p.exec(id, command, { timeoutMs: 600_000 });
      expect(r, r.stderr?.data).toMatchObject({ state: 'exited', exitCode: 0 });
      return r.stdout.data.trim().split('\n');
    };

    it('with the default config, no loopback port of the host accepts a connection from a command', async () => {
      const ws = await wsp.setup();
      const listeners = hostListeners();
      const apiPort = Number(new URL(wsp.url).port);
      // Not vacuous: the provider's API, the git server and the canary are among the host's listeners…
      expect(listeners).toEqual(expect.arrayContaining([apiPort, Number(new URL(git.baseUrl).port), canaryPort]));
      // …and the probe does open them from the host's side.
      expect(execFileSync('bash', ['-c', probeScript([apiPort])], { encoding: 'utf8' }).trim()).toBe(`${apiPort} open`);

      const lines = await run(wsp, ws.id, probeScript(listeners));
      expect(lines).toHaveLength(listeners.length);
      expect(lines.filter((l) => l.endsWith(' open'))).toEqual([]);
      await wsp.api('DELETE', `/workspaces/${ws.id}`);
    }, 600_000);

    it("setup (network egress) cannot reach the host loopback either, not through slirp's host alias", async () => {
      const ws = await wsp.setup();
      const lines = await run(wsp, ws.id, 'cat "$HOME/setup-net"; echo "iface=$(cat "$HOME/setup-net-iface")"');
      expect(lines.filter((l) => l.endsWith(' open'))).toEqual([]);
      expect(lines.filter((l) => l.endsWith(' closed'))).toHaveLength(4);
      const slirp = backend.name === 'local' && process.getuid?.() === 0 && which('slirp4netns');
      if (backend.name === 'local') {
        // With slirp4netns, setup really had a network of its own (tap0) — it is egress, not none.
        expect(lines.at(-1)).toBe(slirp ? 'iface=tap0' : 'iface=');
        if (!slirp)
          console.warn('slirp4netns not installed (or not root): setup ran with no network, egress not exercised');
        else expect(ws.warnings.join('\n')).not.toMatch(/egress.*runs as 'none'/);
      }
      // The commands that follow are back on 'none': no tap0.
      expect(await run(wsp, ws.id, 'grep -c tap0 /proc/net/dev || true')).toEqual(['0']);
      if (backend.name === 'docker') {
        // Setup's network was a connect around it; afterwards the container is on no network at all
        // (only its own loopback). (This daemon runs with --bridge=none: the bridge connect itself is inert here.)
        const info = await dockerClient().getContainer(`wsp-${ws.id}`).inspect();
        expect(info.HostConfig.NetworkMode).toBe('none');
        expect(Object.keys(info.NetworkSettings.Networks ?? {}).filter((n) => n !== 'none')).toEqual([]);
        expect(await run(wsp, ws.id, "awk 'NR>2 {print $1}' /proc/net/dev")).toEqual(['lo:']);
      }
      await wsp.api('DELETE', `/workspaces/${ws.id}`);
    }, 600_000);

    it('the state store has no TCP port and its socket is invisible, even with network host', async () => {
      // The store's socket, from the provider's side: in the root-only data dir, answering DynamoDB.
      const socketPath = path.join(hostNet.dataDir, 'state', 'socket', 'dynamo.sock');
      expect(fs.lstatSync(socketPath).isSocket()).toBe(true);
      expect(fs.statSync(path.dirname(socketPath)).mode & 0o777).toBe(0o700);
      expect(await askSocket(socketPath)).toMatch(DYNAMO_ANSWER);

      const ws = await hostNet.setup();
      expect(ws.warnings.join('\n')).toMatch(/network 'host'/);
      expect(hostNet.logs.join('\n')).toMatch(/network 'host'/);
      const listeners = hostListeners();
      // Every TCP listener of the host answers the workspace's DynamoDB request — none as DynamoDB.
      const answers = await run(hostNet, ws.id, dynamoProbeScript(listeners));
      expect(answers).toHaveLength(listeners.length);
      // Not vacuous: the provider's own listeners (its API, its git server) are among those probed.
      const own = ownListeners();
      expect(own).toContain(Number(new URL(hostNet.url).port));
      // None of ours answers as DynamoDB (other test files beside this one may run their own).
      expect(answers.filter((a) => DYNAMO_ANSWER.test(a) && own.has(Number(a.split(' ')[0])))).toEqual([]);
      if (backend.name === 'local') {
        // The opt-in is real (the API port is reachable: that is what 'host' means, and why it warns).
        const apiPort = Number(new URL(hostNet.url).port);
        expect(await run(hostNet, ws.id, probeScript([apiPort]))).toEqual([`${apiPort} open`]);
      }
      // The socket (and the whole data dir) does not exist inside the workspace.
      expect(
        await run(
          hostNet,
          ws.id,
          `[ -e ${socketPath} ] && echo visible || echo absent; [ -e ${hostNet.dataDir} ] && echo datadir || echo no-datadir`,
        ),
      ).toEqual(['absent', 'no-datadir']);
      await hostNet.api('DELETE', `/workspaces/${ws.id}`);
    }, 600_000);

    it.runIf(backend.name === 'docker')(
      "Docker: a container never enters or leaves the host's network (setup host with commands none is refused)",
      async () => {
        const created = await wsp.api('POST', '/workspaces', {});
        expect(created.status).toBe(202);
        // The same provider config, but a plan that mixes host and none: refused at create, before any container.
        const plan = {
          ...(await wsp.provider.deps.state.getWorkspace(created.body.id))!.plan,
          network: 'none' as const,
          setupNetwork: 'host' as const,
        };
        await expect(
          wsp.provider.deps.backend.create(plan, { workspaceId: `mix${randomBytes(4).toString('hex')}`, labels: {} }),
        ).rejects.toThrow(/both be 'host' or neither/);
        await waitReady(wsp, created.body.id);
        await wsp.api('DELETE', `/workspaces/${created.body.id}`);
      },
      600_000,
    );

    it.runIf(backend.name === 'docker')(
      "Docker: setup's own network is a disconnect/connect of the running container, then back to none alone",
      async () => {
        const docker = dockerClient();
        const name = `wsp-nettest-${randomBytes(4).toString('hex')}`;
        const container = await docker.createContainer({
          name,
          Image: BASE_IMAGE,
          Entrypoint: ['sleep', 'infinity'],
          HostConfig: { NetworkMode: 'none', Init: true },
        });
        try {
          await container.start();
          const attached = async (): Promise<string[]> =>
            Object.keys((await container.inspect()).NetworkSettings.Networks).sort();
          const networks = new ContainerNetworks(docker);
          expect(await attached()).toEqual(['none']);
          await networks.ensure(name, 'egress');
          // 'none' is gone (a container on 'none' cannot join a second network). The bridge join is
          // inert on this test daemon (--bridge=none): a real one attaches eth0 here.
          expect(await attached()).not.toContain('none');
          // Back to no network by leaving every one (never by re-connecting 'none': dockerd then keeps a
          // stale endpoint of the container's name and a reset's new container of that name cannot start).
          await networks.ensure(name, 'none');
          expect(await attached()).toEqual([]);
          // A fresh instance (a provider restart) reads the state back instead of trusting memory.
          await new ContainerNetworks(docker).ensure(name, 'none');
          expect(await attached()).toEqual([]);
          await expect(networks.ensure(name, 'host')).rejects.toThrow(/cannot be moved into the host's network/);
          expect(await attached()).toEqual([]);
          // The same name can be used again right away (what a reset does).
          await container.remove({ force: true });
          const again = await docker.createContainer({
            name,
            Image: BASE_IMAGE,
            Entrypoint: ['sleep', 'infinity'],
            HostConfig: { NetworkMode: 'none', Init: true },
          });
          await again.start();
        } finally {
          await docker.getContainer(name).remove({ force: true });
        }
      },
      120_000,
    );

    it("a record whose backend ref was rewritten to another workspace's is refused; that workspace is untouched", async () => {
      const a = await wsp.setup();
      const b = await wsp.setup();
      expect(await run(wsp, b.id, 'echo b-secret > "$HOME/b-file"; id -u; ls "$HOME"')).toContain('b-file');

      // The attacker's write, through the store's own socket (as a workspace could over TCP before).
      const socketPath = path.join(wsp.dataDir, 'state', 'socket', 'dynamo.sock');
      const { client, doc } = createDynamoClients({
        endpoint: 'http://localhost',
        socketPath,
        region: 'us-east-1',
        env: {},
      });
      try {
        const store = new DynamoStateStore(doc, wsp.provider.deps.config.state.tableName);
        const recordA = (await store.getWorkspace(a.id))!;
        const recordB = (await store.getWorkspace(b.id))!;
        expect(recordA.backend).not.toEqual(recordB.backend);
        await store.updateWorkspace(a.id, recordA.version, { backend: recordB.backend! });
      } finally {
        client.destroy();
      }

      const command = await wsp.api('POST', `/workspaces/${a.id}/commands`, {
        command: 'echo pwned > "$HOME/pwned"; rm -f "$HOME/b-file"',
        waitMs: 5_000,
      });
      expect(command.status).toBe(409);
      expect(command.text).toMatch(/backend ref does not belong/);
      expect((await wsp.api('POST', `/workspaces/${a.id}/reset`, {})).status).toBe(409);
      expect((await wsp.api('DELETE', `/workspaces/${a.id}`)).status).toBe(409);

      // B: same files, still ready, still runs its commands.
      expect((await wsp.api('GET', `/workspaces/${b.id}`)).body.status).toBe('ready');
      const after = await run(wsp, b.id, 'cat "$HOME/b-file"; [ -e "$HOME/pwned" ] && echo pwned || echo clean');
      expect(after).toEqual(['b-secret', 'clean']);
      await wsp.api('DELETE', `/workspaces/${b.id}`);
    }, 600_000);
  });
}

async function waitReady(p: TestProvider, id: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const r = await p.api('GET', `/workspaces/${id}`);
    if (r.body.status !== 'provisioning') return;
    await new Promise((res) => setTimeout(res, 100));
  }
}

function which(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}
