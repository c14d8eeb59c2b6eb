import type {
  CacheEntryRecord,
  CommandRecord,
  SnapshotRecord,
  WorkspaceRecord,
} from '../../shared/contract/workspace.js';

/** Records shaped like the service writes them, with nested maps, lists and optional fields. */
export function workspaceRecord(id: string, overrides: Partial<WorkspaceRecord> = {}): WorkspaceRecord {
  return {
    id,
    status: 'provisioning',
    version: 1,
    plan: {
      home: '/home/node',
      root: '/home/node/workspace',
      workdir: '/home/node/workspace',
      user: { name: 'node', uid: 1000, gid: 1000 },
      transferDir: '/wsp-transfer',
      repos: [
        {
          name: 'app',
          path: 'app',
          target: '/home/node/workspace/app',
          source: { kind: 'git', url: 'https://example.invalid/app.git', ref: 'main', credential: 'env:GIT_TOKEN' },
        },
      ],
      env: { CI: '1', EMPTY: '' },
      network: 'none',
      resources: { cpus: 1, memoryMb: 512 },
    },
    repos: [{ name: 'app', path: 'app' }],
    labels: { team: 'a' },
    owner: 'instance-1',
    warnings: [],
    steps: [{ at: '2025-01-01T00:00:00.000Z', step: 'plan', message: 'resolved' }],
    createdAt: '2025-01-01T00:00:00.000Z',
    updatedAt: '2025-01-01T00:00:00.000Z',
    ...overrides,
  };
}

export function commandRecord(workspaceId: string, id: string, overrides: Partial<CommandRecord> = {}): CommandRecord {
  return {
    workspaceId,
    id,
    version: 1,
    state: 'running',
    argv: ['bash', '-lc', 'echo hi'],
    cwd: '/home/node/workspace',
    internal: false,
    timeoutMs: 60_000,
    exitCode: null,
    signal: null,
    stdout: { bytes: 0, truncated: false },
    stderr: { bytes: 0, truncated: false },
    startedAt: '2025-01-01T00:00:01.000Z',
    ...overrides,
  };
}

export function cacheEntryRecord(key: string, overrides: Partial<CacheEntryRecord> = {}): CacheEntryRecord {
  return {
    key,
    status: 'building',
    version: 1,
    backendKind: 'local',
    repos: [{ name: 'app', path: 'app', commit: 'a'.repeat(40) }],
    lease: { owner: 'instance-1', expiresAt: 1_900_000_000 },
    createdAt: '2025-01-01T00:00:00.000Z',
    lastUsedAt: '2025-01-01T00:00:00.000Z',
    ...overrides,
  };
}

export function snapshotRecord(id: string, overrides: Partial<SnapshotRecord> = {}): SnapshotRecord {
  return {
    id,
    version: 1,
    status: 'creating',
    kind: 'user',
    name: 'before refactor',
    sourceWorkspaceId: 'ws-1',
    operationId: 'op-1',
    backendKind: 'local',
    plan: workspaceRecord('ws-1').plan,
    repos: [{ name: 'app', path: 'app', commit: 'a'.repeat(40), ref: 'main' }],
    labels: { step: '7' },
    owner: 'instance-1',
    createdAt: '2025-01-01T00:00:00.000Z',
    updatedAt: '2025-01-01T00:00:00.000Z',
    ...overrides,
  };
}
