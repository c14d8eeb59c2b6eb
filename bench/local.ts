/**
 * `npm run bench` — local backend, side by side in one run, reported as times and ratios (never
 * asserted): cold setup, warm setup, warm setup after 5 new upstream commits, command round trip
 * through the API vs a raw bwrap spawn, reset of a small change in a big tree vs in a small tree;
 * then the steps of a warm setup on the backend alone (create from the cache snapshot, baseline
 * snapshot linked vs copied, fingerprint on the host vs inside); then, per home size (2,000 and
 * 50,000 files), create from a cache snapshot, baseline of it and reset of a small change, to show
 * whether they grow with the home (issue 12: copy-on-write homes); and a lockfile bump, restored from
 * the older cache entry vs from nothing (restore keys). The home mode in use (overlay or
 * the copy fallback) is in the report; `WSP_LOCAL_OVERLAY=off` forces the fallback.
 * Writes bench/results/local.md and local.json. `BENCH_SHORT=1` does fewer rounds (CI).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLocalBackend } from '../shared/backends/local/index.js';
import type { WorkspaceBackend } from '../shared/contract/backend.js';
import type { WorkspacePlan } from '../shared/contract/plan.js';
import type { BackendRef, SnapshotRef } from '../shared/contract/workspace.js';
import { fingerprintArgv, parseFingerprint } from '../shared/workspace/fingerprint.js';
import { planFor } from '../test/support/backend-fixture.js';
import { commitFiles, createUpstreamRepo } from '../test/support/git-fixtures.js';
import { startGitServer } from '../test/support/git-server.js';
import { startTestProvider } from '../test/support/provider-fixture.js';
import { lockfileBump } from './lockfile.js';
import { type Row, median, time } from './timing.js';

const short = process.env.BENCH_SHORT === '1';
const rounds = short ? 3 : 10;
const TOKEN = 'bench-token-0123456789';
/** How often a setup is looked at (as bench/docker.ts): the measured time carries at most this much of polling. */
const POLL_MS = 10;

