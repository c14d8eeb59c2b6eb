import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BackendRef } from '../../../shared/contract/workspace.js';
import { newId, useBackendFixture, type BackendHandle } from '../../support/backend-fixture.js';
import { dockerUnavailable, makeDockerBackend } from '../../support/docker-daemon.js';

type DockerHandle = Awaited<ReturnType<typeof makeDockerBackend>>;

/** Docker-only guarantees: labels, resources, restore by replacement, deferred image removal. */
describe.skipIf(dockerUnavailable !== undefined)('docker backend specifics', () => {
  const fx = useBackendFixture(() => makeDockerBackend());
  const h = (): DockerHandle => fx.handle as BackendHandle as DockerHandle;
  const inspect = (ref: BackendRef) => h().docker.getContainer(String(ref.container)).inspect();

  it('labels the container (workspace, owner, cache key, kind) and runs it as configured', async () => {
    const plan = { ...fx.plan, network: 'none' as const, resources: { cpus: 1.5, memoryMb: 512, pids: 128 } };
    const ref = await fx.create({ plan, labels: { 'wsp.cache-key': 'key-1' } });
    expect(ref).toEqual({ kind: 'docker', workspaceId: ref.workspaceId, container: `wsp-${String(ref.workspaceId)}` });
    const info = await inspect(ref);
    expect(info.Config.Labels).toMatchObject({
      'wsp.workspace': ref.workspaceId,
      'wsp.owner': h().owner,
      'wsp.cache-key': 'key-1',
      'wsp.kind': 'workspace',
    });
    expect(info.HostConfig).toMatchObject({
      NetworkMode: 'none',
      NanoCpus: 1.5e9,
      Memory: 512 * 1024 * 1024,
      PidsLimit: 128,
      Init: true,
    });
    expect(info.Config.WorkingDir).toBe(plan.workdir);
    // Network none: only the loopback interface exists inside.
    const net = await fx.run(ref, ['ls', '/sys/class/net'], {}, plan);
    expect(net.stdout.split('\n').filter(Boolean)).toEqual(['lo']);
  });

  it('snapshot images are labelled by their own kind and are never listed as workspaces', async () => {
    const ref = await fx.create({ labels: { 'wsp.cache-key': 'key-2' } });
    const snap = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('cache', newId('snap')));
    const image = await h().docker.getImage(String(snap.image)).inspect();
    // Inherited from the container, except the kind, which the commit overrides.
    expect(image.Config.Labels).toMatchObject({
      'wsp.kind': 'cache',
      'wsp.snapshot': snap.name,
      'wsp.owner': h().owner,
      'wsp.cache-key': 'key-2',
    });
    const resources = await fx.backend.listResources();
    expect(resources.map((r) => r.workspaceId)).toEqual([ref.workspaceId]);
    expect((await fx.backend.snapshots.list()).map((s) => s.name)).toEqual([snap.name]);
  });

  it('restore replaces the container under the same ref; earlier results stay readable', async () => {
    const ref = await fx.create();
    const before = await fx.sh(ref, 'echo kept; echo data > f');
    const snap = fx.trackSnapshot(await fx.backend.open(ref, fx.plan).snapshots.take('baseline', newId('snap')));
    const running = await fx.start(ref, ['sleep', '300']);
    const oldId = (await inspect(ref)).Id;
    await fx.backend.open(ref, fx.plan).snapshots.restore(snap);
    expect((await inspect(ref)).Id).not.toBe(oldId);
    expect(
      (await fx.backend.open(ref, fx.plan).commands.read(before.commandId, 'stdout', 0, 100)).data.toString(),
    ).toBe('kept\n');
    expect(await fx.backend.open(ref, fx.plan).commands.status(running)).toMatchObject({
      state: 'killed',
      reason: 'all workspace processes killed',
    });
    expect((await fx.run(ref, ['cat', 'f'])).stdout).toBe('data\n');
    // The old container was renamed aside and removed while the new one started: nothing is left.
    const mine = await h().docker.listContainers({
      all: true,
      filters: JSON.stringify({ label: [`wsp.workspace=${String(ref.workspaceId)}`] }),
    });
    expect(mine.map((c) => c.Names)).toEqual([[`/wsp-${String(ref.workspaceId)}`]]);
  });

  it('destroy removes every container of the workspace, also one a restore renamed aside and did not get to remove', async () => {
    const ref = await fx.create();
    const container = h().docker.getContainer(String(ref.container));
    const info = await container.inspect();
    // What a provider killed mid-restore leaves: the old container under another name, still labelled.
    await container.rename({ name: `${String(ref.container)}-replaced-0000` });
    await h().docker.createContainer({ name: String(ref.container), Image: info.Image, Labels: info.Config.Labels });
    await fx.backend.destroy(ref);
    const left = await h().docker.listContainers({
      all: true,
      filters: JSON.stringify({ label: [`wsp.workspace=${String(ref.workspaceId)}`] }),
    });
    expect(left).toEqual([]);
  });

  it('two providers on one daemon with the same snapshot name never share an image: one deleting its own leaves the other whole', async () => {
    const other = await makeDockerBackend();
    try {
      const name = newId('same');
      const mine = await fx.create();
      await fx.sh(mine, 'echo mine > who');
      const theirsRef = await other.backend.create(fx.plan, { workspaceId: newId('ws'), labels: {} });
      await other.backend.open(theirsRef, fx.plan).commands.start({
        commandId: 'w',
        argv: ['sh', '-c', 'echo theirs > who'],
        cwd: fx.plan.home,
        env: {},
        timeoutMs: 10_000,
        maxOutputBytes: 100,
      });
      await other.backend.open(theirsRef, fx.plan).commands.wait('w', 10_000);
      const mySnap = fx.trackSnapshot(await fx.backend.open(mine, fx.plan).snapshots.take('cache', name));
      const theirSnap = await other.backend.open(theirsRef, fx.plan).snapshots.take('cache', name);
      expect(mySnap.image).not.toBe(theirSnap.image);
      await other.backend.snapshots.delete(theirSnap);
      // Mine is still there, still mine, with my content.
      const info = await h().docker.getImage(String(mySnap.image)).inspect();
      expect(info.Config.Labels?.['wsp.owner']).toBe(h().owner);
      const twin = await fx.create({ from: mySnap });
      expect((await fx.run(twin, ['cat', 'who'])).stdout).toBe('mine\n');
      await other.backend.destroy(theirsRef);
    } finally {
      await other.cleanup();
    }
  });

  it('deleting a snapshot a container still runs from untags it now and removes it on a later try', async () => {
    const src = await fx.create();
    const snap = await fx.backend.open(src, fx.plan).snapshots.take('cache', newId('snap'));
    const user = await fx.backend.create(fx.plan, { workspaceId: newId('ws'), labels: {}, from: snap });
    await fx.backend.snapshots.delete(snap);
    await expect(h().docker.getImage(String(snap.image)).inspect()).rejects.toMatchObject({ statusCode: 404 });
    // Still ours (by its labels) until nothing uses it.
    expect((await fx.backend.snapshots.list()).map((s) => s.name)).toContain(snap.name);
    await fx.backend.destroy(user);
    await fx.backend.snapshots.delete(snap);
    expect((await fx.backend.snapshots.list()).map((s) => s.name)).not.toContain(snap.name);
  });

  it('keeps command files on the host, root-only, and removes the env file once the command runs', async () => {
    const ref = await fx.create();
    const r = await fx.sh(ref, 'echo "$TOKENISH"', [], { env: { TOKENISH: 'value-1' } });
    expect(r.stdout).toBe('value-1\n');
    const dir = path.join(h().dataDir, 'docker', 'workspaces', String(ref.workspaceId), 'cmd', r.commandId);
    expect(fs.readFileSync(path.join(dir, 'exit'), 'utf8')).toMatch(/^0 - 0 8 0 \d+\n$/);
    expect(fs.existsSync(path.join(dir, 'env'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'stdin'))).toBe(false);
    expect(fs.statSync(path.dirname(dir)).mode & 0o077).toBe(0);
  });

  /** exec_create events of the container between two instants (seconds), from the daemon's event log. */
  async function execsCreated(ref: BackendRef, since: number, until: number): Promise<number> {
    const id = (await inspect(ref)).Id;
    const stream = await h().docker.getEvents({ since, until, filters: { container: [id], event: ['exec_create'] } });
    const chunks: Buffer[] = [];
    for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
    return Buffer.concat(chunks)
      .toString()
      .split('\n')
      .filter((l) => l.includes('exec_create')).length;
  }
  const nowSeconds = (): number => Date.now() / 1000;

  it('starts commands over the persistent runner channel (no docker exec per start)', async () => {
    const ref = await fx.create();
    const t0 = nowSeconds();
    await fx.run(ref, ['true']);
    // The daemon's clock counts the exec that opened the channel at create; a plain exec is counted too.
    await h()
      .docker.getContainer(String(ref.container))
      .exec({ Cmd: ['true'] })
      .then((e) => e.start({}))
      .then(
        (s) =>
          new Promise((r) => {
            s.on('end', r);
            s.resume();
          }),
      );
    const t1 = nowSeconds();
    for (let i = 0; i < 5; i++)
      expect((await fx.run(ref, ['sh', '-c', 'echo "$1"', 'sh', String(i)])).stdout).toBe(`${i}\n`);
    await fx.backend.open(ref, fx.plan).commands.killAll();
    const t2 = nowSeconds() + 1;
    expect(await execsCreated(ref, t0, t1)).toBe(1); // the probe exec: the count sees execs
    expect(await execsCreated(ref, t1, t2)).toBe(0); // five starts and a killAll: none
  });

  it('keeps working when the channel dies (exec fallback or a fresh channel)', async () => {
    const ref = await fx.create();
    await fx.run(ref, ['true']);
    // Kill the serve loop (root, so through a one-off exec): the channel's stream ends.
    await h()
      .docker.getContainer(String(ref.container))
      .exec({ Cmd: ['pkill', '-KILL', '-f', 'runner.sh serve'], User: '0:0' })
      .then((e) => e.start({}))
      .then(
        (s) =>
          new Promise((r) => {
            s.on('end', r);
            s.resume();
          }),
      );
    const r = await fx.run(ref, ['echo', 'still here']);
    expect(r.status).toMatchObject({ state: 'exited', exitCode: 0 });
    expect(r.stdout).toBe('still here\n');
    expect((await fx.run(ref, ['echo', 'again'])).stdout).toBe('again\n');
  });

  it('open stdin: the keeper is seen from inside while the command runs, gone after it; the command dirs are closed', async () => {
    const ref = await fx.create();
    const commands = fx.backend.open(ref, fx.plan).commands;
    const id = await fx.start(ref, ['cat'], { openStdin: true });
    const look =
      'for p in /proc/[0-9]*; do tr "\\0" " " < "$p/cmdline" 2>/dev/null; echo; done | grep -c "[k]eep-stdin .*/$1 " || true';
    expect((await fx.sh(ref, look, [id])).stdout).toBe('1\n');
    // The workspace user reaches neither the command dirs nor the FIFO in them.
    const probe = await fx.sh(
      ref,
      'ls /run/wsp-runner/cmd 2>&1; (echo x > "/run/wsp-runner/cmd/$1/stdin.fifo") 2>&1; echo done',
      [id],
    );
    expect(probe.stdout).toMatch(/Permission denied[\s\S]*Permission denied[\s\S]*done\n$/);
    // After the channel died too (exec fallback or a fresh channel: either carries only the write id, never the bytes).
    await h()
      .docker.getContainer(String(ref.container))
      .exec({ Cmd: ['pkill', '-KILL', '-f', 'runner.sh serve'], User: '0:0' })
      .then((e) => e.start({}))
      .then(
        (st) =>
          new Promise((r) => {
            st.on('end', r);
            st.resume();
          }),
      );
    await commands.writeStdin(id, Buffer.from('via exec\n'), true);
    expect(await commands.wait(id, 30_000)).toMatchObject({ state: 'exited', exitCode: 0 });
    expect((await commands.read(id, 'stdout', 0, 100)).data.toString()).toBe('via exec\n');
    expect((await fx.sh(ref, look, [id])).stdout).toBe('0\n');
  });

  /** A command as root in the container (a one-off exec): what no workspace request can do. */
  async function rootExec(ref: BackendRef, cmd: string[]): Promise<void> {
    await h()
      .docker.getContainer(String(ref.container))
      .exec({ Cmd: cmd, User: '0:0' })
      .then((e) => e.start({}))
      .then(
        (st) =>
          new Promise((r) => {
            st.on('end', r);
            st.resume();
          }),
      );
  }

  it('terminals: the env file goes, script is root, the record names the slave; a forged record is never resized', async () => {
    const ref = await fx.create();
    const commands = fx.backend.open(ref, fx.plan).commands;
    const id = await fx.start(ref, ['sh', '-c', 'echo "$TOKENISH"; exec sleep 300'], {
      tty: { rows: 24, cols: 80 },
      env: { TOKENISH: 'value-2' },
    });
    const dir = path.join(h().dataDir, 'docker', 'workspaces', String(ref.workspaceId), 'cmd', id);
    expect(fs.existsSync(path.join(dir, 'env'))).toBe(false);
    expect(fs.readFileSync(path.join(dir, 'tty'), 'utf8')).toMatch(/^\/dev\/pts\/\d+ \d+\n$/);
    const ps = await fx.sh(ref, 'ps -eo user:12,args | grep "[s]cript -q"');
    expect(ps.stdout).toMatch(/^root\s+script -q -e -f -c /);
    // A record that names something else (the dir is root's: only a broken runner could write this).
    fs.writeFileSync(path.join(dir, 'tty'), '/dev/pts/0/../../../etc/hostname 1\n');
    await expect(commands.resize(id, { rows: 10, cols: 10 })).rejects.toMatchObject({
      code: 'backend_unavailable',
      message: expect.stringMatching(/terminal/),
    });
    await commands.kill(id, 'cancelled');
    expect(await commands.wait(id, 30_000)).toMatchObject({ state: 'killed' });
  });

  it("terminals: an image without util-linux's script refuses a tty start, naming it", async () => {
    const ref = await fx.create();
    await rootExec(ref, ['mv', '/usr/bin/script', '/usr/bin/script.gone']);
    try {
      await expect(fx.start(ref, ['true'], { tty: { rows: 24, cols: 80 } })).rejects.toMatchObject({
        code: 'backend_unavailable',
        message: expect.stringMatching(/`script`.*bsdutils/),
      });
      // Commands without a terminal do not need it.
      expect((await fx.run(ref, ['echo', 'fine'])).stdout).toBe('fine\n');
    } finally {
      await rootExec(ref, ['mv', '/usr/bin/script.gone', '/usr/bin/script']);
    }
  });

  it('never puts env values in any process argv or in the container config', async () => {
    const ref = await fx.create();
    const secret = newId('env-secret');
    const id = await fx.start(ref, ['sh', '-c', 'printf "%s\\n" "$API_KEY"; exec sleep 300'], {
      env: { API_KEY: secret },
    });
    let out = '';
    for (let i = 0; i < 400 && out === ''; i++) {
      out = (await fx.backend.open(ref, fx.plan).commands.read(id, 'stdout', 0, 1000)).data.toString();
      if (out === '') await new Promise((r) => setTimeout(r, 25));
    }
    expect(out).toBe(`${secret}\n`);
    // Container processes are host processes (a child pid namespace): the host's /proc sees them all.
    const leaks: string[] = [];
    for (const pid of fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
      try {
        if (fs.readFileSync(`/proc/${pid}/cmdline`).includes(secret)) leaks.push(pid);
      } catch {
        // gone
      }
    }
    expect(leaks).toEqual([]);
    expect(JSON.stringify((await inspect(ref)).Config)).not.toContain(secret);
    await fx.backend.open(ref, fx.plan).commands.kill(id, 'cancelled');
  });

  it('rejects unsafe ids and names with bad_request', async () => {
    const ref = await fx.create();
    await expect(fx.backend.open(ref, fx.plan).commands.status('../meta.json')).rejects.toMatchObject({
      code: 'bad_request',
    });
    await expect(fx.backend.destroy({ kind: 'docker', workspaceId: '..', container: 'x' })).rejects.toMatchObject({
      code: 'bad_request',
    });
    await expect(fx.backend.open(ref, fx.plan).snapshots.take('cache', 'a/b')).rejects.toMatchObject({
      code: 'bad_request',
    });
    await expect(fx.start(ref, ['true'], { env: { 'BAD=NAME': 'x' } })).rejects.toMatchObject({ code: 'bad_request' });
    await expect(fx.start(ref, ['printf', 'a\0b'])).rejects.toMatchObject({ code: 'bad_request' });
    await expect(
      fx.backend.create(fx.plan, {
        workspaceId: newId('ws'),
        labels: {},
        from: { kind: 'docker', purpose: 'cache', name: 'never-made', image: 'x' },
      }),
    ).rejects.toMatchObject({ code: 'not_found' });
  });
});
