import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConfigInput } from '../../shared/config/schema.js';
import { filesTargets, type RawAnswer, type Started } from '../support/files-targets.js';
import type { TestProvider } from '../support/provider-fixture.js';

// The Files API (issue 13) end to end over real HTTP, on every backend: local (bubblewrap), Docker, and
// Fargate over the fakes (ecs-fixture.ts). Written as the workspace's attacker would: symlinks to the
// sandbox's /etc/shadow and to /, a symlink to a host canary OUTSIDE the workspace, `..` escapes, a FIFO
// at the path, an upload over the limit, a write while the workspace resets — plus the plain contract:
// bytes round-trip (NUL bytes and every byte value), ranges, stat, list, delete, modes.

/** Small limits, so that 413 and `truncated` are cheap to reach. */
const MAX_BYTES = 1024 * 1024;
const MAX_LIST = 40;
const FILES_CONFIG: ConfigInput = {
  files: { maxBytes: MAX_BYTES, maxListEntries: MAX_LIST, timeoutMs: 15_000 },
  workspace: { network: 'none' },
};

const targets = filesTargets(FILES_CONFIG);

/** Every byte value, NULs among them, in a file long enough for ranges. */
const BINARY = Buffer.concat([
  Buffer.from([0, 0, 0xff, 0x0a, 0]),
  Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
]);

