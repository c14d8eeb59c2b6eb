import type { WspClient } from '../../shared/client/client.js';
import type { SessionView, StreamView } from '../../shared/contract/views.js';
import { integer, keyValues, UsageError, type ParsedArgs } from './args.js';
import type { Io } from './io.js';

/**
 * `wsp session create|run|interrupt|rm|ls ID …` (issue 13): a persistent shell in a workspace.
 * `create` prints the session id; `run` prints the run's stdout and stderr and exits with its code
 * (an interrupted or killed run: its code, 130/143; a lost session: 255).
 */
export async function runSession(client: WspClient, io: Io, args: ParsedArgs): Promise<number> {
  const { values } = args;
  const [action, id, sid] = args.positionals;
  if (id === undefined) throw new UsageError(`'session ${action ?? ''}' needs <workspace id>`);
  const needSid = (): string => {
    if (sid === undefined) throw new UsageError(`'session ${action}' needs <session id>`);
    return sid;
  };
  const print = async (value: unknown, human: string): Promise<number> => {
    await io.out(values.json ? `${JSON.stringify(value, null, 2)}\n` : human);
    return 0;
  };
  switch (action) {
    case 'create': {
      if (values.shell !== undefined && values.shell !== 'bash' && values.shell !== 'sh')
        throw new UsageError("--shell is 'bash' or 'sh'");
      const env = keyValues('env', values.env);
      const session = await client.createSession(id, {
        ...(values.cwd !== undefined ? { cwd: values.cwd } : {}),
        ...(env ? { env } : {}),
        ...(values.shell !== undefined ? { shell: values.shell as 'bash' | 'sh' } : {}),
      });
      return print(session, `${session.id}\n`);
    }
    case 'run': {
      const session = needSid();
      if (args.rest.length > 0 === (values.command !== undefined))
        throw new UsageError('session run needs either \'-- WORDS...\' or -c "SHELL STRING" (one of them)');
      const command = values.command ?? args.rest.join(' ');
      const timeoutMs = integer('timeout-ms', values['timeout-ms']);
      const run = await client.runInSession(id, session, {
        command,
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      });
      if (values.json) {
        await io.out(`${JSON.stringify(run, null, 2)}\n`);
      } else {
        await io.out(bytes(run.stdout));
        await io.err(bytes(run.stderr));
        for (const [name, s] of [['stdout', run.stdout] as const, ['stderr', run.stderr] as const])
          if (s.truncated) await io.err(`wsp: ${name} truncated: ${s.bytes} bytes written, the first kept\n`);
        if (run.state !== 'exited') await io.err(`wsp: run ${run.state}${run.reason ? ` (${run.reason})` : ''}\n`);
      }
      return run.exitCode ?? 255;
    }
    case 'interrupt': {
      const session = await client.interruptSession(id, needSid());
      return print(session, line(session));
    }
    case 'rm': {
      const session = await client.deleteSession(id, needSid());
      return print(session, `${session.id} closed\n`);
    }
    case 'ls': {
      if (sid !== undefined) {
        const one = await client.getSession(id, sid);
        return print(one, line(one));
      }
      const list = await client.listSessions(id);
      if (!values.json && list.length === 0) {
        await io.err('no sessions\n');
        return 0;
      }
      return print(list, list.map(line).join(''));
    }
    default:
      throw new UsageError(`unknown session action '${action ?? ''}' (create, run, interrupt, rm, ls)`);
  }
}

const bytes = (s: StreamView): Buffer => Buffer.from(s.data, s.encoding === 'base64' ? 'base64' : 'utf8');

function line(s: SessionView): string {
  const run = s.lastRun
    ? `  ${s.lastRun.runId} ${s.lastRun.state}${s.lastRun.exitCode !== null ? ` ${s.lastRun.exitCode}` : ''}`
    : '';
  const why = s.reason ? ` (${s.reason})` : '';
  return `${s.id}  ${s.state.padEnd(6)} ${s.shell.padEnd(4)} ${s.cwd}${run}${why}\n`;
}
