import fs from 'node:fs';
import type { ConfigInput } from '../../shared/config/schema.js';
import { BASE_IMAGE, DOCKER_SOCKET, dockerUnavailable } from './docker-daemon.js';
import type { TestProvider } from './provider-fixture.js';

/** The backends the hostile suite attacks: the local one, and Docker wherever a daemon answers (always in CI). */
export type HostileBackendName = 'local' | 'docker';

export interface HostileBackend {
  name: HostileBackendName;
  /** Merged into the test provider's config. */
  config: ConfigInput;
  /** Why this backend cannot run here (undefined = it can); said out loud by the fixture that decides it. */
  skip: string | undefined;
}

/** Both backends; `localSkip` for suites whose local half needs more than the host gives (e.g. root). */
export function hostileBackends(localSkip?: string): HostileBackend[] {
  return [
    { name: 'local', config: {}, skip: localSkip },
    {
      name: 'docker',
      config: { mode: 'docker', docker: { socketPath: DOCKER_SOCKET, baseImage: BASE_IMAGE } },
      skip: dockerUnavailable,
    },
  ];
}

/**
 * Close a test provider and remove what outlives a provider by design — its workspaces' compute and its
 * snapshots (Docker containers and images) — then its data dir. Snapshots are listed by this provider's
 * owner only, so other test files' images on the same daemon are never touched.
 */
export async function closeTestProvider(wsp: TestProvider | undefined): Promise<void> {
  if (!wsp) return;
  const backend = wsp.provider.deps.backend;
  for (const ws of await backend.listResources()) await backend.destroy(ws.ref);
  for (const snap of await backend.snapshots.list()) await backend.snapshots.delete(snap);
  await wsp.close();
  fs.rmSync(wsp.dataDir, { recursive: true, force: true });
}
