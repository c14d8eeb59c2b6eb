import fs from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../../lib/write-atomic.js';
import { RUNNER_SCRIPT } from '../runner/command-files.js';
import type { DockerLayout } from './layout.js';

/**
 * The host dir every workspace container mounts read-only at GUEST_RUNNER_DIR: runner.sh and an
 * empty cmd/ (the mount point of the workspace's own command dir bind). A bind instead of a
 * put-archive before each start: no request to the daemon per create (a put-archive into a created
 * container costs ~50–80 ms here), nothing of the runner lands in a committed image, and the runner
 * cannot be changed from inside, not even by root (read-only mount). Root-only (0700), as the
 * put-archive's dir was. Rewritten (temp + rename) only when the code's runner differs, so a
 * container started earlier keeps the file it started with.
 */
export async function installRunnerDir(layout: DockerLayout): Promise<void> {
  const dir = layout.runnerDir;
  await fs.mkdir(path.join(dir, 'cmd'), { recursive: true, mode: 0o700 });
  await fs.chmod(dir, 0o700);
  await fs.chmod(path.join(dir, 'cmd'), 0o700);
  const script = await fs.readFile(RUNNER_SCRIPT);
  const dest = path.join(dir, 'runner.sh');
  const current = await fs.readFile(dest).catch(() => undefined);
  if (current?.equals(script)) return;
  await writeFileAtomic(dest, script, { mode: 0o700 });
}