async function main(): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-bench-'));
  fs.chmodSync(root, 0o711); // workspace uids traverse to their dirs under the data dir
  process.env.WSP_BENCH_TOKEN = TOKEN;
  const git = await startGitServer({ token: TOKEN, root: path.join(root, 'git') });
  // A repository of ~2,000 files (~8 MB) so snapshot and reset costs are visible.
  const files: Record<string, string> = {};
  for (let i = 0; i < 2000; i++) files[`src/m${Math.floor(i / 100)}/f${i}.txt`] = `${i}\n`.repeat(1000);
  const app = createUpstreamRepo(git.root, 'app', files);
  const wsp = await startTestProvider(
    {
      repositories: [{ url: git.url('app'), path: 'app', credential: 'env:WSP_BENCH_TOKEN' }],
      setup: { script: 'mkdir -p ~/.cache/deps && head -c 2000000 /dev/urandom > ~/.cache/deps/blob' },
      workspace: { network: 'none' },
    },
    { dataDir: path.join(root, 'data'), pollMs: POLL_MS },
  );
  const rows: Row[] = [];
  try {
    const cold = await time(() => wsp.setup());
    rows.push({ name: 'cold setup (clone 2,000 files + setup)', ms: cold });
    const warmTimes: number[] = [];
    const ids: string[] = [];
    for (let i = 0; i < rounds; i++) warmTimes.push(await time(async () => ids.push((await wsp.setup()).id)));
    const warm = median(warmTimes);
    rows.push({ name: 'warm setup (cache hit, same commit)', ms: warm });
    for (let i = 0; i < 5; i++) commitFiles(app, { [`src/new${i}.txt`]: `new ${i}\n` }, `c${i}`);
    const warmFetch = await time(async () => ids.push((await wsp.setup()).id));
    rows.push({ name: 'warm setup after 5 new upstream commits', ms: warmFetch });

    const id = ids[0]!;
    const rtt: number[] = [];
    // argv `true`, as the floor runs it (a command string would add a bash start to one side only).
    const runTrue = async () => {
      const r = await wsp.api('POST', `/workspaces/${id}/commands`, { argv: ['true'], waitMs: 20_000 });
      if (r.status >= 400 || r.body.exitCode !== 0) throw new Error(`argv true: ${r.status} ${r.text}`);
    };
    await runTrue();
    for (let i = 0; i < rounds * 3; i++) rtt.push(await time(runTrue));
    const apiRtt = median(rtt);
    rows.push({ name: 'command round trip through the API (argv `true`)', ms: apiRtt });
    const raw: number[] = [];
    for (let i = 0; i < rounds * 3; i++) {
      const t = performance.now();
      spawnSync('bwrap', ['--ro-bind', '/', '/', '--unshare-user', '--', 'true']);
      raw.push(performance.now() - t);
    }
    const rawRtt = median(raw);
    rows.push({ name: 'raw bwrap spawn of `true` (floor)', ms: rawRtt });

    const resetSmall: number[] = [];
    for (let i = 0; i < rounds; i++) {
      await wsp.exec(id, 'echo change >> app/src/m0/f0.txt; echo new > app/new-file');
      resetSmall.push(await time(() => wsp.api('POST', `/workspaces/${id}/reset`, {})));
    }
    rows.push({ name: 'reset after a 2-file change (8 MB tree)', ms: median(resetSmall) });
    const resetBig: number[] = [];
    for (let i = 0; i < Math.max(2, Math.floor(rounds / 2)); i++) {
      await wsp.exec(id, 'for f in app/src/m*/f*.txt; do echo x >> "$f"; done');
      resetBig.push(await time(() => wsp.api('POST', `/workspaces/${id}/reset`, {})));
    }
    rows.push({ name: 'reset after changing all 2,000 files', ms: median(resetBig) });

    const steps = await backendSteps(path.join(root, 'steps'), files);
    rows.push(...steps);
    const lockBump = await lockfileBump({
      git,
      start: (config, restore) =>
        startTestProvider(config, { dataDir: path.join(root, 'restore', restore ? 'on' : 'off'), pollMs: POLL_MS }),
    });
    rows.push(...lockBump.rows);
    const bigFiles = short ? 20_000 : 50_000;
    const warmSmallHome = await warmSetupOfHome(path.join(root, 'warm-2k'), git, 2_000);
    const warmBigHome = await warmSetupOfHome(path.join(root, 'warm-big'), git, bigFiles);
    rows.push(warmSmallHome.row, warmBigHome.row);
    const small = await homeSizeSteps(path.join(root, 'size-2k'), 2_000);
    const big = await homeSizeSteps(path.join(root, 'size-50k'), 50_000);
    rows.push(...small.rows, ...big.rows);
    const stepMs = (prefix: string): number => steps.find((r) => r.name.startsWith(prefix))!.ms ?? NaN;

    const ratios = {
      warmVsCold: warm / cold,
      apiRoundTripVsRawSpawn: apiRtt / rawRtt,
      resetAllVsResetSmall: median(resetBig) / median(resetSmall),
      linkedVsCopiedSnapshot:
        stepMs('backend: baseline snapshot of a warm-created') / stepMs('backend: cache snapshot'),
      hostVsInsideFingerprint: stepMs('backend: fingerprintHome') / stepMs('backend: fingerprint script'),
      warmVsSpawn: warm / rawRtt,
      resetSmallVsSpawn: median(resetSmall) / rawRtt,
      warmBigVsWarmSmall: warmBigHome.ms / warmSmallHome.ms,
      create50kVs2k: big.create / small.create,
      createAndBaseline50kVs2k: (big.create + big.baseline) / (small.create + small.baseline),
      reset50kVs2k: big.reset / small.reset,
      lockBumpRestoredVsCold: lockBump.restored / lockBump.cold,
    };
    const mode = small.mode;
    const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, node ${process.version}`;
    const md = [
      `## Local backend — ${new Date().toISOString().slice(0, 10)}${short ? ' (short run)' : ''}`,
      '',
      `Machine: ${machine}. Median of ${rounds} rounds where repeated. Homes: ${mode}. Setups are polled every ${POLL_MS} ms.`,
      '',
      '| step | ms |',
      '|---|---:|',
      ...rows.map((r) => `| ${r.name} | ${r.ms === null ? '—' : r.ms.toFixed(0)} |`),
      '',
      '| ratio | value |',
      '|---|---:|',
      `| warm setup / cold setup | ${ratios.warmVsCold.toFixed(2)} |`,
      `| API command round trip / raw bwrap spawn (goal ≤ 3) | ${ratios.apiRoundTripVsRawSpawn.toFixed(2)} |`,
      `| reset (all files changed) / reset (2 files changed) | ${ratios.resetAllVsResetSmall.toFixed(2)} |`,
      `| warm baseline snapshot (linked) / cache snapshot (full copy) | ${ratios.linkedVsCopiedSnapshot.toFixed(2)} |`,
      `| fingerprint on the host / fingerprint script inside | ${ratios.hostVsInsideFingerprint.toFixed(2)} |`,
      `| warm setup / raw bwrap spawn (goal ≤ 30) | ${ratios.warmVsSpawn.toFixed(1)} |`,
      `| reset of a 2-file change / raw bwrap spawn (goal ≤ 20) | ${ratios.resetSmallVsSpawn.toFixed(1)} |`,
      `| warm setup, ${bigFiles.toLocaleString('en')}-file home / 2,000-file home (goal ≤ 1.5) | ${ratios.warmBigVsWarmSmall.toFixed(2)} |`,
      `| backend create from cache, 50k-file home / 2k-file home (goal ≤ 1.5) | ${ratios.create50kVs2k.toFixed(2)} |`,
      `| backend create + baseline, 50k / 2k | ${ratios.createAndBaseline50kVs2k.toFixed(2)} |`,
      `| backend reset of a 2-file change, 50k / 2k | ${ratios.reset50kVs2k.toFixed(2)} |`,
      `| setup after a lockfile bump: restored from the older entry / from nothing (goal ≤ 0.5) | ${ratios.lockBumpRestoredVsCold.toFixed(2)} |`,
      '',
    ].join('\n');
    process.stdout.write(`${md}\n`);
    fs.writeFileSync(path.join(import.meta.dirname, 'results', 'local.md'), md);
    fs.writeFileSync(
      path.join(import.meta.dirname, 'results', 'local.json'),
      `${JSON.stringify({ date: new Date().toISOString(), machine, short, mode, rows, ratios }, null, 2)}\n`,
    );
    for (const w of ids) await wsp.api('DELETE', `/workspaces/${w}`);
  } finally {
    await wsp.close();
    await git.close();
    execFileSync('rm', ['-rf', root]);
  }
}

