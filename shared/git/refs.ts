/**
 * Reading refs of a provider-side mirror (local operations: no token, no network).
 */
import { createHash } from 'node:crypto';
import { BadRequestError } from '../contract/errors.js';
import { gitStepError, stderrSummary, type GitResult } from './git-env.js';

/** Runs git inside one mirror (cwd and env bound); never throws for a non-zero exit. */
export type MirrorGit = (args: readonly string[], options?: { stdin?: string }) => Promise<GitResult>;

export interface ResolvedRef {
  /** Full commit id. */
  commit: string;
  /** The ref as asked for, or the default branch's name when none was given. */
  ref: string;
  /** Set when the ref names a branch (then the workspace checks out that branch, tracking origin). */
  branch?: string;
}

export interface MirrorRef {
  /** Full ref name: refs/heads/*, refs/tags/* or refs/wsp/pins/*. */
  ref: string;
  /** What the ref points at (an annotated tag's tag object). */
  object: string;
  /** The commit it peels to. */
  commit: string;
}

/** Namespace for refs the provider creates to keep commits not reachable from branches/tags. */
export const PIN_PREFIX = 'refs/wsp/pins/';

/**
 * A digest of the branches and tags of a mirror's ref list (pins left out): what a workspace's
 * remote-tracking refs and tags are set to by a clone or fetch from a bundle of that list. Equal
 * digests → a fetch would change no ref.
 */
export function refsDigest(refs: readonly MirrorRef[]): string {
  const lines = refs
    .filter((r) => r.ref.startsWith('refs/heads/') || r.ref.startsWith('refs/tags/'))
    .map((r) => `${r.ref} ${r.object}`)
    .sort();
  return createHash('sha256').update(lines.join('\n')).digest('hex');
}

const HEX_ID = /^[0-9a-f]{40}([0-9a-f]{24})?$/;
const ABBREVIATED = /^[0-9a-f]{4,63}$/i;

/** True for a full (SHA-1 or SHA-256) lower-case object id. */
export function isFullObjectId(value: string): boolean {
  return HEX_ID.test(value);
}

/** Commit id of `rev` (peeled), or null if it does not name a commit in this repo. */
export async function commitOf(git: MirrorGit, rev: string): Promise<string | null> {
  const result = await git(['rev-parse', '--verify', '--quiet', '--end-of-options', `${rev}^{commit}`]);
  const commit = result.stdout.trim();
  return result.code === 0 && isFullObjectId(commit) ? commit : null;
}

/**
 * Resolve `ref` (default: the mirror's HEAD branch) to a commit. Accepts branch names, tags,
 * `refs/...` names and full or abbreviated commit ids; a branch wins over a tag of the same name.
 * Throws BadRequestError "ref X not found in <url>" if nothing matches.
 */
export async function resolveMirrorRef(git: MirrorGit, url: string, ref?: string): Promise<ResolvedRef> {
  if (ref === undefined) return resolveDefault(git, url);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this rejects (git forbids them in ref names)
  if (ref === '' || ref.startsWith('-') || /[\s\x00-\x1f\x7f]/.test(ref)) {
    throw new BadRequestError(`ref '${ref}' is not a valid git ref`);
  }
  const branchName = ref.startsWith('refs/heads/') ? ref.slice('refs/heads/'.length) : ref;
  const branchCommit = await commitOf(git, `refs/heads/${branchName}`);
  if (branchCommit) return { commit: branchCommit, ref, branch: branchName };

  const candidates = ref.startsWith('refs/') ? [ref] : [`refs/tags/${ref}`];
  if (ABBREVIATED.test(ref)) candidates.push(ref.toLowerCase());
  for (const candidate of candidates) {
    const commit = await commitOf(git, candidate);
    if (commit) return { commit, ref };
  }
  // Anything else git itself can resolve (e.g. `main~1`), still required to be a commit.
  if (!ref.startsWith('refs/')) {
    const commit = await commitOf(git, ref);
    if (commit) return { commit, ref };
  }
  throw new BadRequestError(`ref ${ref} not found in ${url}`);
}

async function resolveDefault(git: MirrorGit, url: string): Promise<ResolvedRef> {
  const head = await git(['symbolic-ref', '--quiet', 'HEAD']);
  const target = head.stdout.trim();
  if (head.code === 0 && target.startsWith('refs/heads/')) {
    const commit = await commitOf(git, target);
    const branch = target.slice('refs/heads/'.length);
    if (commit) return { commit, ref: branch, branch };
    throw new BadRequestError(
      `ref ${branch} (the default branch) not found in ${url}: the repository has no commits on it`,
    );
  }
  const commit = await commitOf(git, 'HEAD');
  if (commit) return { commit, ref: 'HEAD' };
  throw new BadRequestError(`ref HEAD not found in ${url}: the repository has no default branch`);
}

/** Branches, tags and pins of the mirror, with the commit each peels to. */
export async function listMirrorRefs(git: MirrorGit): Promise<MirrorRef[]> {
  const result = await git([
    'for-each-ref',
    '--format=%(refname)%09%(objectname)%09%(objecttype)%09%(*objectname)%09%(*objecttype)',
    'refs/heads',
    'refs/tags',
    PIN_PREFIX,
  ]);
  if (result.code !== 0) throw gitStepError('git for-each-ref', stderrSummary(result), result);
  const refs: MirrorRef[] = [];
  for (const line of result.stdout.split('\n')) {
    if (line === '') continue;
    const [ref = '', object = '', type = '', peeled = '', peeledType = ''] = line.split('\t');
    if (type === 'commit') refs.push({ ref, object, commit: object });
    else if (type === 'tag' && peeledType === 'commit') refs.push({ ref, object, commit: peeled });
    else if (type === 'tag') {
      // Tag of a tag (or of a non-commit): peel fully, skip if it is not a commit in the end.
      const commit = await commitOf(git, object);
      if (commit) refs.push({ ref, object, commit });
    }
  }
  return refs;
}
