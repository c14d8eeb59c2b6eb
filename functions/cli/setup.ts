import type { WspClient } from '../../shared/client/client.js';
import type { WorkspaceEvent, WorkspaceView } from '../../shared/contract/views.js';
import { integer, keyValues, type ParsedArgs } from './args.js';
import type { Io } from './io.js';
import { Progress, progressMode } from './progress.js';

/**
 * `wsp setup` / `wsp create`: create a workspace and wait until it settles, showing its progress —
 * the steps of its events stream and its setup output — on stderr, so stdout carries only the id
 * (`ID=$(wsp setup)`) or, with --json, the final view. Exit 1 when it failed.
 */
export async function runSetup(client: WspClient, io: Io, values: ParsedArgs['values']): Promise<number> {
  const refs = keyValues('ref', values.ref);
  const env = keyValues('env', values.env);
  const labelMap = keyValues('label', values.label);
  const ttlSeconds = integer('ttl-seconds', values['ttl-seconds']);
  const timeoutMs = integer('timeout-ms', values['timeout-ms']) ?? 60 * 60_000;
  const print = (view: WorkspaceView) => io.out(values.json ? `${JSON.stringify(view, null, 2)}\n` : `${view.id}\n`);
  const created = await client.createWorkspace({
    ...(refs ? { refs } : {}),
    ...(env ? { env } : {}),
    ...(labelMap ? { labels: labelMap } : {}),
    ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
    ...(values['idempotency-key'] !== undefined ? { idempotencyKey: values['idempotency-key'] } : {}),
    ...(values['from-snapshot'] !== undefined ? { fromSnapshot: values['from-snapshot'] } : {}),
  });
  if (values['no-wait']) {
    await print(created);
    return 0;
  }
  const progress = new Progress(io, progressMode(values, io));
  const shown = new SetupProgress(progress, created.id);
  progress.line(`wsp: workspace ${created.id} ${created.status}`);
  const final = await client.waitForWorkspace(created.id, { timeoutMs, onEvent: (e) => shown.event(e) });
  shown.finish(final);
  await progress.done();
  await print(final);
  if (final.status === 'ready') {
    if (progress.mode !== 'off')
      await io.err(
        `wsp: workspace ${final.id} ready${final.cache ? ` (cache ${final.cache.hit ? 'hit' : 'miss'}: ${final.cache.reason})` : ''}\n`,
      );
    return 0;
  }
  if (!values.json)
    await io.err(
      `wsp: workspace ${final.id} ${final.status}${final.failure ? `: ${final.failure.step}: ${final.failure.message}` : ''}\n`,
    );
  return 1;
}

/** Setup output lines kept to show again when setup fails on a terminal (where they were not printed). */
const TAIL_LINES = 20;

/**
 * How a workspace's events look. Plain: each step as `[step] message` and the setup output as it
 * comes, as lines. Terminal: one status line — the step count, the current step and the latest line
 * of setup output — and, should the workspace fail, the last lines of setup output after all.
 */
class SetupProgress {
  #steps = 0;
  #step = '';
  #partial = '';
  readonly #tail: string[] = [];

  constructor(
    private readonly progress: Progress,
    private readonly id: string,
  ) {}

  event(event: WorkspaceEvent): void {
    if (event.type === 'step') {
      this.#steps++;
      this.#step = `${event.step}: ${event.message}`;
      if (this.progress.mode === 'plain') this.progress.line(`[${event.step}] ${event.message}`);
    } else if (event.type === 'output') {
      this.progress.passthrough(event.data);
      this.#collect(event.data);
    } else return;
    this.progress.status(this.#line());
  }

  finish(final: WorkspaceView): void {
    if (this.progress.mode !== 'tty' || final.status === 'ready') return;
    const tail = [...this.#tail, ...(this.#partial ? [this.#partial] : [])];
    if (tail.length === 0) return;
    this.progress.line(`wsp: the last ${tail.length} line(s) of setup output:`);
    for (const line of tail) this.progress.line(`  ${line}`);
  }

  #line(): string {
    const latest = this.#partial || this.#tail.at(-1);
    return `wsp: ${this.id} [step ${this.#steps}] ${this.#step}${latest ? ` | ${latest}` : ''}`;
  }

  #collect(data: string): void {
    // A line redrawn with \r (a download meter) counts as what it ends up showing.
    const lines = (this.#partial + data).split('\n').map((l) => l.split('\r').at(-1) ?? '');
    this.#partial = lines.pop() ?? '';
    for (const line of lines) {
      if (line.trim() === '') continue;
      this.#tail.push(line);
      if (this.#tail.length > TAIL_LINES) this.#tail.shift();
    }
  }
}
