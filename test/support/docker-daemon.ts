import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import { createDockerBackend } from '../../shared/backends/docker/index.js';
import type { WorkspaceBackend } from '../../shared/contract/backend.js';
import type { BackendRef } from '../../shared/contract/workspace.js';
import { type ContractHandle, hostDirLeftovers } from './backend-fixture.js';

/**
 * Finding the test Docker daemon (started by .ci/docker.sh) and making docker backends over it.
 * Tests that need Docker skip ONLY when no daemon answers — and then say so loudly.
 */

/** WSP_DOCKER_SOCKET, else the socket .ci/docker.sh starts, else the system default. */
export const DOCKER_SOCKET =
  process.env.WSP_DOCKER_SOCKET ??
  [`/var/lib/wsp-ci-docker/docker.sock`, '/var/run/docker.sock'].find((s) => fs.existsSync(s)) ??
  '/var/lib/wsp-ci-docker/docker.sock';
export const BASE_IMAGE = process.env.WSP_BASE_IMAGE ?? 'wsp-base:bookworm';

/** Why Docker tests cannot run here (undefined = they can). Checked once, synchronously, at import. */
export const dockerUnavailable: string | undefined = (() => {
  try {
    execFileSync('docker', ['-H', `unix://${DOCKER_SOCKET}`, 'image', 'inspect', '--format', '{{.Id}}', BASE_IMAGE], {
      stdio: 'pipe',
      timeout: 20_000,
    });
    return undefined;
  } catch (error) {
    const stderr = String((error as { stderr?: Buffer }).stderr ?? '')
      .trim()
      .split('\n')[0];
    return `no Docker daemon with image ${BASE_IMAGE} at ${DOCKER_SOCKET} (${stderr || (error as Error).message}); run .ci/docker.sh`;
  }
})();

if (dockerUnavailable !== undefined) {
  // CI always has Docker (.ci/run starts it): there a missing daemon is a failure, never a skip.
  if (process.env.CI === 'true') throw new Error(`Docker is required in CI: ${dockerUnavailable}`);
  console.warn(`\n!!!!!!!!!! DOCKER TESTS SKIPPED: ${dockerUnavailable} !!!!!!!!!!\n`);
}

export const dockerClient = (): Docker => new Docker({ socketPath: DOCKER_SOCKET });

/** A docker backend over a fresh temp data dir and a unique owner; reopen = a second instance on both. */
export async function makeDockerBackend(): Promise<
  ContractHandle & { dataDir: string; owner: string; docker: Docker }
> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-docker-'));
  const owner = `test-${path
    .basename(dataDir)
    .replace(/[^A-Za-z0-9]/g, '')
    .toLowerCase()}`;
  const open = (): Promise<WorkspaceBackend> =>
    createDockerBackend({ dataDir, owner, socketPath: DOCKER_SOCKET, baseImage: BASE_IMAGE });
  const backend = await open();
  const docker = dockerClient();
  const exec = async (ref: BackendRef, argv: string[]): Promise<void> => {
    execFileSync('docker', ['-H', `unix://${DOCKER_SOCKET}`, 'exec', String(ref.container), ...argv], {
      stdio: 'pipe',
    });
  };
  const commandDir = (ref: BackendRef, commandId: string): string =>
    path.join(dataDir, 'docker', 'workspaces', String(ref.workspaceId), 'cmd', commandId);
  return {
    dataDir,
    owner,
    docker,
    backend,
    reopen: open,
    // Kill the runner's supervisor and the command's group inside the container: no exit record.
    async loseCommand(ref, commandId) {
      const dir = commandDir(ref, commandId);
      const pid = fs.readFileSync(path.join(dir, 'pid'), 'utf8').trim();
      const pgid = fs.readFileSync(path.join(dir, 'pgid'), 'utf8').trim();
      await exec(ref, ['sh', '-c', 'kill -KILL "$1" "-$2"', 'sh', pid, pgid]);
    },
    commandLeftovers: async (ref, commandId) => hostDirLeftovers(commandDir(ref, commandId)),
    async cleanup() {
      for (const ws of await backend.listResources()) await backend.destroy(ws.ref);
      for (const snap of await backend.snapshots.list()) await backend.snapshots.delete(snap);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
