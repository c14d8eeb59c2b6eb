import type { WspClient } from '../../shared/client/client.js';
import type { WorkspaceView } from '../../shared/contract/views.js';
import { integer, keyValues, UsageError, type ParsedArgs } from './args.js';
import { runExec } from './exec.js';
import { runShell } from './shell.js';
import { runCp, runFiles } from './files.js';
import { runSmoke } from './smoke.js';
import { runSession } from './sessions.js';
import { runFork, runSnapshot } from './snapshots.js';
import { runUsage } from './usage.js';
import type { Io } from './io.js';
import { Progress, progressMode } from './progress.js';
import { runSetup } from './setup.js';

/**
 * The client-side subcommands. Each returns the process exit code. Human output goes to stdout
 * (progress and diagnostics to stderr); `--json` prints the API's JSON answer instead.
 */
export async function runSubcommand(client: WspClient, io: Io, args: ParsedArgs): Promise<number> {
  const { values } = args;
  const id = args.positionals[0] ?? '';
  // A long operation polled past the server's wait says so (progress: not with --json).
  const onAccepted = { onAccepted: (op: { kind: string; id: string }) => stillRunning(io, values, op.kind, op.id) };
  const json = async (value: unknown): Promise<number> => {
    await io.out(`${JSON.stringify(value, null, 2)}\n`);
    return 0;
  };
  switch (args.subcommand) {
    case 'setup':
    case 'create':
      return runSetup(client, io, values);
    case 'fork':
      return runFork(client, io, args);
    case 'snapshot':
      return runSnapshot(client, io, args);
    case 'session':
      return runSession(client, io, args);
    case 'ls': {
      const list = await client.listWorkspaces();
      if (values.json) return json(list);
      if (list.length === 0) await io.err('no workspaces\n');
      else
        await io.out(
          table([['ID', 'STATUS', 'CREATED', 'LABELS'], ...list.map((w) => [w.id, w.status, w.createdAt, labels(w)])]),
        );
      return 0;
    }
    case 'show': {
      const ws = await client.getWorkspace(id);
      if (values.json) return json(ws);
      await io.out(describe(ws));
      return 0;
    }
    case 'exec': {
      if (args.rest.length > 0 === (values.command !== undefined)) {
        throw new UsageError('exec needs either \'-- ARGV...\' or -c "SHELL STRING" (one of them)');
      }
      return runExec(client, io, {
        workspaceId: id,
        ...(args.rest.length > 0 ? { argv: args.rest } : { command: values.command! }),
        ...(values.cwd !== undefined ? { cwd: values.cwd } : {}),
        ...(values['timeout-ms'] !== undefined ? { timeoutMs: integer('timeout-ms', values['timeout-ms']) } : {}),
        ...(values.env ? { env: keyValues('env', values.env) } : {}),
        noStdin: values['no-stdin'] === true,
        json: values.json === true,
      });
    }
    case 'shell':
      return runShell(client, io, {
        workspaceId: id,
        ...(args.rest.length > 0 ? { argv: args.rest } : {}),
        ...(values.cwd !== undefined ? { cwd: values.cwd } : {}),
        ...(values.env ? { env: keyValues('env', values.env) } : {}),
        json: values.json === true,
      });
    case 'fetch': {
      const checkout =
        values.checkout === undefined ? undefined : Object.entries(keyValues('checkout', [values.checkout])!)[0];
      const result = await client.fetch(
        id,
        {
          ...(values.repo ? { repos: values.repo } : {}),
          ...(checkout ? { checkout: { repo: checkout[0], ref: checkout[1] } } : {}),
        },
        onAccepted,
      );
      if (values.json) return json(result);
      for (const repo of result.repos) {
        const moved =
          repo.before === repo.after
            ? `${short(repo.after)} (no new commits)`
            : `${short(repo.before)} -> ${short(repo.after)}`;
        await io.out(`${repo.name}: ${moved}${repo.checkedOut ? `, checked out ${repo.checkedOut}` : ''}\n`);
      }
      return 0;
    }
    case 'reset': {
      const refs = keyValues('ref', values.ref);
      const result = await client.reset(
        id,
        {
          ...(refs ? { refs } : {}),
          ...(values.recreate ? { mode: 'recreate' as const } : {}),
        },
        onAccepted,
      );
      // Not at the baseline is a failure either way (exit 1); --json prints the answer that says so.
      if (values.json) {
        await json(result);
        return result.matches ? 0 : 1;
      }
      if (result.recreated)
        await io.out(
          `recreated from the cache entry: new baseline ${result.baselineFingerprint} (was ${result.previousBaselineFingerprint})\n`,
        );
      const counts = [
        result.restored !== undefined ? `${result.restored} restored` : '',
        result.removed !== undefined ? `${result.removed} removed` : '',
      ]
        .filter(Boolean)
        .join(', ');
      await io.out(
        `fingerprint ${result.fingerprint} ${result.matches ? 'matches' : 'DOES NOT match'} the baseline${counts ? ` (${counts})` : ''} in ${result.durationMs} ms\n`,
      );
      if (!result.matches) {
        await io.err(`wsp: reset did not reach the baseline (baseline ${result.baselineFingerprint})\n`);
        return 1;
      }
      return 0;
    }
    case 'changes': {
      const changes = await client.changes(id);
      if (values.json) return json(changes);
      for (const repo of changes.repos) {
        await io.out(
          `== ${repo.name} (${repo.path})${repo.baseCommit ? ` base ${short(repo.baseCommit)}` : ''}${repo.head ? ` head ${short(repo.head)}` : ''}\n`,
        );
        if (repo.status.length === 0) await io.out('no changes\n');
        for (const s of repo.status)
          await io.out(`${s.code.padEnd(2)} ${s.origPath ? `${s.origPath} -> ` : ''}${s.path}\n`);
        if (repo.diff) await io.out(`\n${repo.diff}${repo.diff.endsWith('\n') ? '' : '\n'}`);
        if (repo.diffTruncated) await io.out('(diff truncated)\n');
      }
      return 0;
    }
    case 'events': {
      const events = await client.listWebhookEvents(id);
      if (values.json) return json(events);
      if (events.length === 0) await io.out('no webhook events\n');
      for (const e of events) {
        await io.out(`${e.createdAt} ${e.type} ${e.id}\n`);
        for (const d of e.deliveries) {
          const last = d.attempts.at(-1);
          const outcome = last === undefined ? '' : ` (last: ${last.status ?? last.error})`;
          const next = d.nextAttemptAt ? `, next ${d.nextAttemptAt}` : '';
          await io.out(`  ${d.hook} ${d.url}: ${d.state} after ${d.attempts.length} attempt(s)${outcome}${next}\n`);
        }
      }
      return 0;
    }
    case 'usage':
      return runUsage(client, io, id, values.json === true);
    case 'cp':
      return runCp(client, io, args);
    case 'files':
      return runFiles(client, io, args);
    case 'smoke':
      return runSmoke(client, io, {
        readyTimeoutMs: integer('timeout-ms', values['timeout-ms']) ?? 30 * 60_000,
        json: values.json === true,
      });
    case 'mcp': {
      // Imported lazily: the other commands need none of the MCP SDK. stdout is the protocol's alone.
      const { serveMcpStdio } = await import('../mcp/server.js');
      await serveMcpStdio(client, (line) => void io.err(`${line}\n`));
      return 0;
    }
    case 'rm': {
      const ws = await client.deleteWorkspace(id);
      if (values.json) return json(ws);
      await io.out(`${ws.id} ${ws.status}\n`);
      return 0;
    }
    default:
      throw new UsageError('missing command');
  }
}

