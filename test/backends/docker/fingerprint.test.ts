import fs from 'node:fs';
import path from 'node:path';
import type Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createdNs, DockerFingerprints } from '../../../shared/backends/docker/fingerprint.js';
import { indexFile, indexKey, readIndex, writeIndex } from '../../../shared/backends/docker/fingerprint-cache.js';
import { StepFailedError } from '../../../shared/contract/errors.js';
import type { BackendRef, SnapshotRef } from '../../../shared/contract/workspace.js';
import { fingerprintArgv, parseFingerprint } from '../../../shared/workspace/fingerprint.js';
import { newId, useBackendFixture, type BackendHandle } from '../../support/backend-fixture.js';
import { dockerUnavailable, makeDockerBackend } from '../../support/docker-daemon.js';

type DockerHandle = Awaited<ReturnType<typeof makeDockerBackend>>;

/**
 * A docker fingerprint reads only the files that changed since the container's image: a metadata walk,
 * the image's remembered hashes for files whose inode, size and ctime are unchanged, the rest hashed.
 * Every digest here is checked against the full script run in the same container, as the service
 * would run it, and the counters show how many files were read.
 */
describe.skipIf(dockerUnavailable !== undefined)('docker fingerprintHome', () => {
  const fx = useBackendFixture(() => makeDockerBackend());
  const h = (): DockerHandle => fx.handle as BackendHandle as DockerHandle;
  const cacheDir = (): string => path.join(h().dataDir, 'docker', 'fingerprints');
  const container = (ref: BackendRef): string => String(ref.container);
  /** A new instance over the backend's cache dir: its stats show what one fingerprint did. */
  const fresh = (docker: Docker = h().docker): DockerFingerprints => new DockerFingerprints(docker, cacheDir());
  const inside = async (ref: BackendRef): Promise<string> =>
    parseFingerprint((await fx.run(ref, ['env', 'LC_ALL=C', ...fingerprintArgv(fx.plan.home)])).stdout).digest;
  const sh = async (ref: BackendRef, script: string): Promise<void> => {
    const r = await fx.sh(ref, `cd "$1" && ${script}`, [fx.plan.home]);
    expect(r.stderr).toBe('');
    expect(r.status.exitCode).toBe(0);
  };
  const imageKey = async (ref: BackendRef): Promise<string> =>
    indexKey((await h().docker.getContainer(container(ref)).inspect()).Image, fx.plan);

  /** The image every change below starts from: 13 files, names of every kind, dirs to delete or replace. */
  const TREE = String.raw`mkdir -p w/sub/deep gone/inner redo replace-by-file keep 'sp ace' &&
printf a > w/a && printf b > w/sub/b && printf d > w/sub/deep/d && printf i > gone/inner/i && printf g > gone/g &&
printf r > redo/old && printf x > replace-by-file/x && printf f > file-to-dir && printf kkkk > keep/k &&
printf s > 'sp ace/f i' && printf n > "$(printf 'new\nline')" && printf u > "$(printf 'raw-\377')" &&
printf t > "$(printf 'tab\tl\t777\tname')" && ln -s w/a link && chmod 600 w/sub/b`;
  const FILES = 16; // and the image's own .bashrc, .profile, .bash_logout

  // The image is made once (its snapshot outlives the fixture's per-test cleanup); every test starts
  // its own container from it, as a reset does.
  let snap: SnapshotRef;
  let imageDigest: string;
  beforeAll(async () => {
    const maker = await fx.create();
    await sh(maker, TREE);
    snap = await fx.backend.open(maker, fx.plan).snapshots.take('baseline', newId('image'));
    // Files written less than the clock margin before a container was made are not remembered.
    await new Promise((r) => setTimeout(r, 2500));
  });
  afterAll(async () => {
    if (snap) await fx.backend.snapshots.delete(snap);
  });
  /** A container from the image (the first one also fingerprints it, as the first reset would). */
  const fromImage = async (): Promise<BackendRef> => {
    const ref = await fx.create({ from: snap });
    if (imageDigest === undefined) {
      imageDigest = await inside(ref);
      expect(await fresh().home(container(ref), fx.plan)).toBe(imageDigest);
    }
    return ref;
  };

  it("hashes every file once per image, then only what changed (the image's hashes answer)", async () => {
    const ref = await fromImage();
    fs.rmSync(cacheDir(), { recursive: true, force: true });
    const first = fresh();
    expect(await first.home(container(ref), fx.plan)).toBe(imageDigest);
    expect(first.stats).toMatchObject({ full: 0, derived: 1, hashed: FILES, reused: 0 });
    const file = indexFile(cacheDir(), await imageKey(ref));
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect((await readIndex(cacheDir(), await imageKey(ref))).size).toBe(FILES);

    const other = await fx.create({ from: snap });
    const second = fresh();
    expect(await second.home(container(other), fx.plan)).toBe(imageDigest);
    expect(second.stats).toMatchObject({ full: 0, derived: 1, hashed: 0, reused: FILES });
    // Through the backend too (its own instance, same cache dir).
    expect(await fx.backend.open(other, fx.plan).files.fingerprintHome!()).toBe(imageDigest);
  });

  // What each change is, and which files it makes the fingerprint read (latin1 relpaths).
  const changes: [string, string, { same?: boolean; hashed: string[] }][] = [
    ['add a file', 'printf new > w/new', { hashed: ['w/new'] }],
    ['modify a file', 'printf changed > w/a', { hashed: ['w/a'] }],
    ['modify back to identical bytes', 'printf a > w/a', { same: true, hashed: ['w/a'] }],
    ['chmod', 'chmod 755 w/a', { hashed: ['w/a'] }],
    [
      'same size, mtime set back (ctime cannot be)',
      'm=$(stat -c %y keep/k) && printf KKKK > keep/k && touch -d "$m" keep/k',
      { hashed: ['keep/k'] },
    ],
    ['delete a file', 'rm w/sub/deep/d', { hashed: [] }],
    ['delete a non-empty dir', 'rm -r gone', { hashed: [] }],
    [
      'replace a file by a dir',
      'rm file-to-dir && mkdir file-to-dir && printf z > file-to-dir/z',
      { hashed: ['file-to-dir/z'] },
    ],
    ['replace a dir by a file', 'rm -r replace-by-file && printf x > replace-by-file', { hashed: ['replace-by-file'] }],
    ['retarget a symlink', 'ln -sfn w/sub link', { hashed: [] }],
    [
      'names with spaces, newlines, tabs',
      `printf 1 > 'sp ace/g h' && printf 2 > "$(printf 'a\\nb\\tc')"`,
      { hashed: ['a\nb\tc', 'sp ace/g h'] },
    ],
    [
      'non-UTF-8 names',
      `printf v > "$(printf 'w/x-\\376')" && printf U > "$(printf 'raw-\\377')"`,
      { hashed: ['raw-\xff', 'w/x-\xfe'] },
    ],
    ['a file under an added directory', 'mkdir -p added/more && printf q > added/more/q', { hashed: ['added/more/q'] }],
    [
      'a dir of the image deleted and made again',
      'rm -r redo && mkdir redo && printf n > redo/new',
      { hashed: ['redo/new'] },
    ],
    [
      'the same name back in a re-made dir',
      'rm -r redo && mkdir redo && printf r > redo/old',
      { same: true, hashed: ['redo/old'] },
    ],
    ['a file renamed over another', 'mv w/a w/sub/deep/d', { hashed: ['w/sub/deep/d'] }],
    [
      'several at once',
      'rm -r gone && printf c > keep/k && mkdir w/n && ln -s ../keep w/n/l && chmod 700 w/sub',
      { hashed: ['keep/k'] },
    ],
  ];
  for (const [name, script, expected] of changes) {
    it(`gives the full script's digest after: ${name}`, async () => {
      const ref = await fromImage();
      await sh(ref, script);
      const fps = fresh();
      const digest = await fps.home(container(ref), fx.plan);
      expect(digest).toBe(await inside(ref));
      if (expected.same) expect(digest).toBe(imageDigest);
      else expect(digest).not.toBe(imageDigest);
      expect(fps.stats).toMatchObject({ full: 0, derived: 1 });
      expect([...fps.lastHashed].sort()).toEqual(expected.hashed);
    });
  }

  it("remembers only the image's files: none written in a container, whose inode a copy-up shares", async () => {
    const ref = await fromImage();
    await sh(ref, 'printf changed > w/a && printf new > w/new');
    expect(await fresh().home(container(ref), fx.plan)).toBe(await inside(ref));
    const created = createdNs((await h().docker.getContainer(container(ref)).inspect()).Created);
    const index = await readIndex(cacheDir(), await imageKey(ref));
    expect(index.has('w/new')).toBe(false);
    for (const f of index.values()) expect(f.ctime < created).toBe(true);
    // The image's w/a is still what a fresh container of the image finds there.
    const other = await fx.create({ from: snap });
    expect(await fresh().home(container(other), fx.plan)).toBe(imageDigest);
  });

  it('the index is what answers: a planted hash shows up, and a file whose ctime moved is read again', async () => {
    const ref = await fromImage();
    const key = await imageKey(ref);
    const real = await readIndex(cacheDir(), key);
    const planted = new Map(real);
    planted.set('keep/k', { ...real.get('keep/k')!, hash: '0'.repeat(64) });
    await writeIndex(cacheDir(), key, planted);
    try {
      expect(await fresh().home(container(ref), fx.plan)).not.toBe(imageDigest);
      await sh(ref, 'chmod 644 keep/k'); // same mode: only its ctime moves
      const fps = fresh();
      expect(await fps.home(container(ref), fx.plan)).toBe(imageDigest);
      expect(fps.stats.hashed).toBe(1);
    } finally {
      await writeIndex(cacheDir(), key, real);
    }
  });

  it('a file replaced by a directory between the walk and the hashing: the full script answers', async () => {
    const ref = await fromImage();
    await sh(ref, 'printf new > w/new');
    const fps = fresh(beforeExec(h().docker, 2, () => sh(ref, 'rm w/new && mkdir w/new')));
    expect(await fps.home(container(ref), fx.plan)).toBe(await inside(ref));
    expect(fps.stats).toMatchObject({ full: 1, derived: 0 });
  });

  it('a remembered file changed between the walk and the hashing is read again next time', async () => {
    const ref = await fromImage();
    await sh(ref, 'printf new > w/new');
    const fps = fresh(beforeExec(h().docker, 2, () => sh(ref, 'printf KKKK > keep/k')));
    // What the walk saw (keep/k as in the image) or what is there now: a state the full script
    // could have hashed too (it reads files one after the other).
    const racing = await fps.home(container(ref), fx.plan);
    const now = await inside(ref);
    expect([now, await withKeepAsImage(ref)]).toContain(racing);
    const next = fresh();
    expect(await next.home(container(ref), fx.plan)).toBe(now);
    expect(next.stats.hashed).toBe(2);
  });
  const withKeepAsImage = async (ref: BackendRef): Promise<string> => {
    await sh(ref, 'printf kkkk > keep/k');
    const digest = await inside(ref);
    await sh(ref, 'printf KKKK > keep/k');
    return digest;
  };

  it('fails as the full script fails when the workspace user cannot read everything', async () => {
    const ref = await fromImage();
    await sh(ref, 'chmod 000 keep/k');
    await expect(fresh().home(container(ref), fx.plan)).rejects.toThrow(StepFailedError);
    await sh(ref, 'chmod 644 keep/k && chmod 000 w/sub');
    await expect(fresh().home(container(ref), fx.plan)).rejects.toThrow(/cannot walk every directory/);
    await sh(ref, 'chmod 755 w/sub');
  });

  it('maintain prunes what is kept for images that are gone, and only theirs', async () => {
    const maker = await fx.create();
    await sh(maker, 'printf p > p');
    const gone = await fx.backend.open(maker, fx.plan).snapshots.take('baseline', newId('gone'));
    const ref = await fx.create({ from: gone });
    // Untouched since made from the snapshot: its digest is kept beside the image's index.
    await fx.backend.open(ref, fx.plan).files.fingerprintHome!();
    const image = (await imageKey(ref)).split('.')[0]!;
    const kept = (): string[] => fs.readdirSync(cacheDir()).filter((n) => n.startsWith(`${image}.`));
    expect(kept().length).toBeGreaterThan(0);
    const others = fs.readdirSync(cacheDir()).filter((n) => !n.startsWith(`${image}.`));
    await fx.backend.maintain!([]);
    expect(kept().length).toBeGreaterThan(0);
    await fx.backend.destroy(ref);
    await fx.backend.destroy(maker);
    await fx.backend.snapshots.delete(gone);
    await fx.backend.maintain!([]);
    expect(kept()).toEqual([]);
    expect(fs.readdirSync(cacheDir()).filter((n) => !n.startsWith(`${image}.`))).toEqual(others);
  });
});

/** The docker client, running `hook` before the `n`th exec it creates (1-based). */
function beforeExec(docker: Docker, n: number, hook: () => Promise<void>): Docker {
  let execs = 0;
  return new Proxy(docker, {
    get(target, prop, receiver) {
      if (prop !== 'getContainer') return Reflect.get(target, prop, receiver);
      return (id: string) => {
        const c = target.getContainer(id);
        return new Proxy(c, {
          get(ct, p, r) {
            const v = Reflect.get(ct, p, r);
            if (p !== 'exec') return typeof v === 'function' ? v.bind(ct) : v;
            return async (options: Docker.ExecCreateOptions) => {
              if (++execs === n) await hook();
              return ct.exec(options);
            };
          },
        });
      };
    },
  });
}
