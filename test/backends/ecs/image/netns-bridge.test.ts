import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import http from 'node:http';
import os from 'node:os';
import type net from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASE_IMAGE, DOCKER_SOCKET, dockerUnavailable } from '../../../support/docker-daemon.js';
import { bridgeIntoDockerNetns } from '../../../support/netns-bridge.js';
import fs from 'node:fs';

const run = promisify(execFile);

/** curl from a --network host container, i.e. from inside the daemon's network namespace. */
async function curlFromContainer(port: number): Promise<{ ok: boolean; body: string }> {
  try {
    const { stdout } = await run('docker', [
      '-H',
      `unix://${DOCKER_SOCKET}`,
      'run',
      '--rm',
      '--network',
      'host',
      BASE_IMAGE,
      'curl',
      '-sSf',
      '--max-time',
      '10',
      `http://127.0.0.1:${port}/bytes`,
    ]);
    return { ok: true, body: stdout };
  } catch (error) {
    return { ok: false, body: String((error as { stderr?: string }).stderr ?? '') };
  }
}

describe.skipIf(dockerUnavailable !== undefined)('netns bridge into the test dockerd', () => {
  const payload = crypto.randomBytes(48).toString('hex');
  let server: http.Server;
  let port: number;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      res.end(req.url === '/bytes' ? payload : 'wrong path');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('a --network host container fetches bytes from a loopback server of the test, and only while bridged', async () => {
    const bridge = await bridgeIntoDockerNetns(port);
    let closed = false;
    try {
      const through = await curlFromContainer(port);
      expect(through).toEqual({ ok: true, body: payload });
      const sameNs =
        fs.readlinkSync('/proc/self/ns/net') === fs.readlinkSync(`/proc/${bridge.peerPid ?? process.pid}/ns/net`);
      if (!bridge.bridged) return; // same namespace: nothing more to prove
      expect(sameNs).toBe(false);
      const peer = bridge.peerPid!;
      expect(fs.existsSync(`/proc/${peer}`)).toBe(true);
      await bridge.close();
      closed = true;
      // The peer is gone and the daemon's loopback no longer reaches us.
      expect(fs.existsSync(`/proc/${peer}`)).toBe(false);
      const after = await curlFromContainer(port);
      expect(after.ok).toBe(false);
    } finally {
      if (!closed) await bridge.close();
    }
  });

  it('two bridges on different ports work side by side; close is idempotent', async () => {
    const other = http.createServer((_req, res) => res.end('other'));
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    const otherPort = (other.address() as net.AddressInfo).port;
    const a = await bridgeIntoDockerNetns(port);
    const b = await bridgeIntoDockerNetns(otherPort);
    try {
      const [ra, rb] = await Promise.all([curlFromContainer(port), curlFromContainer(otherPort)]);
      expect(ra.body).toBe(payload);
      expect(rb).toEqual({ ok: true, body: 'other' });
    } finally {
      await a.close();
      await a.close();
      await b.close();
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }
  });

  it('fails clearly when the port is already taken inside the namespace', async () => {
    const a = await bridgeIntoDockerNetns(port);
    try {
      if (!a.bridged) return;
      const before = fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('wsp-netns-bridge-')).length;
      await expect(bridgeIntoDockerNetns(port)).rejects.toThrow(/EADDRINUSE/);
      // The failed attempt removed its temp dir (and its peer exited on its own).
      expect(fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('wsp-netns-bridge-')).length).toBeLessThanOrEqual(
        before,
      );
    } finally {
      await a.close();
    }
    expect(fs.existsSync(`/proc/${a.peerPid}`)).toBe(false);
  });
});