function describe(ws: WorkspaceView): string {
  const lines: Array<[string, string]> = [
    ['id', ws.id],
    ['status', ws.status],
    ['created', ws.createdAt],
    ['updated', ws.updatedAt],
    ['workdir', ws.plan.workdir],
    ['user', `${ws.plan.user.name} (${ws.plan.user.uid}:${ws.plan.user.gid})`],
  ];
  if (ws.cache) lines.push(['cache', `${ws.cache.hit ? 'hit' : 'miss'} (${ws.cache.reason})`]);
  for (const repo of ws.repos)
    lines.push([
      'repo',
      `${repo.name} at ${repo.path}${repo.commit ? ` ${short(repo.commit)}` : ''}${repo.ref ? ` (${repo.ref})` : ''}`,
    ]);
  if (Object.keys(ws.labels).length > 0) lines.push(['labels', labels(ws)]);
  if (ws.failure) lines.push(['failure', `${ws.failure.step}: ${ws.failure.message}`]);
  for (const warning of ws.warnings) lines.push(['warning', warning]);
  if (ws.setupCommandId) lines.push(['setup cmd', ws.setupCommandId]);
  let out = lines.map(([k, v]) => `${`${k}:`.padEnd(11)}${v}\n`).join('');
  if (ws.steps.length > 0)
    out += `steps:\n${ws.steps.map((s) => `  ${s.at}  ${s.step.padEnd(10)} ${s.message}\n`).join('')}`;
  return out;
}

function labels(ws: WorkspaceView): string {
  return Object.entries(ws.labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

function short(commit: string | undefined): string {
  return commit ? commit.slice(0, 12) : '-';
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) => `${r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')}\n`)
    .join('');
}

/** Progress on stderr while a long operation is polled past the server's wait. */
function stillRunning(io: Io, values: ParsedArgs['values'], kind: string, operationId: string): void {
  new Progress(io, progressMode(values, io)).line(
    `wsp: ${kind} still running (operation ${operationId}); waiting for it`,
  );
}
