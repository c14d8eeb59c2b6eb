import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASE_IMAGE, DOCKER_SOCKET, dockerUnavailable } from '../../support/docker-daemon.js';

// pristine.sh (reset inside a Fargate task, issue 5 item 7) in a real wsp-base container: no network,
// the script bind-mounted read-only, run as root with Docker's default capabilities (no CAP_SYS_ADMIN,
// like a Fargate task), the workspace user node 1000:1000 with home /home/node.

const SCRIPT = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../../shared/backends/runner/pristine.sh',
);
const HOME = '/home/node';
const name = `wsp-pristine-test-${randomBytes(4).toString('hex')}`;

const docker = (args: string[], input?: string): string =>
  execFileSync('docker', ['-H', `unix://${DOCKER_SOCKET}`, ...args], {
    input,
    encoding: 'utf8',
    stdio: 'pipe',
    maxBuffer: 64 << 20,
  });

/** Run a script in the container (as root unless user is given); `$@` = args. */
const sh = (script: string, args: string[] = [], user = '0:0'): string =>
  docker(['exec', '-i', '-u', user, '-w', HOME, name, 'sh', '-c', script, 'sh', ...args]);

const pristine = (...args: string[]): string => sh('sh /opt/wsp/pristine.sh "$@"', args).trim();

const save = (store: string): string => pristine('save', HOME, store);
const restore = (store: string): Summary => parseSummary(pristine('restore', HOME, store, '1000', '1000'));

interface Summary {
  rewritten: number;
  removed: number;
  restored: number;
  metadata: number;
  checked: number;
  killed: number;
  mode: string;
}

function parseSummary(out: string): Summary {
  const lines = out.split('\n');
  expect(lines).toHaveLength(1);
  const m =
    /^pristine: rewritten=(\d+) removed=(\d+) restored=(\d+) metadata=(\d+) checked=(\d+) killed=(\d+) mode=(changed|full)$/.exec(
      lines[0]!,
    );
  expect(m, out).not.toBeNull();
  const n = (i: number) => Number(m![i]);
  return { rewritten: n(1), removed: n(2), restored: n(3), metadata: n(4), checked: n(5), killed: n(6), mode: m![7]! };
}

interface Entry {
  /** type mode uid gid size(- for dirs) mtime(ns) link-target sha256 — everything restore must reproduce. */
  line: string;
  inode: string;
}

