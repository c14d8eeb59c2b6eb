import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweep } from '../../shared/service/janitor.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';

// The janitor tears down expired (TTL) and idle workspaces of this instance, and nothing else.
let wsp: TestProvider;
beforeAll(async () => {
  wsp = await startTestProvider({ workspace: { idleTimeoutSeconds: 600 } });
});
afterAll(async () => {
  await wsp?.close();
});

describe('janitor', () => {
  it('tears down a workspace past its TTL, then one idle too long; a busy one stays', async () => {
    const shortLived = await wsp.setup({ ttlSeconds: 60 });
    const normal = await wsp.setup();
    const busy = await wsp.setup();
    const running = await wsp.api('POST', `/workspaces/${busy.id}/commands`, { command: 'sleep 300', waitMs: 0 });
    expect(running.status).toBe(202);
    const { deps, service } = wsp.provider;

    const soon = await sweep(deps, service, new Date(Date.now() + 61_000));
    expect(soon.expired).toEqual([shortLived.id]);
    expect(soon.idle).toEqual([]);
    expect((await wsp.api('GET', `/workspaces/${shortLived.id}`)).body.status).toBe('deleted');
    expect(fs.existsSync(path.join(wsp.dataDir, 'local', 'workspaces', shortLived.id))).toBe(false);

    const later = await sweep(deps, service, new Date(Date.now() + 601_000));
    expect(later.idle).toEqual([normal.id]);
    expect((await wsp.api('GET', `/workspaces/${busy.id}`)).body.status).toBe('ready');
    await wsp.api('DELETE', `/workspaces/${busy.id}/commands/${running.body.id}`);
    await wsp.api('DELETE', `/workspaces/${busy.id}`);
  });

  it('with orphans (the Lambda janitor), destroys compute no live record holds — and nothing else', async () => {
    const kept = await wsp.setup();
    const { deps, service } = wsp.provider;
    const plan = (await deps.state.getWorkspace(kept.id))!.plan;
    const orphanId = 'ws-0000000000000000000000f1';
    await deps.backend.create(plan, { workspaceId: orphanId, labels: {} });
    const ids = async () => (await deps.backend.listResources()).map((r) => r.workspaceId);
    expect(await ids()).toEqual(expect.arrayContaining([orphanId, kept.id]));

    expect((await sweep(deps, service)).orphansDestroyed).toEqual([]);
    expect(await ids()).toContain(orphanId);
    const swept = await sweep(deps, service, new Date(), { orphans: true });
    expect(swept.orphansDestroyed).toEqual([orphanId]);
    expect(await ids()).not.toContain(orphanId);
    expect(await ids()).toContain(kept.id);
    expect((await wsp.api('GET', `/workspaces/${kept.id}`)).body.status).toBe('ready');
    await wsp.api('DELETE', `/workspaces/${kept.id}`);
  });
});
