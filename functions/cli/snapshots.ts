import type { WspClient } from '../../shared/client/client.js';
import type { SnapshotView } from '../../shared/contract/views.js';
import { integer, keyValues, UsageError, type ParsedArgs } from './args.js';
import type { Io } from './io.js';
import { Progress, progressMode } from './progress.js';

/**
 * `wsp fork ID -n N` and `wsp snapshot create|ls|show|rm` (issue 13): copies of a workspace's current
 * state. `fork` prints the new workspaces' ids (one per line, once ready unless --no-wait), so
 * `for id in $(wsp fork $ID -n 4); do …; done` works; progress goes to stderr.
 */

export async function runFork(client: WspClient, io: Io, args: ParsedArgs): Promise<number> {
  const { values } = args;
  const id = args.positionals[0] ?? '';
  const count = integer('count', values.count) ?? 1;
  const labels = keyValues('label', values.label);
  const ttlSeconds = integer('ttl-seconds', values['ttl-seconds']);
  const forked = await client.fork(id, {
    count,
    ...(labels ? { labels } : {}),
    ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
  });
  const progress = new Progress(io, progressMode(values, io));
  const total = forked.workspaces.length;
  progress.line(`wsp: fork point ${forked.snapshot.id} of ${id}: ${total} workspace(s)`);
  if (values['no-wait']) {
    await progress.done();
    if (values.json) await io.out(`${JSON.stringify(forked, null, 2)}\n`);
    else for (const w of forked.workspaces) await io.out(`${w.id}\n`);
    return 0;
  }
  const timeoutMs = integer('timeout-ms', values['timeout-ms']) ?? 60 * 60_000;
  // N of M ready as each settles: one line each in plain mode, a status line on a terminal.
  let ready = 0;
  let settledCount = 0;
  progress.status(`wsp: fork: 0 of ${total} ready`);
  const settled = await Promise.all(
    forked.workspaces.map(async (w) => {
      const view = await client.waitForWorkspace(w.id, { timeoutMs });
      settledCount++;
      if (view.status === 'ready') ready++;
      const failed = settledCount - ready;
      progress.status(
        `wsp: fork: ${ready} of ${total} ready${failed > 0 ? `, ${failed} not` : ''} (${view.id} ${view.status})`,
        true,
      );
      return view;
    }),
  );
  await progress.done();
  if (values.json) await io.out(`${JSON.stringify({ snapshot: forked.snapshot, workspaces: settled }, null, 2)}\n`);
  else for (const w of settled) await io.out(`${w.id}\n`);
  let code = 0;
  for (const w of settled) {
    if (w.status === 'ready') continue;
    code = 1;
    if (!values.json)
      await io.err(
        `wsp: workspace ${w.id} ${w.status}${w.failure ? `: ${w.failure.step}: ${w.failure.message}` : ''}\n`,
      );
  }
  return code;
}

export async function runSnapshot(client: WspClient, io: Io, args: ParsedArgs): Promise<number> {
  const { values } = args;
  const [action, arg] = args.positionals;
  const needArg = (what: string): string => {
    if (arg === undefined) throw new UsageError(`'snapshot ${action}' needs <${what}>`);
    return arg;
  };
  const print = async (value: unknown, human: string): Promise<number> => {
    await io.out(values.json ? `${JSON.stringify(value, null, 2)}\n` : human);
    return 0;
  };
  switch (action) {
    case 'create': {
      const labels = keyValues('label', values.label);
      const snap = await client.createSnapshot(needArg('workspace id'), {
        ...(values.name !== undefined ? { name: values.name } : {}),
        ...(labels ? { labels } : {}),
      });
      return print(snap, `${snap.id}\n`);
    }
    case 'ls': {
      if (arg !== undefined) throw new UsageError("'snapshot ls' takes no argument");
      const list = await client.listSnapshots();
      if (!values.json && list.length === 0) {
        await io.err('no snapshots\n');
        return 0;
      }
      return print(list, list.map(line).join(''));
    }
    case 'show': {
      const snap = await client.getSnapshot(needArg('snapshot id'));
      return print(snap, line(snap));
    }
    case 'rm': {
      const sid = needArg('snapshot id');
      await client.deleteSnapshot(sid);
      return print({ id: sid, deleted: true }, `${sid} deleted\n`);
    }
    default:
      throw new UsageError(`unknown snapshot action '${action ?? ''}' (create, ls, show, rm)`);
  }
}

function line(s: SnapshotView): string {
  const name = s.name !== undefined ? ` "${s.name}"` : '';
  const size = s.sizeBytes !== undefined ? ` ${s.sizeBytes} bytes` : '';
  const why = s.failure ? ` (${s.failure.message})` : '';
  return `${s.id}  ${s.status.padEnd(8)} ${s.kind.padEnd(4)} of ${s.sourceWorkspaceId}${name}${size}  ${s.createdAt}${why}\n`;
}