/** Full listing of the home keyed by relative path (NUL-separated, so any name survives). */
function listing(): Map<string, Entry> {
  const raw = sh(
    `find . -printf '%P\\0%y\\0%m\\0%U\\0%G\\0%s\\0%T@\\0%l\\0%i\\0'; printf '\\1'; find . -type f -print0 | xargs -0 -r sha256sum -z`,
  );
  const [meta, sums] = raw.split('\u0001') as [string, string];
  const hashes = new Map<string, string>();
  for (const rec of sums.split('\0').filter(Boolean)) hashes.set(rec.slice(66).replace(/^\.\//, ''), rec.slice(0, 64));
  const fields = meta.split('\0');
  const out = new Map<string, Entry>();
  for (let i = 0; i + 9 <= fields.length; i += 9) {
    const [p, type, mode, uid, gid, size, mtime, target, inode] = fields.slice(i, i + 9) as string[];
    // A directory's size is filesystem bookkeeping (it need not shrink when entries go), not content.
    const line = [type, mode, uid, gid, type === 'd' ? '-' : size, mtime, target, hashes.get(p!) ?? '-'].join(' ');
    out.set(p!, { line, inode: inode! });
  }
  return out;
}

const lines = (l: Map<string, Entry>): Record<string, string> =>
  Object.fromEntries([...l].map(([p, e]) => [p, e.line]));

/** Live (non-zombie) processes of uid 1000 as "pid stat cmd" lines. */
const userProcesses = (): string[] =>
  sh(`ps -e -o uid=,pid=,stat=,args= | awk '$1 == 1000 && $3 !~ /^Z/'`).split('\n').filter(Boolean);

// Odd names: spaces, quotes, a leading dash, newlines (inside and trailing), unicode, glob and escape characters.
const ODD = [
  'with space',
  "single'quote",
  'double"quote',
  '-leading-dash',
  'new\nline',
  'trailing-nl\n',
  'ünïcødé ✓',
  '*star?[x]',
  'back\\slash',
  '.hidden',
  '..dots',
];

const BUILD = String.raw`
set -e
mkdir -p src/deep/er/est .git/objects/ab .git/refs/heads empty-dir 'dir with space/sub' dir-to-become-file/with/content
printf 'hello\n' > src/main.ts
printf 'line1\nline2\n' > src/deep/er/est/leaf.txt
head -c 300000 /dev/urandom > big.bin
printf 'ref\n' > .git/refs/heads/main
printf 'object' > .git/objects/ab/cdef
printf '#!/bin/sh\necho run\n' > run.sh && chmod 755 run.sh
printf 'ro\n' > readonly.txt && chmod 444 readonly.txt
printf 'private\n' > private.txt && chmod 600 private.txt
printf 'x\n' > dir-to-become-file/with/content/file
printf 'file\n' > file-to-become-dir
printf 'inner\n' > 'dir with space/sub/inner file'
ln -s src/main.ts link-to-main
ln -s ../../big.bin src/deep/rel-link
ln -s /nonexistent dangling
mkfifo fifo
for n in "$@"; do printf '%s' "$n" > "$n"; done
nldir=$(printf 'nl\ndir')
mkdir "$nldir" && printf 'in nl dir\n' > "$nldir/inner"
i=0; while [ $i -lt 200 ]; do printf '%s\n' "$i" > src/deep/gen-$i; i=$((i + 1)); done   # untouched bulk
touch -d '2001-02-03 04:05:06.123456789' src/deep/er/est/leaf.txt
touch -h -d '2002-01-01 00:00:00' dangling
`;

const MUTATE = String.raw`
set -e
printf 'HELLO\n' | dd of=src/main.ts conv=notrunc status=none      # edit in place, same size
m=$(stat -c %.9Y src/deep/er/est/leaf.txt)
printf 'LINE1' | dd of=src/deep/er/est/leaf.txt conv=notrunc status=none && touch -d "@$m" src/deep/er/est/leaf.txt  # same size AND mtime
printf 'more\n' >> .git/refs/heads/main                              # append
: > 'with space'                                                     # truncate
rm run.sh                                                            # delete file
rm -r .git/objects                                                   # delete dir
mkdir -p new/dir/tree && printf 'n\n' > new/dir/tree/f && printf 'new\n' > src/new-file   # new files/dirs
mkdir "$(printf 'new\nline dir')" && printf 'h\n' > .newhidden
chmod 600 "single'quote" && chmod 700 src && chmod 644 readonly.txt   # chmod (file, dir)
ln -sfn run.sh link-to-main                                          # symlink retarget
rm file-to-become-dir && mkdir file-to-become-dir && printf 'c\n' > file-to-become-dir/child   # file -> dir
rm -r dir-to-become-file && printf 'now a file\n' > dir-to-become-file                      # dir -> file
touch -d '1999-01-01' -- -leading-dash && touch -d '2000-01-01' empty-dir    # touch -d past (file, dir)
mv 'ünïcødé ✓' renamed                                               # rename
ln big.bin hardlink-to-big                                           # hard link (big.bin unchanged)
rm fifo && printf 'not a fifo\n' > fifo                              # fifo -> file
rm "trailing-nl
" ..dots                                                             # names with a trailing newline / two dots
printf 'z' >> "$(printf 'nl\ndir')/inner"                              # a file in a dir whose name has a newline
`;

// Run as root: the user cannot chown.
const MUTATE_ROOT = String.raw`
set -e
chown 1234:1234 'double"quote'
chown 0:0 private.txt
chown -h 0:0 dangling
`;

/** Processes of uid 1000 a reset must end: plain, forking, session-escaped, signal-ignoring, writing into the home. */
function startProcesses(): void {
  const bg = (script: string) => docker(['exec', '-d', '-u', '1000:1000', '-w', HOME, name, 'sh', '-c', script]);
  bg('exec sleep 100000');
  bg('while :; do sleep 1000 & sleep 0.02; done');
  bg('setsid sh -c "sleep 100000" & exec sleep 100000');
  bg('trap "" TERM HUP INT QUIT; while :; do sleep 1; done');
  bg('while :; do echo x >> /home/node/src/main.ts; sleep 0.01; done');
}

async function waitForProcesses(min: number): Promise<string[]> {
  for (let i = 0; i < 200; i++) {
    const procs = userProcesses();
    if (procs.length >= min) return procs;
    await new Promise((r) => setTimeout(r, 50));
  }
  return userProcesses();
}

describe.skipIf(dockerUnavailable !== undefined)('pristine.sh save/restore in a container', () => {
  beforeAll(() => {
    docker([
      'run',
      '-d',
      '--rm',
      '--name',
      name,
      '--network',
      'none',
      '--pids-limit',
      '2048',
      '-v',
      `${SCRIPT}:/opt/wsp/pristine.sh:ro`,
      BASE_IMAGE,
      'sleep',
      'infinity',
    ]);
    sh('chown 1000:1000 /home/node && chmod 755 /home/node');
  });
  afterAll(() => {
    try {
      docker(['rm', '-f', name]);
    } catch {
      // already gone
    }
  });

  it('restores a heavily mutated tree exactly, kills every process of the user, keeps untouched inodes', async () => {
    sh(BUILD, ODD, '1000:1000');
    sh('printf "root\\n" > root-owned.txt && chmod 640 root-owned.txt');
    const baseline = listing();
    expect(baseline.size).toBeGreaterThan(30);
    expect(save('/var/lib/wsp/pristine/ws1')).toMatch(/^pristine: saved entries=\d+$/);
    // Saving leaves the home alone.
    expect(lines(listing())).toEqual(lines(baseline));

    sh(MUTATE, [], '1000:1000');
    sh(MUTATE_ROOT);
    sh('chown 1000:1000 root-owned.txt');
    startProcesses();
    const procs = await waitForProcesses(5);
    expect(procs.length, procs.join('\n')).toBeGreaterThanOrEqual(5);
    const mutated = listing();
    expect(lines(mutated)).not.toEqual(lines(baseline));

    const summary = restore('/var/lib/wsp/pristine/ws1');

    expect(userProcesses()).toEqual([]);
    const after = listing();
    expect(lines(after)).toEqual(lines(baseline));
    // Untouched = same listing and inode before and after the mutations: restore must not rewrite it.
    const untouched = [...baseline].filter(
      ([p, e]) => mutated.get(p)?.line === e.line && mutated.get(p)?.inode === e.inode,
    );
    expect(untouched.map(([p]) => p)).toContain('big.bin');
    expect(untouched.length).toBeGreaterThan(15);
    for (const [p, e] of untouched) expect(after.get(p)?.inode, p).toBe(e.inode);

    expect(summary.mode).toBe('changed');
    expect(summary.killed).toBeGreaterThanOrEqual(5);
    expect(summary.rewritten).toBeGreaterThanOrEqual(8); // main.ts, leaf.txt, refs/heads/main, 'with space', link, 2 type swaps, fifo, ...
    expect(summary.removed).toBeGreaterThanOrEqual(5); // new, src/new-file, new-line dir, renamed, hardlink
    expect(summary.restored).toBeGreaterThanOrEqual(4); // run.sh, .git/objects, ünïcødé, trailing-nl
    expect(summary.metadata).toBeGreaterThanOrEqual(6); // chmods, chowns, touch -d
    // Only changed entries were examined, not the whole tree.
    expect(summary.checked).toBeLessThan(baseline.size);

    // Idempotent: a second restore finds nothing to do and changes nothing.
    const again = restore('/var/lib/wsp/pristine/ws1');
    expect(again).toEqual({
      rewritten: 0,
      removed: 0,
      restored: 0,
      metadata: 0,
      checked: 0,
      killed: 0,
      mode: 'changed',
    });
    const afterAgain = listing();
    expect(lines(afterAgain)).toEqual(lines(baseline));
    for (const [p, e] of after) expect(afterAgain.get(p)?.inode, p).toBe(e.inode);
  });

  it('restore with no changes rewrites nothing; save again re-baselines and keeps one root-only version', () => {
    const store = '/var/lib/wsp/pristine/ws2';
    save(store);
    const before = listing();
    expect(restore(store)).toEqual({
      rewritten: 0,
      removed: 0,
      restored: 0,
      metadata: 0,
      checked: 0,
      killed: 0,
      mode: 'changed',
    });
    const same = listing();
    expect(lines(same)).toEqual(lines(before));
    for (const [p, e] of before) expect(same.get(p)?.inode, p).toBe(e.inode);

    // A new baseline: the new file belongs to it, so restore keeps it and removes only later changes.
    sh('printf "kept\\n" > baseline-2.txt', [], '1000:1000');
    save(store);
    save(store); // idempotent
    expect(sh('ls -A /var/lib/wsp/pristine/ws2').split('\n').filter(Boolean)).toEqual([
      'current',
      expect.stringMatching(/^v\./),
    ]);
    sh('printf "gone\\n" > later.txt && rm baseline-2.txt', [], '1000:1000');
    const s = restore(store);
    expect(s).toMatchObject({ removed: 1, restored: 1 });
    expect(sh('cat baseline-2.txt; ls later.txt 2>&1 || true')).toMatch(/^kept\n.*No such file/);

    // The copy is root-only: the workspace user can neither read nor change it.
    expect(() => sh('ls /var/lib/wsp/pristine/ws2/current/tree', [], '1000:1000')).toThrow();
    expect(sh('stat -c "%a %u %g" /var/lib/wsp/pristine/ws2').trim()).toBe('700 0 0');
    // Deleting the baseline is rm -rf of the store: nothing of it stays behind.
    sh('rm -rf /var/lib/wsp/pristine/ws2');
    expect(sh('ls -A /var/lib/wsp/pristine')).not.toContain('ws2');
  });

  it('compares everything when the clock is behind the marker (full mode), still without rewriting equal files', () => {
    const store = '/var/lib/wsp/pristine/ws3';
    save(store);
    const before = listing();
    sh('printf "changed\\n" >> src/main.ts && rm -r .git && mkdir extra', [], '1000:1000');
    // The marker in the future = a clock that went backwards since the baseline.
    sh(`touch -d '+1 day' "$(readlink -f ${store}/current)/marker"`);
    const s = restore(store);
    expect(s.mode).toBe('full');
    expect(s.checked).toBeGreaterThanOrEqual(before.size - 10);
    expect(s).toMatchObject({ rewritten: 1, removed: 1, restored: 1 });
    const after = listing();
    expect(lines(after)).toEqual(lines(before));
    expect(after.get('big.bin')?.inode).toBe(before.get('big.bin')?.inode);
    // Afterwards the marker is current again: back to looking at changes only.
    expect(restore(store)).toMatchObject({ checked: 0, mode: 'changed' });
  });

  it('a change made right after save or restore returns is still found by the next restore', () => {
    // Within one shell, so the change lands microseconds after the marker: it must not share the
    // marker's (coarse) timestamp. Each round: save/restore, append at once, restore must rewrite it.
    const out = sh(String.raw`
      set -e
      P="sh /opt/wsp/pristine.sh"
      $P save /home/node /var/lib/wsp/pristine/ws4 > /dev/null
      i=0
      while [ $i -lt 10 ]; do
        if [ $((i % 2)) = 0 ]; then $P restore /home/node /var/lib/wsp/pristine/ws4 1000 1000 > /dev/null
        else $P save /home/node /var/lib/wsp/pristine/ws4 > /dev/null; fi
        printf 'x' >> src/main.ts
        $P restore /home/node /var/lib/wsp/pristine/ws4 1000 1000
        i=$((i + 1))
      done`);
    const summaries = out.trim().split('\n').map(parseSummary);
    expect(summaries).toHaveLength(10);
    for (const s of summaries) expect(s).toMatchObject({ rewritten: 1, removed: 0, restored: 0, mode: 'changed' });
  });

  it('refuses bad arguments without touching anything', () => {
    const run = (...args: string[]) => {
      try {
        pristine(...args);
        return 'ok';
      } catch (error) {
        return String((error as { stderr?: string }).stderr);
      }
    };
    expect(run('restore', HOME, '/var/lib/wsp/pristine/ws1', '0', '0')).toContain('refusing to kill uid 0');
    expect(run('restore', HOME, '/var/lib/wsp/pristine/missing', '1000', '1000')).toContain('no pristine copy');
    expect(run('save', 'relative', '/var/lib/wsp/pristine/x')).toContain('absolute');
    expect(run('save', HOME, `${HOME}/inside`)).toContain('outside the home');
    expect(run('bogus')).toContain('usage');
  });
});
