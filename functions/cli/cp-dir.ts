import { spawn } from 'node:child_process';
import fs from 'node:fs';
import type { TransferProgress, WspClient } from '../../shared/client/client.js';
import type { ArchiveWritten } from '../../shared/contract/views.js';
import { readPipedStdin, type Io } from './io.js';

/**
 * `wsp cp -r`: a directory into or out of a workspace through the archive routes. The local side is
 * packed and unpacked by the system's tar (GNU tar or bsdtar: only -C, -c, -x, -f - are used), the
 * bytes held in memory like `wsp cp` holds a file (the server caps them at files.maxBytes anyway).
 * The CONTENTS of the source directory become the destination's (created if missing), like
 * `docker cp SRC/. DEST`. `-` on the local side is a tar on stdin / stdout, for who wants no local tar.
 *
 * Unpacking here runs with --no-same-owner --no-same-permissions whoever runs it: the tar comes from a
 * workspace, which is hostile — as root, tar would otherwise restore its owners and setuid bits. Modes
 * therefore follow the local umask (0664 → 0644 under 022). The local tar's own guards apply (GNU tar
 * and bsdtar strip `/` and `..` and do not write through links the archive made).
 */
export async function copyDirIn(
  client: WspClient,
  source: string,
  id: string,
  remote: string,
  onProgress: TransferProgress,
): Promise<{ written: ArchiveWritten; bytes: number }> {
  const tar =
    source === '-' ? ((await readPipedStdin()) ?? Buffer.alloc(0)) : await localTar(['-C', source, '-cf', '-', '.']);
  const written = await client.writeArchive(id, remote === '' ? '.' : remote, tar, { onProgress });
  return { written, bytes: tar.length };
}

/** Answers the tar's size; `-` writes the tar itself to stdout. */
export async function copyDirOut(
  client: WspClient,
  io: Io,
  id: string,
  remote: string,
  destination: string,
  onProgress: TransferProgress,
): Promise<number> {
  const tar = await client.readArchive(id, remote === '' ? '.' : remote, { onProgress });
  if (destination === '-') {
    await io.out(tar);
    return tar.length;
  }
  fs.mkdirSync(destination, { recursive: true });
  await localTar(['-C', destination, '-xf', '-', '--no-same-owner', '--no-same-permissions'], tar);
  return tar.length;
}

/** Runs the system tar with `input` on stdin; its stdout, or an error carrying its stderr. */
function localTar(args: string[], input?: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('tar', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e) => reject(new Error(`cannot run the local tar: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new Error(`local tar ${args.join(' ')} failed: ${Buffer.concat(err).toString().trim()}`));
    });
    // EPIPE when tar exits early is reported by its exit code above.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? Buffer.alloc(0));
  });
}
