import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConfigInput } from '../../shared/config/schema.js';
import { filesTargets, type RawAnswer, type Started } from '../support/files-targets.js';
import type { TestProvider } from '../support/provider-fixture.js';
import { tarOf } from '../support/tar.js';

// The archive routes (issue 13) end to end over real HTTP on local, Docker and Fargate (fake), as the
// workspace's attacker: hostile tars (absolute and `..` names, a symlink entry then a write through it,
// hard links out, device nodes and FIFOs, setuid bits), a symlink the workspace planted where an archive
// lands, symlinks out of the home in the tree being archived, a host canary that must stay untouched —
// plus the contract: round trip of binary files, empty dirs, modes, odd names; 404/409/413/400.

const MAX_BYTES = 1024 * 1024;
const CONFIG: ConfigInput = {
  files: { maxBytes: MAX_BYTES, maxListEntries: 100, timeoutMs: 30_000 },
  workspace: { network: 'none' },
};
const targets = filesTargets(CONFIG);

/** Every byte value, NULs among them. */
const BINARY = Buffer.concat([
  Buffer.from([0, 0, 0xff, 0x0a, 0]),
  Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
]);

/** `tar -tv` of a tar, by the host's GNU tar: one line per entry, names C-quoted. */
function listing(tar: Buffer): string[] {
  return execFileSync('tar', ['-tvf', '-', '--quoting-style=c', '--numeric-owner'], {
    input: tar,
    env: { LC_ALL: 'C' },
  })
    .toString('latin1')
    .trim()
    .split('\n');
}

/** A tree listing inside the workspace (type, mode, owner, size, link target, path) — compared, not parsed. */
const TREE =
  "find . -mindepth 1 \\( -type d -printf '%y %m %u - [] %P\\n' \\) -o -printf '%y %m %u %s [%l] %P\\n' | LC_ALL=C sort";

