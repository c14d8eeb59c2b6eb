import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUNNER_SCRIPT } from '../../../shared/backends/runner/command-files.js';
import { RunnerRpc, runnerRpcCommand } from '../../../shared/backends/runner/rpc.js';
import { localPty } from '../../support/pty.js';
import { processesWith, waitFor } from '../../support/wait.js';
import { rootUnavailable } from '../../support/root.js';

// The runner's byte movers over a real PTY session (local `script` pty; the test dockerd lives in its
// own network namespace, so its containers cannot reach a loopback server of ours): fetch-url/put-url
// against a loopback HTTP server standing in for S3 presigned URLs, pack/unpack, mkdirs/remove.

const SIG = `sig${randomBytes(8).toString('hex')}`;

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

describe.skipIf(rootUnavailable !== undefined)('runner rpc byte movers (local pty, root)', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-rpc-xfer-'));
  const blob = randomBytes(300_000);
  const seen: Seen[] = [];
  let flaky = 0;
  let releaseSlow: () => void = () => undefined;
  let server: http.Server;
  let base = '';
  let rpc: RunnerRpc;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
        const p = (req.url ?? '').split('?')[0];
        if (p === '/blob' && req.method === 'GET') return res.end(blob);
        if (p === '/flaky') return flaky++ === 0 ? res.writeHead(503).end('busy') : res.end('second time');
        if (p === '/slow') {
          releaseSlow = () => res.end('slow body');
          return undefined;
        }
        if (p === '/upload' && req.method === 'PUT') return res.writeHead(200, { ETag: '"x"' }).end();
        return res.writeHead(404).end('no');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    rpc = new RunnerRpc(localPty(runnerRpcCommand(RUNNER_SCRIPT), { WSP_RPC_WORK_ROOT: path.join(tmp, 'rpc') }), {
      readyTimeoutMs: 20_000,
      requestTimeoutMs: 60_000,
    });
    await rpc.ready();
  });
  afterAll(async () => {
    rpc?.close();
    releaseSlow();
    await new Promise((r) => server?.close(r));
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const siblings = (file: string): string[] =>
    fs.readdirSync(path.dirname(file)).filter((n) => n.startsWith(path.basename(file)));

  it('fetch-url writes the body with mode and owner, through a temp file that is renamed', async () => {
    const dest = path.join(tmp, 'bundle');
    const answer = await rpc.call(['fetch-url', `${base}/blob?X-Amz-Signature=${SIG}`, dest, '0640', '65534:65534']);
    expect(answer.status, answer.payload.toString()).toBe(0);
    expect(fs.readFileSync(dest)).toEqual(blob);
    const st = fs.statSync(dest);
    expect([st.mode & 0o777, st.uid, st.gid]).toEqual([0o640, 65534, 65534]);
    expect(siblings(dest)).toEqual(['bundle']);
  });

  it('fetch-url fails on an HTTP error without the url in its message and leaves nothing; retries a 503', async () => {
    const dest = path.join(tmp, 'missing');
    const answer = await rpc.call(['fetch-url', `${base}/missing?X-Amz-Signature=${SIG}`, dest, '0600', '0:0']);
    expect(answer.status).toBe(1);
    expect(answer.payload.toString()).toMatch(/404/);
    expect(answer.payload.toString()).not.toContain(SIG);
    expect(siblings(dest)).toEqual([]);

    const again = path.join(tmp, 'flaky');
    expect((await rpc.call(['fetch-url', `${base}/flaky`, again, '0600', '0:0'])).status).toBe(0);
    expect(fs.readFileSync(again, 'utf8')).toBe('second time');
    expect(flaky).toBe(2);

    expect((await rpc.call(['fetch-url', 'file:///etc/passwd', again, '0600', '0:0'])).status).toBe(2);
    expect((await rpc.call(['fetch-url', `${base}/blob"\nurl = "http://x`, again, '0600', '0:0'])).status).toBe(2);
  });

  it('a fetch in flight when the session drops completes; the url is in no process argv meanwhile', async () => {
    const session = new RunnerRpc(
      localPty(runnerRpcCommand(RUNNER_SCRIPT), { WSP_RPC_WORK_ROOT: path.join(tmp, 'rpc') }),
      { readyTimeoutMs: 20_000 },
    );
    await session.ready();
    const dest = path.join(tmp, 'slow');
    const before = seen.length;
    const pending = session.call(['fetch-url', `${base}/slow?X-Amz-Signature=${SIG}`, dest, '0600', '0:0']);
    await waitFor('the slow GET to arrive', async () => (seen.length > before ? true : undefined), 20_000);
    expect(processesWith(SIG)).toBe(0);
    session.close();
    await expect(pending).rejects.toThrow(/session/);
    releaseSlow();
    await waitFor('the fetched file', async () => (fs.existsSync(dest) ? true : undefined), 20_000);
    expect(fs.readFileSync(dest, 'utf8')).toBe('slow body');
  });

  it('put-url sends the file as a PUT with Content-Length (never chunked)', async () => {
    const file = path.join(tmp, 'layer.tar');
    fs.writeFileSync(file, blob);
    const answer = await rpc.call(['put-url', file, `${base}/upload?X-Amz-Signature=${SIG}`]);
    expect(answer.status, answer.payload.toString()).toBe(0);
    const put = seen.findLast((s) => s.method === 'PUT')!;
    expect(put.url).toBe(`/upload?X-Amz-Signature=${SIG}`);
    expect(put.headers['content-length']).toBe(String(blob.length));
    expect(put.headers['transfer-encoding']).toBeUndefined();
    expect(put.body).toEqual(blob);
    expect((await rpc.call(['put-url', path.join(tmp, 'nope'), `${base}/upload`])).status).toBe(1);
    expect((await rpc.call(['put-url', file, `${base}/missing`])).status).toBe(1);
  });

  it('pack makes a layer tar (names relative to /, numeric owners); unpack chowns links themselves, not their targets', async () => {
    const home = path.join(tmp, 'home', 'node');
    fs.mkdirSync(path.join(home, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(home, 'sub', 'f.txt'), 'hello');
    fs.chmodSync(path.join(home, 'sub', 'f.txt'), 0o751);
    const outside = path.join(tmp, 'root-owned');
    fs.writeFileSync(outside, 'keep me root');
    fs.symlinkSync(outside, path.join(home, 'link'));
    execFileSync('chown', ['-R', '-h', '1234:4321', home]);

    const tar = path.join(tmp, 'home.tar');
    expect((await rpc.call(['pack', home, tar])).status).toBe(0);
    const listing = execFileSync('tar', ['-tvf', tar, '--numeric-owner'], { encoding: 'utf8' });
    const rel = home.slice(1);
    expect(listing).toContain(`1234/4321`);
    const names = execFileSync('tar', ['-tf', tar], { encoding: 'utf8' }).trim().split('\n');
    expect(names.sort()).toEqual([`${rel}/`, `${rel}/link`, `${rel}/sub/`, `${rel}/sub/f.txt`].sort());

    const dest = path.join(tmp, 'restored');
    expect((await rpc.call(['unpack', tar, dest, '65534:65534'])).status).toBe(0);
    const f = path.join(dest, rel, 'sub', 'f.txt');
    expect(fs.readFileSync(f, 'utf8')).toBe('hello');
    expect(fs.statSync(f).mode & 0o777).toBe(0o751);
    for (const p of [dest, path.join(dest, rel), f, path.join(dest, rel, 'link')])
      expect(fs.lstatSync(p).uid, p).toBe(65534);
    expect(fs.statSync(outside).uid).toBe(0);
  });

  it('mkdirs and remove take absolute paths only', async () => {
    const a = path.join(tmp, 'made', 'deep');
    expect((await rpc.call(['mkdirs', '0750', '65534:65534', a])).status).toBe(0);
    expect([fs.statSync(a).mode & 0o777, fs.statSync(a).uid]).toEqual([0o750, 65534]);
    for (const bad of ['/', 'relative', `${tmp}/../etc`, '//etc']) {
      expect((await rpc.call(['remove', bad])).status, bad).toBe(2);
    }
    expect(fs.existsSync('/etc/passwd')).toBe(true);
    expect((await rpc.call(['remove', path.join(tmp, 'made')])).status).toBe(0);
    expect(fs.existsSync(path.join(tmp, 'made'))).toBe(false);
  });
});
