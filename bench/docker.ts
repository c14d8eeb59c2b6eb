/**
 * `npm run bench:docker` — docker backend, side by side in one run, reported as times and ratios
 * (never asserted): cold setup, warm setup (cache hit, same commit), warm setup after 5 new upstream
 * commits, the create+start floor (a raw dockerode create+start of the cache image), reset of a
 * ~10 MB and of a ~1 GB workspace and of a node_modules-like one (20,000 small files), command round trip through the API vs a raw dockerode exec,
 * 20 parallel warm setups + 200 commands vs 20 parallel raw create+starts (the parallel floor), a
 * lockfile bump restored from the older cache entry vs from nothing (restore keys; bench/lockfile.ts,
 * as bench/local.ts), and the peer `devcontainer up` (@devcontainers/cli 0.89.0 through npx) on the
 * same cache image. The ratios of issue 12 are in docker.json `ratios`, each goal in the table's label.
 *
 * Needs the daemon and base image of .ci/docker.sh (socket: WSP_DOCKER_SOCKET or its default).
 * Writes bench/results/docker.md and docker.json. `BENCH_SHORT=1` does fewer rounds and scales the
 * big workspace down to 200 MB and the node_modules-like one to 5,000 files (the table says so); the parallel and lockfile-bump parts are one run
 * each in both modes (~35 s of a short run).
 *
 * Cleanup (also on failure or SIGINT/SIGTERM): every workspace and snapshot of the bench
 * providers (their owners are fresh instance ids), and every container carrying this run's
 * `wsp-bench=<run>` label (the floor's and devcontainer's containers).
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type Docker from 'dockerode';
import { dockerRef } from '../shared/backends/docker/layout.js';
import type { WorkspaceView } from '../shared/contract/views.js';
import type { WorkspacePlan } from '../shared/contract/plan.js';
import { BASE_IMAGE, DOCKER_SOCKET, dockerClient, dockerUnavailable } from '../test/support/docker-daemon.js';
import { commitFiles, createUpstreamRepo } from '../test/support/git-fixtures.js';
import { startGitServer, type GitServer } from '../test/support/git-server.js';
import { startTestProvider, type TestProvider } from '../test/support/provider-fixture.js';
import { lockfileBump } from './lockfile.js';
import { type Row, median, time, timeN } from './timing.js';

const run = promisify(execFile);
const short = process.env.BENCH_SHORT === '1';
const rounds = short ? 3 : 10;
/** Rounds of the slow peer and of the big reset. */
const fewRounds = short ? 2 : 5;
const PARALLEL = 20;
const COMMANDS = 200;
/** Size of the big workspace's setup data, MiB (full: 1 GiB; short: 200 MiB). */
const BIG_MB = short ? 200 : 1024;
/**
 * Files of the node_modules-like workspace (the issue's real-project row without a network: a tree of
 * small files written by setup, 100 per package dir; full: 20,000; short: 5,000).
 */
const MANY_FILES = short ? 5_000 : 20_000;
/** Poll interval while a setup provisions (the API has no long-poll for setup): adds up to this much. */
const POLL_MS = 10;
const POLL_PARALLEL_MS = 50;
const TOKEN = `bench-token-${randomBytes(8).toString('hex')}`;
const RUN = `b${randomBytes(5).toString('hex')}`;
const RUN_LABEL = 'wsp-bench';
const DEVCONTAINER_CLI = '@devcontainers/cli@0.89.0';

/** POST /workspaces and poll every `pollMs` until it settles; throws unless ready. Returns the view. */
async function setup(wsp: TestProvider, pollMs = POLL_MS): Promise<WorkspaceView> {
  const created = await wsp.api('POST', '/workspaces', {});
  if (created.status !== 202 && created.status !== 200) throw new Error(`setup: ${created.status} ${created.text}`);
  const id = created.body.id as string;
  const deadline = Date.now() + 600_000;
  for (;;) {
    const r = await wsp.api('GET', `/workspaces/${id}`);
    if (r.status !== 200) throw new Error(`GET workspace ${id}: ${r.status} ${r.text}`);
    if (r.body.status === 'ready') return r.body;
    if (r.body.status !== 'provisioning')
      throw new Error(`setup ended ${r.body.status}: ${JSON.stringify(r.body.failure)}`);
    if (Date.now() > deadline) throw new Error(`workspace ${id} still provisioning after 600 s`);
    await new Promise((res) => setTimeout(res, pollMs));
  }
}

