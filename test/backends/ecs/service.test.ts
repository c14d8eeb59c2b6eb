import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { RunTaskCommand, StopTaskCommand } from '@aws-sdk/client-ecs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EcsBackend } from '../../../shared/backends/ecs/index.js';
import { DOCKER_SOCKET, dockerClient, dockerUnavailable } from '../../support/docker-daemon.js';
import { makeEcsBackend, startEcsProvider, type EcsHandle } from '../../support/ecs-fixture.js';
import type { AgentProcess } from '../../support/fake-ssm-agent.js';
import { commitFiles, createUpstreamRepo, type UpstreamRepo } from '../../support/git-fixtures.js';
import { startGitServer, type GitServer } from '../../support/git-server.js';
import type { TestProvider } from '../../support/provider-fixture.js';
import { registryUnavailable } from '../../support/registry.js';

const run = promisify(execFile);

// The service over the Fargate backend, end to end over real HTTP (issue 5 item 4): the same scenario
// as docker-service.test.ts, with ECS faked at the SDK boundary only (tasks are containers of the test
// dockerd, ECS Exec a loopback SSM agent, S3 a loopback S3-protocol server reached by the task's curl
// through presigned URLs, a real registry that the cache layer is appended to). The git credential is a
// random canary; it must turn up nowhere the workspace, the caches or the caller could see it.
const CANARY = `wsp-canary-${randomBytes(12).toString('hex')}`;
/** The fake S3's secret access key (ecs-fixture.ts): never in a presigned URL nor in a task. */
const S3_SECRET = 'test-secret-key';
const SETUP = [
  'echo "setup ran" >> "$HOME/setup-runs"',
  'mkdir -p app/build && echo built > app/build/out.txt',
  'echo "setup says hello"',
].join('\n');

interface ProcSamples {
  count: number;
  hits: string[];
  sawRunner: boolean;
}

interface PutRecord {
  key: string;
  body: Buffer;
}

