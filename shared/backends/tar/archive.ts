import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';

/**
 * Tar streams (Docker put-archive, Fargate directory transfers), built with tar-stream so every header carries the owner we
 * choose (never the host's uids — `docker cp` would keep those). Regular files are streamed, not
 * buffered; hard links become copies; sockets and devices are skipped.
 */

export interface Owner {
  uid: number;
  gid: number;
}

/** A directory entry to create (or re-own) before the tree, e.g. the parents of the destination. */
export interface DirEntry {
  name: string;
  mode: number;
}

/**
 * An archive of `hostDir` whole (dotfiles, `.git`, symlinks as links, modes, mtimes), placed under
 * `prefix` (the tree's own entry gets hostDir's mode), after `parents`. Errors while reading the tree
 * destroy the stream (the put-archive then fails).
 */
export function packTree(hostDir: string, prefix: string, parents: DirEntry[], owner: Owner): NodeJS.ReadableStream {
  const pack = tar.pack();
  const base = { uid: owner.uid, gid: owner.gid };
  const walk = async (abs: string, name: string): Promise<void> => {
    const st = await fs.promises.lstat(abs);
    const mode = st.mode & 0o7777;
    const mtime = st.mtime;
    if (st.isDirectory()) {
      // name '' = the extraction dir itself: keep its owner and mode, only fill it.
      if (name !== '') pack.entry({ ...base, name, type: 'directory', mode, mtime });
      for (const child of (await fs.promises.readdir(abs)).sort())
        await walk(path.join(abs, child), name === '' ? child : `${name}/${child}`);
    } else if (st.isSymbolicLink()) {
      pack.entry({ ...base, name, type: 'symlink', linkname: await fs.promises.readlink(abs), mode, mtime });
    } else if (st.isFile()) {
      const entry = pack.entry({ ...base, name, type: 'file', mode, mtime, size: st.size });
      await pipeline(fs.createReadStream(abs), entry);
    }
  };
  void (async () => {
    for (const d of parents) pack.entry({ ...base, name: d.name, type: 'directory', mode: d.mode });
    await walk(hostDir, prefix);
    pack.finalize();
  })().catch((error: unknown) => pack.destroy(error as Error));
  return pack as unknown as NodeJS.ReadableStream;
}
