import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { GIT_LAYER_DIR } from '../../infra/constructs/git-layer.js';
import { PROJECT_ROOT } from '../../infra/constructs/wsp-function.js';
import { BASE_IMAGE, DOCKER_SOCKET, dockerUnavailable } from '../support/docker-daemon.js';

const run = promisify(execFile);

// The worker's git layer is built by `cdk deploy` (infra/constructs/git-layer.ts: the build script in
// Amazon Linux 2023 for arm64, which CI cannot pull). Here CI runs the same script in its Debian test
// image and checks that the result stands on its own: with the image's own git removed, git from the
// layer (as Lambda lays it out under /opt) creates, bundles and clones a repository.
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-git-layer-'));
afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

describe.skipIf(dockerUnavailable !== undefined)('git layer build script', () => {
  const docker = (...args: string[]) => run('docker', ['-H', `unix://${DOCKER_SOCKET}`, ...args], { timeout: 300_000 });

  it('lays out git, its helpers and their libraries for /opt, runnable without the system git', async () => {
    const build = await docker(
      'run',
      '--rm',
      '--network',
      'none',
      '-v',
      `${path.join(PROJECT_ROOT, GIT_LAYER_DIR)}:/asset-input:ro`,
      '-v',
      `${out}:/asset-output`,
      BASE_IMAGE,
      'sh',
      '/asset-input/build.sh',
      '/asset-output',
    );
    expect(build.stdout).toMatch(/^git layer: \S+ in \/asset-output$/m);
    const check = [
      'set -e',
      // Nothing of the image's git is left: only the layer's can answer.
      'rm -f /usr/bin/git && rm -rf "$(dirname "$(readlink -f /usr/lib/git-core/git-remote-http)")" /usr/lib/git-core',
      'export PATH=/opt/bin:$PATH GIT_EXEC_PATH=/opt/libexec/git-core LD_LIBRARY_PATH=/opt/lib',
      'command -v git',
      'cd /tmp && git init -q up && cd up',
      'git -c user.email=ci@wsp -c user.name=ci commit -q --allow-empty -m from-the-layer',
      'git bundle create -q ../up.bundle HEAD',
      'git clone -q ../up.bundle ../down && git -C ../down log --format=%s',
      'test -x /opt/libexec/git-core/git-remote-https || test -x /opt/libexec/git-core/git-remote-http',
      'if ldd /opt/libexec/git-core/git-remote-http | grep -q "not found"; then echo libs-missing; else echo libs-ok; fi',
    ].join('\n');
    const { stdout } = await docker(
      'run',
      '--rm',
      '--network',
      'none',
      '-v',
      `${out}:/opt:ro`,
      '--entrypoint',
      'sh',
      BASE_IMAGE,
      '-c',
      check,
    );
    expect(stdout.trim().split('\n')).toEqual(['/opt/bin/git', 'from-the-layer', 'libs-ok']);
  }, 300_000);
});
