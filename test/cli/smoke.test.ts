import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSmoke } from '../../functions/cli/smoke.js';
import { WspClient } from '../../shared/client/client.js';
import { dockerUnavailable } from '../support/docker-daemon.js';
import { makeEcsBackend, startEcsProvider, type EcsHandle } from '../support/ecs-fixture.js';
import { startTestProvider, type TestProvider } from '../support/provider-fixture.js';
import { registryUnavailable } from '../support/registry.js';

// `wsp smoke` (docs/deploy.md: what an operator runs after `cdk deploy`) against a running provider:
// the local backend, and the Fargate backend over the fakes (ECS at the SDK boundary, tasks as
// containers of the test dockerd, S3 and the registry on loopback).

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: {
      out: async (text: string | Buffer) => void out.push(String(text)),
      err: async (text: string | Buffer) => void err.push(String(text)),
    },
    out,
    err,
  };
}

async function smokeAgainst(wsp: TestProvider) {
  const c = capture();
  const code = await runSmoke(new WspClient({ baseUrl: wsp.url, token: wsp.token }), c.io, {
    readyTimeoutMs: 240_000,
    json: true,
  });
  return { code, report: JSON.parse(c.out.join('')) as { ok: boolean; steps: any[] } };
}

describe('wsp smoke against a local provider', () => {
  let wsp: TestProvider;
  beforeAll(async () => {
    wsp = await startTestProvider({ workspace: { network: 'none' } });
  });
  afterAll(async () => {
    await wsp?.close();
  });

  it('runs the whole loop, times each step and leaves nothing behind', async () => {
    const { code, report } = await smokeAgainst(wsp);
    expect(report.steps.map((s) => [s.step, s.ok])).toEqual([
      ['health', true],
      ['create', true],
      ['command', true],
      ['reset', true],
      ['delete', true],
    ]);
    expect(code).toBe(0);
    for (const s of report.steps) expect(s.ms).toBeGreaterThanOrEqual(0);
    const left = (await wsp.api('GET', '/workspaces')).body.workspaces;
    expect(left).toEqual([]);
  });

  it('fails (exit 1), says which check failed, and still deletes the workspace', async () => {
    // A reset that does not reach the baseline is what the smoke test exists to catch.
    const reset = wsp.provider.service.reset.bind(wsp.provider.service);
    wsp.provider.service.reset = async (...args) => {
      const view = await reset(...args);
      return { ...view, result: { ...(view.result as any), matches: false } };
    };
    try {
      const { code, report } = await smokeAgainst(wsp);
      expect(code).toBe(1);
      expect(report.ok).toBe(false);
      expect(report.steps.find((s) => s.step === 'reset')).toMatchObject({
        ok: false,
        detail: expect.stringMatching(/does not match the baseline/),
      });
      expect(report.steps.at(-1)).toMatchObject({ step: 'delete', ok: true });
    } finally {
      wsp.provider.service.reset = reset;
    }
  });
});

describe.skipIf(dockerUnavailable !== undefined || registryUnavailable !== undefined)(
  'wsp smoke against a provider on the Fargate backend (fakes)',
  () => {
    let ecs: EcsHandle;
    let provider: Awaited<ReturnType<typeof startEcsProvider>> | undefined;
    beforeAll(async () => {
      ecs = await makeEcsBackend();
      provider = await startEcsProvider(ecs);
    }, 300_000);
    afterAll(async () => {
      await provider?.close();
      await ecs?.cleanup();
    }, 300_000);

    it('runs the whole loop on a Fargate task', async () => {
      const { code, report } = await smokeAgainst(provider!.wsp);
      expect(report.steps.filter((s) => !s.ok)).toEqual([]);
      expect(code).toBe(0);
    }, 300_000);
  },
);
