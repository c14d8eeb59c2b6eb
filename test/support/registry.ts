import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { waitFor } from './wait.js';

/**
 * A real OCI registry on loopback (Debian's `docker-registry` 2.8, distribution/distribution) with
 * filesystem storage in a temp dir and deletes enabled; plain HTTP, no auth. `.ci/docker.sh` installs it.
 */

export interface LoopbackRegistry {
  /** e.g. http://127.0.0.1:41234 */
  readonly url: string;
  /** e.g. 127.0.0.1:41234 — the image-reference prefix */
  readonly host: string;
  readonly port: number;
  /** Kills the registry (by its pid) and removes its storage. Idempotent. */
  stop(): Promise<void>;
}

const REGISTRY_BIN = process.env.WSP_REGISTRY_BIN ?? '/usr/bin/docker-registry';

/** Why registry tests cannot run here (undefined = they can). In CI the binary is required. */
export const registryUnavailable: string | undefined = fs.existsSync(REGISTRY_BIN)
  ? undefined
  : `${REGISTRY_BIN} not found (apt-get install docker-registry; .ci/docker.sh does)`;
if (registryUnavailable !== undefined) {
  // CI always has it (.ci/docker.sh installs it): there a missing registry is a failure, never a skip.
  if (process.env.CI === 'true') throw new Error(`docker-registry is required in CI: ${registryUnavailable}`);
  console.warn(`\n!!!!!!!!!! REGISTRY TESTS SKIPPED: ${registryUnavailable} !!!!!!!!!!\n`);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function startOnce(port: number): Promise<LoopbackRegistry> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-registry-'));
  const config = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${path.join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    // A fixed secret silences the "random secret" warning; uploads never span instances here.
    '  secret: wsp-test-not-a-secret',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'config.yml'), config);
  const logFd = fs.openSync(path.join(dir, 'registry.log'), 'a');
  const child = spawn(REGISTRY_BIN, ['serve', path.join(dir, 'config.yml')], { stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  let exited = false;
  child.once('exit', () => (exited = true));

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (!exited) {
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await gone;
      clearTimeout(timer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };

  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      `docker-registry on ${url}/v2/`,
      async () => {
        if (exited)
          throw new Error(
            `docker-registry exited: ${fs.readFileSync(path.join(dir, 'registry.log'), 'utf8').trim().slice(-500)}`,
          );
        try {
          const res = await fetch(`${url}/v2/`);
          await res.arrayBuffer();
          return res.status === 200 && res.headers.get('docker-distribution-api-version') === 'registry/2.0'
            ? true
            : undefined;
        } catch {
          return undefined;
        }
      },
      20_000,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, host: `127.0.0.1:${port}`, port, stop };
}

/** Starts a registry on a free loopback port (retries if the port was taken meanwhile). */
export async function startRegistry(): Promise<LoopbackRegistry> {
  let last: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(await freePort());
    } catch (error) {
      last = error;
    }
  }
  throw last;
}

const run = promisify(execFile);

/**
 * Pushes a local image of the test dockerd into the registry as `<host>/<repository>:<tag>` with the
 * docker CLI. The daemon must reach the registry's port (see netns-bridge.ts); a loopback registry
 * is plain-HTTP "insecure" by default in dockerd. The extra tag is removed again afterwards.
 */
async function pushImage(
  dockerSocket: string,
  image: string,
  registry: LoopbackRegistry,
  repository: string,
  tag: string,
): Promise<string> {
  const ref = `${registry.host}/${repository}:${tag}`;
  const docker = (...args: string[]) =>
    run('docker', ['-H', `unix://${dockerSocket}`, ...args], { maxBuffer: 16 * 1024 * 1024 });
  await docker('tag', image, ref);
  try {
    await docker('push', ref);
  } finally {
    await docker('image', 'rm', ref).catch(() => undefined);
  }
  return ref;
}

/**
 * Pushes the test base image (WSP_BASE_IMAGE, default wsp-base:bookworm) into the registry as
 * `<host>/wsp/base:bookworm` (by default). Bridge the registry's port into the daemon's namespace first.
 */
export async function pushBaseImage(
  registry: LoopbackRegistry,
  options: { dockerSocket?: string; image?: string; repository?: string; tag?: string } = {},
): Promise<string> {
  const socket = options.dockerSocket ?? process.env.WSP_DOCKER_SOCKET ?? '/var/lib/wsp-ci-docker/docker.sock';
  const image = options.image ?? process.env.WSP_BASE_IMAGE ?? 'wsp-base:bookworm';
  return pushImage(socket, image, registry, options.repository ?? 'wsp/base', options.tag ?? 'bookworm');
}
