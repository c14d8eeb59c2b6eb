import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { StepFailedError } from '../../shared/contract/errors.js';
import { hostFingerprintDetailed } from '../../shared/backends/local/tree/index.js';
import { type FingerprintMode, fingerprintArgv, parseFingerprint } from '../../shared/workspace/fingerprint.js';
import { parseRecordsOutput, parseStatOutput, recordPath } from '../../shared/workspace/records.js';

// The in-workspace script is run for real (sh + findutils + coreutils, as in a Debian image) and
// must agree with the host's Node implementation on every tree.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
function tmp(name = 'wsp-fp-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), name));
  dirs.push(d);
  return d;
}

function runScript(dir: string, asUid?: number): { status: number | null; stdout: string; stderr: string } {
  let [cmd, ...args] = fingerprintArgv(dir) as [string, ...string[]];
  if (asUid !== undefined) {
    args = [`--reuid=${asUid}`, `--regid=${asUid}`, '--clear-groups', '--', cmd, ...args];
    cmd = 'setpriv';
  }
  // A hostile locale must not change the sort order: the script sets LC_ALL itself.
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'en_US.UTF-8' },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Both implementations on `dir`; fails the test when they disagree. */
async function fingerprint(dir: string): Promise<string> {
  const r = runScript(dir);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const inside = parseFingerprint(r.stdout);
  expect(inside).toEqual(await hostFingerprintDetailed(dir));
  return inside.digest;
}

async function richTree(): Promise<string> {
  const dir = tmp();
  const w = (rel: string, content: string | Buffer, mode?: number): void => {
    const abs = path.join(dir, rel);
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    fs.writeFileSync(abs, content);
    if (mode !== undefined) fs.chmodSync(abs, mode);
  };
  w('README.md', '# hello\n');
  w('src/index.ts', 'export {};\n');
  w('bin/run.sh', '#!/bin/sh\n', 0o755);
  w('with space/and  two.txt', 'spaces');
  w('new\nline/file\nname', 'newlines');
  w('tab\tname', 'tab');
  w('ünïcødé/日本語.txt', 'unicode');
  w('back\\slash', 'backslash');
  w('-leading-dash', 'dash');
  w('empty-file', '');
  w('.git/HEAD', 'ref: refs/heads/main\n');
  w('node_modules/.bin/tool', 'x', 0o4755);
  w('binary.bin', Buffer.from([0, 1, 2, 255, 10, 13, 0]));
  fs.writeFileSync(Buffer.from(`${dir}/raw-\xff\xfe`, 'latin1'), 'not utf-8 name');
  fs.mkdirSync(path.join(dir, 'empty-dir'));
  fs.mkdirSync(path.join(dir, 'sticky'), { mode: 0o1777 });
  fs.chmodSync(path.join(dir, 'sticky'), 0o1777);
  fs.symlinkSync('src/index.ts', path.join(dir, 'link'));
  fs.symlinkSync('/nowhere/dangling target\nwith newline', path.join(dir, 'dangling'));
  fs.linkSync(path.join(dir, 'README.md'), path.join(dir, 'hardlink.md'));
  execFileSync('mkfifo', [path.join(dir, 'fifo')]);
  return dir;
}