/**
 * The steps of a warm setup on the backend alone, on a home like the one above (the 2,000 files
 * plus a 2 MB blob). Per round: a fresh workspace holding it, its cache snapshot (its first
 * snapshot: a full copy) and right after that its baseline (links from the cache snapshot, as a
 * cold start's does); then a workspace created from the cache snapshot, two files changed (as a
 * fetch + checkout would), its baseline (links), and its fingerprint both ways.
 */
async function backendSteps(dir: string, files: Record<string, string>): Promise<Row[]> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
  const content = path.join(dir, 'content');
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(content, 'app', rel)), { recursive: true });
    fs.writeFileSync(path.join(content, 'app', rel), text);
  }
  fs.mkdirSync(path.join(content, '.cache', 'deps'), { recursive: true });
  fs.writeFileSync(path.join(content, '.cache', 'deps', 'blob'), randomBytes(2_000_000));
  const backend = await createLocalBackend({ dataDir: path.join(dir, 'data'), owner: 'bench' });
  const plan = planFor({ workspace: { network: 'none' } });
  const t: Record<'full' | 'coldBase' | 'create' | 'warmBase' | 'inside' | 'host', number[]> = {
    full: [],
    coldBase: [],
    create: [],
    warmBase: [],
    inside: [],
    host: [],
  };
  for (let i = 0; i < rounds; i++) {
    const source = await backend.create(plan, { workspaceId: `bench-src-${i}`, labels: {} });
    await backend.open(source, plan).files.putDirectory(content, plan.home);
    let ref: BackendRef | undefined;
    try {
      let cache: SnapshotRef | undefined;
      t.full.push(
        await time(async () => (cache = await backend.open(source, plan).snapshots.take('cache', `bench-cache-${i}`))),
      );
      t.coldBase.push(await time(() => backend.open(source, plan).snapshots.take('baseline', `bench-cold-${i}`)));
      t.create.push(
        await time(
          async () => (ref = await backend.create(plan, { workspaceId: `bench-${i}`, labels: {}, from: cache! })),
        ),
      );
      await runInside(backend, ref!, plan, ['sh', '-c', 'echo moved >> app/src/m0/f0.txt && echo new > app/new.txt']);
      t.warmBase.push(await time(() => backend.open(ref!, plan).snapshots.take('baseline', `bench-base-${i}`)));
      let a = '';
      t.inside.push(
        await time(
          async () => (a = parseFingerprint(await runInside(backend, ref!, plan, fingerprintArgv(plan.home))).digest),
        ),
      );
      // (A build without fingerprintHome — the code before it — reports NaN for that row.)
      const { files } = backend.open(ref!, plan);
      if (files.fingerprintHome) {
        let b = '';
        t.host.push(await time(async () => (b = await files.fingerprintHome!())));
        if (a !== b) throw new Error('the two fingerprints disagree');
      } else t.host.push(Number.NaN);
      for (const name of [`bench-cache-${i}`, `bench-cold-${i}`, `bench-base-${i}`])
        await backend.snapshots.delete({ kind: 'local', name });
    } finally {
      if (ref) await backend.destroy(ref);
      await backend.destroy(source);
    }
  }
  return [
    { name: 'backend: cache snapshot (a first snapshot: full fd-relative copy)', ms: median(t.full) },
    { name: 'backend: cold baseline right after the cache snapshot (links from it)', ms: median(t.coldBase) },
    {
      name: 'backend: create from the cache snapshot (overlay mount, or the fallback: root tar -c into a tar -x as the uid; + origin record)',
      ms: median(t.create),
    },
    { name: 'backend: baseline snapshot of a warm-created workspace (links unchanged files)', ms: median(t.warmBase) },
    { name: 'backend: fingerprint script inside the workspace', ms: median(t.inside) },
    { name: 'backend: fingerprintHome on the host', ms: median(t.host) },
  ];
}