for (const target of targets) {
  describe.skipIf(target.skip !== undefined)(`archive routes over HTTP: ${target.name}`, () => {
    let wsp: TestProvider;
    let close: () => Promise<void>;
    let s3: Started['s3'];
    let commandDirs: Started['commandDirs'];
    let ws: { id: string; plan: { home: string; workdir: string } };
    let canaryDir: string;
    const CANARY = `host-canary-${randomBytes(8).toString('hex')}\n`;

    beforeAll(async () => {
      ({ wsp, close, s3, commandDirs } = await target.start());
      ws = await wsp.setup();
      canaryDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsp-archive-canary-'));
      fs.chmodSync(canaryDir, 0o777);
      fs.writeFileSync(path.join(canaryDir, 'secret'), CANARY, { mode: 0o666 });
    }, 600_000);

    afterAll(async () => {
      await close?.();
      if (canaryDir) fs.rmSync(canaryDir, { recursive: true, force: true });
    }, 300_000);

    async function raw(method: string, p: string, body?: Buffer, id = ws.id): Promise<RawAnswer> {
      const res = await fetch(`${wsp.url}/workspaces/${id}/archive?${new URLSearchParams({ path: p })}`, {
        method,
        headers: { authorization: `Bearer ${wsp.token}`, ...(body ? { 'content-type': 'application/x-tar' } : {}) },
        ...(body ? { body } : {}),
      });
      const bytes = Buffer.from(await res.arrayBuffer());
      const json = (res.headers.get('content-type') ?? '').startsWith('application/json')
        ? JSON.parse(bytes.toString())
        : undefined;
      return { status: res.status, headers: res.headers, bytes, json };
    }
    const getTar = (p: string) => raw('GET', p);
    const putTar = (p: string, tar: Buffer) => raw('PUT', p, tar);
    const sh = async (command: string): Promise<string> => {
      const r = await wsp.exec(ws.id, command);
      expect(r, r.stderr?.data).toMatchObject({ state: 'exited', exitCode: 0 });
      return r.stdout.data as string;
    };
    /** Refused whole, by the rule named in the message; nothing of the archive is left in `dir`. */
    async function refused(dir: string, tar: Buffer, rule: RegExp): Promise<void> {
      const answer = await putTar(dir, tar);
      expect(answer.status, answer.bytes.toString()).toBe(400);
      expect(answer.json.error.message).toMatch(rule);
      expect(await sh(`ls -A '${dir}' 2>/dev/null | wc -l`)).toBe('0\n');
    }

    it('round-trips a tree: binary files, empty dirs, modes, symlinks, odd names (space, newline, not UTF-8)', async () => {
      const bin = await fetch(`${wsp.url}/workspaces/${ws.id}/files?path=src/bin/data.bin`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${wsp.token}` },
        body: BINARY,
      });
      expect(bin.status).toBe(200);
      await sh(
        [
          'cd src && mkdir -p empty/deeper "with space" && chmod 700 empty/deeper',
          'printf run > tool.sh && chmod 750 tool.sh && printf priv > secret && chmod 600 secret',
          'printf shared > group.txt && chmod 664 group.txt',
          `printf nl > "$(printf 'new\\nline')" && printf bad > "$(printf 'bad\\377name')" && printf s > "with space/a b"`,
          'ln -s tool.sh link-in && ln -s /etc/passwd link-out && ln -s ../../../../.. link-up && ln tool.sh hard',
        ].join(' && '),
      );
      const before = await sh(`cd src && ${TREE}`);
      const out = await getTar('src');
      expect(out.status, out.bytes.toString()).toBe(200);
      expect(out.headers.get('content-type')).toBe('application/x-tar');
      const lines = listing(out.bytes);
      // Symlinks are links in the tar, never what they name: no /etc/passwd content, no escape.
      expect(lines).toContainEqual(expect.stringMatching(/^l.* "\.\/link-out" -> "\/etc\/passwd"$/));
      expect(lines).toContainEqual(expect.stringMatching(/^l.* "\.\/link-up" -> "\.\.\/\.\.\/\.\.\/\.\.\/\.\."$/));
      expect(lines).toContainEqual(expect.stringMatching(/"\.\/new\\nline"$/));
      expect(lines).toContainEqual(expect.stringMatching(/"\.\/bad\\377name"$/));
      expect(out.bytes.includes(Buffer.from('root:x:0:0'))).toBe(false);

      const put = await putTar('copy', out.bytes);
      expect(put.status, put.bytes.toString()).toBe(200);
      expect(put.json).toEqual({ path: path.posix.join(ws.plan.workdir, 'copy'), entries: lines.length });
      // Same types, modes, owner, sizes, link targets and names (the hard link is a file again, linked).
      expect(await sh(`cd copy && ${TREE}`)).toBe(before);
      expect(
        await sh('cmp src/bin/data.bin copy/bin/data.bin && stat -c %i copy/tool.sh copy/hard | uniq | wc -l'),
      ).toBe('1\n');
      // Into an existing directory, even one that is not the user's (/tmp on Docker and Fargate: root's):
      // it keeps its own mode, the entries land.
      const tmpMode = await sh('stat -c %a /tmp');
      const tmpTop = tarOf([
        { name: './', type: '5', mode: 0o700 },
        { name: './into-tmp.txt', data: 'in /tmp' },
      ]);
      expect((await putTar('/tmp', tmpTop)).status).toBe(200);
      expect(await sh('cat /tmp/into-tmp.txt; stat -c " %a" /tmp')).toBe(`in /tmp ${tmpMode}`);
      // An absolute path works the same; an empty directory is a tar with one entry.
      await sh('mkdir -p /tmp/nothing');
      const empty = await getTar('/tmp/nothing');
      expect(listing(empty.bytes)).toHaveLength(1);
    });

    it('refuses hostile archives whole, naming the rule, and writes nothing', async () => {
      const good = { name: 'good.txt', data: 'written first' };
      await refused('h1', tarOf([good, { name: '../escaped', data: 'x' }]), /relative, without '\.\.'/);
      await refused('h2', tarOf([good, { name: 'a/../../escaped', data: 'x' }]), /relative, without '\.\.'/);
      await refused('h3', tarOf([good, { name: `${ws.plan.home}/abs`, data: 'x' }]), /relative/);
      await refused(
        'h4',
        tarOf([good, { name: 'x', type: '2', link: '/etc' }, { name: 'x/passwd', data: 'owned' }]),
        /symlink/,
      );
      // Relative links that point back down are refused too, in either order: the rule is "no write through a link".
      await refused(
        'h5',
        tarOf([
          { name: 'y', type: '2', link: '.' },
          { name: 'y/z', data: 'x' },
        ]),
        /symlink/,
      );
      await refused(
        'h6',
        tarOf([
          { name: 'z/f', data: 'x' },
          { name: 'z', type: '2', link: '/tmp' },
        ]),
        /symlink/,
      );
      await refused('h7', tarOf([good, { name: 'pw', type: '1', link: '/etc/passwd' }]), /hard link/);
      await refused('h8', tarOf([good, { name: 'up', type: '1', link: '../../outside' }]), /hard link/);
      await refused('h9', tarOf([good, { name: 'later', type: '1', link: 'good-not-yet' }]), /hard link/);
      await refused('h10', tarOf([good, { name: 'null', type: '3' }]), /device node, FIFO/);
      await refused('h11', tarOf([good, { name: 'disk', type: '4' }]), /device node, FIFO/);
      await refused('h12', tarOf([good, { name: 'fifo', type: '6' }]), /device node, FIFO/);
      await refused('h13', Buffer.from('this is not a tar archive, just text\n'.repeat(40)), /not a tar archive/);
      // /etc/passwd inside the sandbox is what it was.
      expect(await sh('grep -c owned /etc/passwd || true')).toBe('0\n');
    });

    it('clears setuid, setgid and sticky bits; never restores owners', async () => {
      const tar = tarOf([
        { name: 'd/', type: '5', mode: 0o1777 },
        { name: 'd/suid', data: 'x', mode: 0o4755 },
        { name: 'd/sgid', data: 'x', mode: 0o2750 },
      ]);
      expect((await putTar('bits', tar)).status).toBe(200);
      expect(await sh("stat -c '%a %u %n' bits/d bits/d/suid bits/d/sgid")).toBe(
        '777 1000 bits/d\n755 1000 bits/d/suid\n750 1000 bits/d/sgid\n',
      );
    });

    it('a symlink the workspace planted where the archive lands cannot carry it outside the home and /tmp', async () => {
      // A place outside the home and /tmp this user may write to inside its sandbox, if any (else: the rule still answers).
      const outside = (
        await sh('for d in /var/tmp /dev/shm /run/lock; do [ -w "$d" ] && echo "$d" && break; done; true')
      ).trim();
      const away = outside || '/var/empty-nowhere';
      await sh(`mkdir -p planted && ln -sfn '${away}' planted/out`);
      const answer = await putTar('planted', tarOf([{ name: 'out/pwned', data: 'through the link' }]));
      expect(answer.status).toBe(400);
      expect(answer.json.error.message).toMatch(/resolves outside the home .* or \/tmp/);
      if (outside) expect(await sh(`test -e '${outside}/pwned' && echo there || echo absent`)).toBe('absent\n');
      // A directory entry of that name replaces the link (tar's default): what follows lands inside.
      const withDir = await putTar(
        'planted',
        tarOf([
          { name: 'out/', type: '5' },
          { name: 'out/pwned', data: 'inside' },
        ]),
      );
      expect(withDir.status, withDir.bytes.toString()).toBe(200);
      expect(await sh('test -L planted/out || cat planted/out/pwned')).toBe('inside');
      if (outside) expect(await sh(`test -e '${outside}/pwned' && echo there || echo absent`)).toBe('absent\n');
      // The target path itself as a link out: refused like a file write through it.
      await sh('ln -sfn /etc etc-link');
      const viaLink = await putTar('etc-link/sub', tarOf([{ name: 'f', data: 'x' }]));
      expect(viaLink.status).toBe(400);
      expect(viaLink.json.error.message).toMatch(/resolves outside/);
    });

    it('the host canary is never touched: links to it resolve inside the sandbox, archives through them are refused', async () => {
      const secret = path.join(canaryDir, 'secret');
      await sh(`ln -sfn '${canaryDir}' canary-dir`);
      // Reading through the link archives the SANDBOX's path (the workspace's own /tmp): not the host's dir.
      const read = await getTar('canary-dir');
      expect(read.bytes.toString('latin1')).not.toContain(CANARY.trim());
      await refused(
        'c1',
        tarOf([
          { name: 'c', type: '2', link: canaryDir },
          { name: 'c/secret', data: 'owned' },
        ]),
        /symlink/,
      );
      // Writing into the link lands in the workspace's /tmp (inside), never the host's.
      expect((await putTar('canary-dir', tarOf([{ name: 'secret', data: 'overwritten' }]))).status).toBe(200);
      expect(await sh(`cat '${secret}'`)).toBe('overwritten');
      expect(fs.readFileSync(secret, 'utf8')).toBe(CANARY);
      expect(fs.readdirSync(canaryDir)).toEqual(['secret']);
    });

    it('answers 404, 400, 409 and 413 by the rules', async () => {
      expect((await getTar('no-such-dir')).status).toBe(404);
      await sh('printf x > plain-file');
      expect((await getTar('plain-file')).status).toBe(400);
      expect((await putTar('plain-file', tarOf([{ name: 'f', data: 'x' }]))).status).toBe(400);
      for (const p of ['/etc', '../../../etc', '/', `${ws.plan.home}/../..`]) {
        for (const answer of [await getTar(p), await putTar(p, tarOf([{ name: 'f', data: 'x' }]))]) {
          expect(answer.status, p).toBe(400);
          expect(answer.json.error.message).toMatch(/home .* or \/tmp/);
        }
      }
      // Over files.maxBytes: the whole tar out is refused (said so), and an upload too — nothing written.
      await sh(`mkdir -p big && head -c ${MAX_BYTES + 4096} /dev/urandom > big/random.bin`);
      const tooBig = await getTar('big');
      expect(tooBig.status).toBe(413);
      expect(tooBig.json.error.message).toMatch(/larger than 1048576 bytes/);
      const upload = await putTar('big-in', Buffer.alloc(MAX_BYTES + 1));
      expect(upload.status).toBe(413);
      expect(await sh('test -e big-in && echo there || echo absent')).toBe('absent\n');
      expect((await raw('GET', '.', undefined, 'ws-000000000000000000000000')).status).toBe(404);
      const service = wsp.provider.service;
      await service.records.transition(ws.id, ['ready'], 'resetting');
      try {
        for (const answer of [await getTar('src'), await putTar('during-reset', tarOf([{ name: 'f', data: 'x' }]))]) {
          expect(answer.status).toBe(409);
          expect(answer.json.error.message).toMatch(/resetting/);
        }
      } finally {
        await service.records.transition(ws.id, ['resetting'], 'ready');
      }
      expect(await sh('test -e during-reset && echo there || echo absent')).toBe('absent\n');
    });

    it('leaves no command behind (tars in and out, refusals), nor on Fargate any carried object in S3', async () => {
      const tar = tarOf([{ name: 'f.bin', data: randomBytes(100 * 1024) }]);
      expect((await putTar('leak', tar)).status).toBe(200);
      const before = await commandDirs(ws.id);
      for (let i = 0; i < 4; i++) expect((await getTar('leak')).status).toBe(200);
      expect((await putTar('leak', tar)).status).toBe(200);
      expect((await putTar('leak', tarOf([{ name: '../x', data: 'x' }]))).status).toBe(400);
      expect((await getTar('leak/none')).status).toBe(404);
      expect(await commandDirs(ws.id)).toBeLessThanOrEqual(before);
      if (s3) expect([...s3.objects.keys()].filter((k) => /^transfer\/(stdin|output)\//.test(k))).toEqual([]);
    });

    it('carries a large tar both ways (Fargate: through presigned S3 URLs, never the exec session)', async () => {
      const payload = randomBytes(300 * 1024);
      const tar = tarOf([
        { name: 'large/', type: '5' },
        { name: 'large/blob', data: payload },
      ]);
      expect((await putTar('carried', tar)).status).toBe(200);
      const back = await getTar('carried/large');
      expect(back.status).toBe(200);
      const copy = await putTar('carried-again', back.bytes);
      expect(copy.status).toBe(200);
      expect(await sh('cmp carried/large/blob carried-again/blob && echo same')).toBe('same\n');
      if (s3) {
        const presigned = s3.requests.filter((q) => q.presigned);
        expect(presigned.some((q) => q.method === 'GET' && q.key.includes('stdin/'))).toBe(true);
        expect(presigned.some((q) => q.method === 'PUT' && q.key.includes('output/'))).toBe(true);
      }
    });
  });
}
