import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BackendRef } from '../../../shared/contract/workspace.js';
import { processesOfUid } from '../../../shared/backends/local/procs.js';
import { newId, useBackendFixture, type BackendHandle } from '../../support/backend-fixture.js';
import { makeLocalBackend } from './handle.js';

/**
 * Invariant 2 (isolation) for the local backend: from inside workspace A nothing of workspace B,
 * of the provider's data dir or of the host's system dirs can be read or changed.
 */
describe('local backend isolation', () => {
  const fx = useBackendFixture(() => makeLocalBackend());
  const dataDir = (): string => (fx.handle as BackendHandle & { dataDir: string }).dataDir;
  const wsDir = (ref: BackendRef): string => path.join(dataDir(), 'local', 'workspaces', String(ref.workspaceId));
  const hostUid = (ref: BackendRef): number =>
    JSON.parse(fs.readFileSync(path.join(wsDir(ref), 'meta.json'), 'utf8')).hostUid;

  /** Two workspaces; B holds a canary in a file, in its /tmp and in a running process's env. */
  async function twoWorkspaces(): Promise<{ a: BackendRef; b: BackendRef; canary: string; bPid: number }> {
    const canary = newId('iso-canary');
    const a = await fx.create();
    const b = await fx.create();
    const put = await fx.sh(b, 'printf "%s\\n" "$1" > "$HOME/$1.txt" && printf "%s\\n" "$1" > /tmp/secret', [canary]);
    expect(put.status.exitCode).toBe(0);
    await fx.start(b, ['sleep', '300'], { env: { B_SECRET: canary } });
    // The sandbox takes a moment to exec the command; look until B's `sleep` shows up.
    let bPid: number | undefined;
    for (let i = 0; i < 500 && bPid === undefined; i++) {
      for (const pid of await processesOfUid(hostUid(b))) {
        if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep') bPid = pid;
      }
      if (bPid === undefined) await new Promise((r) => setTimeout(r, 20));
    }
    expect(bPid).toBeDefined();
    return { a, b, canary, bPid: bPid! };
  }

  it("cannot list, read or find workspace B's files by B's host path or any path", async () => {
    const { a, b, canary } = await twoWorkspaces();
    const bHome = path.join(wsDir(b), 'home');
    const direct = await fx.sh(a, 'ls "$1"; cat "$1/$2.txt"; ls "$3"', [bHome, canary, path.dirname(bHome)]);
    expect(direct.status.exitCode).not.toBe(0);
    expect(direct.stdout).not.toContain(canary);
    // Whole visible file system: by name, and by content outside the big read-only system dirs.
    const search = await fx.sh(
      a,
      [
        'find / -path /proc -prune -o -path /sys -prune -o -name "*$1*" -print 2>/dev/null',
        'grep -rl -- "$1" /home /tmp /run /root /var /opt /srv /mnt 2>/dev/null',
        'true',
      ].join('; '),
      [canary],
    );
    expect(search.stdout).toBe('');
  });

  it("cannot read the provider's data dir (state, mirrors, token file)", async () => {
    const canary = newId('data-canary');
    for (const rel of ['state/table.db', 'mirrors/repo.git/config', 'auth-token']) {
      fs.mkdirSync(path.join(dataDir(), path.dirname(rel)), { recursive: true });
      fs.writeFileSync(path.join(dataDir(), rel), `${canary}\n`, { mode: 0o600 });
    }
    const a = await fx.create();
    const r = await fx.sh(
      a,
      'ls "$1"; cat "$1/auth-token" "$1/state/table.db" "$1/mirrors/repo.git/config"; ls "$1/local"',
      [dataDir()],
    );
    expect(r.status.exitCode).not.toBe(0);
    expect(r.stdout).not.toContain(canary);
    expect(r.stderr).toMatch(/No such file or directory/);
  });

  it("cannot see B's process environment, root or cwd, nor signal it", async () => {
    const { a, b, canary, bPid } = await twoWorkspaces();
    const r = await fx.sh(
      a,
      'cat "/proc/$1/environ"; ls "/proc/$1/root/"; ls "/proc/$1/cwd/"; kill -9 "$1"; echo done',
      [String(bPid)],
    );
    expect(r.stdout).not.toContain(canary);
    expect(r.stdout).toBe('done\n');
    // As root each workspace has a pid namespace of its own: B's host pid does not even exist in A's
    // (without it, the kernel's uid checks refuse instead).
    expect(r.stderr).toMatch(/Permission denied|No such file or directory/);
    expect(r.stderr).toMatch(/not permitted|No such process/i);
    expect(await processesOfUid(hostUid(b))).toContain(bPid);
    // Nor the provider's own environment.
    const p = await fx.sh(a, 'cat "/proc/$1/environ" | tr "\\0" "\\n" | grep -c . || true', [String(process.pid)]);
    expect(p.stdout.trim()).toBe('0');
  });

  it('cannot write to the system dirs', async () => {
    const a = await fx.create();
    for (const target of ['/usr/wsp-probe', '/etc/wsp-probe', '/bin/wsp-probe']) {
      const r = await fx.sh(a, 'echo x > "$1"', [target]);
      expect(r.status.exitCode).not.toBe(0);
      expect(fs.existsSync(target)).toBe(false);
    }
  });

  it("has no network interface but lo when the plan's network is 'none'", async () => {
    const plan = { ...fx.plan, network: 'none' as const };
    const a = await fx.create({ plan });
    const r = await fx.run(a, ['cat', '/proc/net/dev'], {}, plan);
    const interfaces = r.stdout
      .split('\n')
      .slice(2)
      .filter(Boolean)
      .map((l) => l.split(':')[0]!.trim());
    expect(interfaces).toEqual(['lo']);
    // The default policy is 'none' too; only the explicit opt-in 'host' shows the host's interfaces.
    const byDefault = await fx.run(await fx.create(), ['cat', '/proc/net/dev']);
    expect(
      byDefault.stdout
        .split('\n')
        .slice(2)
        .filter(Boolean)
        .map((l) => l.split(':')[0]!.trim()),
    ).toEqual(['lo']);
    const hostPlan = { ...fx.plan, network: 'host' as const };
    const open = await fx.run(await fx.create({ plan: hostPlan }), ['cat', '/proc/net/dev'], {}, hostPlan);
    const count = (text: string): number => text.split('\n').slice(2).filter(Boolean).length;
    expect(count(open.stdout)).toBe(count(fs.readFileSync('/proc/net/dev', 'utf8')));
  });
});