for (const target of targets) {
  describe.skipIf(target.skip !== undefined)(`files API over HTTP: ${target.name}`, () => {
    let wsp: TestProvider;
    let close: () => Promise<void>;
    let s3: Started['s3'];
    let commandDirs: Started['commandDirs'];
    let ws: { id: string; plan: { home: string; workdir: string } };
    /** A host directory OUTSIDE every workspace: what a symlink in the home names must never reach it. */
    let canaryDir: string;
    const CANARY = `host-canary-${randomBytes(8).toString('hex')}\n`;

    beforeAll(async () => {
      ({ wsp, close, s3, commandDirs } = await target.start());
      ws = await wsp.setup();
      canaryDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-files-canary-'));
      fs.chmodSync(canaryDir, 0o777); // wide open: only the sandbox may stand between it and the workspace
      fs.writeFileSync(path.join(canaryDir, 'secret'), CANARY, { mode: 0o666 });
    }, 600_000);

    afterAll(async () => {
      await close?.();
      if (canaryDir) fs.rmSync(canaryDir, { recursive: true, force: true });
    }, 300_000);

    const url = (route: string, query: Record<string, string>): string =>
      `${wsp.url}${route}?${new URLSearchParams(query).toString()}`;

    async function raw(
      method: string,
      query: Record<string, string>,
      options: { route?: string; body?: Buffer; headers?: Record<string, string> } = {},
    ): Promise<RawAnswer> {
      const res = await fetch(url(options.route ?? `/workspaces/${ws.id}/files`, query), {
        method,
        headers: { authorization: `Bearer ${wsp.token}`, ...(options.headers ?? {}) },
        ...(options.body ? { body: options.body } : {}),
      });
      const bytes = Buffer.from(await res.arrayBuffer());
      let json: any;
      if ((res.headers.get('content-type') ?? '').startsWith('application/json') && bytes.length > 0)
        json = JSON.parse(bytes.toString());
      return { status: res.status, headers: res.headers, bytes, json };
    }
    const put = (p: string, body: Buffer, extra: Record<string, string> = {}) =>
      raw('PUT', { path: p, ...extra }, { body, headers: { 'content-type': 'application/octet-stream' } });
    const get = (p: string, headers: Record<string, string> = {}) => raw('GET', { path: p }, { headers });
    const stat = (p: string) => raw('GET', { path: p }, { route: `/workspaces/${ws.id}/files/stat` });
    const list = (p: string, recursive = false) =>
      raw('GET', { path: p, recursive: String(recursive) }, { route: `/workspaces/${ws.id}/files/list` });
    const del = (p: string, recursive = false) => raw('DELETE', { path: p, recursive: String(recursive) });
    const sh = async (command: string): Promise<string> => {
      const r = await wsp.exec(ws.id, command);
      expect(r, r.stderr?.data).toMatchObject({ state: 'exited', exitCode: 0 });
      return r.stdout.data as string;
    };

    it('writes and reads bytes exactly (NUL bytes, every byte value), creating parents, as the workspace user', async () => {
      const w = await put('deep/er/bin.dat', BINARY);
      expect(w.status, w.bytes.toString()).toBe(200);
      expect(w.json).toMatchObject({ type: 'file', size: BINARY.length, mode: '0644' });
      const r = await get('deep/er/bin.dat');
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe('application/octet-stream');
      expect(r.headers.get('accept-ranges')).toBe('bytes');
      expect(r.bytes.equals(BINARY)).toBe(true);
      // Relative paths are the workdir's; the file belongs to the workspace user; no temp file is left.
      const seen = await sh('stat -c "%u %a %s" deep/er/bin.dat; ls -A deep/er');
      expect(seen.split('\n')).toEqual([`1000 644 ${BINARY.length}`, 'bin.dat', '']);
      const abs = await get(path.posix.join(ws.plan.workdir, 'deep/er/bin.dat'));
      expect(abs.bytes.equals(BINARY)).toBe(true);
      // An empty file is a file too.
      expect((await put('/tmp/empty', Buffer.alloc(0))).json).toMatchObject({ type: 'file', size: 0 });
      expect((await get('/tmp/empty')).bytes.length).toBe(0);
    });

    it('replaces a file atomically, keeps its mode unless ?mode= says otherwise', async () => {
      await sh('printf old > moded.txt && chmod 600 moded.txt');
      expect((await put('moded.txt', Buffer.from('new'))).json).toMatchObject({ mode: '0600', size: 3 });
      expect((await put('moded.txt', Buffer.from('newer'), { mode: '755' })).json).toMatchObject({ mode: '0755' });
      expect(await sh('cat moded.txt; stat -c " %a" moded.txt')).toBe('newer 755\n');
      const bad = await put('moded.txt', Buffer.from('x'), { mode: '4755' });
      expect(bad.status).toBe(400);
    });

    it('serves byte ranges: 206 with Content-Range, suffixes, open ends; 416 past the end', async () => {
      await put('range.bin', BINARY);
      const size = BINARY.length;
      const a = await get('range.bin', { range: 'bytes=2-9' });
      expect(a.status).toBe(206);
      expect(a.headers.get('content-range')).toBe(`bytes 2-9/${size}`);
      expect(a.bytes.equals(BINARY.subarray(2, 10))).toBe(true);
      const suffix = await get('range.bin', { range: 'bytes=-7' });
      expect(suffix.headers.get('content-range')).toBe(`bytes ${size - 7}-${size - 1}/${size}`);
      expect(suffix.bytes.equals(BINARY.subarray(size - 7))).toBe(true);
      const open = await get('range.bin', { range: 'bytes=250-' });
      expect(open.bytes.equals(BINARY.subarray(250))).toBe(true);
      const beyondEnd = await get('range.bin', { range: `bytes=100-${size + 500}` });
      expect(beyondEnd.headers.get('content-range')).toBe(`bytes 100-${size - 1}/${size}`);
      const past = await get('range.bin', { range: `bytes=${size}-` });
      expect(past.status).toBe(416);
      expect(past.headers.get('content-range')).toBe(`bytes */${size}`);
      expect(past.json.error.code).toBe('range_not_satisfiable');
      // A Range we do not serve (several ranges) is ignored: the whole file.
      const multi = await get('range.bin', { range: 'bytes=0-1,4-5' });
      expect(multi.status).toBe(200);
      expect(multi.bytes.equals(BINARY)).toBe(true);
    });

    it('stats files, directories and symlinks (the link itself); 404 for nothing there', async () => {
      await sh('mkdir -p st/d && printf hello > st/f && ln -sfn f st/l && ln -sfn /nowhere st/dangling');
      expect((await stat('st/f')).json).toMatchObject({ type: 'file', size: 5, mode: '0644' });
      expect((await stat('st/d')).json).toMatchObject({ type: 'dir', mode: '0755' });
      expect((await stat('st/l')).json).toMatchObject({ type: 'symlink', target: 'f' });
      expect((await stat('st/dangling')).json).toMatchObject({ type: 'symlink', target: '/nowhere' });
      const when = Date.parse((await stat('st/f')).json.mtime);
      expect(Math.abs(Date.now() - when)).toBeLessThan(10 * 60_000);
      const missing = await stat('st/none');
      expect(missing.status).toBe(404);
      expect((await get('st/none')).status).toBe(404);
      expect((await get('st/d')).status).toBe(400); // a directory is not read as a file
    });

    it('lists a directory (flat or recursive), sorted, bounded with `truncated`', async () => {
      await sh('mkdir -p ls/sub && printf 12 > ls/a && printf x > ls/sub/b && ln -sfn a ls/link');
      const flat = await list('ls');
      expect(flat.status).toBe(200);
      const dir = path.posix.join(ws.plan.workdir, 'ls');
      expect(flat.json).toMatchObject({ path: dir, truncated: false, skippedNonUtf8: 0 });
      expect(flat.json.entries.map((e: any) => [e.name, e.type])).toEqual([
        ['a', 'file'],
        ['link', 'symlink'],
        ['sub', 'dir'],
      ]);
      expect(flat.json.entries[0]).toMatchObject({ path: `${dir}/a`, size: 2, mode: '0644' });
      expect(flat.json.entries[1]).toMatchObject({ target: 'a' });
      const deep = await list('ls', true);
      expect(deep.json.entries.map((e: any) => e.path)).toEqual([
        `${dir}/a`,
        `${dir}/link`,
        `${dir}/sub`,
        `${dir}/sub/b`,
      ]);
      await sh(`mkdir many && cd many && for i in $(seq 1 ${MAX_LIST + 5}); do : > "f$i"; done`);
      const capped = await list('many');
      expect(capped.json.truncated).toBe(true);
      expect(capped.json.entries).toHaveLength(MAX_LIST);
      // Names that are not UTF-8 are counted, not shown (JSON cannot carry them).
      await sh(`mkdir odd && : > "odd/$(printf 'bad\\377name')" && : > odd/good`);
      const odd = await list('odd');
      expect(odd.json).toMatchObject({ skippedNonUtf8: 1, entries: [{ name: 'good' }] });
      expect((await list('ls/a')).status).toBe(400); // not a directory
      expect((await list('nothing-here')).status).toBe(404);
    });

    it('deletes files, the link itself, and directories (non-empty only with recursive=true)', async () => {
      await sh('mkdir -p rm/full/x && printf keep > rm/target && ln -sfn target rm/link && : > rm/file');
      expect((await del('rm/file')).status).toBe(204);
      expect((await del('rm/link')).status).toBe(204);
      expect(await sh('cat rm/target')).toBe('keep'); // the link went, not what it named
      const notEmpty = await del('rm/full');
      expect(notEmpty.status).toBe(409);
      expect(notEmpty.json.error.message).toMatch(/recursive=true/);
      expect((await del('rm/full', true)).status).toBe(204);
      expect((await del('rm/full')).status).toBe(404);
      expect((await del(ws.plan.home, true)).status).toBe(400); // the home itself
      expect((await del('/tmp', true)).status).toBe(400);
    });

    it('refuses paths outside the home and /tmp, by the rule, before and after symlinks', async () => {
      for (const p of [
        '/etc/passwd',
        '../../../etc/passwd',
        `${ws.plan.home}/../../etc/passwd`,
        '/',
        '/proc/self/environ',
      ]) {
        for (const answer of [await get(p), await put(p, Buffer.from('x')), await stat(p), await del(p)]) {
          expect(answer.status, p).toBe(400);
          expect(answer.json.error.message).toMatch(/home .* or \/tmp/);
        }
      }
      const noPath = await raw('GET', {});
      expect(noPath.status).toBe(400);
    });

    it('a symlink to /etc/shadow or to / acts inside the sandbox: reads and writes through it are refused, deletes take the link', async () => {
      await sh('ln -sfn /etc/shadow evil-shadow && ln -sfn / evil-root && ln -sfn /etc evil-etc');
      for (const p of ['evil-shadow', 'evil-root/etc/passwd', 'evil-etc/hostname']) {
        const r = await get(p);
        expect(r.status, p).toBe(400);
        expect(r.json.error.message).toMatch(/resolves outside/);
        expect((await put(p, Buffer.from('owned\n'))).status, p).toBe(400);
      }
      expect((await list('evil-root')).status).toBe(400);
      expect((await list('evil-etc')).status).toBe(400);
      // stat and delete act on the link itself; what it names is untouched.
      expect((await stat('evil-shadow')).json).toMatchObject({ type: 'symlink', target: '/etc/shadow' });
      expect((await del('evil-root', true)).status).toBe(204);
      expect((await del('evil-shadow')).status).toBe(204);
      expect(await sh('test -L evil-root || test -L evil-shadow || echo gone; ls -d /etc /usr')).toBe(
        'gone\n/etc\n/usr\n',
      );
      // A symlink to /tmp stays inside: the workspace's own /tmp.
      await sh('ln -sfn /tmp to-tmp');
      expect((await put('to-tmp/via-link.txt', Buffer.from('in tmp'))).status).toBe(200);
      expect(await sh('cat /tmp/via-link.txt')).toBe('in tmp');
    });

    it('a symlink to a host file outside the workspace never reaches the host: the canary is not read, written or deleted', async () => {
      const secret = path.join(canaryDir, 'secret');
      const before = { content: fs.readFileSync(secret, 'utf8'), entries: fs.readdirSync(canaryDir).sort() };
      // The host canary lives under the host's /tmp; inside the sandbox /tmp is the workspace's own.
      await sh(`ln -sfn '${secret}' canary-file && ln -sfn '${canaryDir}' canary-dir`);
      const read = await get('canary-file');
      expect(read.bytes.toString()).not.toContain(CANARY.trim());
      expect(read.status).toBe(404);
      expect((await list('canary-dir')).status).toBe(404);
      // A write follows the link to the SANDBOX's path: it lands in the workspace's /tmp, not the host's.
      expect((await put('canary-file', Buffer.from('overwritten'))).status).toBe(200);
      expect((await put('canary-dir/planted', Buffer.from('planted'))).status).toBe(200);
      expect(await sh(`cat '${secret}'`)).toBe('overwritten');
      expect((await del('canary-dir/secret')).status).toBe(204);
      expect((await del('canary-dir', true)).status).toBe(204);
      expect(fs.readFileSync(secret, 'utf8')).toBe(before.content);
      expect(fs.readdirSync(canaryDir).sort()).toEqual(before.entries);
      // A path naming the host canary directly is outside the home and /tmp only on the host: inside,
      // the workspace's /tmp has no such directory any more (just deleted through the link).
      expect((await get(secret)).status).toBe(404);
      expect(fs.readFileSync(secret, 'utf8')).toBe(before.content);
    });

    it('a FIFO at the path is refused at once, never waited on', async () => {
      await sh('mkfifo pipe');
      const started = Date.now();
      const r = await get('pipe');
      expect(r.status).toBe(400);
      expect(r.json.error.message).toMatch(/not a regular file/);
      expect((await put('pipe', Buffer.from('x'))).status).toBe(400);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect((await stat('pipe')).json).toMatchObject({ type: 'other' });
    });

    it('caps sizes: an upload over files.maxBytes is 413; a bigger file is 413 whole but readable in ranges', async () => {
      const tooBig = await put('big.bin', Buffer.alloc(MAX_BYTES + 1, 7));
      expect(tooBig.status).toBe(413);
      expect(await sh('test -e big.bin || echo absent')).toBe('absent\n');
      expect((await put('max.bin', Buffer.alloc(MAX_BYTES, 7))).status).toBe(200);
      await sh(`head -c ${MAX_BYTES + 10} /dev/zero > huge.bin`);
      const whole = await get('huge.bin');
      expect(whole.status).toBe(413);
      expect(whole.json.error.message).toMatch(/ranges/);
      const tail = await get('huge.bin', { range: 'bytes=-10' });
      expect(tail.status).toBe(206);
      expect(tail.bytes.equals(Buffer.alloc(10))).toBe(true);
      // On Fargate a large body never crosses the exec session: in and out through presigned S3 URLs.
      if (s3) {
        const max = await get('max.bin');
        expect(max.bytes.equals(Buffer.alloc(MAX_BYTES, 7))).toBe(true);
        const presigned = s3.requests.filter((q) => q.presigned);
        expect(presigned.some((q) => q.method === 'GET' && q.key.includes('stdin/'))).toBe(true);
        expect(presigned.some((q) => q.method === 'PUT' && q.key.includes('output/'))).toBe(true);
      }
    });

    it('leaves no command behind: after many operations (downloads, uploads, failures) the command dirs do not grow', async () => {
      const body = Buffer.alloc(200 * 1024, 3);
      expect((await put('leak/probe.bin', body)).status).toBe(200);
      const before = await commandDirs(ws.id);
      for (let i = 0; i < 8; i++) {
        const r = await get('leak/probe.bin');
        expect(r.bytes.equals(body)).toBe(true);
      }
      expect((await put('leak/probe.bin', body)).status).toBe(200);
      expect((await stat('leak/probe.bin')).status).toBe(200);
      expect((await list('leak')).status).toBe(200);
      expect((await get('leak/absent')).status).toBe(404);
      expect((await get('leak')).status).toBe(400); // a directory: refused by the script in the workspace
      expect((await del('leak/probe.bin')).status).toBe(204);
      expect(await commandDirs(ws.id)).toBeLessThanOrEqual(before);
      // Fargate: nothing of the carried stdin/output stays in S3 either.
      if (s3) expect([...s3.objects.keys()].filter((k) => /^transfer\/(stdin|output)\//.test(k))).toEqual([]);
    });

    it('404 for an unknown workspace; 409 while the workspace is not ready', async () => {
      const unknown = await raw('GET', { path: 'x' }, { route: '/workspaces/ws-000000000000000000000000/files' });
      expect(unknown.status).toBe(404);
      const service = wsp.provider.service;
      await service.records.transition(ws.id, ['ready'], 'resetting');
      try {
        for (const answer of [
          await put('during-reset.txt', Buffer.from('x')),
          await get('range.bin'),
          await list('.'),
        ]) {
          expect(answer.status).toBe(409);
          expect(answer.json.error.message).toMatch(/resetting/);
        }
      } finally {
        await service.records.transition(ws.id, ['resetting'], 'ready');
      }
      expect(await sh('test -e during-reset.txt || echo absent')).toBe('absent\n');
    });

    it('writes racing a reset are refused (409) or undone by it; the reset still matches its baseline', async () => {
      const other = await wsp.setup();
      const resetting = wsp.api('POST', `/workspaces/${other.id}/reset`, {});
      const writes = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          new Promise((r) => setTimeout(r, i * 15)).then(() =>
            raw('PUT', { path: `race-${i}.txt` }, { route: `/workspaces/${other.id}/files`, body: Buffer.from('x') }),
          ),
        ),
      );
      const reset = await resetting;
      expect(reset.status).toBe(200);
      expect(reset.body.matches).toBe(true);
      for (const w of writes) expect([200, 409]).toContain(w.status);
      const left = await wsp.exec(other.id, 'ls race-* 2>/dev/null | wc -l');
      const admittedAfter = Number(left.stdout.data.trim());
      // A write admitted before the reset began is undone by it; none can land after (409 then).
      expect(admittedAfter).toBe(0);
    });
  });
}
