import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { WorkspaceBackend, WorkspaceHandle } from '../../../shared/contract/backend.js';
import type { WorkspacePlan } from '../../../shared/contract/plan.js';
import type { BackendRef } from '../../../shared/contract/workspace.js';
import { hostFingerprint } from '../../../shared/backends/local/tree/index.js';
import { mountsOverlapHome } from '../../../shared/backends/local/sandbox.js';
import type { ServiceDeps } from '../../../shared/service/deps.js';
import { Provisioner } from '../../../shared/service/provisioner.js';
import type { RepoSync } from '../../../shared/service/repo-sync.js';
import type { WorkspaceRecords } from '../../../shared/service/records.js';
import { fingerprintArgv, parseFingerprint } from '../../../shared/workspace/fingerprint.js';
import { newId, planFor, useBackendFixture, type BackendHandle } from '../../support/backend-fixture.js';
import { makeLocalBackend } from './handle.js';

// fingerprintHome on the local backend: the host computes the digest the in-workspace script
// prints (the agreement on every kind of entry is in the contract suite, contract.ts).

describe('local backend: fingerprintHome', () => {
  const fx = useBackendFixture(() => makeLocalBackend());
  const dataDir = (): string => (fx.handle as BackendHandle & { dataDir: string }).dataDir;
  const hostHome = (ref: BackendRef): string =>
    path.join(dataDir(), 'local', 'workspaces', String(ref.workspaceId), 'home');

  async function inside(ref: BackendRef, plan = fx.plan): Promise<string> {
    const r = await fx.run(ref, fingerprintArgv(plan.home), { cwd: plan.home }, plan);
    expect(r.status, r.stderr).toMatchObject({ state: 'exited', exitCode: 0 });
    return parseFingerprint(r.stdout).digest;
  }

  it('is the host fingerprint of the home directory', async () => {
    const ref = await fx.create();
    expect((await fx.sh(ref, 'mkdir -p a/b && echo x > a/b/f && ln -s a link')).status.exitCode).toBe(0);
    const digest = await fx.backend.open(ref, fx.plan).files.fingerprintHome!();
    expect(digest).toBe(await hostFingerprint(hostHome(ref)));
    expect(digest).toBe(await inside(ref));
  });

  it('runs the script inside when another mount lies in the home (here the transfer dir), and agrees with it', async () => {
    const plan = planFor({ workspace: { home: '/run', guestPath: '/run/workspace' } });
    expect(mountsOverlapHome(plan)).toBe(true);
    const ref = await fx.create({ plan });
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-fp-transfer-')), 'bundle');
    try {
      fs.writeFileSync(file, 'bundle bytes');
      await fx.backend.open(ref, plan).files.putTransferFile('repo.bundle', file);
      const digest = await fx.backend.open(ref, plan).files.fingerprintHome!();
      expect(digest).toBe(await inside(ref, plan));
      // The host directory alone lacks the transfer file the workspace sees under /run/wsp.
      expect(await hostFingerprint(hostHome(ref))).not.toBe(digest);
    } finally {
      fs.rmSync(path.dirname(file), { recursive: true, force: true });
    }
  });

  it('unknown workspace → not_found', async () => {
    await expect(
      fx.backend.open({ kind: 'local', workspaceId: 'ws-never-made', dir: '/x' }, fx.plan).files.fingerprintHome!(),
    ).rejects.toMatchObject({ code: 'not_found' });
  });

  it('works without a sandbox too (where the script would look at the guest path on the host)', async () => {
    const handle = await makeLocalBackend({ bwrapPath: null });
    try {
      const ref = await handle.backend.create(fx.plan, { workspaceId: newId('ws'), labels: {} });
      const home = path.join(handle.dataDir, 'local', 'workspaces', String(ref.workspaceId), 'home');
      fs.writeFileSync(path.join(home, 'f'), 'x');
      fs.chownSync(path.join(home, 'f'), fs.statSync(home).uid, fs.statSync(home).gid); // the workspace user's, as its files are
      expect(await handle.backend.open(ref, fx.plan).files.fingerprintHome!()).toBe(await hostFingerprint(home));
    } finally {
      await handle.cleanup();
    }
  });

  it('mountsOverlapHome: only homes that contain or sit inside another sandbox mount', () => {
    const at = (home: string) => mountsOverlapHome({ ...fx.plan, home });
    expect(at('/home/node')).toBe(false);
    expect(at('/workspace')).toBe(false);
    expect(at('/tmpfoo')).toBe(false);
    expect(at('/')).toBe(true);
    expect(at('/run')).toBe(true); // holds /run/wsp
    expect(at('/tmp/home')).toBe(true);
    expect(at('/etc')).toBe(true);
    expect(at('/usr/local/home')).toBe(true);
  });
});

describe('Provisioner.fingerprint', () => {
  const fx = useBackendFixture(() => makeLocalBackend());

  /** The local backend, counting calls of its handles; `withFingerprintHome: false` hides the optional method. */
  function counted(
    backend: WorkspaceBackend,
    withFingerprintHome: boolean,
  ): { backend: WorkspaceBackend; calls: Record<string, number> } {
    const calls: Record<string, number> = { fingerprintHome: 0, start: 0 };
    const counting = <T extends object>(target: T, hide?: string): T =>
      new Proxy(target, {
        get(t, prop) {
          if (prop === hide) return undefined;
          const value = Reflect.get(t, prop, t) as unknown;
          if (typeof value !== 'function') return value;
          return (...args: unknown[]) => {
            if (typeof prop === 'string' && prop in calls) calls[prop]! += 1;
            return (value as (...a: unknown[]) => unknown).apply(t, args);
          };
        },
      });
    const proxy = new Proxy(backend, {
      get(target, prop) {
        if (prop !== 'open') return Reflect.get(target, prop, target) as unknown;
        return (ref: BackendRef, plan: WorkspacePlan): WorkspaceHandle => {
          const handle = target.open(ref, plan);
          return {
            ref: handle.ref,
            commands: counting(handle.commands),
            files: counting(handle.files, withFingerprintHome ? undefined : 'fingerprintHome'),
            snapshots: handle.snapshots,
            usage: () => handle.usage(),
          };
        };
      },
    });
    return { backend: proxy, calls };
  }

  const provisioner = (backend: WorkspaceBackend): Provisioner =>
    new Provisioner(
      { backend } as unknown as ServiceDeps,
      undefined as unknown as WorkspaceRecords,
      undefined as unknown as RepoSync,
    );

  it('asks the backend when it offers fingerprintHome, else runs the script inside; same digest', async () => {
    const ref = await fx.create();
    expect((await fx.sh(ref, 'mkdir -p d && echo x > d/f && ln -s d/f l && mkfifo p')).status.exitCode).toBe(0);
    const fast = counted(fx.backend, true);
    const viaBackend = await provisioner(fast.backend).fingerprint(ref, fx.plan);
    expect(fast.calls).toEqual({ fingerprintHome: 1, start: 0 });
    const slow = counted(fx.backend, false);
    const viaScript = await provisioner(slow.backend).fingerprint(ref, fx.plan);
    expect(slow.calls).toEqual({ fingerprintHome: 0, start: 1 });
    expect(viaBackend).toBe(viaScript);
  });
});
