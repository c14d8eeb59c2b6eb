import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ConfigInput } from '../../shared/config/schema.js';
import { DOCKER_SOCKET, dockerUnavailable } from './docker-daemon.js';
import { makeEcsBackend, startEcsProvider, type EcsHandle } from './ecs-fixture.js';
import { closeTestProvider, hostileBackends } from './hostile-backends.js';
import { startTestProvider, type TestProvider } from './provider-fixture.js';
import { registryUnavailable } from './registry.js';

/**
 * The three backends the Files API suites (test/integration/files.test.ts, archive.test.ts) run on, each
 * a provider over real HTTP: local (bubblewrap), Docker, and Fargate over the fakes (ecs-fixture.ts).
 */

export interface Started {
  wsp: TestProvider;
  close(): Promise<void>;
  /** Fargate only: the fake S3's requests (large bodies must travel there, not over the exec session). */
  s3?: EcsHandle['s3'];
  /** How many command dirs the backend keeps for workspace `id` (host dirs; Fargate: in the task). */
  commandDirs(id: string): Promise<number>;
}

/** Entries of a host dir (0 when it is gone). */
const entries = (dir: string): number => (fs.existsSync(dir) ? fs.readdirSync(dir).length : 0);

export interface Target {
  name: string;
  skip: string | undefined;
  start(): Promise<Started>;
}

const execFileP = promisify(execFile);
const [local, docker] = hostileBackends();
export function filesTargets(FILES_CONFIG: ConfigInput): Target[] {
  return [
    ...[local!, docker!].map((b) => ({
      name: b.name,
      skip: b.skip,
      async start() {
        const wsp = await startTestProvider({ ...b.config, ...FILES_CONFIG });
        const kind = b.name === 'local' ? ['local', 'commands'] : ['docker', 'cmd'];
        return {
          wsp,
          close: () => closeTestProvider(wsp),
          commandDirs: async (id: string) => entries(path.join(wsp.dataDir, kind[0]!, 'workspaces', id, kind[1]!)),
        };
      },
    })),
    {
      name: 'ecs (fake)',
      skip: dockerUnavailable ?? registryUnavailable,
      async start() {
        const ecs: EcsHandle = await makeEcsBackend();
        const provider = await startEcsProvider(ecs, FILES_CONFIG);
        return {
          wsp: provider.wsp,
          s3: ecs.s3,
          // The workspace's task is the one tagged with its id.
          async commandDirs(id: string) {
            const task = [...ecs.fake.tasks.values()].find((t) => t.tags['wsp:workspace'] === id);
            if (!task) throw new Error(`no task for ${id}`);
            const { stdout } = await execFileP('docker', [
              '-H',
              `unix://${DOCKER_SOCKET}`,
              'exec',
              task.container,
              'sh',
              '-c',
              'ls -A /var/lib/wsp/cmd 2>/dev/null | wc -l',
            ]);
            return Number(stdout.trim());
          },
          async close() {
            await provider.close();
            await ecs.cleanup();
          },
        };
      },
    },
  ];
}

export interface RawAnswer {
  status: number;
  headers: Headers;
  bytes: Buffer;
  json: any;
}
