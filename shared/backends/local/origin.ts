import fs from 'node:fs/promises';
import type { OriginFiles } from './tree/snapshot-linked.js';
import { writeFileAtomic } from '../../lib/write-atomic.js';

/**
 * `<workspace>/origin.json` (root-only): which snapshot a workspace's home was seeded from, and the
 * (inode, ctime) of each of its regular files right after that copy + chown — or, for a workspace
 * created empty, its first snapshot and that snapshot's manifest. A later snapshot of the
 * workspace hard-links the files still matching it (tree/snapshot-linked.ts). Only regular files
 * are recorded: nothing else is ever linked.
 *
 * The snapshot is named AND identified: a snapshot name can be taken again (a cache entry rebuilt
 * under the same key), so the record keeps the random id from the snapshot's info.json, and
 * linking happens only from a snapshot that still carries it.
 */

export interface OriginRecord {
  snapshot: string;
  snapshotId: string;
  files: OriginFiles;
  /**
   * The home is an overlay over this snapshot (overlay/index.ts): no per-file record (files is
   * empty); a live file is untouched iff it IS the snapshot's file at that path (same inode and
   * ctime — any change copies it up into the upper, a new inode).
   */
  lower?: boolean;
}

const VERSION = 1;

interface OriginJson {
  version: number;
  snapshot: string;
  snapshotId: string;
  /** [relLatin1, ino, ctimeNs] of regular files; bigints as decimal strings. */
  files: [string, string, string][];
  lower?: boolean;
}

/** Written atomically (temp + rename), mode 0600. */
export async function writeOrigin(file: string, record: OriginRecord): Promise<void> {
  const json: OriginJson = {
    version: VERSION,
    snapshot: record.snapshot,
    snapshotId: record.snapshotId,
    files: [...record.files].map(([k, f]) => [k, f.ino.toString(), f.ctimeNs.toString()]),
    ...(record.lower ? { lower: true } : {}),
  };
  await writeFileAtomic(file, JSON.stringify(json), { mode: 0o600 });
}

/**
 * The record, or undefined when there is none (a workspace not seeded from a snapshot) or it cannot
 * be used (unreadable, another version): the snapshot is then simply copied whole.
 */
export async function readOrigin(file: string): Promise<OriginRecord | undefined> {
  let json: OriginJson;
  try {
    json = JSON.parse(await fs.readFile(file, 'utf8')) as OriginJson;
  } catch {
    return undefined;
  }
  if (
    json?.version !== VERSION ||
    typeof json.snapshot !== 'string' ||
    typeof json.snapshotId !== 'string' ||
    !Array.isArray(json.files)
  ) {
    return undefined;
  }
  try {
    const files: OriginFiles = new Map();
    for (const [k, ino, ctimeNs] of json.files) files.set(k, { ino: BigInt(ino), ctimeNs: BigInt(ctimeNs) });
    return {
      snapshot: json.snapshot,
      snapshotId: json.snapshotId,
      files,
      ...(json.lower === true ? { lower: true } : {}),
    };
  } catch {
    return undefined;
  }
}
