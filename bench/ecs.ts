/**
 * `npm run bench:ecs` — the Fargate backend's step costs, side by side in one run, reported as times
 * and RATIOS (never asserted), against the ecs-fixture (test/support/ecs-fixture.ts): ECS faked at
 * the SDK boundary, but tasks are real containers of the test dockerd, ECS Exec is the loopback SSM
 * agent over `docker exec -t`, S3 is a loopback S3-protocol server reached by the task's real curl,
 * and cache layers are appended to a real registry. So protocol, runner and data-path costs are real;
 * AWS's own latencies (RunTask scheduling, image pull from ECR, the SSM service hop) are NOT in these
 * numbers — the README's Fargate section estimates them separately.
 *
 * Measured:
 *   - exec round trip: a runner `status` request over the open SSM session vs a raw `docker exec true`
 *     in the same container (the cost of our protocol stack), and opening a session (ExecuteCommand →
 *     websocket → handshake → runner ready);
 *   - command start→exit of `true` through EcsBackend vs through the Docker backend;
 *   - reset (pristine restore) of a big home with some MiB changed vs nothing changed vs a small home
 *     with the same change (the claim: constant-ish in home size);
 *   - cache image build (pack + multipart upload of presigned parts + layer append + task definition) of the small vs the
 *     big home;
 *   - create from the cache image (RunTask → ready → init), image present on the daemon and image
 *     removed first (the fake pulls it, as Fargate does at every start), vs a warm-pool claim
 *     (conditional write in the state store + init in the running task).
 *
 * Sizes (full / BENCH_SHORT=1): big home 1 GiB / 64 MiB of 1 MiB random files, change 10 / 1 MiB,
 * small home 16 / 4 MiB. Random data is the worst case for the layer's gzip.
 * Writes bench/results/ecs-<date>.md (short: ecs-<date>-short.md) and prints the same.
 * Cleanup (also on failure or SIGINT/SIGTERM): every task, cache image and workspace of the run.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type Docker from 'dockerode';
import { EcsBackend } from '../shared/backends/ecs/index.js';
import { ExecChannels } from '../shared/backends/ecs/exec-channel.js';
import { commandDir } from '../shared/backends/ecs/guest.js';
import { EcsTasks } from '../shared/backends/ecs/tasks.js';
import { EcsWarmLauncher } from '../shared/backends/ecs/warm-launcher.js';
import { WarmPool } from '../shared/backends/ecs/warm-pool.js';
import { configSchema, type ConfigInput } from '../shared/config/schema.js';
import type { CommandSpec, WorkspaceBackend } from '../shared/contract/backend.js';
import type { WorkspacePlan } from '../shared/contract/plan.js';
import type { BackendRef, SnapshotRef } from '../shared/contract/workspace.js';
import { resolveWorkspacePlan } from '../shared/plan/resolve.js';
import { createDynamoClients } from '../shared/state/client.js';
import { DynamoWarmTaskStore } from '../shared/state/dynamo-warm-tasks.js';
import { startEmbeddedDynamo, type EmbeddedDynamo } from '../shared/state/embedded.js';
import { ensureTable } from '../shared/state/table.js';
import { DOCKER_SOCKET, dockerClient, dockerUnavailable, makeDockerBackend } from '../test/support/docker-daemon.js';
import { ECS_CLUSTER, makeEcsBackend, TEST_RETRY, type EcsHandle } from '../test/support/ecs-fixture.js';
import { registryUnavailable } from '../test/support/registry.js';
import { type Row, median, time, timeN } from './timing.js';

const run = promisify(execFile);
const short = process.env.BENCH_SHORT === '1';
const rounds = short ? 3 : 10;
/** Rounds of the slow steps (big resets, creates, cache builds). */
const fewRounds = short ? 2 : 3;
const MiB = 1024 * 1024;
/** Home sizes in MiB (1 MiB files) and how many of them a "changed" reset rewrites. */
const BIG_MB = short ? 64 : 1024;
const SMALL_MB = short ? 4 : 16;
const CHANGE_MB = short ? 1 : 10;
const RUN = randomBytes(4).toString('hex');

