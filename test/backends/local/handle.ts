import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { WorkspaceBackend } from '../../../shared/contract/backend.js';
import type { BackendRef } from '../../../shared/contract/workspace.js';
import { createLocalBackend } from '../../../shared/backends/local/index.js';
import { unmountAll } from '../../../shared/backends/local/overlay/index.js';
import { type ContractHandle, hostDirLeftovers } from '../../support/backend-fixture.js';

/** A local backend over a fresh temp data dir; reopen = a second instance on the same dir. */
export async function makeLocalBackend(
  options: { bwrapPath?: string | null } = {},
): Promise<ContractHandle & { dataDir: string }> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-local-'));
  const open = (): Promise<WorkspaceBackend> => createLocalBackend({ dataDir, owner: 'test-instance', ...options });
  const backend = await open();
  const commandDir = (ref: BackendRef, commandId: string): string =>
    path.join(dataDir, 'local', 'workspaces', String(ref.workspaceId), 'commands', commandId);
  return {
    dataDir,
    backend,
    reopen: open,
    // Kill the detached wrapper and its command group: no exit record can be written any more.
    async loseCommand(ref, commandId) {
      const dir = commandDir(ref, commandId);
      const [pid] = fs.readFileSync(path.join(dir, 'pid'), 'utf8').trim().split(' ');
      const [pgid] = fs.readFileSync(path.join(dir, 'pgid'), 'utf8').trim().split(' '); // "<pgid> <leader start>"
      process.kill(Number(pid), 'SIGKILL');
      process.kill(-Number(pgid), 'SIGKILL');
    },
    commandLeftovers: async (ref, commandId) => hostDirLeftovers(commandDir(ref, commandId)),
    async cleanup() {
      for (const ws of await backend.listResources()) await backend.destroy(ws.ref);
      // A mount left by a failed destroy (overlay homes) is never removed through: detached first.
      await unmountAll(dataDir);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Whether this backend gives copy-on-write (overlay) homes; false: the copy fallback (its warning says so). */
export function overlayHomes(backend: WorkspaceBackend): boolean {
  return !backend.warnings.some((w) => w.startsWith('copy-on-write homes unavailable'));
}