/** Run argv through the API (waits for the end); throws unless it exited 0. Returns stdout. */
async function api(wsp: TestProvider, id: string, argv: string[]): Promise<string> {
  let r = await wsp.api('POST', `/workspaces/${id}/commands`, { argv, waitMs: 20_000 });
  if (r.status >= 400) throw new Error(`command: ${r.status} ${r.text}`);
  while (r.body.state === 'running') r = await wsp.api('GET', `/workspaces/${id}/commands/${r.body.id}?waitMs=20000`);
  if (r.body.state !== 'exited' || r.body.exitCode !== 0)
    throw new Error(`${argv.join(' ')} ended ${r.body.state} ${r.body.exitCode}: ${r.body.stderr?.data ?? ''}`);
  return r.body.stdout?.data ?? '';
}

function expectCache(view: WorkspaceView | undefined, hit: boolean, what: string): void {
  if (view?.cache?.hit !== hit)
    throw new Error(`${what}: expected a cache ${hit ? 'hit' : 'miss'}, got ${JSON.stringify(view?.cache)}`);
}

/** Raw `docker exec` of `true` as the workspace user through dockerode: create, start, drain, inspect. */
async function rawExec(docker: Docker, container: string): Promise<void> {
  const exec = await docker
    .getContainer(container)
    .exec({ Cmd: ['true'], User: '1000:1000', AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  await new Promise<void>((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', reject);
    stream.resume();
  });
  const info = await exec.inspect();
  if (info.ExitCode !== 0) throw new Error(`raw exec exited ${info.ExitCode}`);
}

/** The provider's one cache image (tag), found through its backend. */
async function cacheImage(wsp: TestProvider): Promise<string> {
  const snaps = (await wsp.provider.deps.backend.snapshots.list()).filter((s) => s.purpose === 'cache');
  if (snaps.length !== 1) throw new Error(`expected one cache snapshot, found ${snaps.length}`);
  return String(snaps[0]!.image);
}

async function main(): Promise<void> {
  if (dockerUnavailable !== undefined) throw new Error(dockerUnavailable);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-bench-docker-'));
  fs.chmodSync(root, 0o711);
  const docker = dockerClient();
  process.env.WSP_BENCH_TOKEN = TOKEN;
  const providers: TestProvider[] = [];
  let git: GitServer | undefined;
  // One cleanup, shared by the normal end, a failure and a signal (whoever comes first; the others await it).
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      await removeRunContainers(docker).catch(() => undefined);
      for (const wsp of providers) {
        // Close first: the service drains its in-flight jobs, so nothing is created after the sweep.
        await wsp.close().catch(() => undefined);
        const backend = wsp.provider.deps.backend;
        try {
          for (const ws of await backend.listResources()) await backend.destroy(ws.ref);
          for (const snap of await backend.snapshots.list()) await backend.snapshots.delete(snap);
        } catch (error) {
          process.stderr.write(
            `cleanup through the backend of ${wsp.provider.deps.instanceId}: ${(error as Error).message}\n`,
          );
        }
        // Then anything still carrying this provider's (fresh, bench-only) owner label.
        await sweepOwner(docker, wsp.provider.deps.instanceId).catch((error: unknown) => {
          process.stderr.write(`cleanup sweep of ${wsp.provider.deps.instanceId}: ${(error as Error).message}\n`);
        });
      }
      await git?.close().catch(() => undefined);
      execFileSync('rm', ['-rf', root]);
    })());
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.stderr.write(`${signal}: cleaning up\n`);
      void cleanup().finally(() => process.exit(130));
    });
  }

  const rows: Row[] = [];
  const push = (name: string, xs: number[] | number | null, note?: string): number => {
    const ms = xs === null ? null : typeof xs === 'number' ? xs : median(xs);
    rows.push({ name, ms, ...(note ? { note } : {}) });
    return ms ?? Number.NaN;
  };
  try {
    git = await startGitServer({ token: TOKEN, root: path.join(root, 'git') });
    // ~1 MB of source in 200 files; the small setup adds 9 MB → a ~10 MB workspace.
    const files: Record<string, string> = {};
    for (let i = 0; i < 200; i++) files[`src/m${Math.floor(i / 20)}/f${i}.txt`] = `${i} ${'x'.repeat(60)}\n`.repeat(80);
    const app = createUpstreamRepo(git.root, 'app', files);
    const repositories = [{ url: git.url('app'), path: 'app', credential: 'env:WSP_BENCH_TOKEN' }];
    const base = {
      mode: 'docker' as const,
      docker: { socketPath: DOCKER_SOCKET, baseImage: BASE_IMAGE },
      repositories,
      workspace: { network: 'none' as const },
    };
    const small = await startTestProvider(
      { ...base, setup: { script: 'mkdir -p ~/.cache/deps && head -c 9437184 /dev/urandom > ~/.cache/deps/blob' } },
      { dataDir: path.join(root, 'data-small') },
    );
    providers.push(small);
    // A different setup script → a different cache key; its data is in the cache and the baseline.
    const big = await startTestProvider(
      {
        ...base,
        setup: {
          script: `mkdir -p ~/data && for i in $(seq 1 ${BIG_MB / 4}); do head -c 4194304 /dev/urandom > ~/data/part$i; done`,
        },
      },
      { dataDir: path.join(root, 'data-big') },
    );
    providers.push(big);
    const many = await startTestProvider(
      {
        ...base,
        setup: {
          script: `mkdir -p ~/node_modules && cd ~/node_modules && for d in $(seq 1 ${MANY_FILES / 100}); do mkdir p$d && for f in $(seq 1 100); do echo "module.exports = '$d.$f';" > p$d/f$f.js; done; done`,
        },
      },
      { dataDir: path.join(root, 'data-many') },
    );
    providers.push(many);

    // --- setups -------------------------------------------------------------------------------
    let coldView: WorkspaceView | undefined;
    const cold = push(
      'cold setup (bundle in + 9 MB setup + cache and baseline commits)',
      await time(async () => (coldView = await setup(small))),
    );
    expectCache(coldView, false, 'cold setup');
    const ids: string[] = [coldView!.id];
    let lastWarm: WorkspaceView | undefined;
    const warm = push(
      `warm setup (cache hit, same commit; median of ${rounds})`,
      await timeN(rounds, async () => {
        const v = await setup(small);
        expectCache(v, true, 'warm setup');
        ids.push(v.id);
        lastWarm = v;
      }),
    );
    let upstreamHead = app.head;
    for (let i = 0; i < 5; i++) upstreamHead = commitFiles(app, { [`src/new${i}.txt`]: `new ${i}\n` }, `c${i}`);
    let fetched: WorkspaceView | undefined;
    push('warm setup after 5 new upstream commits (1 run)', await time(async () => (fetched = await setup(small))));
    expectCache(fetched, true, 'warm setup after commits');
    ids.push(fetched!.id);
    const head = (await api(small, fetched!.id, ['git', '-C', 'app', 'rev-parse', 'HEAD'])).trim();
    if (head !== upstreamHead) throw new Error(`warm setup after commits is at ${head}, upstream at ${upstreamHead}`);

    // --- the create+start floor ---------------------------------------------------------------
    const image = await cacheImage(small);
    const floor = push(
      `create+start floor: raw dockerode create+start of the cache image (median of ${rounds})`,
      await floorTimes(docker, image),
    );

    // --- command round trip ---------------------------------------------------------------------
    const id = ids[1]!;
    const apiRtt = push(
      `command round trip through the API (argv \`true\`; median of ${rounds * 3})`,
      await timeN(rounds * 3, () => api(small, id, ['true'])),
    );
    const container = `wsp-${id}`;
    await rawExec(docker, container); // warm-up (not counted)
    const rawRtt = push(
      `raw docker exec of \`true\` through dockerode (median of ${rounds * 3})`,
      await timeN(rounds * 3, () => rawExec(docker, container)),
    );

    // --- resets ---------------------------------------------------------------------------------
    const smallSize = Number((await api(small, id, ['sh', '-c', 'du -sb "$HOME"'])).split('\t')[0]);
    const resetSmall = push(
      `reset of a ${mb(smallSize)} workspace (median of ${rounds})`,
      await resetTimes(small, id, rounds),
    );
    const restoreSmall = push(
      `… of which the backend restore alone (new container from the baseline image; no fingerprint, no state writes; median of ${rounds})`,
      await restoreTimes(small, id, rounds),
    );
    let bigView: WorkspaceView | undefined;
    push(
      `(cold setup of the big workspace, ${BIG_MB} MiB written by setup; 1 run)`,
      await time(async () => (bigView = await setup(big))),
    );
    const bigSize = Number((await api(big, bigView!.id, ['sh', '-c', 'du -sb "$HOME"'])).split('\t')[0]);
    const bigNote = short ? `short run: ${BIG_MB} MiB instead of 1 GiB` : undefined;
    const resetBig = push(
      `reset of a ${mb(bigSize)} workspace (median of ${fewRounds})`,
      await resetTimes(big, bigView!.id, fewRounds),
      bigNote,
    );
    const restoreBig = push(
      `… of which the backend restore alone (median of ${fewRounds})`,
      await restoreTimes(big, bigView!.id, fewRounds),
      bigNote,
    );
    await big.api('DELETE', `/workspaces/${bigView!.id}`);
    let manyView: WorkspaceView | undefined;
    const manyLabel = `${MANY_FILES.toLocaleString('en-US')} small files`;
    push(
      `(cold setup of a node_modules-like workspace: ${manyLabel} written by setup; 1 run)`,
      await time(async () => (manyView = await setup(many))),
    );
    const manyResets = await resetTimes(many, manyView!.id, fewRounds);
    const manyNote = short ? `short run: ${manyLabel} instead of 20,000` : undefined;
    const resetMany = push(
      `reset of the node_modules-like workspace (${manyLabel}; median of ${fewRounds})`,
      manyResets,
      manyNote,
    );
    // The first reset from a committed baseline measures that image's home digest once (a walk of
    // every file, in the new container); every later reset from it knows it (docker/pristine.ts).
    push(
      '… the first of those resets (the baseline image’s home digest measured once: a walk)',
      manyResets[0]!,
      manyNote,
    );
    await many.api('DELETE', `/workspaces/${manyView!.id}`);

    // --- 20 parallel raw create+starts (the floor), then 20 parallel warm setups + 200 commands ----
    for (const w of ids) await small.api('DELETE', `/workspaces/${w}`);
    // Both parallel measurements start on a daemon with none of this run's workspaces left.
    await settled([small, big, many]);
    const parFloor = push(
      `${PARALLEL} parallel raw create+starts of the cache image (the parallel floor): wall time`,
      await parallelFloorTime(docker, image),
    );
    await settled([small, big, many]);
    let par: string[] = [];
    const parSetup = await time(async () => {
      const views = await Promise.all(Array.from({ length: PARALLEL }, () => setup(small, POLL_PARALLEL_MS)));
      for (const v of views) expectCache(v, true, 'parallel warm setup');
      par = views.map((v) => v.id as string);
    });
    const parWarm = push(`${PARALLEL} parallel warm setups: wall time (polled every ${POLL_PARALLEL_MS} ms)`, parSetup);
    const perCommand: number[] = [];
    const perWs = COMMANDS / PARALLEL;
    const parCmds = await time(() =>
      Promise.all(
        par.map(async (w) => {
          for (let i = 0; i < perWs; i++) perCommand.push(await time(() => api(small, w, ['true'])));
        }),
      ),
    );
    push(
      `${COMMANDS} commands over them (${perWs} in sequence per workspace, all workspaces at once): wall time`,
      parCmds,
    );
    push(`… per command (median of ${COMMANDS}, under that load)`, perCommand);
    await Promise.all(par.map((w) => small.api('DELETE', `/workspaces/${w}`)));

    // --- lockfile bump: restored from the older entry vs from nothing ----------------------------
    const lockBump = await lockfileBump({
      git,
      start: async (config, restore) => {
        const wsp = await startTestProvider(
          { ...config, mode: 'docker', docker: base.docker },
          { dataDir: path.join(root, restore ? 'data-lock-on' : 'data-lock-off') },
        );
        providers.push(wsp);
        return wsp;
      },
      setup: (wsp) => setup(wsp),
    });
    rows.push(...lockBump.rows);

    // --- the peer: devcontainer up ---------------------------------------------------------------
    const dc = await devcontainerTimes(docker, image, root);
    const dcMs = dc.times
      ? push(
          `peer: devcontainer up (${DEVCONTAINER_CLI}, same cache image, postCreateCommand \`true\`; median of ${fewRounds})`,
          dc.times,
        )
      : push('peer: devcontainer up', null, `devcontainer: not measured (${dc.reason})`);

    const ratios = {
      warmVsFloor: warm / floor,
      warmVsCold: warm / cold,
      resetSmallVsFloor: resetSmall / floor,
      resetBigVsResetSmall: resetBig / resetSmall,
      resetManyFilesVsResetSmall: resetMany / resetSmall,
      restoreBigVsRestoreSmall: restoreBig / restoreSmall,
      apiRoundTripVsRawExec: apiRtt / rawRtt,
      warmVsDevcontainerUp: dc.times ? warm / dcMs : null,
      parallelWarmVsParallelFloor: parWarm / parFloor,
      restoreKeyVsCold: lockBump.restored / lockBump.cold,
    };
    const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, node ${process.version}`;
    const { stdout: engine } = await run('docker', [
      '-H',
      `unix://${DOCKER_SOCKET}`,
      'version',
      '--format',
      '{{.Server.Version}} (API {{.Server.APIVersion}})',
    ]);
    const fmt = (v: number | null): string => (v === null || Number.isNaN(v) ? 'not measured' : v.toFixed(2));
    const md = [
      `## Docker backend — ${new Date().toISOString().slice(0, 10)}${short ? ' (short run)' : ''}`,
      '',
      `Machine: ${machine}; dockerd ${engine.trim()}, base image ${BASE_IMAGE}, network none. Setups are polled every ${POLL_MS} ms unless said.`,
      '',
      '| step | ms | note |',
      '|---|---:|---|',
      ...rows.map((r) => `| ${r.name} | ${r.ms === null ? '—' : r.ms.toFixed(0)} | ${r.note ?? ''} |`),
      '',
      `Where a warm setup's time goes (the last one's progress steps, ms since the step before): ${stepTimeline(lastWarm)}.`,
      '',
      '| ratio | value |',
      '|---|---:|',
      `| warm setup / create+start floor (goal ≤ 2.5) | ${fmt(ratios.warmVsFloor)} |`,
      `| warm setup / cold setup | ${fmt(ratios.warmVsCold)} |`,
      `| reset ${mb(smallSize)} / create+start floor (goal ≤ 2) | ${fmt(ratios.resetSmallVsFloor)} |`,
      `| reset ${mb(bigSize)} / reset ${mb(smallSize)} (goal ≤ 1.2 for 1 GiB) | ${fmt(ratios.resetBigVsResetSmall)} |`,
      `| backend restore alone ${mb(bigSize)} / ${mb(smallSize)} (the reset minus its fingerprint and state writes) | ${fmt(ratios.restoreBigVsRestoreSmall)} |`,
      `| reset of the node_modules-like workspace (${manyLabel}) / reset ${mb(smallSize)} (goal ≤ 1.5) | ${fmt(ratios.resetManyFilesVsResetSmall)} |`,
      `| API command round trip / raw docker exec (goal ≤ 0.5) | ${fmt(ratios.apiRoundTripVsRawExec)} |`,
      `| warm setup / devcontainer up (goal ≤ 0.33) | ${dc.times ? fmt(ratios.warmVsDevcontainerUp) : `devcontainer: not measured (${dc.reason})`} |`,
      `| ${PARALLEL} parallel warm setups / ${PARALLEL} parallel raw create+starts, wall (goal ≤ 3) | ${fmt(ratios.parallelWarmVsParallelFloor)} |`,
      `| setup after a lockfile bump: restored from the older entry / from nothing (goal ≤ 0.5) | ${fmt(ratios.restoreKeyVsCold)} |`,
      '',
    ].join('\n');
    process.stdout.write(`${md}\n`);
    const results = path.join(import.meta.dirname, 'results');
    fs.mkdirSync(results, { recursive: true });
    fs.writeFileSync(path.join(results, 'docker.md'), md);
    fs.writeFileSync(
      path.join(results, 'docker.json'),
      `${JSON.stringify(
        {
          date: new Date().toISOString(),
          machine,
          engine: engine.trim(),
          short,
          rounds,
          bigWorkspaceBytes: bigSize,
          smallWorkspaceBytes: smallSize,
          rows,
          ratios,
          warmSetupSteps: lastWarm?.steps ?? [],
          ...(dc.times ? { devcontainerTimes: dc.times } : { devcontainer: `not measured (${dc.reason})` }),
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    await cleanup();
  }
}

/** "step +ms, …" from a view's progress steps (their `at` stamps have ms resolution). */
function stepTimeline(view: WorkspaceView | undefined): string {
  const steps: { at: string; step: string }[] = view?.steps ?? [];
  return (
    steps.map((st, i) => `${st.step} +${i === 0 ? 0 : Date.parse(st.at) - Date.parse(steps[i - 1]!.at)}`).join(', ') ||
    'no steps recorded'
  );
}

const mb = (bytes: number): string =>
  bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(0)} MiB`;

/** Each round: a small change (a changed and a new file, a leftover process), then the timed reset. */
async function resetTimes(wsp: TestProvider, id: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    await api(wsp, id, [
      'sh',
      '-c',
      'echo change >> app/src/m0/f0.txt && echo new > app/new-file && (sleep 600 > /dev/null 2>&1 &)',
    ]);
    out.push(
      await time(async () => {
        const r = await wsp.api('POST', `/workspaces/${id}/reset`, {});
        if (r.status !== 200) throw new Error(`reset: ${r.status} ${r.text}`);
      }),
    );
  }
  // The last reset really undid the change (a number for an undone reset would be a lie).
  const left = await api(wsp, id, ['sh', '-c', 'test -e app/new-file && echo present || echo gone']);
  if (left.trim() !== 'gone') throw new Error('reset left app/new-file behind');
  return out;
}

