/**
 * Git bundles written from a mirror: the only way repository content reaches a workspace.
 * A bundle carries every branch and tag (plus a pin ref for any requested commit not reachable
 * from them); with a basis it is incremental — only objects the workspace does not have yet.
 */
import fs from 'node:fs';
import { BadRequestError } from '../contract/errors.js';
import { gitStepError, stderrSummary } from './git-env.js';
import { PIN_PREFIX, commitOf, isFullObjectId, listMirrorRefs, type MirrorGit, type MirrorRef } from './refs.js';

export interface BundleRequest {
  /** Full commit ids that must be reachable in the workspace after fetching the bundle. */
  include: string[];
  /** Full commit ids the workspace already has; ids unknown to the mirror are dropped. */
  basis: string[];
}

export interface BundleResult {
  /** True when the workspace already has everything: no file was written. */
  empty: boolean;
  /** Ref names the bundle carries (refs whose tips the basis already has are left out by git). */
  heads: string[];
  /**
   * Every branch, tag and pin of the mirror at bundle time. Refs whose tips the workspace already
   * has are NOT in an incremental bundle, so the service applies these with refsUpdateArgv.
   */
  refs: MirrorRef[];
}

const EMPTY_BUNDLE = /Refusing to create empty bundle/i;

/**
 * Write a bundle of the mirror to `outPath` (mode 0600). Throws BadRequestError for a malformed
 * id or an `include` commit the mirror does not have; StepFailedError('git bundle') otherwise.
 */
export async function createMirrorBundle(
  git: MirrorGit,
  url: string,
  request: BundleRequest,
  outPath: string,
): Promise<BundleResult> {
  for (const id of [...request.include, ...request.basis]) {
    if (!isFullObjectId(id)) throw new BadRequestError(`'${id}' is not a full commit id`);
  }
  for (const commit of request.include) await ensureReachable(git, url, commit);

  const refs = await listMirrorRefs(git);
  const pins = new Set(request.include.map((c) => `${PIN_PREFIX}${c}`));
  // Branches and tags always; pins only those this bundle needs (others stay in the mirror).
  const bundleRefs = refs.map((r) => r.ref).filter((ref) => !ref.startsWith(PIN_PREFIX) || pins.has(ref));
  fs.rmSync(outPath, { force: true });
  if (bundleRefs.length === 0) return { empty: true, heads: [], refs };

  const basis = await knownCommits(git, request.basis);
  const revs = `${[...bundleRefs, ...basis.map((c) => `^${c}`)].join('\n')}\n`;
  const created = await git(['bundle', 'create', '--quiet', outPath, '--stdin'], { stdin: revs });
  if (created.code !== 0) {
    fs.rmSync(outPath, { force: true });
    if (EMPTY_BUNDLE.test(created.stderr)) return { empty: true, heads: [], refs };
    throw gitStepError('git bundle', stderrSummary(created), created);
  }
  fs.chmodSync(outPath, 0o600);

  const listed = await git(['bundle', 'list-heads', outPath]);
  if (listed.code !== 0) throw gitStepError('git bundle', stderrSummary(listed), listed);
  const heads = listed.stdout
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .filter((ref) => ref !== '');
  return { empty: false, heads, refs };
}

/**
 * The commit must exist in the mirror; if no branch or tag contains it (e.g. force-pushed away),
 * pin it under refs/wsp/pins/<commit> so the bundle has a ref that carries it.
 */
async function ensureReachable(git: MirrorGit, url: string, commit: string): Promise<void> {
  if ((await commitOf(git, commit)) !== commit) throw new BadRequestError(`commit ${commit} not found in ${url}`);
  const containing = await git([
    'for-each-ref',
    '--count=1',
    '--format=%(refname)',
    `--contains=${commit}`,
    'refs/heads',
    'refs/tags',
  ]);
  if (containing.code !== 0) throw gitStepError('git bundle', stderrSummary(containing), containing);
  if (containing.stdout.trim() !== '') return;
  // Pins are never deleted: a concurrent bundle may be using one, and they are tiny.
  const pin = `${PIN_PREFIX}${commit}`;
  const pinned = await git(['update-ref', pin, commit]);
  // A concurrent bundle may have written the same pin; that is fine if it points at the commit.
  if (pinned.code !== 0 && (await commitOf(git, pin)) !== commit)
    throw gitStepError('git bundle', stderrSummary(pinned), pinned);
}

/** The subset of `ids` that are commits in the mirror (a basis the mirror never saw is dropped). */
async function knownCommits(git: MirrorGit, ids: readonly string[]): Promise<string[]> {
  const unique = [...new Set(ids)];
  if (unique.length === 0) return [];
  const checked = await git(['cat-file', '--batch-check=%(objectname) %(objecttype)'], {
    stdin: `${unique.join('\n')}\n`,
  });
  if (checked.code !== 0) throw gitStepError('git bundle', stderrSummary(checked), checked);
  return checked.stdout
    .split('\n')
    .map((line) => line.split(' '))
    .filter(([, type]) => type === 'commit')
    .map(([id]) => id ?? '');
}