/**
 * Warm setup through the API of a workspace whose setup leaves `n` small files in the home (100 per
 * directory: a generated stand-in for node_modules, no network): one cold setup keeps the entry, then
 * the median of the warm setups (cache hit, same commit). Flat in home size is the goal.
 */
async function warmSetupOfHome(
  dir: string,
  git: Awaited<ReturnType<typeof startGitServer>>,
  n: number,
): Promise<{ row: Row; ms: number }> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
  const name = `home-${n}`;
  createUpstreamRepo(git.root, name, { 'package.json': '{}\n' });
  const dirs = Math.ceil(n / 100);
  const script = `for d in $(seq 1 ${dirs}); do mkdir -p ~/node_modules/p$d; for f in $(seq 1 100); do echo "module.exports = $d$f" > ~/node_modules/p$d/f$f.js; done; done`;
  const wsp = await startTestProvider(
    {
      repositories: [{ url: git.url(name), path: 'app', credential: 'env:WSP_BENCH_TOKEN' }],
      setup: { script },
      workspace: { network: 'none' },
    },
    { dataDir: path.join(dir, 'data'), pollMs: POLL_MS },
  );
  try {
    await wsp.setup(); // cold: keeps the entry
    const times: number[] = [];
    for (let i = 0; i < rounds; i++) {
      let view: Awaited<ReturnType<typeof wsp.setup>> | undefined;
      times.push(
        await time(async () => {
          view = await wsp.setup();
        }),
      );
      if (view?.cache?.hit !== true) throw new Error(`warm setup of the ${n}-file home missed the cache`);
      await wsp.api('DELETE', `/workspaces/${view.id}`);
    }
    const ms = median(times);
    return { row: { name: `warm setup, a home of ${n.toLocaleString('en')} files (setup-generated)`, ms }, ms };
  } finally {
    await wsp.close();
  }
}