/**
 * The reset's constant-time part alone: the backend's restore (running commands killed, container
 * replaced by a new one from the baseline image), called behind the service's back — the service's
 * reset adds a fingerprint of the whole home (which reads every byte) and its state writes.
 */
async function restoreTimes(wsp: TestProvider, id: string, n: number): Promise<number[]> {
  const backend = wsp.provider.deps.backend;
  const view = await wsp.api('GET', `/workspaces/${id}`);
  const plan = view.body.plan as WorkspacePlan;
  const baseline = (await backend.snapshots.list()).find((s) => s.purpose === 'baseline' && s.name === id);
  if (!baseline) throw new Error(`no baseline snapshot named ${id}`);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    await api(wsp, id, [
      'sh',
      '-c',
      'echo change >> app/src/m0/f0.txt && echo new > app/new-file && (sleep 600 > /dev/null 2>&1 &)',
    ]);
    out.push(await time(() => backend.open(dockerRef(id), plan).snapshots.restore(baseline)));
  }
  const left = await api(wsp, id, ['sh', '-c', 'test -e app/new-file && echo present || echo gone']);
  if (left.trim() !== 'gone') throw new Error('restore left app/new-file behind');
  return out;
}

/** The floor's unit: a raw create+start of `image` (network none, docker's init, sleep infinity). */
async function createStart(docker: Docker, image: string, name: string): Promise<Docker.Container> {
  const container = await docker.createContainer({
    name,
    Image: image,
    Entrypoint: ['sleep', 'infinity'],
    Cmd: [],
    Labels: { [RUN_LABEL]: RUN },
    HostConfig: { NetworkMode: 'none', Init: true },
  });
  await container.start();
  return container;
}