const planFor = (config: ConfigInput): WorkspacePlan => resolveWorkspacePlan(configSchema.parse(config));
const mb = (bytes: number): string =>
  bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / MiB).toFixed(0)} MiB`;

/** Start argv as the workspace user and wait for the end; throws unless it exited 0. Returns stdout. */
async function exec(
  backend: WorkspaceBackend,
  ref: BackendRef,
  plan: WorkspacePlan,
  argv: string[],
  timeoutMs = 120_000,
): Promise<string> {
  const spec: CommandSpec = {
    commandId: `c-${randomBytes(6).toString('hex')}`,
    argv,
    cwd: plan.workdir,
    env: { ...plan.env },
    timeoutMs,
    maxOutputBytes: MiB,
  };
  await backend.open(ref, plan).commands.start(spec);
  const status = await backend.open(ref, plan).commands.wait(spec.commandId, timeoutMs + 10_000);
  const out = (await backend.open(ref, plan).commands.read(spec.commandId, 'stdout', 0, MiB)).data.toString('utf8');
  if (status.state !== 'exited' || status.exitCode !== 0) {
    const err = (await backend.open(ref, plan).commands.read(spec.commandId, 'stderr', 0, 4096)).data.toString('utf8');
    throw new Error(`${argv.join(' ').slice(0, 80)} ended ${status.state} ${status.exitCode}: ${err}`);
  }
  return out;
}
const sh = (
  backend: WorkspaceBackend,
  ref: BackendRef,
  plan: WorkspacePlan,
  script: string,
  timeoutMs?: number,
): Promise<string> => exec(backend, ref, plan, ['sh', '-c', script], timeoutMs);

/** `true` through the backend: start, then waitCommand until it has exited 0 (what a caller pays). */
async function startToExit(backend: WorkspaceBackend, ref: BackendRef, plan: WorkspacePlan): Promise<void> {
  await exec(backend, ref, plan, ['true']);
}

/** Raw `docker exec` of `true` (root, like the SSM agent) through dockerode: create, start, drain, inspect. */
async function rawExec(docker: Docker, container: string): Promise<void> {
  const e = await docker.getContainer(container).exec({ Cmd: ['true'], AttachStdout: true, AttachStderr: true });
  const stream = await e.start({ hijack: true, stdin: false });
  await new Promise<void>((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', reject);
    stream.resume();
  });
  const info = await e.inspect();
  if (info.ExitCode !== 0) throw new Error(`raw exec exited ${info.ExitCode}`);
}

/** A home of `mbytes` 1 MiB random files ~/data/f0000…; returns its measured size (du -sb of the home). */
async function fillHome(
  backend: WorkspaceBackend,
  ref: BackendRef,
  plan: WorkspacePlan,
  mbytes: number,
): Promise<number> {
  await sh(
    backend,
    ref,
    plan,
    `mkdir -p ~/data && head -c ${mbytes * MiB} /dev/urandom | split -b ${MiB} -a 4 -d - ~/data/f`,
    900_000,
  );
  return Number((await sh(backend, ref, plan, 'du -sb "$HOME"')).split('\t')[0]);
}

/** Overwrite the first `mbytes` files in place (new content, same names): what a restore must rewrite. */
const changeScript = (mbytes: number): string =>
  `for f in $(seq -f 'f%04g' 0 ${mbytes - 1}); do head -c ${MiB} /dev/urandom > ~/data/$f; done`;

async function main(): Promise<void> {
  if (dockerUnavailable !== undefined) throw new Error(dockerUnavailable);
  if (registryUnavailable !== undefined) throw new Error(registryUnavailable);
  const docker = dockerClient();
  const ecsPlan = planFor({});
  const dockerPlan = planFor({ workspace: { network: 'none' } });

  let ecs: EcsHandle | undefined;
  let dockerHandle: Awaited<ReturnType<typeof makeDockerBackend>> | undefined;
  let dynamo: EmbeddedDynamo | undefined;
  const extraRefs: BackendRef[] = [];
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      const note = (what: string) => (error: unknown) =>
        process.stderr.write(`cleanup ${what}: ${(error as Error).message}\n`);
      // Workspaces claimed from the warm pool carry no workspace tag: the fixture's sweep would miss them.
      for (const ref of extraRefs) await ecs?.backend.destroy(ref).catch(note('claimed workspace'));
      await ecs?.cleanup().catch(note('ecs fixture'));
      await dockerHandle?.cleanup().catch(note('docker backend'));
      await dynamo?.close().catch(note('dynalite'));
    })());
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.stderr.write(`${signal}: cleaning up\n`);
      void cleanup().finally(() => process.exit(130));
    });
  }

  const rows: Row[] = [];
  const push = (name: string, xs: number[] | number, note?: string): number => {
    const list = typeof xs === 'number' ? [xs] : xs;
    const ms = median(list);
    const range = list.length > 1 ? `min ${Math.min(...list).toFixed(0)}, max ${Math.max(...list).toFixed(0)}` : '';
    rows.push({ name, ms, note: [range, note].filter(Boolean).join('; ') });
    return ms;
  };
  const section = (name: string): void => void rows.push({ name: `**${name}**`, ms: null });
  const progress = (what: string): void =>
    void process.stderr.write(`[bench:ecs ${new Date().toISOString().slice(11, 19)}] ${what}\n`);
  let n = 0;
  const wsId = (what: string): string => `bench-${RUN}-${what}-${++n}`;

  try {
    progress('starting the ecs fixture (registry, fake S3, fake ECS) and a docker backend');
    ecs = await makeEcsBackend();
    dockerHandle = await makeDockerBackend();
    const backend = ecs.backend;
    const created = async (what: string, from?: SnapshotRef): Promise<BackendRef> =>
      backend.create(ecsPlan, { workspaceId: wsId(what), labels: { 'wsp.bench': RUN }, ...(from ? { from } : {}) });

    // --- exec round trip ------------------------------------------------------------------------
    progress('exec round trips');
    section('exec channel');
    const a = await created('exec');
    const taskArn = String(a.taskArn);
    const container = ecs.fake.tasks.get(taskArn)!.container;
    // A command dir to ask about (status of an exited command: the runner reads its record files).
    const probe = `c-${randomBytes(6).toString('hex')}`;
    await backend.open(a, ecsPlan).commands.start({
      commandId: probe,
      argv: ['true'],
      cwd: ecsPlan.workdir,
      env: {},
      timeoutMs: 60_000,
      maxOutputBytes: MiB,
    });
    await backend.open(a, ecsPlan).commands.wait(probe, 60_000);
    const newChannels = (): ExecChannels =>
      new ExecChannels(ecs!.fake.client, { cluster: ECS_CLUSTER, container: 'workspace', retry: TEST_RETRY });
    const statusOver = async (ch: ExecChannels): Promise<void> => {
      const st = await ch.with(taskArn, 'bench status', (rpc) => rpc.status(commandDir(probe)));
      if (st?.state !== 'exited' || st.exitCode !== 0) throw new Error(`status answered ${JSON.stringify(st)}`);
    };
    const open = push(
      `open a session + first \`status\` (ExecuteCommand → websocket → SSM handshake → runner ready; median of ${rounds})`,
      await timeN(rounds, async () => {
        const ch = newChannels();
        try {
          await statusOver(ch);
        } finally {
          ch.closeAll();
        }
      }),
    );
    const channels = newChannels();
    await statusOver(channels); // opens the persistent session (not counted)
    const rpcRtt = push(
      `runner \`status\` request over the open session (median of ${rounds * 10})`,
      await timeN(rounds * 10, () => statusOver(channels)),
    );
    channels.closeAll();
    await rawExec(docker, container); // warm-up
    const rawRtt = push(
      `raw \`docker exec\` of \`true\` in the same container (median of ${rounds * 10})`,
      await timeN(rounds * 10, () => rawExec(docker, container)),
    );

    // --- command start→exit -------------------------------------------------------------------
    progress('command start→exit');
    section('commands');
    await startToExit(backend, a, ecsPlan); // warm-up
    const ecsCmd = push(
      `\`true\` start→exit through EcsBackend (startCommand + waitCommand; median of ${rounds * 3})`,
      await timeN(rounds * 3, () => startToExit(backend, a, ecsPlan)),
    );
    const dk = dockerHandle.backend;
    const d = await dk.create(dockerPlan, { workspaceId: wsId('docker'), labels: { 'wsp.bench': RUN } });
    await startToExit(dk, d, dockerPlan); // warm-up
    const dockerCmd = push(
      `\`true\` start→exit through the Docker backend (same calls; median of ${rounds * 3})`,
      await timeN(rounds * 3, () => startToExit(dk, d, dockerPlan)),
    );
    await dk.destroy(d);

    // --- resets --------------------------------------------------------------------------------
    progress(`resets: filling a ${BIG_MB} MiB home`);
    section("reset in the task (pristine restore: kill the user's processes, rewrite what changed, empty /tmp)");
    const sum = async (ref: BackendRef): Promise<string> =>
      (await sh(backend, ref, ecsPlan, 'sha256sum ~/data/f0000 | cut -c1-64')).trim();
    const resetRounds = async (
      ref: BackendRef,
      snap: SnapshotRef,
      expect: string,
      change: boolean,
      count: number,
    ): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < count; i++) {
        if (change) await sh(backend, ref, ecsPlan, changeScript(CHANGE_MB));
        out.push(await time(() => backend.open(ref, ecsPlan).snapshots.restore(snap)));
      }
      // The last restore really put the baseline back (a number for an undone reset would be a lie).
      if ((await sum(ref)) !== expect) throw new Error('restore did not bring back the baseline content');
      return out;
    };
    const small = await created('small');
    const smallBytes = await fillHome(backend, small, ecsPlan, SMALL_MB);
    const smallSnap = await backend.open(small, ecsPlan).snapshots.take('baseline', `bl-${RUN}-small`);
    const smallSum = await sum(small);
    await sh(backend, small, ecsPlan, 'sync');
    const resetSmallChanged = push(
      `reset of a ${mb(smallBytes)} home, ${CHANGE_MB} MiB rewritten (median of ${rounds})`,
      await resetRounds(small, smallSnap, smallSum, true, rounds),
    );
    const resetSmallClean = push(
      `reset of a ${mb(smallBytes)} home, nothing changed (median of ${rounds})`,
      await resetRounds(small, smallSnap, smallSum, false, rounds),
    );

    const big = await created('big');
    const bigBytes = await fillHome(backend, big, ecsPlan, BIG_MB);
    let bigSnap: SnapshotRef | undefined;
    push(
      `(baseline copy of the ${mb(bigBytes)} home: pristine-save, cp -a; 1 run)`,
      await time(async () => (bigSnap = await backend.open(big, ecsPlan).snapshots.take('baseline', `bl-${RUN}-big`))),
    );
    const bigSum = await sum(big);
    // The fill and the copy leave GiBs of dirty pages: flush them so their writeback is not timed as reset.
    await sh(backend, big, ecsPlan, 'sync', 600_000);
    const resetBigChanged = push(
      `reset of the ${mb(bigBytes)} home, ${CHANGE_MB} MiB rewritten (median of ${fewRounds})`,
      await resetRounds(big, bigSnap!, bigSum, true, fewRounds),
    );
    const resetBigClean = push(
      `reset of the ${mb(bigBytes)} home, nothing changed (median of ${fewRounds})`,
      await resetRounds(big, bigSnap!, bigSum, false, fewRounds),
    );
    // --- cache image builds ---------------------------------------------------------------------
    progress('cache image builds');
    section(
      'cache image build (runner pack → presigned part PUTs → S3 → gzip + layer append in the registry → task definition)',
    );
    const snaps: SnapshotRef[] = [];
    const build = async (ref: BackendRef, what: string): Promise<void> => {
      snaps.push(await backend.open(ref, ecsPlan).snapshots.take('cache', `cache-${RUN}-${what}-${snaps.length}`));
    };
    const cacheSmall = push(
      `cache image of the ${mb(smallBytes)} home (median of ${fewRounds})`,
      await timeN(fewRounds, () => build(small, 'small')),
    );
    const smallImage = snaps[0]!;
    const cacheBig = push(`cache image of the ${mb(bigBytes)} home (1 run)`, await time(() => build(big, 'big')));
    const bigLayer = Number(snaps.at(-1)!['bytes']);
    rows.at(-1)!.note = `layer ${mb(bigLayer)} gzip; ${(bigBytes / MiB / (cacheBig / 1000)).toFixed(0)} MiB/s of home`;
    for (const s of snaps.slice(1)) await backend.snapshots.delete(s);
    for (const ref of [big]) await backend.destroy(ref);

    // --- create from the cache image vs warm claim ---------------------------------------------
    progress('creates from the cache image');
    section(`create from the ${mb(smallBytes)} cache image`);
    const image = String(smallImage['image']);
    const createFrom = async (pullFirst: boolean): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < fewRounds; i++) {
        if (pullFirst)
          await docker
            .getImage(image)
            .remove()
            .catch((e: { statusCode?: number }) => {
              if (e.statusCode !== 404) throw e;
            });
        let ref: BackendRef | undefined;
        out.push(await time(async () => (ref = await created('from-cache', smallImage))));
        if ((await sum(ref!)) !== smallSum) throw new Error('a workspace from the cache image lacks the cached home');
        await backend.destroy(ref!);
      }
      return out;
    };
    const createPresent = push(
      `RunTask → ready → init, image already on the daemon (median of ${fewRounds})`,
      await createFrom(false),
    );
    const createPulled = push(
      `RunTask → ready → init, image removed first: the fake pulls it from the registry (median of ${fewRounds})`,
      await createFrom(true),
      'only the appended layer is new; the base layers stay on the daemon',
    );

    progress('warm-pool claims');
    dynamo = await startEmbeddedDynamo();
    const clients = createDynamoClients({
      endpoint: dynamo.endpoint,
      socketPath: dynamo.socketPath,
      region: 'us-east-1',
      env: {},
    });
    await ensureTable(clients.client, `wsp-bench-${RUN}`);
    const store = new DynamoWarmTaskStore(clients.doc, `wsp-bench-${RUN}`);
    const o = ecs.options;
    const tasks = new EcsTasks(o.ecs, {
      cluster: o.cluster,
      container: o.container,
      network: { subnets: o.subnets, securityGroups: o.securityGroups },
      startedBy: o.owner,
      retry: TEST_RETRY,
      pollMinMs: 20,
      pollMaxMs: 200,
    });
    const pool = new WarmPool(store, new EcsWarmLauncher(tasks, o.owner), { owner: o.owner });
    const pooled = new EcsBackend({ ...o, warmPool: pool });
    const cacheKey = String(smallImage.name);
    const tdArn = String(smallImage['taskDefinitionArn']);
    const claims: number[] = [];
    for (let i = 0; i < fewRounds + 1; i++) {
      // Untimed: a janitor's replenish until the pool has a ready task.
      for (let t = 0; ; t++) {
        await pool.replenish(cacheKey, tdArn, 1);
        if ((await store.listWarmTasks(cacheKey)).some((r) => r.status === 'ready')) break;
        if (t > 600) throw new Error('warm task never became ready');
        await new Promise((r) => setTimeout(r, 100));
      }
      const ready = (await store.listWarmTasks(cacheKey)).find((r) => r.status === 'ready')!;
      let ref: BackendRef | undefined;
      const ms = await time(
        async () =>
          (ref = await pooled.create(ecsPlan, {
            workspaceId: wsId('warm'),
            labels: { 'wsp.bench': RUN },
            from: smallImage,
          })),
      );
      extraRefs.push(ref!);
      if (ref!.taskArn !== ready.taskArn) throw new Error('the create did not claim the warm task');
      if (i > 0) claims.push(ms); // the first claim is a warm-up (the state store's first connection)
      await pool.release(cacheKey, String(ref!.taskArn));
      if ((await sum(ref!)) !== smallSum) throw new Error('a claimed warm task lacks the cached home');
      await pooled.destroy(ref!);
      extraRefs.pop();
    }
    pooled.close();
    clients.client.destroy();
    const claim = push(
      `warm-pool claim: conditional write ready → claimed + init over a new session (median of ${fewRounds})`,
      claims,
    );
    await pool.drain(cacheKey);
    await backend.snapshots.delete(smallImage);

    const ratios: Array<[string, number]> = [
      ['runner `status` over the open session / raw `docker exec true`', rpcRtt / rawRtt],
      ['opening a session / one request on an open session', open / rpcRtt],
      ['`true` start→exit: EcsBackend / Docker backend', ecsCmd / dockerCmd],
      [
        `reset ${mb(bigBytes)} with ${CHANGE_MB} MiB changed / ${mb(smallBytes)} with ${CHANGE_MB} MiB changed (size)`,
        resetBigChanged / resetSmallChanged,
      ],
      [`reset ${mb(bigBytes)}: ${CHANGE_MB} MiB changed / nothing changed`, resetBigChanged / resetBigClean],
      [`reset ${mb(bigBytes)} / ${mb(smallBytes)}, nothing changed`, resetBigClean / resetSmallClean],
      [
        `cache image build ${mb(bigBytes)} / ${mb(smallBytes)} (home size ratio ${(bigBytes / smallBytes).toFixed(1)})`,
        cacheBig / cacheSmall,
      ],
      ['create from cache (image present) / warm claim', createPresent / claim],
      ['create from cache (image pulled) / warm claim', createPulled / claim],
    ];
    const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, node ${process.version}`;
    const { stdout: engine } = await run('docker', [
      '-H',
      `unix://${DOCKER_SOCKET}`,
      'version',
      '--format',
      '{{.Server.Version}} (API {{.Server.APIVersion}})',
    ]);
    const date = new Date().toISOString().slice(0, 10);
    const md = [
      `## Fargate backend (mode ecs) on the fake — ${date}${short ? ' (short run: smaller homes, fewer rounds)' : ''}`,
      '',
      `Machine: ${machine}; dockerd ${engine.trim()}. ECS is faked at the SDK boundary (test/support/ecs-fixture.ts): tasks are`,
      'containers of the test dockerd, ECS Exec is a loopback SSM agent over `docker exec -t`, S3 a loopback server, the registry',
      "Debian's docker-registry. AWS's own latencies (RunTask scheduling, ECR pulls, the SSM service hop) are not in these numbers.",
      `Homes are 1 MiB files of random data. Times in ms; medians.`,
      '',
      '| step | ms | note |',
      '|---|---:|---|',
      ...rows.map((r) => `| ${r.name} | ${r.ms === null ? '' : r.ms.toFixed(0)} | ${r.note ?? ''} |`),
      '',
      '| ratio | value |',
      '|---|---:|',
      ...ratios.map(([k, v]) => `| ${k} | ${v.toFixed(2)} |`),
      '',
    ].join('\n');
    process.stdout.write(`${md}\n`);
    const results = path.join(import.meta.dirname, 'results');
    fs.mkdirSync(results, { recursive: true });
    fs.writeFileSync(path.join(results, `ecs-${date}${short ? '-short' : ''}.md`), md);
  } finally {
    await cleanup();
  }
}

void main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
