import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { rootUnavailable } from '../../support/root.js';
import { parseRunnerUsage } from '../../../shared/backends/runner/usage.js';

// runner.sh `usage` over cgroup trees laid out like a container's (this machine has cgroup v1 only, so
// v2 and a combined cpu,cpuacct mount are plain files here; the real v1 tree is read in a container by
// the ecs contract suite), parsed as the Fargate backend parses it. Root: each run gets an empty /tmp
// of its own (a mount namespace), as a task has — du of the host's /tmp would take the test's time.

const RUNNER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../shared/backends/runner/runner.sh');
// Outside /tmp, which each run replaces.
const scratch = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'wsp-runner-usage-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));
// The runner too: a checkout under /tmp (a CI clone) would be hidden by the run's own /tmp.
const runner = path.join(scratch, 'runner.sh');
fs.copyFileSync(RUNNER, runner);

function tree(name: string, files: Record<string, string>): string {
  const root = path.join(scratch, name);
  for (const [rel, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), content);
  }
  return root;
}

function usage(cgroupRoot: string, home: string): string {
  return execFileSync(
    'unshare',
    ['--mount', 'sh', '-c', 'mount -t tmpfs wsp-tmp /tmp && exec sh "$@"', 'sh', runner, 'usage', home],
    { encoding: 'utf8', env: { ...process.env, WSP_CGROUP_ROOT: cgroupRoot } },
  );
}

const home = path.join(scratch, 'home');
fs.mkdirSync(home);
fs.writeFileSync(path.join(home, 'data'), Buffer.alloc(300_000, 1));

describe.skipIf(rootUnavailable !== undefined)('runner.sh usage', () => {
  it('cgroup v2: cpu.stat usage_usec, memory.current/max, pids.current/max ("max": no limit), du of the home', () => {
    const root = tree('v2', {
      'cgroup.controllers': 'cpu memory pids\n',
      'cpu.stat': 'usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n',
      'memory.current': '73400320\n',
      'memory.max': '536870912\n',
      'pids.current': '7\n',
      'pids.max': 'max\n',
    });
    const out = usage(root, home);
    const parsed = parseRunnerUsage(out);
    expect(parsed).toMatchObject({
      source: 'task cgroup v2',
      cpu: { usageSeconds: 2.5 },
      memory: { currentBytes: 73400320, limitBytes: 536870912 },
      pids: { current: 7, limit: null },
    });
    // The home and an empty /tmp: the 300 kB written (in blocks), little else.
    expect(parsed.disk.usedBytes).toBeGreaterThanOrEqual(300_000);
    expect(parsed.disk.usedBytes).toBeLessThan(400_000);
  });

  it('cgroup v1 with cpu,cpuacct in one mount; v1 "unlimited" memory is no limit; unreadable figures are left out', () => {
    const root = tree('v1', {
      'cpu,cpuacct/cpuacct.usage': '1500000000\n',
      'memory/memory.usage_in_bytes': '1048576\n',
      'memory/memory.limit_in_bytes': '9223372036854771712\n',
      'pids/pids.current': 'garbage\n',
    });
    const parsed = parseRunnerUsage(usage(root, home));
    expect(parsed).toMatchObject({
      source: 'task cgroup v1',
      cpu: { usageSeconds: 1.5 },
      memory: { currentBytes: 1048576, limitBytes: null },
      pids: { current: null, limit: null },
    });
  });

  it('refuses a relative home', () => {
    expect(() => execFileSync('sh', [RUNNER, 'usage', 'home'], { stdio: 'pipe' })).toThrow();
  });
});
