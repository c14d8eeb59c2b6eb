import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WspClient } from '../../shared/client/client.js';
import type { ConfigInput } from '../../shared/config/schema.js';
import { expectStatus } from '../support/api-error.js';
import { filesTargets, type Started } from '../support/files-targets.js';
import type { TestProvider } from '../support/provider-fixture.js';

// GET /workspaces/{id}/usage (issue 14) over real HTTP on the three backends, through the typed client
// and raw requests: its answer as documented, what the workspace does showing in it (and what it hides
// from itself showing too), 404 for nothing, 409 for a workspace that is not ready, 400 for a bad id.

const CONFIG: ConfigInput = { workspace: { network: 'none' } };
const MB = 1000 * 1000;
const ROOT = path.resolve(import.meta.dirname, '..', '..');

for (const target of filesTargets(CONFIG)) {
  describe.skipIf(target.skip !== undefined)(`usage over the API (${target.name})`, () => {
    let started: Started;
    let wsp: TestProvider;
    let client: WspClient;

    beforeAll(async () => {
      started = await target.start();
      wsp = started.wsp;
      client = new WspClient({ baseUrl: wsp.url, token: wsp.token });
    }, 120_000);

    afterAll(async () => {
      await started?.close();
    });

    const get = async (url: string) => {
      const res = await fetch(`${wsp.url}${url}`, { headers: { authorization: `Bearer ${wsp.token}` } });
      return { status: res.status, body: (await res.json()) as any };
    };

    it('answers what a ready workspace uses; a file it hides from itself and a detached process count', async () => {
      const id = (await wsp.setup()).id as string;
      const before = await client.usage(id);
      expect(before).toMatchObject({ workspaceId: id, source: expect.any(String) });
      expect(Date.parse(before.at)).not.toBeNaN();
      // A 6 MB file in a directory the agent made unreadable, and a sleeper left behind, detached.
      const r = await wsp.exec(
        id,
        'mkdir -p secret && head -c 6000000 /dev/urandom > secret/blob && chmod 000 secret && (setsid sleep 3131 > /dev/null 2>&1 &) && echo ok',
      );
      expect(r.stdout.data).toBe('ok\n');
      const sleepers = await wsp.exec(id, 'pgrep -c -x -f "sleep 3131"');
      expect(sleepers.stdout.data).toBe('1\n');
      const after = await get(`/workspaces/${id}/usage`);
      expect(after.status).toBe(200);
      expect(Object.keys(after.body).sort()).toEqual(['at', 'cpu', 'disk', 'memory', 'pids', 'source', 'workspaceId']);
      expect(after.body.disk.usedBytes - before.disk.usedBytes!).toBeGreaterThanOrEqual(6 * MB);
      expect(after.body.pids.current).toBeGreaterThan(before.pids.current!);
      expect(after.body.cpu.usageSeconds).toBeGreaterThan(before.cpu.usageSeconds!);
    });

    it('404 for a workspace that never was, 409 once it is not ready, 400 for a malformed id', async () => {
      await expectStatus(client.usage('ws-000000000000000000000000'), 404, /not found/);
      const id = (await wsp.setup()).id as string;
      await client.deleteWorkspace(id);
      await expectStatus(client.usage(id), 409, /deleted|deleting/);
      expect((await get('/workspaces/..%2Fetc/usage')).status).toBe(400);
    });
  });
}

describe('usage in the API description and the README', () => {
  it('is in /openapi.json: its schema (nullable figures, each described), 404 and 409', async () => {
    const { buildOpenApiDocument } = await import('../../shared/api/openapi.js');
    const { routes } = await import('../../shared/api/routes.js');
    const doc = buildOpenApiDocument(routes) as any;
    const op = doc.paths['/workspaces/{id}/usage'].get;
    expect(op.operationId).toBe('getUsage');
    expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(['200', '400', '404', '409']));
    expect(op.responses['200'].content['application/json'].schema.$ref).toBe('#/components/schemas/UsageView');
    const view = doc.components.schemas.UsageView;
    expect(view.required.sort()).toEqual(['at', 'cpu', 'disk', 'memory', 'pids', 'source', 'workspaceId']);
    const figure = view.properties.memory.properties.currentBytes;
    expect(figure.anyOf.map((v: any) => v.type).sort()).toEqual(['null', 'number']);
    expect(figure.description).toMatch(/null: this backend cannot tell/);
  });

  it("is a row of the README's route table", () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    expect(readme).toMatch(/^\| `GET \/workspaces\/\{id\}\/usage` \| .*`wsp usage ID` \|$/m);
  });
});
