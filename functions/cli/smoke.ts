import type { WspClient } from '../../shared/client/client.js';
import type { Io } from './io.js';

/**
 * `wsp smoke`: what an operator runs right after a deployment (`cdk deploy`) or a provider start —
 * the whole loop once, through the public API only, with timings: health, create a workspace and
 * wait until it is ready, run a command, dirty the workspace, reset it (the fingerprint must match
 * the baseline and the file must be gone), delete it. The workspace is deleted also when a step
 * fails. Exit 0 when every check held, 1 otherwise; `--json` prints the report.
 */

export interface SmokeStep {
  step: string;
  ok: boolean;
  ms: number;
  detail: string;
}

export interface SmokeOptions {
  /** Longest wait for the workspace to become ready (a cold Fargate setup pulls an image). */
  readyTimeoutMs: number;
  json: boolean;
}

const MARKER = 'wsp-smoke.txt';

export async function runSmoke(client: WspClient, io: Io, options: SmokeOptions): Promise<number> {
  const steps: SmokeStep[] = [];
  const step = async (name: string, fn: () => Promise<string>): Promise<boolean> => {
    const started = performance.now();
    let ok = true;
    let detail: string;
    try {
      detail = await fn();
    } catch (error) {
      ok = false;
      detail = (error as Error).message;
    }
    const ms = Math.round(performance.now() - started);
    steps.push({ step: name, ok, ms, detail });
    if (!options.json)
      await io.err(`${ok ? 'ok  ' : 'FAIL'} ${name.padEnd(8)} ${String(ms).padStart(7)} ms  ${detail}\n`);
    return ok;
  };

  let id: string | undefined;
  const passed =
    (await step('health', async () => {
      await client.health();
      return client.baseUrl;
    })) &&
    (await step('create', async () => {
      const ws = await client.createWorkspace({ labels: { purpose: 'smoke' }, ttlSeconds: 3600 });
      id = ws.id;
      const ready = await client.waitForWorkspace(ws.id, { timeoutMs: options.readyTimeoutMs });
      if (ready.status !== 'ready')
        throw new Error(
          `${ws.id} ${ready.status}${ready.failure ? `: ${ready.failure.step}: ${ready.failure.message}` : ''}`,
        );
      return `${ws.id} ready (cache ${ready.cache ? `${ready.cache.hit ? 'hit' : 'miss'}` : 'off'})`;
    })) &&
    (await step('command', async () => {
      const done = await client.runCommand(id!, { command: `echo smoke && echo dirt > ${MARKER}` });
      if (done.state !== 'exited' || done.exitCode !== 0 || done.stdout.data !== 'smoke\n')
        throw new Error(`${done.state} exit ${done.exitCode}: ${done.stderr.data.slice(0, 200)}`);
      return `exit 0 (${done.id})`;
    })) &&
    (await step('reset', async () => {
      const reset = await client.reset(id!);
      if (!reset.matches) throw new Error(`fingerprint ${reset.fingerprint} does not match the baseline`);
      const check = await client.runCommand(id!, { command: `test ! -e ${MARKER}` });
      if (check.exitCode !== 0) throw new Error(`${MARKER} survived the reset`);
      return `fingerprint matches (${reset.durationMs} ms in the provider)`;
    }));
  const deleted =
    id === undefined ||
    (await step('delete', async () => {
      const ws = await client.deleteWorkspace(id!);
      return `${ws.id} ${ws.status}`;
    }));
  const ok = passed && deleted;
  if (options.json) await io.out(`${JSON.stringify({ ok, steps }, null, 2)}\n`);
  else await io.out(ok ? 'smoke test passed\n' : 'smoke test FAILED\n');
  return ok ? 0 : 1;
}
