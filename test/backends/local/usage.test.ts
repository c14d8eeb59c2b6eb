import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { rootUnavailable } from '../../support/root.js';
import { readCgroupUsage } from '../../../shared/backends/local/cgroup-usage.js';
import { usageOfUid } from '../../../shared/backends/local/proc-usage.js';
import { waitFor } from '../../support/wait.js';

// The local backend's two ways of measuring a workspace that the contract suite does not reach on this
// machine (cgroup v1, root): a cgroup v2 dir (plain files laid out as the kernel does), and the /proc
// scan of a host uid used as root without cgroups.

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-local-usage-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe('local usage sources', () => {
  it('cgroup v2: usage_usec, memory.current/max, pids.current/max ("max" is no limit)', async () => {
    const dir = path.join(scratch, 'ws');
    fs.mkdirSync(dir);
    const files = {
      'cpu.stat': 'usage_usec 1250000\nuser_usec 1000000\nsystem_usec 250000\n',
      'memory.current': '4096000\n',
      'memory.max': 'max\n',
      'pids.current': '3\n',
      'pids.max': '64\n',
    };
    for (const [f, c] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), c);
    expect(await readCgroupUsage({ version: 2, unified: dir })).toEqual({
      cpuSeconds: 1.25,
      memoryBytes: 4096000,
      memoryLimitBytes: null,
      pids: 3,
      pidsLimit: 64,
    });
    // A cgroup that is gone: nothing known, nothing guessed.
    expect(await readCgroupUsage({ version: 2, unified: path.join(scratch, 'gone') })).toEqual({
      cpuSeconds: null,
      memoryBytes: null,
      memoryLimitBytes: null,
      pids: null,
      pidsLimit: null,
    });
  });

  it.skipIf(rootUnavailable !== undefined)(
    'the /proc scan of a uid: its processes, their memory and CPU time; nothing of other uids',
    async () => {
      const uid = 1_900_000 + Math.floor(Math.random() * 50_000); // a uid nothing else runs as
      expect(await usageOfUid(uid)).toEqual({ cpuSeconds: 0, rssBytes: 0, tasks: 0 });
      // Two processes of the uid: a shell holding ~30 MB after hashing it (CPU), and a sleeper.
      const child = spawn(
        'setpriv',
        [
          `--reuid=${uid}`,
          `--regid=${uid}`,
          '--clear-groups',
          'sh',
          '-c',
          'sleep 300 & x=$(head -c 30000000 /dev/zero | tr "\\0" a); echo "$x" | md5sum > /dev/null; echo held; wait',
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      try {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
        });
        await waitFor('the holder', async () => (out.includes('held') ? true : undefined), 30_000);
        const busy = await usageOfUid(uid);
        expect(busy.tasks).toBeGreaterThanOrEqual(2);
        expect(busy.rssBytes).toBeGreaterThan(25_000_000);
        expect(busy.cpuSeconds).toBeGreaterThan(0);
      } finally {
        child.kill('SIGKILL');
        spawnSync('pkill', ['-KILL', '-U', String(uid)]);
      }
    },
  );
});
