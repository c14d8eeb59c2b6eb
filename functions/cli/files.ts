import fs from 'node:fs';
import path from 'node:path';
import type { WspClient } from '../../shared/client/client.js';
import type { FileStat } from '../../shared/contract/views.js';
import { UsageError, type ParsedArgs } from './args.js';
import { copyDirIn, copyDirOut } from './cp-dir.js';
import { readPipedStdin, type Io } from './io.js';
import { Progress, progressMode, transferProgress } from './progress.js';

/**
 * `wsp cp` and `wsp files ls|stat|rm`: the Files API from the command line. A workspace side is
 * written `ID:PATH` (PATH relative to the workdir, or absolute); `-` is stdin / stdout. A copy shows
 * its bytes moved on stderr (progress.ts); with --json it prints what the API answered (a write) or
 * what was written where (a read).
 */

/** `ws-…:path` → its parts; anything else is a local path. */
const REMOTE = /^(ws-[a-z0-9]{8,40}):(.*)$/s;

export async function runCp(client: WspClient, io: Io, args: ParsedArgs): Promise<number> {
  const [source = '', destination = ''] = args.positionals;
  const from = REMOTE.exec(source);
  const to = REMOTE.exec(destination);
  if ((from === null) === (to === null))
    throw new UsageError("cp copies between here and a workspace: exactly one side must be 'ID:PATH'");
  if (args.values.json && destination === '-')
    throw new UsageError("--json prints on stdout, where '-' would write the copy: name a local file");
  const progress = new Progress(io, progressMode(args.values, io));
  const onProgress = transferProgress(progress, `${source} -> ${destination}`);
  const report = async (value: unknown, human: string): Promise<number> => {
    await progress.done();
    if (args.values.json) await io.out(`${JSON.stringify(value, null, 2)}\n`);
    else await io.err(human);
    return 0;
  };
  if (args.values.recursive) {
    if (args.values.mode) throw new UsageError('cp -r keeps the modes the archive holds: --mode is for one file');
    if (to) {
      const { written, bytes } = await copyDirIn(client, source, to[1]!, to[2]!, onProgress);
      return report(
        written,
        `wsp: ${source} -> ${to[1]}:${written.path} (${written.entries} entries, ${bytes} bytes of tar)\n`,
      );
    }
    const bytes = await copyDirOut(client, io, from![1]!, from![2]!, destination, onProgress);
    if (destination === '-') {
      await progress.done();
      return 0;
    }
    return report({ destination, bytes }, `wsp: ${from![1]}:${from![2]} -> ${destination} (${bytes} bytes of tar)\n`);
  }
  if (to) {
    const [, id = '', remote = ''] = to;
    const data = source === '-' ? ((await readPipedStdin()) ?? Buffer.alloc(0)) : fs.readFileSync(source);
    // `ID:dir/` (or `ID:`) names a directory: the file keeps its own name there.
    const target = remote === '' || remote.endsWith('/') ? `${remote}${path.basename(source)}` : remote;
    const stat = await client.writeFile(id, target, data, {
      ...(args.values.mode ? { mode: args.values.mode } : {}),
      onProgress,
    });
    return report(stat, `wsp: ${data.length} bytes -> ${id}:${target}\n`);
  }
  const [, id = '', remote = ''] = from!;
  const { data } = await client.readFile(id, remote, { onProgress });
  if (destination === '-') {
    await progress.done();
    await io.out(data);
    return 0;
  }
  const local =
    fs.existsSync(destination) && fs.statSync(destination).isDirectory()
      ? path.join(destination, path.posix.basename(remote))
      : destination;
  fs.writeFileSync(local, data);
  return report(
    { destination: local, bytes: data.length },
    `wsp: ${id}:${remote} -> ${local} (${data.length} bytes)\n`,
  );
}

export async function runFiles(client: WspClient, io: Io, args: ParsedArgs): Promise<number> {
  const [action, id = '', target] = args.positionals;
  const recursive = args.values.recursive === true;
  const json = (value: unknown) => io.out(`${JSON.stringify(value, null, 2)}\n`);
  switch (action) {
    case 'ls': {
      const list = await client.listFiles(id, target ?? '.', { recursive });
      if (args.values.json) await json(list);
      else {
        for (const e of list.entries) await io.out(entryLine(e, recursive ? relative(list.path, e.path) : e.name));
        if (list.truncated) await io.err(`wsp: more entries than the provider lists at once (truncated)\n`);
        if (list.skippedNonUtf8 > 0) await io.err(`wsp: ${list.skippedNonUtf8} names that are not UTF-8 left out\n`);
      }
      return 0;
    }
    case 'stat': {
      const stat = await client.statFile(id, needPath(action, target));
      if (args.values.json) await json(stat);
      else await io.out(entryLine(stat, needPath(action, target)));
      return 0;
    }
    case 'rm':
      await client.deleteFile(id, needPath(action, target), { recursive });
      if (args.values.json) await json({ path: target, deleted: true });
      return 0;
    default:
      throw new UsageError(`files needs ls, stat or rm, got '${action ?? ''}'`);
  }
}

function needPath(action: string, target: string | undefined): string {
  if (target === undefined) throw new UsageError(`'files ${action}' needs <id> <path>`);
  return target;
}

/** `ls -l`-like: type letter + mode, size, mtime, name (and where a symlink points). */
function entryLine(e: FileStat, name: string): string {
  const letter = { file: '-', dir: 'd', symlink: 'l', other: '?' }[e.type];
  const link = e.target !== undefined ? ` -> ${e.target}` : '';
  return `${letter}${e.mode} ${String(e.size).padStart(10)} ${e.mtime} ${name}${link}\n`;
}

function relative(dir: string, p: string): string {
  return path.posix.relative(dir, p);
}