/** `rounds` create+starts one after another, each removed untimed. */
async function floorTimes(docker: Docker, image: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < rounds; i++) {
    let container: Docker.Container | undefined;
    out.push(await time(async () => (container = await createStart(docker, image, `wsp-bench-floor-${RUN}-${i}`))));
    await container?.remove({ force: true });
  }
  return out;
}

/** Wall time of `PARALLEL` create+starts at once (as the parallel warm setups run); removed untimed. */
async function parallelFloorTime(docker: Docker, image: string): Promise<number> {
  let containers: Docker.Container[] = [];
  try {
    return await time(async () => {
      containers = await Promise.all(
        Array.from({ length: PARALLEL }, (_, i) => createStart(docker, image, `wsp-bench-pfloor-${RUN}-${i}`)),
      );
    });
  } finally {
    // (On a failure, the containers that did start are removed by the run-label sweep of cleanup.)
    await Promise.all(containers.map((c) => c.remove({ force: true })));
  }
}

/** Wait (up to 120 s) until none of these providers' workspace containers are left (deletes answer 202 and finish behind). */
async function settled(wsps: TestProvider[]): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (const wsp of wsps) {
    while ((await wsp.provider.deps.backend.listResources()).length > 0) {
      if (Date.now() > deadline) throw new Error('workspaces still being deleted after 120 s');
      await new Promise((res) => setTimeout(res, 100));
    }
  }
}

