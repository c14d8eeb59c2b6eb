import fs from 'node:fs/promises';
import path from 'node:path';
import { BackendUnavailableError } from '../../contract/errors.js';
import { processesOfUid, uidsWithProcesses } from './procs.js';
import { sleep } from '../../lib/sleep.js';

/**
 * Host uids for workspaces (root mode): each workspace runs as a host uid of its own, so the kernel
 * keeps workspaces apart (files, /proc, signals) and "every process of the workspace" is "every
 * process of that uid".
 *
 * Uids are a HOST-wide resource — two providers (or two test runs) with different data dirs must
 * never hand out the same uid — so claims live in one registry dir per host (default
 * /var/lib/wsp-local/host-uids): file `<uid>` = {"workspaceDir": …}. Allocation runs under a
 * mkdir lock in that dir. Allocation takes the lowest uid with no claim file and no process, without
 * reading any claim (a create must not grow with the number of claims on the host). A claim whose
 * workspace dir is gone and whose uid has no process left is stale (a data dir deleted without
 * destroy): `sweepStaleHostUids` removes those (at backend start-up and in its upkeep), so their uids
 * are free again. Uids of /etc/passwd accounts and /etc/subuid ranges are skipped.
 */
export const HOST_UID_BASE = 200_000;
const HOST_UID_COUNT = 1_000_000;
export const DEFAULT_UID_REGISTRY = '/var/lib/wsp-local/host-uids';

const LOCK = '.lock';
/** A lock older than this was left by a crashed allocator. */
const STALE_LOCK_MS = 30_000;

interface Claim {
  workspaceDir: string;
}

async function readClaim(file: string): Promise<Claim | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as Claim;
  } catch {
    return undefined;
  }
}

async function exists(p: string): Promise<boolean> {
  return fs.lstat(p).then(
    () => true,
    () => false,
  );
}

/** Uids the host already uses for accounts or delegates to user namespaces (subuid/subgid). */
async function reservedUids(): Promise<(uid: number) => boolean> {
  const single = new Set<number>();
  const ranges: Array<[number, number]> = [];
  const passwd = await fs.readFile('/etc/passwd', 'utf8').catch(() => '');
  for (const line of passwd.split('\n')) {
    const uid = Number(line.split(':')[2]);
    if (Number.isInteger(uid)) single.add(uid);
  }
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    const text = await fs.readFile(file, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      const [, start, count] = line.split(':').map(Number);
      if (Number.isInteger(start) && Number.isInteger(count)) ranges.push([start!, start! + count!]);
    }
  }
  return (uid) => single.has(uid) || ranges.some(([lo, hi]) => uid >= lo && uid < hi);
}

async function withLock<T>(registry: string, fn: () => Promise<T>): Promise<T> {
  const lock = path.join(registry, LOCK);
  const deadline = Date.now() + 2 * STALE_LOCK_MS;
  for (;;) {
    try {
      await fs.mkdir(lock);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const age = await fs.stat(lock).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (age > STALE_LOCK_MS) await fs.rm(lock, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new BackendUnavailableError(`host uid registry ${registry} stays locked`);
      else await sleep(5 + Math.random() * 20);
    }
  }
  try {
    return await fn();
  } finally {
    await fs.rm(lock, { recursive: true, force: true });
  }
}

/** Claim a free host uid for the workspace at `workspaceDir` (which must exist already). */
export async function claimHostUid(registry: string, workspaceDir: string): Promise<number> {
  try {
    await fs.mkdir(registry, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new BackendUnavailableError(`cannot create the host uid registry ${registry}`, error);
  }
  const reserved = await reservedUids();
  return withLock(registry, async () => {
    const claimed = new Set((await fs.readdir(registry)).map(Number).filter(Number.isInteger));
    for (let uid = HOST_UID_BASE + 1; uid < HOST_UID_BASE + HOST_UID_COUNT; uid++) {
      if (reserved(uid) || claimed.has(uid)) continue;
      // A uid with live processes (left by a crash mid-destroy) is not reused until they are gone.
      if ((await processesOfUid(uid)).length > 0) continue;
      await fs.writeFile(path.join(registry, String(uid)), JSON.stringify({ workspaceDir } satisfies Claim), {
        mode: 0o600,
      });
      return uid;
    }
    throw new BackendUnavailableError(
      `no free host uid in ${HOST_UID_BASE + 1}..${HOST_UID_BASE + HOST_UID_COUNT - 1}`,
    );
  });
}

/**
 * Remove stale claims — their workspace dir is gone and their uid runs nothing (a data dir deleted
 * without destroy) — so their uids are handed out again. Unreadable claims are left alone. Returns
 * how many were removed.
 */
export function sweepStaleHostUids(registry: string): Promise<number> {
  // One sweep per registry at a time in this process, and not again within SWEEP_EVERY_MS: many
  // backends composed in one process (a Lambda-style compose per call) share it.
  const last = sweeps.get(registry);
  if (last && (last.running || Date.now() - last.at < SWEEP_EVERY_MS)) return last.done;
  const entry = { at: Date.now(), running: true, done: Promise.resolve(0) };
  entry.done = sweepNow(registry).finally(() => {
    entry.running = false;
  });
  sweeps.set(registry, entry);
  return entry.done;
}

const SWEEP_EVERY_MS = 60_000;
const sweeps = new Map<string, { at: number; running: boolean; done: Promise<number> }>();

async function sweepNow(registry: string): Promise<number> {
  if (!(await exists(registry))) return 0;
  // Candidates are found without the lock (allocations go on meanwhile), against one look at which
  // uids run processes; each is checked again and removed under the lock, so it is held briefly.
  const busy = await uidsWithProcesses();
  const stale: number[] = [];
  for (const name of await fs.readdir(registry)) {
    const uid = Number(name);
    if (Number.isInteger(uid) && !busy.has(uid) && (await claimGone(registry, uid))) stale.push(uid);
  }
  if (stale.length === 0) return 0;
  return withLock(registry, async () => {
    let removed = 0;
    for (const uid of stale) {
      if (!(await claimGone(registry, uid)) || (await processesOfUid(uid)).length > 0) continue;
      await fs.rm(path.join(registry, String(uid)), { force: true });
      removed++;
    }
    return removed;
  });
}

/** A readable claim whose workspace dir is gone. */
async function claimGone(registry: string, uid: number): Promise<boolean> {
  const claim = await readClaim(path.join(registry, String(uid)));
  return claim !== undefined && !(await exists(claim.workspaceDir));
}

/** Release `uid` if it is still claimed for `workspaceDir` (idempotent). */
export async function releaseHostUid(registry: string, uid: number, workspaceDir: string): Promise<void> {
  const file = path.join(registry, String(uid));
  if (!(await exists(file))) return;
  // Under the lock: an allocator may be re-using this very claim as stale right now.
  await withLock(registry, async () => {
    const claim = await readClaim(file);
    if (claim?.workspaceDir === workspaceDir) await fs.rm(file, { force: true });
  });
}
