import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';

// A controller (or an agent holding the API token) opens event streams until the provider drowns:
// 1,500 open SSE streams pushed API latency to seconds. Streams are capped per workspace and in
// total; beyond a cap the answer is 429 before anything is streamed, and a closed stream frees its slot.

const PER_WORKSPACE = 3;
const TOTAL = 5;

describe('open event streams are capped (429)', () => {
  let wsp: TestProvider;
  const open: AbortController[] = [];

  beforeAll(async () => {
    wsp = await startTestProvider({
      workspace: { network: 'none' },
      listen: { maxEventStreams: TOTAL, maxEventStreamsPerWorkspace: PER_WORKSPACE },
    });
  }, 60_000);

  afterAll(async () => {
    for (const c of open) c.abort();
    await wsp?.close();
    if (wsp) fs.rmSync(wsp.dataDir, { recursive: true, force: true });
  });

  /** GET an SSE route; returns the status and keeps the stream open (until its controller aborts). */
  async function stream(route: string): Promise<{ status: number; body: string; controller: AbortController }> {
    const controller = new AbortController();
    const res = await fetch(wsp.url + route, {
      headers: { authorization: `Bearer ${wsp.token}` },
      signal: controller.signal,
    });
    if (res.status !== 200) return { status: res.status, body: await res.text(), controller };
    open.push(controller);
    return { status: res.status, body: '', controller };
  }

  async function longCommand(id: string): Promise<string> {
    const r = await wsp.api('POST', `/workspaces/${id}/commands`, { command: 'sleep 60', waitMs: 0 });
    expect(r.status).toBe(202);
    return r.body.id;
  }

  it('per workspace, then in total; a closed stream gives its slot back', async () => {
    const a = await wsp.setup();
    const b = await wsp.setup();
    const ca = await longCommand(a.id);
    const cb = await longCommand(b.id);

    const mine = [];
    for (let i = 0; i < PER_WORKSPACE; i++) mine.push(await stream(`/workspaces/${a.id}/commands/${ca}/events`));
    expect(mine.map((s) => s.status)).toEqual(Array(PER_WORKSPACE).fill(200));
    const refused = await stream(`/workspaces/${a.id}/commands/${ca}/events`);
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.body).error).toMatchObject({ code: 'too_many_requests' });
    // The workspace stream counts too.
    expect((await stream(`/workspaces/${a.id}/events`)).status).toBe(429);

    // Another workspace may still stream, up to the provider's total.
    const theirs = [];
    for (let i = 0; i < TOTAL - PER_WORKSPACE; i++)
      theirs.push(await stream(`/workspaces/${b.id}/commands/${cb}/events`));
    expect(theirs.map((s) => s.status)).toEqual(Array(TOTAL - PER_WORKSPACE).fill(200));
    const overTotal = await stream(`/workspaces/${b.id}/commands/${cb}/events`);
    expect(overTotal.status).toBe(429);
    expect(JSON.parse(overTotal.body).error.message).toMatch(/provider/);

    // Plain API calls are unaffected while the streams are open.
    expect((await wsp.api('GET', `/workspaces/${a.id}`)).status).toBe(200);

    // Closing a stream frees its slot (the server sees the client go away).
    mine[0]!.controller.abort();
    let again = 0;
    for (let i = 0; i < 50 && again !== 200; i++) {
      await new Promise((r) => setTimeout(r, 50));
      again = (await stream(`/workspaces/${a.id}/commands/${ca}/events`)).status;
    }
    expect(again).toBe(200);
  }, 90_000);
});
