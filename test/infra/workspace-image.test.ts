import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WORKSPACE_DOCKERFILE, WORKSPACE_IMAGE_FILES } from '../../infra/constructs/workspace-image.js';
import { PROJECT_ROOT } from '../../infra/constructs/wsp-function.js';
import { BASE_IMAGE, DOCKER_SOCKET, dockerUnavailable } from '../support/docker-daemon.js';
import { buildStage } from './synth-fixture.js';

const run = promisify(execFile);

// The workspace base image is part of the CDK app (issue 11: `cdk deploy --all` is the whole
// deployment): an image asset whose build context is exactly the Dockerfile and the runner scripts.
// Synth only stages it; here CI also builds the staged context with its local engine (FROM the test
// base image, so nothing is pulled) and checks what a task would run.

interface DockerAssetSource {
  directory: string;
  dockerFile?: string;
  platform?: string;
}

let outdir: string;
let sources: DockerAssetSource[];

beforeAll(() => {
  outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-image-synth-'));
  const assembly = buildStage({ outdir }).app.synth();
  sources = fs
    .readdirSync(assembly.directory)
    .filter((f) => f.endsWith('.assets.json'))
    .flatMap((f) => {
      const manifest = JSON.parse(fs.readFileSync(path.join(assembly.directory, f), 'utf8')) as {
        dockerImages?: Record<string, { source: DockerAssetSource }>;
      };
      return Object.values(manifest.dockerImages ?? {}).map((d) => d.source);
    });
});

afterAll(() => fs.rmSync(outdir, { recursive: true, force: true }));

const filesUnder = (dir: string): string[] =>
  fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();

const sha256 = (file: string): string => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

describe('workspace image asset', () => {
  it('is one docker image asset of the app, built from infra/images/workspace for the stage platform', () => {
    expect(sources).toHaveLength(1);
    expect(sources[0]).toMatchObject({ dockerFile: WORKSPACE_DOCKERFILE, platform: 'linux/amd64' });
  });

  it('its build context is the Dockerfile and the runner scripts of this checkout, nothing else', () => {
    const staged = path.join(outdir, sources[0]!.directory);
    expect(filesUnder(staged)).toEqual([WORKSPACE_DOCKERFILE, ...WORKSPACE_IMAGE_FILES].sort());
    for (const file of WORKSPACE_IMAGE_FILES)
      expect(sha256(path.join(staged, file)), file).toBe(sha256(path.join(PROJECT_ROOT, file)));
  });

  it.skipIf(dockerUnavailable !== undefined)(
    'builds with the local engine and carries this checkout’s runner, the tools it needs and the workspace user',
    async () => {
      const staged = path.join(outdir, sources[0]!.directory);
      const tag = `wsp-workspace-image-test:${randomBytes(4).toString('hex')}`;
      const docker = (...args: string[]) =>
        run('docker', ['-H', `unix://${DOCKER_SOCKET}`, ...args], { timeout: 300_000 });
      try {
        // --network none: the base already has every tool, so the Dockerfile installs nothing.
        await docker(
          'build',
          '--network',
          'none',
          '--build-arg',
          `BASE_IMAGE=${BASE_IMAGE}`,
          '-f',
          path.join(staged, WORKSPACE_DOCKERFILE),
          '-t',
          tag,
          staged,
        );
        const script = [
          'set -e',
          'sha256sum /opt/wsp/runner.sh /opt/wsp/pristine.sh',
          'for t in sh git curl setsid find tar gzip ps dd; do command -v "$t" > /dev/null || echo "missing $t"; done',
          'test -e /etc/ssl/certs/ca-certificates.crt || echo "missing ca-certificates"',
          'id -u node',
          'sh -n /opt/wsp/runner.sh && sh -n /opt/wsp/pristine.sh && echo syntax-ok',
        ].join('\n');
        const { stdout } = await docker('run', '--rm', '--network', 'none', '--entrypoint', 'sh', tag, '-c', script);
        const lines = stdout.trim().split('\n');
        expect(lines).toEqual([
          `${sha256(path.join(PROJECT_ROOT, 'shared/backends/runner/runner.sh'))}  /opt/wsp/runner.sh`,
          `${sha256(path.join(PROJECT_ROOT, 'shared/backends/runner/pristine.sh'))}  /opt/wsp/pristine.sh`,
          '1000',
          'syntax-ok',
        ]);
        const { stdout: cmd } = await docker('image', 'inspect', '--format', '{{json .Config.Cmd}}', tag);
        expect(JSON.parse(cmd)).toEqual(['sleep', 'infinity']);
      } finally {
        await docker('image', 'rm', '-f', tag).catch(() => undefined);
      }
    },
    300_000,
  );
});