/**
 * `devcontainer up` on a fresh temp folder per round, pointed at our daemon, on the cache image, with
 * no network and this run's label. Returns the times, or why it could not run (never a made-up number).
 */
async function devcontainerTimes(
  docker: Docker,
  image: string,
  root: string,
): Promise<{ times?: number[]; reason?: string }> {
  let bin: string;
  try {
    // Installs the CLI into npx's cache (not timed); the timed runs call its binary directly.
    const { stdout } = await run('npx', ['--yes', `--package=${DEVCONTAINER_CLI}`, '-c', 'command -v devcontainer'], {
      timeout: 300_000,
    });
    bin = stdout.trim().split('\n').pop() ?? '';
    if (!bin) return { reason: 'npx printed no devcontainer binary' };
  } catch (error) {
    return { reason: `npx ${DEVCONTAINER_CLI} failed: ${String((error as Error).message).split('\n')[0]}` };
  }
  const env = { ...process.env, DOCKER_HOST: `unix://${DOCKER_SOCKET}` };
  const times: number[] = [];
  try {
    for (let i = 0; i < fewRounds; i++) {
      const folder = fs.mkdtempSync(path.join(root, `dc-${RUN}-`));
      fs.mkdirSync(path.join(folder, '.devcontainer'));
      fs.writeFileSync(
        path.join(folder, '.devcontainer', 'devcontainer.json'),
        JSON.stringify(
          {
            image,
            runArgs: ['--network=none', '--label', `${RUN_LABEL}=${RUN}`],
            postCreateCommand: 'true',
          },
          null,
          2,
        ),
      );
      let stdout = '';
      const ms = await time(async () => {
        ({ stdout } = await run(bin, ['up', '--workspace-folder', folder], {
          env,
          timeout: 300_000,
          maxBuffer: 16 << 20,
        }));
      });
      const last = stdout.trim().split('\n').pop() ?? '';
      if (!last.includes('"outcome":"success"'))
        return { reason: `devcontainer up did not report success: ${last.slice(0, 200)}` };
      times.push(ms);
      await removeRunContainers(docker);
    }
  } catch (error) {
    return { reason: `devcontainer up failed: ${String((error as Error).message).split('\n')[0]}` };
  } finally {
    await removeRunContainers(docker).catch(() => undefined);
  }
  return { times };
}

