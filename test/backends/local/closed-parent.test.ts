import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalBackend } from '../../../shared/backends/local/index.js';
import type { WorkspaceBackend } from '../../../shared/contract/backend.js';
import { newId, planFor } from '../../support/backend-fixture.js';
import { rootUnavailable } from '../../support/root.js';

// A checkout under /root (mode 0700) as root: each workspace runs as a host uid of its own, which
// cannot traverse /root — so the workspace dirs go to a reachable root-owned place instead, recorded
// in the data dir, and the provider starts with nothing to chmod (issue 14). Staged with a 0700 temp
// dir as the closed parent.

const plan = planFor({ workspace: { network: 'none' } });

describe.skipIf(rootUnavailable !== undefined)('a data dir whose parent other uids cannot traverse', () => {
  let parent: string;
  let dataDir: string;
  let backend: WorkspaceBackend;

  beforeAll(async () => {
    parent = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-closed-'));
    fs.chmodSync(parent, 0o700);
    dataDir = path.join(parent, '.wsp');
    backend = await createLocalBackend({ dataDir, owner: 'test-instance' });
  }, 60_000);

  afterAll(async () => {
    if (backend) {
      for (const ws of await backend.listResources()) await backend.destroy(ws.ref);
      await backend.close?.();
    }
    const record = path.join(dataDir, 'local', 'workspaces-at');
    if (fs.existsSync(record)) fs.rmSync(fs.readFileSync(record, 'utf8').trim(), { recursive: true, force: true });
    if (parent) fs.rmSync(parent, { recursive: true, force: true });
  });

  it('starts, runs commands as the workspace uid, and leaves the parent closed', async () => {
    const ref = await backend.create(plan, { workspaceId: newId('ws'), labels: {} });
    const commands = backend.open(ref, plan).commands;
    const id = newId('c');
    await commands.start({
      commandId: id,
      argv: ['sh', '-c', 'echo hi > f && cat f && id -u'],
      cwd: plan.home,
      env: {},
      timeoutMs: 30_000,
      maxOutputBytes: 4096,
    });
    expect(await commands.wait(id, 30_000)).toMatchObject({ state: 'exited', exitCode: 0 });
    expect((await commands.read(id, 'stdout', 0, 4096)).data.toString()).toMatch(/^hi\n\d+\n$/);
    expect(fs.statSync(parent).mode & 0o777).toBe(0o700);
    // Recorded, outside the data dir, reachable; the data dir keeps the rest root-only.
    const at = fs.readFileSync(path.join(dataDir, 'local', 'workspaces-at'), 'utf8').trim();
    expect(at.startsWith(`${parent}/`)).toBe(false);
    expect(fs.existsSync(path.join(at, String(ref.workspaceId), 'home', 'f'))).toBe(true);
    expect(fs.statSync(path.join(dataDir, 'local')).mode & 0o777).toBe(0o700);
  });

  it('a second start on the same data dir finds its workspaces where they are', async () => {
    const again = await createLocalBackend({ dataDir, owner: 'test-instance' });
    const before = (await backend.listResources()).length;
    expect(before).toBeGreaterThan(0);
    expect((await again.listResources()).length).toBe(before);
    await again.close?.();
  });
});
