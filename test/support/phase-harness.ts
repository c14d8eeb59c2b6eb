import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { configureLambda, lambdaContainer, type LambdaOverrides } from '../../functions/lambda/compose.js';
import { createLocalBackend } from '../../shared/backends/local/index.js';
import { unmountAll } from '../../shared/backends/local/overlay/index.js';
import { parseConfig } from '../../shared/config/load.js';
import type { WorkspaceBackend, WorkspaceHandle } from '../../shared/contract/backend.js';
import type { WorkspaceRecord } from '../../shared/contract/workspace.js';
import { createLogger } from '../../shared/log.js';
import type { Job } from '../../shared/service/long-work.js';
import { startTcpDynalite, type TcpDynamo } from './dynalite-tcp.js';
import { createUpstreamRepo, type UpstreamRepo } from './git-fixtures.js';
import { startGitServer, type GitServer } from './git-server.js';

/**
 * Work that runs phase by phase across Lambda invocations (provisioning, operations), tested the way
 * the state machines run it: each phase in a freshly composed Lambda container — nothing but the state
 * store and the workspace carries over — over the local backend, a token-checking git server and a
 * DynamoDB-protocol endpoint. A `trap` makes the next call of one backend method never return: its
 * worker was killed right there.
 */
export interface PhaseHarness {
  /** The upstream repository every deployment clones (path `app` in the workspace). */
  readonly app: UpstreamRepo;
  /** Jobs the api handed off (no worker runs them: the test runs the phases). */
  readonly handedOff: Job[];
  /** `files.putTransferFile`, `snapshots.take`, `backend.create`, …: the next call (after `skip` more) never returns. */
  readonly trap: { at?: string; skip?: number };
  /** One deployment (its own table and data dir); `setup` is the setup script. */
  deployment(setup: string): LambdaOverrides;
  /** A workspace of that deployment (provisioning, handed off). */
  create(d: LambdaOverrides): Promise<string>;
  /** The workspace's record now. */
  record(id: string): Promise<WorkspaceRecord>;
  /** How much compute the backend has for the workspace. */
  computeOf(id: string): Promise<number>;
}

export function phaseHarness(prefix: string): PhaseHarness {
  const token = `pp-${randomBytes(8).toString('hex')}`;
  let root = '';
  let git: GitServer | undefined;
  let app: UpstreamRepo | undefined;
  let dynamo: TcpDynamo | undefined;
  let table = 0;
  const handedOff: Job[] = [];
  const trap: { at?: string; skip?: number } = {};

  beforeAll(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), `wsp-${prefix}-`));
    fs.chmodSync(root, 0o711);
    git = await startGitServer({ token, root: path.join(root, 'git') });
    app = createUpstreamRepo(git.root, 'app', { 'a.txt': 'a\n' });
    dynamo = await startTcpDynalite();
  });
  afterAll(async () => {
    await configureLambda({});
    await dynamo?.close();
    await git?.close();
    await unmountAll(root); // overlay homes (local backend) stay mounted until detached
    fs.rmSync(root, { recursive: true, force: true });
  });

  function trapping<T extends object>(target: T, area: string): T {
    return new Proxy(target, {
      get(t, p) {
        const v = Reflect.get(t, p) as unknown;
        if (typeof v !== 'function') return v;
        if (trap.at === `${area}.${String(p)}` && !trap.skip) {
          trap.at = undefined;
          return () => new Promise(() => undefined);
        }
        if (trap.at === `${area}.${String(p)}`) trap.skip = (trap.skip ?? 1) - 1;
        return (v as (...a: unknown[]) => unknown).bind(t);
      },
    });
  }

  function trappedBackend(backend: WorkspaceBackend): WorkspaceBackend {
    return new Proxy(backend, {
      get(t, p) {
        if (p === 'open')
          return (...args: Parameters<WorkspaceBackend['open']>): WorkspaceHandle => {
            const h = t.open(...args);
            return {
              ref: h.ref,
              commands: trapping(h.commands, 'commands'),
              files: trapping(h.files, 'files'),
              snapshots: trapping(h.snapshots, 'snapshots'),
              usage: () => h.usage(),
            };
          };
        return trapping(t, 'backend')[p as keyof WorkspaceBackend];
      },
    });
  }

  return {
    get app() {
      if (!app) throw new Error('the harness starts in beforeAll');
      return app;
    },
    handedOff,
    trap,
    deployment(setup) {
      table++;
      const dataDir = path.join(root, `data-${table}`);
      return {
        env: { WSP_INSTANCE_ID: `wsp-${prefix}`, WSP_MODE: 'local', PP_TOKEN: token },
        config: parseConfig({
          dataDir,
          repositories: [{ url: git!.url('app'), path: 'app', credential: 'env:PP_TOKEN' }],
          setup: { script: setup },
          workspace: { network: 'none' },
          state: { tableName: `wsp-${prefix}-${table}`, embedded: false },
          auth: { disabled: true },
        }),
        dynamoEndpoint: dynamo!.endpoint,
        backend: async ({ dataDir: dir, instanceId, log }) =>
          trappedBackend(await createLocalBackend({ dataDir: dir, owner: instanceId, log })),
        jobs: { dispatch: async (job) => void handedOff.push(job) },
        log: createLogger({ svc: `wsp-${prefix}-test` }, () => undefined),
      };
    },
    async create(d) {
      await configureLambda(d);
      const { workspace } = await (await lambdaContainer()).service.createWorkspace({});
      return workspace.id;
    },
    async record(id) {
      return (await (await lambdaContainer()).deps.state.getWorkspace(id))!;
    },
    async computeOf(id) {
      const { deps } = await lambdaContainer();
      return (await deps.backend.listResources()).filter((r) => r.workspaceId === id).length;
    },
  };
}

export async function waitUntil(check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}