/**
 * A home of `n` small files (100 per directory): its cache snapshot, then per round a workspace
 * created from it, a 2-file change, its baseline, another 2-file change and a reset to the baseline.
 */
async function homeSizeSteps(
  dir: string,
  n: number,
): Promise<{ rows: Row[]; create: number; baseline: number; reset: number; mode: string }> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
  const content = path.join(dir, 'content');
  for (let i = 0; i < n; i++) {
    const d = path.join(content, 'app', `d${Math.floor(i / 100)}`);
    if (i % 100 === 0) fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, `f${i}.txt`), `${i}\n`);
  }
  const backend = await createLocalBackend({ dataDir: path.join(dir, 'data'), owner: 'bench' });
  const mode = backend.warnings.some((w) => w.startsWith('copy-on-write homes unavailable'))
    ? 'copied (fallback)'
    : 'copy-on-write (overlay)';
  const plan = planFor({ workspace: { network: 'none' } });
  const source = await backend.create(plan, { workspaceId: `size-src-${n}`, labels: {} });
  const t = { create: [] as number[], baseline: [] as number[], reset: [] as number[] };
  try {
    await backend.open(source, plan).files.putDirectory(content, plan.home);
    const cache = await backend.open(source, plan).snapshots.take('cache', `size-cache-${n}`);
    const sizeRounds = Math.min(rounds, 5);
    for (let i = 0; i < sizeRounds; i++) {
      let ref: BackendRef | undefined;
      try {
        t.create.push(
          await time(
            async () => (ref = await backend.create(plan, { workspaceId: `size-${n}-${i}`, labels: {}, from: cache })),
          ),
        );
        await runInside(backend, ref!, plan, ['sh', '-c', 'echo moved >> app/d0/f0.txt && echo new > app/new.txt']);
        let base: SnapshotRef | undefined;
        t.baseline.push(
          await time(
            async () => (base = await backend.open(ref!, plan).snapshots.take('baseline', `size-base-${n}-${i}`)),
          ),
        );
        await runInside(backend, ref!, plan, ['sh', '-c', 'echo again >> app/d0/f1.txt && echo x > app/junk.txt']);
        t.reset.push(await time(() => backend.open(ref!, plan).snapshots.restore(base!)));
      } finally {
        if (ref) await backend.destroy(ref);
        await backend.snapshots.delete({ kind: 'local', name: `size-base-${n}-${i}` });
      }
    }
    await backend.snapshots.delete(cache);
  } finally {
    await backend.destroy(source);
  }
  const label = n.toLocaleString('en-US');
  const create = median(t.create);
  const baseline = median(t.baseline);
  const reset = median(t.reset);
  return {
    mode,
    create,
    baseline,
    reset,
    rows: [
      { name: `backend, ${label}-file home: create from the cache snapshot`, ms: create },
      { name: `backend, ${label}-file home: baseline snapshot after a 2-file change`, ms: baseline },
      { name: `backend, ${label}-file home: reset of a 2-file change`, ms: reset },
    ],
  };
}

/** Run argv in the workspace, wait, return stdout; throws on a non-zero exit. */
async function runInside(
  backend: WorkspaceBackend,
  ref: BackendRef,
  plan: WorkspacePlan,
  argv: string[],
): Promise<string> {
  const commandId = `bench-${randomBytes(6).toString('hex')}`;
  await backend.open(ref, plan).commands.start({
    commandId,
    argv,
    cwd: plan.home,
    env: {},
    timeoutMs: 600_000,
    maxOutputBytes: 1 << 20,
  });
  let status = await backend.open(ref, plan).commands.wait(commandId, 60_000);
  while (status.state === 'running') status = await backend.open(ref, plan).commands.wait(commandId, 60_000);
  if (status.state !== 'exited' || status.exitCode !== 0)
    throw new Error(`${argv[0]} failed in the bench workspace (${status.state} ${status.exitCode})`);
  return (await backend.open(ref, plan).commands.read(commandId, 'stdout', 0, 1 << 20)).data.toString('utf8');
}

void main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