describe.skipIf(dockerUnavailable !== undefined || registryUnavailable !== undefined)(
  'service over the ecs backend',
  () => {
    let git: GitServer;
    let app: UpstreamRepo;
    let ecs: EcsHandle;
    let backend: EcsBackend;
    let wsp: TestProvider;
    let provider: Awaited<ReturnType<typeof startEcsProvider>> | undefined;
    let hostRoot: string;
    let registry: { url: string; host: string; dataDir: string };
    let cold: any;
    let warm: any;
    let coldHead: string;
    /** Every object body ever stored in the fake S3 (single PUTs and completed multipart uploads). */
    const puts: PutRecord[] = [];
    /** Every byte of every ECS Exec session, both directions (the rpc traffic). */
    const rpcBytes: Buffer[] = [];
    /** Process command lines + environments sampled inside every live task during the run. */
    const procSamples: ProcSamples = { count: 0, hits: [], sawRunner: false };
    let sampler: { stop(): Promise<void> } | undefined;

    beforeAll(async () => {
      process.env.WSP_ECS_IT_TOKEN = CANARY;
      hostRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-eit-git-'));
      git = await startGitServer({ token: CANARY, root: hostRoot });
      app = createUpstreamRepo(hostRoot, 'app', {
        'README.md': '# app\n',
        'deps.lock': 'left-pad@1\n',
        '.gitignore': 'build/\n',
      });
      coldHead = app.head;

      ecs = await makeEcsBackend();
      recordS3Puts(ecs, puts);
      recordRpcTraffic(ecs, rpcBytes);
      registry = findRegistry(ecs);
      sampler = sampleTaskProcesses(ecs, procSamples);

      provider = await startEcsProvider(ecs, {
        repositories: [
          { url: git.url('app'), path: 'app', credential: 'env:WSP_ECS_IT_TOKEN', cacheKeyFiles: ['deps.lock'] },
        ],
        setup: { script: SETUP },
      });
      wsp = provider.wsp;
      backend = provider.backend();
    }, 300_000);

    afterAll(async () => {
      await sampler?.stop();
      await provider?.close();
      // Destroys what is left (tasks, cache images + their task definitions, layer objects), stops the fakes.
      await ecs?.cleanup();
      await git?.close();
      fs.rmSync(hostRoot, { recursive: true, force: true });
      delete process.env.WSP_ECS_IT_TOKEN;
    }, 300_000);

    it('cold setup: the repository arrives as a token-free bundle fetched by curl through a presigned URL; setup runs once as the user', async () => {
      cold = await wsp.setup();
      expect(cold.cache).toMatchObject({ hit: false });
      const r = await wsp.exec(
        cold.id,
        'cat app/README.md app/build/out.txt; wc -l < ~/setup-runs; git -C app remote get-url origin; git -C app rev-parse HEAD; id -u',
      );
      expect(r).toMatchObject({ state: 'exited', exitCode: 0 });
      expect(r.stdout.data.trim().split('\n')).toEqual(['# app', 'built', '1', git.url('app'), coldHead, '1000']);

      // The provider did the authenticated clone (the token reached the git server)...
      expect(git.requests.some((q) => q.authorized)).toBe(true);
      // ...and handed the task a git bundle through S3: PUT by the provider, GET by curl inside the task.
      const bundles = puts.filter(
        (p) =>
          p.key.startsWith(`transfer/${cold.id}/`) &&
          /^# v[23] git bundle\n/.test(p.body.subarray(0, 20).toString('latin1')),
      );
      expect(bundles.length).toBeGreaterThan(0);
      const fetched = ecs.s3.requests.filter(
        (q) => q.method === 'GET' && q.presigned && bundles.some((b) => b.key === q.key),
      );
      expect(fetched.length).toBeGreaterThan(0);
      for (const q of fetched) expect(String(q.headers['user-agent'])).toMatch(/^curl\//);
    }, 300_000);

    it('the cache entry is an image in the registry (base + one layer) with its own task-definition revision', async () => {
      const images = (await backend.snapshots.list()).filter((s) => s.kind === 'ecs-image');
      expect(images).toHaveLength(1);
      const snap = images[0]!;
      expect(snap.name).toBe(cold.cache.key);
      const image = String(snap.image);
      expect(image.startsWith(`${registry.host}/wsp/cache@sha256:`)).toBe(true);

      const td = ecs.fake.taskDefinitions.get(String(snap.taskDefinitionArn));
      expect(td?.family).toBe('wsp-workspace');
      expect(td?.revision).toBeGreaterThan(1);
      expect(td?.containerDefinitions?.[0]?.image).toBe(image);

      const base = await manifest('wsp/base', 'bookworm');
      const cache = await manifest('wsp/cache', image.slice(image.indexOf('@') + 1));
      const digests = (m: any): string[] => m.layers.map((l: any) => l.digest);
      expect(digests(cache)).toHaveLength(digests(base).length + 1);
      expect(digests(cache).slice(0, -1)).toEqual(digests(base));
    }, 120_000);

    it('warm setup at a newer commit starts from the cache image: no re-clone, setup not re-run', async () => {
      const newer = commitFiles(app, { 'src/feature.js': 'export const f = 2;\n' }, 'feature');
      warm = await wsp.setup();
      expect(warm.cache).toMatchObject({ hit: true, key: cold.cache.key });
      const [snap] = (await backend.snapshots.list()).filter((s) => s.kind === 'ecs-image');
      expect(taskOf(warm.id).taskDefinitionArn).toBe(snap?.taskDefinitionArn);
      // HEAD's reflog begins at the cached commit (the clone happened once, in the cold workspace).
      const r = await wsp.exec(
        warm.id,
        'git -C app rev-parse HEAD; wc -l < ~/setup-runs; cat app/src/feature.js; git -C app reflog --format=%H HEAD | tail -n 1',
      );
      expect(r).toMatchObject({ state: 'exited', exitCode: 0 });
      expect(r.stdout.data.trim().split('\n')).toEqual([newer, '1', 'export const f = 2;', coldHead]);
    }, 300_000);

    it('exec: argv, cwd, env, stdin and a non-zero exit', async () => {
      const r = await wsp.exec(warm.id, 'pwd; echo "$GREETING"; cat; exit 3', {
        env: { GREETING: 'hi there' },
        stdin: 'from stdin\n',
      });
      expect(r).toMatchObject({ state: 'exited', exitCode: 3 });
      expect(r.stdout.data).toBe('/home/node/workspace\nhi there\nfrom stdin\n');
      const a = await wsp.api('POST', `/workspaces/${warm.id}/commands`, {
        argv: ['git', '-C', 'app', 'log', '--format=%s', '-n', '1'],
        waitMs: 20_000,
      });
      expect(a.status).toBe(201);
      expect(a.body).toMatchObject({ state: 'exited', exitCode: 0 });
      expect(a.body.stdout.data).toBe('feature\n');
    }, 120_000);

    it('git/fetch brings a newer commit in through the provider and checks it out', async () => {
      const next = commitFiles(app, { 'src/feature.js': 'export const f = 3;\n' }, 'feature v3');
      const authorizedBefore = git.requests.filter((q) => q.authorized).length;
      const r = await wsp.api('POST', `/workspaces/${warm.id}/git/fetch`, {
        repos: ['app'],
        checkout: { repo: 'app', ref: 'main' },
      });
      expect(r.status).toBe(200);
      expect(r.body.repos[0]).toMatchObject({ name: 'app', checkedOut: next, after: next });
      expect(git.requests.filter((q) => q.authorized).length).toBeGreaterThan(authorizedBefore);
      const cat = await wsp.exec(
        warm.id,
        'cat app/src/feature.js; git -C app config --list | grep -ci extraheader || true',
      );
      expect(cat.stdout.data).toBe('export const f = 3;\n0\n');
    }, 120_000);

    // Commands started through `runner.sh rpc` once inherited its `umask 077` (0600 files on Fargate where
    // docker and local give 0644): the command's shell sets the usual 022 itself now.
    it('commands run with the usual umask 022, like the docker backend (files 0644)', async () => {
      const r = await wsp.exec(
        warm.id,
        'umask; stat -c %a app/README.md; touch ~/new-file && stat -c %a ~/new-file && rm ~/new-file',
      );
      expect(r.stdout.data.trim().split('\n')).toEqual(['0022', '644', '644']);
    }, 60_000);

    it('reset restores the baseline copy (fingerprint) and ends leftover processes', async () => {
      const mode = (await wsp.exec(warm.id, 'stat -c %a app/deps.lock')).stdout.data.trim();
      await wsp.exec(
        warm.id,
        'echo junk > app/junk.txt && rm app/README.md && chmod 755 app/deps.lock && echo t > /tmp/scratch && (setsid sleep 300 > /dev/null 2>&1 &)',
      );
      const reset = await wsp.api('POST', `/workspaces/${warm.id}/reset`, {});
      expect(reset.status).toBe(200);
      expect(reset.body.matches).toBe(true);
      expect(reset.body.fingerprint).toBe(warm.baselineFingerprint);
      const r = await wsp.exec(
        warm.id,
        'ls app; stat -c %a app/deps.lock; ls /tmp | wc -l; pgrep -u 1000 sleep || echo none',
      );
      expect(r.stdout.data).toContain('README.md');
      expect(r.stdout.data).not.toContain('junk.txt');
      expect(r.stdout.data.trim().split('\n').slice(-3)).toEqual([mode, '0', 'none']);
      expect(mode).not.toBe('755');
    }, 120_000);

    it('reset with mode recreate replaces the task from the cache image at the baseline commits (a new baseline)', async () => {
      const before = (await wsp.provider.deps.state.getWorkspace(warm.id))!;
      await wsp.exec(warm.id, 'echo junk > app/junk.txt && rm app/README.md && (setsid sleep 300 > /dev/null 2>&1 &)');
      const runsBefore = ecs.fake.mock.commandCalls(RunTaskCommand).length;
      const tasksBefore = new Set(ecs.fake.tasks.keys());
      const reset = await wsp.api('POST', `/workspaces/${warm.id}/reset`, { mode: 'recreate' });
      expect(reset.status, JSON.stringify(reset.body)).toBe(200);
      expect(reset.body).toMatchObject({
        matches: true,
        recreated: true,
        previousBaselineFingerprint: before.baselineFingerprint,
      });
      // A new baseline: the files and HEAD are the old baseline's; git's own metadata (index stat data,
      // reflog times, and here the remote-tracking refs — upstream moved since) is new, so is its digest.
      expect(reset.body.fingerprint).toBe(reset.body.baselineFingerprint);
      expect(reset.body.baselineFingerprint).not.toBe(before.baselineFingerprint);
      // One new task (retries of its RunTask — throttled, answer lost — carry one clientToken), from the
      // cache image's task definition; the old one stopped.
      const runs = ecs.fake.mock.commandCalls(RunTaskCommand).slice(runsBefore);
      expect(new Set(runs.map((r) => r.args[0].input.clientToken)).size).toBe(1);
      expect([...ecs.fake.tasks.keys()].filter((arn) => !tasksBefore.has(arn))).toHaveLength(1);
      expect(ecs.fake.imageOf(String(runs[0]!.args[0].input.taskDefinition))).toMatch(/\/wsp\/cache@sha256:/);
      expect(ecs.fake.tasks.get(String(before.backend!['taskArn']))?.stopped).toBeDefined();
      const after = (await wsp.provider.deps.state.getWorkspace(warm.id))!;
      expect(after.backend!['taskArn']).not.toBe(before.backend!['taskArn']);
      const r = await wsp.exec(
        warm.id,
        'ls app; git -C app rev-parse HEAD; wc -l < ~/setup-runs; pgrep -u 1000 sleep || echo none',
      );
      expect(r.stdout.data).toContain('README.md');
      expect(r.stdout.data).not.toContain('junk.txt');
      expect(r.stdout.data.trim().split('\n').slice(-3)).toEqual([
        before.repos.find((x) => x.name === 'app')!.commit,
        '1',
        'none',
      ]);
    }, 180_000);

    it('the canary is in no S3 object, registry blob, task filesystem/env/process, rpc byte, response or log line', async () => {
      await sampler?.stop();
      sampler = undefined;
      const needles = [CANARY, S3_SECRET];

      // S3: every object ever stored (bundles, layer tars), and every request's URL.
      expect(puts.length).toBeGreaterThan(1);
      for (const p of puts) expect(find(p.body, needles), `S3 object ${p.key}`).toEqual([]);
      // A bundle's pack is compressed: unbundle each one and read its objects and refs uncompressed.
      const bundles = puts.filter((p) => /^# v[23] git bundle\n/.test(p.body.subarray(0, 20).toString('latin1')));
      expect(bundles.length).toBeGreaterThan(1);
      const unbundled = await bundleObjects(bundles.map((b) => b.body));
      expect(unbundled.includes('export const f = 3;')).toBe(true);
      expect(find(unbundled, needles), 'git bundles').toEqual([]);
      for (const q of ecs.s3.requests)
        expect(find(Buffer.from(`${q.key}?${q.query.toString()}`), needles), `S3 request ${q.method} ${q.key}`).toEqual(
          [],
        );
      const presigned = ecs.s3.requests.filter((q) => q.presigned);
      expect(presigned.map((q) => q.method)).toEqual(expect.arrayContaining(['GET', 'PUT']));
      for (const q of presigned) expect(q.query.get('X-Amz-Credential')).toMatch(/^AKIDTEST\//);

      // Registry: every blob in its storage (manifests, configs, layers — gunzipped).
      const blobs = walk(path.join(registry.dataDir, 'docker/registry/v2/blobs'));
      expect(blobs.length).toBeGreaterThan(3);
      let gzipped = 0;
      for (const file of blobs) {
        const raw = fs.readFileSync(file);
        if (raw[0] === 0x1f && raw[1] === 0x8b) {
          gzipped++;
          expect(
            await findInStream(fs.createReadStream(file).pipe(zlib.createGunzip()), needles),
            `registry blob ${file}`,
          ).toEqual([]);
        } else {
          expect(find(raw, needles), `registry blob ${file}`).toEqual([]);
        }
      }
      expect(gzipped).toBeGreaterThan(1);

      // Every task container: its whole filesystem, its configuration (env) and its processes now.
      const docker = dockerClient();
      const live = [...ecs.fake.tasks.values()].filter((t) => !t.stopped);
      expect(live.map((t) => t.tags['wsp:workspace']).sort()).toEqual([cold.id, warm.id].sort());
      // A user command is running meanwhile: the process scan must be able to read its environment.
      const sleeper = await wsp.api('POST', `/workspaces/${warm.id}/commands`, { command: 'sleep 120', waitMs: 0 });
      expect(sleeper.body.state).toBe('running');
      for (const t of live) {
        const c = docker.getContainer(t.container);
        const procs = await procDump(t.container);
        if (t === taskOf(warm.id)) expect(procs.includes('HOME=/home/node')).toBe(true);
        expect(find(Buffer.from(JSON.stringify((await c.inspect()).Config)), needles), `task ${t.arn} config`).toEqual(
          [],
        );
        expect(
          await findInStream((await c.export()) as unknown as Readable, needles),
          `task ${t.arn} filesystem`,
        ).toEqual([]);
        expect(find(procs, needles), `task ${t.arn} processes`).toEqual([]);
        // Git objects are zlib-compressed on disk: read every object of every repository (home and the
        // baseline copy) uncompressed, and every repository's config.
        const objects = await gitObjectsDump(t.container);
        expect(objects.includes('# app')).toBe(true);
        expect(find(objects, needles), `task ${t.arn} git objects`).toEqual([]);
      }
      expect((await wsp.api('DELETE', `/workspaces/${warm.id}/commands/${sleeper.body.id}`)).body.state).toBe('killed');
      // The processes sampled during the whole run (the sampler saw the runner, so it looked at the right place).
      expect(procSamples.count).toBeGreaterThan(0);
      expect(procSamples.sawRunner).toBe(true);
      expect(procSamples.hits).toEqual([]);

      // The rpc traffic both ways, raw and with its base64 request bodies and answer payloads decoded
      // (presigned URLs travel here: they must carry a signature, never the secret key).
      for (const pad of ['', 'a', 'ab'])
        expect(findEncoded(Buffer.from(`x${Buffer.from(`${pad}${CANARY}!`).toString('base64')}`), needles)).toEqual([
          CANARY,
        ]);
      const traffic = Buffer.concat(rpcBytes);
      const decoded = decodeRpcTraffic(traffic.toString('latin1'));
      expect(decoded.length).toBeGreaterThan(10);
      expect(decoded.some((d) => d.includes('X-Amz-Signature='))).toBe(true);
      for (const layer of [traffic, ...decoded]) expect(findEncoded(layer, needles)).toEqual([]);

      // What the caller and the operator see.
      expect(wsp.responses.join('\n')).not.toContain(CANARY);
      expect(wsp.logs.length).toBeGreaterThan(0);
      expect(wsp.logs.join('\n')).not.toContain(CANARY);
      expect(wsp.logs.join('\n')).not.toContain(S3_SECRET);
    }, 600_000);

    it('teardown stops the tasks and leaves no transfer object', async () => {
      const arns = [cold.id, warm.id].map((id) => taskOf(id).arn);
      for (const id of [cold.id, warm.id])
        expect((await wsp.api('DELETE', `/workspaces/${id}`)).status).toBeLessThan(300);
      const deadline = Date.now() + 120_000;
      const settled = async (): Promise<boolean> => {
        for (const id of [cold.id, warm.id])
          if ((await wsp.api('GET', `/workspaces/${id}`)).body.status !== 'deleted') return false;
        return true;
      };
      while (!(await settled()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      expect(await settled()).toBe(true);
      const stopped = ecs.fake.mock.commandCalls(StopTaskCommand).map((c) => c.args[0].input.task);
      expect(stopped).toEqual(expect.arrayContaining(arns));
      for (const arn of arns) expect(ecs.fake.tasks.get(arn)?.stopped).toBeDefined();
      const containers = await dockerClient().listContainers({
        all: true,
        filters: JSON.stringify({ label: [`wsp.fake-ecs=${ecs.owner}`] }),
      });
      expect(containers).toEqual([]);
      expect([...ecs.s3.objects.keys()].filter((k) => k.startsWith('transfer/'))).toEqual([]);
    }, 180_000);

    // ---- helpers ----

    function taskOf(workspaceId: string) {
      const task = [...ecs.fake.tasks.values()].find((t) => t.tags['wsp:workspace'] === workspaceId);
      if (!task) throw new Error(`no task for workspace ${workspaceId}`);
      return task;
    }

    async function manifest(repository: string, reference: string): Promise<any> {
      const res = await fetch(`${registry.url}/v2/${repository}/manifests/${reference}`, {
        headers: {
          accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json',
        },
      });
      expect(res.status).toBe(200);
      return res.json();
    }
  },
);

/** Records every object body the fake S3 stores (PutObject and CompleteMultipartUpload both end in objects.set). */
function recordS3Puts(ecs: EcsHandle, puts: PutRecord[]): void {
  const objects = ecs.s3.objects;
  const set = objects.set.bind(objects);
  objects.set = (key: string, body: Buffer) => {
    puts.push({ key, body: Buffer.from(body) });
    return set(key, body);
  };
}

/** Wraps the fake ECS's `docker exec -t` processes (what the SSM agent bridges to) to keep every byte both ways. */
function recordRpcTraffic(ecs: EcsHandle, bytes: Buffer[]): void {
  const fake = ecs.fake as unknown as { exec(taskArn: string, command: string): Promise<AgentProcess> };
  const exec = fake.exec.bind(ecs.fake);
  fake.exec = async (taskArn, command) => {
    bytes.push(Buffer.from(command));
    const proc = await exec(taskArn, command);
    return {
      ...proc,
      write: (data) => {
        bytes.push(Buffer.from(data));
        proc.write(data);
      },
      onData: (cb) =>
        proc.onData((b) => {
          bytes.push(Buffer.from(b));
          cb(b);
        }),
    };
  };
}

/**
 * The loopback registry of the fixture, and its storage dir: found through the docker-registry process
 * serving the base image's port (registry.ts keeps its config next to the storage, in a temp dir).
 */
function findRegistry(ecs: EcsHandle): { url: string; host: string; dataDir: string } {
  const image = ecs.fake.imageOf(ecs.options.baseTaskDefinition) ?? '';
  const host = image.slice(0, image.indexOf('/'));
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (!argv[0]?.endsWith('docker-registry') || argv[1] !== 'serve' || !argv[2]) continue;
    const config = fs.readFileSync(argv[2], 'utf8');
    if (!config.includes(`addr: ${host}\n`)) continue;
    const root = /rootdirectory: (\S+)/.exec(config)?.[1];
    if (root) return { url: `http://${host}`, host, dataDir: root };
  }
  throw new Error(`no docker-registry process serving ${host}`);
}

/** Every 300 ms, the command lines and environments of every process in every live task. */
function sampleTaskProcesses(ecs: EcsHandle, out: ProcSamples): { stop(): Promise<void> } {
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      for (const t of [...ecs.fake.tasks.values()].filter((x) => !x.stopped)) {
        const dump = await procDump(t.container).catch(() => undefined);
        if (!dump) continue;
        out.count++;
        if (dump.includes('runner.sh')) out.sawRunner = true;
        for (const hit of find(dump, [CANARY, S3_SECRET])) out.hits.push(`${t.arn}: ${hit}`);
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/**
 * /proc/<pid>/cmdline and environ of every process in a container, read from the host (the test dockerd
 * shares the host's pid namespace): inside the container even root lacks CAP_SYS_PTRACE and cannot read
 * the environ of the workspace user's processes, so an in-container scan would silently miss them.
 */
async function procDump(container: string): Promise<Buffer> {
  const { stdout } = await run('docker', ['-H', `unix://${DOCKER_SOCKET}`, 'top', container, '-eo', 'pid']);
  const pids = stdout
    .split('\n')
    .slice(1)
    .map((l) => l.trim())
    .filter((l) => /^\d+$/.test(l));
  const out: Buffer[] = [];
  for (const pid of pids) {
    for (const file of ['cmdline', 'environ']) {
      try {
        out.push(fs.readFileSync(`/proc/${pid}/${file}`), Buffer.from('\n'));
      } catch {
        // The process ended meanwhile.
      }
    }
  }
  return Buffer.concat(out);
}

/** Every object of every git repository in a container (home, baseline copies), uncompressed, plus their configs. */
async function gitObjectsDump(container: string): Promise<Buffer> {
  const script = [
    'for g in $(find / -xdev -name .git -type d 2>/dev/null); do',
    '  git -c safe.directory="*" --git-dir="$g" cat-file --batch-all-objects --batch;',
    '  cat "$g/config";',
    'done',
  ].join('\n');
  const { stdout } = await run('docker', ['-H', `unix://${DOCKER_SOCKET}`, 'exec', container, 'sh', '-c', script], {
    encoding: 'buffer',
    maxBuffer: 256 * 1024 * 1024,
  });
  return stdout;
}

/**
 * The refs and every object of a series of git bundles, uncompressed: unbundled in order into one scratch
 * bare repository (a later bundle is incremental: its prerequisites came with an earlier one).
 */
async function bundleObjects(bodies: Buffer[]): Promise<Buffer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-eit-bundle-'));
  const repo = path.join(dir, 'r.git');
  try {
    await run('git', ['init', '-q', '--bare', repo]);
    const out: Buffer[] = [];
    for (const [i, body] of bodies.entries()) {
      const file = path.join(dir, `${i}.bundle`);
      fs.writeFileSync(file, body);
      out.push((await run('git', ['-C', repo, 'bundle', 'unbundle', file], { encoding: 'buffer' })).stdout);
    }
    out.push(
      (
        await run('git', ['-C', repo, 'cat-file', '--batch-all-objects', '--batch'], {
          encoding: 'buffer',
          maxBuffer: 256 * 1024 * 1024,
        })
      ).stdout,
    );
    return Buffer.concat(out);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The base64 parts of runner rpc traffic, decoded: request bodies (between `WSPREQ <id>` and
 * `WSPEND <id>`, in both directions since the PTY echoes) and answer payloads (`<<<wsp:id:status:b64>>>`).
 */
function decodeRpcTraffic(text: string): Buffer[] {
  const clean = text.replaceAll('\r', '');
  const out: Buffer[] = [];
  for (const m of clean.matchAll(/WSPREQ (\w+)\n([A-Za-z0-9+/=\n]*?)WSPEND \1 /g))
    out.push(Buffer.from(m[2]!.replaceAll('\n', ''), 'base64'));
  for (const m of clean.matchAll(/<<<wsp:\w+:\d+:([A-Za-z0-9+/=\n]*)>>>/g))
    out.push(Buffer.from(m[1]!.replaceAll('\n', ''), 'base64'));
  return out;
}

/**
 * The needles found in a buffer as they are or base64-encoded at any of the 3 byte alignments
 * (answer payloads carry JSON whose fields are base64 again). Line breaks are ignored for the latter.
 */
function findEncoded(haystack: Buffer, needles: readonly string[]): string[] {
  const flat = haystack.toString('latin1').replace(/[\r\n]/g, '');
  return needles.filter((n) => haystack.includes(n) || base64Forms(n).some((f) => flat.includes(f)));
}

/** The part of base64(x) that depends only on the needle, for a needle starting at byte offset 0, 1 or 2 of a group. */
function base64Forms(needle: string): string[] {
  return [0, 1, 2].map((k) => {
    const b64 = Buffer.concat([Buffer.alloc(k), Buffer.from(needle)]).toString('base64');
    return b64.slice([0, 2, 3][k], b64.length - 4);
  });
}

function find(haystack: Buffer, needles: readonly string[]): string[] {
  return needles.filter((n) => haystack.includes(n));
}

/** The needles found anywhere in a stream (a needle split across chunks is still found). */
async function findInStream(stream: Readable, needles: readonly string[]): Promise<string[]> {
  const keep = Math.max(...needles.map((n) => Buffer.byteLength(n))) - 1;
  const found = new Set<string>();
  let tail = Buffer.alloc(0);
  for await (const chunk of stream) {
    const window = Buffer.concat([tail, chunk as Buffer]);
    for (const n of find(window, needles)) found.add(n);
    tail = window.subarray(Math.max(0, window.length - keep));
  }
  return [...found];
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}