/** Containers, then images, labelled with this bench provider's owner id (committed images inherit the label). */
async function sweepOwner(docker: Docker, owner: string): Promise<void> {
  const filters = JSON.stringify({ label: [`wsp.owner=${owner}`] });
  for (const c of await docker.listContainers({ all: true, filters }))
    await docker.getContainer(c.Id).remove({ force: true, v: true });
  for (const img of await docker.listImages({ filters })) {
    for (const tag of img.RepoTags ?? [])
      if (tag !== '<none>:<none>')
        await docker
          .getImage(tag)
          .remove()
          .catch(() => undefined);
    await docker
      .getImage(img.Id)
      .remove()
      .catch(() => undefined);
  }
}

/** Every container of this run (floor, devcontainer), and devcontainer's uid-update images of our folders. */
async function removeRunContainers(docker: Docker): Promise<void> {
  const list = await docker.listContainers({ all: true, filters: JSON.stringify({ label: [`${RUN_LABEL}=${RUN}`] }) });
  for (const c of list)
    await docker
      .getContainer(c.Id)
      .remove({ force: true, v: true })
      .catch(() => undefined);
  for (const img of await docker.listImages({ filters: JSON.stringify({ reference: [`vsc-dc-${RUN}-*`] }) })) {
    await docker
      .getImage(img.Id)
      .remove({ force: true })
      .catch(() => undefined);
  }
}

void main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