describe('fingerprintArgv / parseFingerprint', () => {
  it('the script and hostFingerprint agree on a tree with every kind of entry and name', async () => {
    const dir = await richTree();
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(path.join(dir, 'socket'), resolve));
    try {
      const r = runScript(dir);
      expect(r.stdout).toMatch(/^digest [0-9a-f]{64} entries 29\n$/);
      await fingerprint(dir);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('agrees on an empty directory and a big flat one (several xargs batches)', async () => {
    await fingerprint(tmp());
    const big = tmp();
    const long = 'x'.repeat(200);
    for (let i = 0; i < 3000; i++) fs.writeFileSync(path.join(big, `${long}-${i}`), String(i % 7));
    const r = runScript(big);
    expect(parseFingerprint(r.stdout).entries).toBe(3000);
    await fingerprint(big);
  });

  const changes: [string, (dir: string) => void][] = [
    ['content change', (d) => fs.appendFileSync(path.join(d, 'src/index.ts'), '// x')],
    ['same-size content change', (d) => fs.writeFileSync(path.join(d, 'README.md'), '# HELLO\n')],
    ['chmod +x', (d) => fs.chmodSync(path.join(d, 'README.md'), 0o755)],
    ['setuid bit dropped', (d) => fs.chmodSync(path.join(d, 'node_modules/.bin/tool'), 0o755)],
    [
      'symlink retarget',
      (d) => {
        fs.rmSync(path.join(d, 'link'));
        fs.symlinkSync('README.md', path.join(d, 'link'));
      },
    ],
    [
      'symlink replaced by a file with the target as content',
      (d) => {
        fs.rmSync(path.join(d, 'link'));
        fs.writeFileSync(path.join(d, 'link'), 'src/index.ts');
      },
    ],
    ['new empty dir', (d) => fs.mkdirSync(path.join(d, 'src/new'))],
    ['new empty file', (d) => fs.writeFileSync(path.join(d, 'empty-dir/.keep'), '')],
    ['rename', (d) => fs.renameSync(path.join(d, 'src/index.ts'), path.join(d, 'src/main.ts'))],
    [
      'name with spaces',
      (d) => fs.renameSync(path.join(d, 'with space/and  two.txt'), path.join(d, 'with space/and two.txt')),
    ],
    ['name with a newline', (d) => fs.writeFileSync(path.join(d, 'README.md\n'), '# hello\n')],
    ['unicode name', (d) => fs.renameSync(path.join(d, 'ünïcødé/日本語.txt'), path.join(d, 'ünïcødé/日本.txt'))],
    ['dir removed', (d) => fs.rmSync(path.join(d, 'empty-dir'), { recursive: true })],
    [
      'fifo replaced by an empty file',
      (d) => {
        fs.rmSync(path.join(d, 'fifo'));
        fs.writeFileSync(path.join(d, 'fifo'), '');
      },
    ],
  ];
  for (const [name, change] of changes) {
    it(`changes with: ${name}`, async () => {
      const dir = await richTree();
      const before = await fingerprint(dir);
      change(dir);
      expect(await fingerprint(dir)).not.toBe(before);
    });
  }

  it('does not change with mtimes, owners or inode numbers', async () => {
    const dir = await richTree();
    const before = await fingerprint(dir);
    fs.utimesSync(path.join(dir, 'README.md'), 1, 1);
    fs.utimesSync(path.join(dir, 'empty-dir'), 2, 2);
    fs.chownSync(path.join(dir, 'src/index.ts'), 4242, 4343);
    fs.lchownSync(path.join(dir, 'link'), 4242, 4343);
    const copy = path.join(dir, 'src/index.ts.tmp');
    fs.copyFileSync(path.join(dir, 'src/index.ts'), copy);
    fs.renameSync(copy, path.join(dir, 'src/index.ts'));
    expect(await fingerprint(dir)).toBe(before);
  });

  it('the directory reaches the script as an argument, never as script text', async () => {
    const parent = tmp();
    const dir = path.join(parent, `it's "$(touch pwned)" \`touch pwned2\` ; $HOME`);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'f'), 'x');
    await fingerprint(dir);
    expect(fs.readdirSync(parent)).toEqual([path.basename(dir)]);
    expect(fingerprintArgv(dir).slice(3)).toEqual(['wsp-fingerprint', dir]);
  });

  it('fails loudly (no digest) when the workspace user cannot read everything', async () => {
    const dir = tmp();
    fs.chmodSync(dir, 0o755);
    fs.writeFileSync(path.join(dir, 'readable'), 'x');
    fs.chmodSync(path.join(dir, 'readable'), 0o644);
    fs.writeFileSync(path.join(dir, 'secret'), 'x');
    fs.chmodSync(path.join(dir, 'secret'), 0o600);
    const r = runScript(dir, 65534);
    expect(r.status).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('wsp-fingerprint: cannot read every file');
    expect(() => parseFingerprint(r.stdout)).toThrow(StepFailedError);

    fs.chmodSync(path.join(dir, 'secret'), 0o644);
    expect(runScript(dir, 65534).status).toBe(0); // same tree, readable: fine as that user
    fs.mkdirSync(path.join(dir, 'locked'), { mode: 0o700 });
    const locked = runScript(dir, 65534);
    expect(locked.status).not.toBe(0);
    expect(locked.stderr).toContain('wsp-fingerprint: cannot walk every directory');
  });

  const runMode = (dir: string, mode: FingerprintMode, input?: Buffer) => {
    const [cmd, ...args] = fingerprintArgv(dir, mode) as [string, ...string[]];
    const r = spawnSync(cmd, args, {
      input,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'en_US.UTF-8' },
    });
    expect(r.stderr.toString()).toBe('');
    expect(r.status).toBe(0);
    return r.stdout;
  };

  it('--records emits exactly the sorted records of the same digest', async () => {
    const dir = await richTree();
    const digest = await fingerprint(dir);
    const out = parseRecordsOutput(runMode(dir, '--records'));
    expect(out.digest).toBe(digest);
    expect(out.records).toHaveLength(parseFingerprint(runScript(dir).stdout).entries);
    expect([...out.records].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).toEqual(out.records);
    expect(out.records.map(recordPath)).toContain('raw-\xff\xfe');
  });

  it('--paths fingerprints only the listed names (any byte but NUL), and their ctimes after', async () => {
    const dir = await richTree();
    const all = parseRecordsOutput(runMode(dir, '--records')).records;
    const names = ['new\nline/file\nname', 'raw-\xff\xfe', 'link', 'empty-dir', '-leading-dash', 'missing', '.'];
    const list = Buffer.from(names.map((n) => `${n}\0`).join(''), 'latin1');
    const out = parseRecordsOutput(runMode(dir, '--paths', list));
    const byPath = new Map(all.map((r) => [recordPath(r), r]));
    expect(out.records.filter((r) => recordPath(r) !== '.')).toEqual(
      names
        .filter((n) => byPath.has(n))
        .map((n) => byPath.get(n))
        .sort((a, b) => (a! < b! ? -1 : 1)),
    );
    expect([...out.ctimes!.keys()].sort()).toEqual(names.filter((n) => n !== 'missing').sort());
  });

  it('--stat lists every entry with type, mode, size, inode, ctime and target, and a mark from the same clock', async () => {
    const dir = await richTree();
    const { mark, entries } = parseStatOutput(runMode(dir, '--stat'));
    expect(entries).toHaveLength(28);
    const link = entries.find((e) => e.path === 'dangling')!;
    expect(link).toMatchObject({ type: 'l', target: '/nowhere/dangling target\nwith newline' });
    const readme = entries.find((e) => e.path === 'README.md')!;
    expect(readme).toMatchObject({ type: 'f', perm: '644', size: 8 });
    expect(BigInt(fs.statSync(path.join(dir, 'README.md'), { bigint: true }).ctimeNs)).toBe(readme.ctime);
    expect(readme.ctime <= mark).toBe(true);
  });

  it('parseFingerprint takes the last digest line and rejects anything else', () => {
    const d = 'a'.repeat(64);
    expect(parseFingerprint(`noise\ndigest ${d} entries 12\n`)).toEqual({ digest: d, entries: 12 });
    expect(() => parseFingerprint('')).toThrow(StepFailedError);
    expect(() => parseFingerprint(`digest ${d.slice(1)} entries 1\n`)).toThrow(StepFailedError);
    expect(() => parseFingerprint(`digest ${d} entries 1\ntrailing\n`)).toThrow(StepFailedError);
  });
});
