/**
 * The lockfile bump (issue 12, restore keys), one measurement for every backend's bench: a lockfile
 * bump misses the cache. The setup is an incremental install — each dependency in deps.lock costs
 * ~150 ms (a package's download and unpack: npm takes that order per package) and unpacks 100 files,
 * once — so from the older entry's home only the new dependency is installed. Setup after the bump,
 * restored (cache.restore on, the entry of the previous lockfile present) vs from nothing
 * (cache.restore off), same commit. The restored setup's fixed cost (create, fetch, keeping the
 * entry, baseline, fingerprint) is what the ratio weighs against the install; with ~40 ms per
 * dependency it varied 0.35–0.93 between runs of the local bench.
 */
import type { ConfigInput } from '../shared/config/schema.js';
import { commitFiles, createUpstreamRepo } from '../test/support/git-fixtures.js';
import type { GitServer } from '../test/support/git-server.js';
import type { TestProvider } from '../test/support/provider-fixture.js';
import { type Row, time } from './timing.js';

/** Dependencies in the lockfile before the bump (one more after it). */
const LOCK_DEPS = 40;

const lockfile = (n: number): string => `${Array.from({ length: n }, (_, i) => `dep${i}`).join('\n')}\n`;

/** The setup script: installs each dependency of app/deps.lock not installed yet (~150 ms and 100 files each). */
const INSTALL = [
  'cd ~/workspace/app && mkdir -p ~/deps && while read -r d; do',
  '  [ -e ~/deps/"$d" ] && continue; sleep 0.15; mkdir -p ~/deps/"$d".tmp',
  '  for i in $(seq 100); do echo "$d $i" > ~/deps/"$d".tmp/f$i.js; done; mv ~/deps/"$d".tmp ~/deps/"$d"',
  'done < deps.lock',
].join('\n');

export interface LockfileBumpOptions {
  git: GitServer;
  /** Name of the upstream repository created on `git` (one per bench run). */
  repo?: string;
  /**
   * Start a provider on `config` (the backend's own settings merged in by the caller); `restore` says
   * which of the two it is. The providers are closed here when the measurement ends.
   */
  start: (config: ConfigInput, restore: boolean) => Promise<TestProvider>;
  /** One setup, until ready (default: the fixture's `setup()`). */
  setup?: (wsp: TestProvider) => Promise<{ cache?: { restoredFrom?: string } }>;
}

/** Cold setup of 40 dependencies (seeds the entry), bump to 41, then restored vs from nothing; one run each. */
export async function lockfileBump(o: LockfileBumpOptions): Promise<{ rows: Row[]; restored: number; cold: number }> {
  const name = o.repo ?? 'deps-app';
  const setup = o.setup ?? ((wsp: TestProvider) => wsp.setup());
  const repo = createUpstreamRepo(o.git.root, name, { 'deps.lock': lockfile(LOCK_DEPS) });
  const config = (restore: boolean): ConfigInput => ({
    repositories: [
      { url: o.git.url(name), path: 'app', credential: 'env:WSP_BENCH_TOKEN', cacheKeyFiles: ['deps.lock'] },
    ],
    setup: { script: INSTALL },
    workspace: { network: 'none' },
    cache: { restore },
  });
  const started: TestProvider[] = [];
  try {
    const withRestore = await o.start(config(true), true);
    started.push(withRestore);
    const without = await o.start(config(false), false);
    started.push(without);
    const seeded = await time(() => setup(withRestore));
    commitFiles(repo, { 'deps.lock': lockfile(LOCK_DEPS + 1) }, 'one more dependency');
    let restoredFrom: string | undefined;
    const restored = await time(async () => {
      restoredFrom = (await setup(withRestore)).cache?.restoredFrom;
    });
    if (!restoredFrom) throw new Error('the setup after the bump did not restore from the older entry');
    const cold = await time(() => setup(without));
    return {
      restored,
      cold,
      rows: [
        { name: `lockfile bump: cold setup of ${LOCK_DEPS} dependencies (seeds the entry)`, ms: seeded },
        {
          name: `lockfile bump: setup of ${LOCK_DEPS + 1}, restored from the ${LOCK_DEPS}-dependency entry`,
          ms: restored,
        },
        { name: `lockfile bump: setup of ${LOCK_DEPS + 1} from nothing (cache.restore off)`, ms: cold },
      ],
    };
  } finally {
    for (const wsp of started) await wsp.close();
  }
}
