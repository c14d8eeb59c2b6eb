/**
 * PURE argv builders (and output parsers) for git run INSIDE a workspace, as the workspace user,
 * through the backend executor. Every builder returns `['sh', '-c', SCRIPT, 'wsp-git', ...args]`:
 * values travel as positional parameters and are never interpolated into the script text.
 *
 * No builder touches the network: content arrives as bundle files in the read-only transfer dir
 * (written by GitBroker.createBundle), `origin` keeps the token-free URL. Hooks are disabled for
 * every git the provider triggers (`core.hooksPath=/dev/null`), prompts are off.
 *
 * Builders throw BadRequestError for a malformed commit id or branch name.
 */
import { BadRequestError } from '../contract/errors.js';
import { PIN_PREFIX, isFullObjectId, type MirrorRef } from './refs.js';

/** Refspecs a workspace fetches from a bundle: branches as remote-tracking refs, tags, pins. */
const BUNDLE_REFSPECS = `'+refs/heads/*:refs/remotes/origin/*' '+refs/tags/*:refs/tags/*' '+${PIN_PREFIX}*:${PIN_PREFIX}*'`;

/** Shared prelude: strict shell, no prompts, no inherited repo overrides, `g` = git without hooks. */
const PRELUDE = `set -eu
export GIT_TERMINAL_PROMPT=0 GIT_ASKPASS=
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_CONFIG_PARAMETERS GIT_CONFIG_COUNT 2>/dev/null || true
g() { git -c core.hooksPath=/dev/null -c advice.detachedHead=false "$@"; }
`;

/** Check out $commit: on branch $branch tracking origin/$branch when $branch is set, else detached. */
const CHECKOUT = `if [ -n "$branch" ]; then
  g checkout --quiet -B "$branch" "$commit"
  g config -- "branch.$branch.remote" origin
  g config -- "branch.$branch.merge" "refs/heads/$branch"
else
  g checkout --quiet --detach "$commit"
fi
`;

const CLONE_SCRIPT = `${PRELUDE}bundle=$1 target=$2 origin=$3 commit=$4 branch=\${5-}
mkdir -p -- "$target"
cd -- "$target"
if [ -e .git ]; then echo "wsp-git: $target already has a .git" >&2; exit 3; fi
g -c init.defaultBranch=main init --quiet
g config -- remote.origin.url "$origin"
g config -- remote.origin.fetch '+refs/heads/*:refs/remotes/origin/*'
g fetch --quiet --no-write-fetch-head "$bundle" ${BUNDLE_REFSPECS}
${CHECKOUT}`;

const FETCH_SCRIPT = `${PRELUDE}bundle=$1 target=$2
cd -- "$target"
g fetch --quiet --no-write-fetch-head "$bundle" ${BUNDLE_REFSPECS}
`;

const CHECKOUT_SCRIPT = `${PRELUDE}target=$1 commit=$2 branch=\${3-}
cd -- "$target"
${CHECKOUT}`;

const REFS_UPDATE_SCRIPT = `${PRELUDE}cd -- "$1"
g update-ref --stdin
`;

const HEADS_SCRIPT = `${PRELUDE}cd -- "$1"
head=$(g rev-parse --verify --quiet 'HEAD^{commit}' || true)
printf 'HEAD %s\\n' "\${head:--}"
g for-each-ref --format='%(refname) %(objectname) %(*objectname)' refs/heads refs/remotes/origin refs/tags ${PIN_PREFIX}
`;

const STATUS_SCRIPT = `${PRELUDE}cd -- "$1"
g status --porcelain=v1 -z --untracked-files=all
`;

const DIFF_SCRIPT = `${PRELUDE}cd -- "$1"
g -c core.quotePath=false diff --no-color --no-ext-diff --no-textconv "$2" --
`;

function argv(script: string, ...args: string[]): string[] {
  return ['sh', '-c', script, 'wsp-git', ...args];
}

function requireCommit(commit: string): string {
  if (!isFullObjectId(commit)) throw new BadRequestError(`'${commit}' is not a full commit id`);
  return commit;
}

/** Conservative check-ref-format for a branch name (no leading '-', no '..', no spaces/control chars…). */
function requireBranch(branch: string | undefined): string {
  if (branch === undefined) return '';
  const bad =
    branch === '' ||
    branch.startsWith('-') ||
    branch.startsWith('/') ||
    branch.endsWith('/') ||
    branch.endsWith('.') ||
    branch.endsWith('.lock') ||
    branch.includes('..') ||
    branch.includes('@{') ||
    branch.includes('//') ||
    /[\s\x00-\x1f\x7f~^:?*[\\]/.test(branch);
  if (bad) throw new BadRequestError(`'${branch}' is not a valid branch name`);
  return branch;
}

export interface CloneFromBundleOptions {
  /** Guest path of a full bundle (in plan.transferDir). */
  bundlePath: string;
  /** Guest path of the repo; may exist (empty, or the workspace root) but must not hold a .git. */
  target: string;
  /** Token-free upstream URL recorded as `origin`. */
  originUrl: string;
  commit: string;
  /** Check out this branch (tracking origin/<branch>) at `commit`; detached HEAD when absent. */
  branch?: string;
}

/** Init `target`, fetch everything from the bundle, set origin, check out `commit`. */
export function cloneFromBundleArgv(o: CloneFromBundleOptions): string[] {
  return argv(CLONE_SCRIPT, o.bundlePath, o.target, o.originUrl, requireCommit(o.commit), requireBranch(o.branch));
}

/** Fetch a (usually incremental) bundle into refs/remotes/origin/*, tags and pins (forced). */
export function fetchFromBundleArgv(o: { bundlePath: string; target: string }): string[] {
  return argv(FETCH_SCRIPT, o.bundlePath, o.target);
}

/** Check out `commit` (on `branch` tracking origin, or detached); local changes are carried, never discarded. */
export function checkoutArgv(o: { target: string; commit: string; branch?: string }): string[] {
  return argv(CHECKOUT_SCRIPT, o.target, requireCommit(o.commit), requireBranch(o.branch));
}

/**
 * Apply ref updates (`git update-ref --stdin`); feed it `refsUpdateInput(...)` as the command's
 * stdin. Needed because an incremental bundle leaves out refs whose tips the workspace already has
 * (a new tag on an old commit, a branch moved back): this makes the refs match the mirror.
 */
export function refsUpdateArgv(o: { target: string }): string[] {
  return argv(REFS_UPDATE_SCRIPT, o.target);
}

/**
 * stdin for refsUpdateArgv: mirror branches → refs/remotes/origin/*, tags → refs/tags/*; with
 * `current` (parseHeads of the workspace), remote-tracking refs of branches gone upstream are
 * deleted. Every object must already be in the workspace (true after fetching the bundle whose
 * BundleResult.refs is passed here), else git refuses the whole update.
 */
export function refsUpdateInput(mirror: readonly MirrorRef[], current?: WorkspaceHeads): Buffer {
  const wanted = new Map<string, string>();
  for (const { ref, object } of mirror) {
    if (ref.startsWith('refs/heads/')) wanted.set(`refs/remotes/origin/${ref.slice('refs/heads/'.length)}`, object);
    else if (ref.startsWith('refs/tags/')) wanted.set(ref, object);
    // Pins are left out: the mirror keeps pins for other workspaces' commits this one may lack.
  }
  const lines: string[] = [];
  for (const { ref } of current?.refs ?? []) {
    // Only the provider-managed origin/* namespace is pruned; tags may be the agent's own.
    const managed = ref.startsWith('refs/remotes/origin/') && ref !== 'refs/remotes/origin/HEAD';
    if (managed && !wanted.has(ref)) lines.push(`delete ${ref}`);
  }
  for (const [ref, object] of wanted) lines.push(`update ${ref} ${object}`);
  return Buffer.from(lines.map((l) => `${l}\n`).join(''), 'utf8');
}

/** Prints `HEAD <commit|->` then `<ref> <object> [<peeled commit>]` per branch, remote ref, tag, pin. */
export function headsArgv(o: { target: string }): string[] {
  return argv(HEADS_SCRIPT, o.target);
}

/** `git status --porcelain=v1 -z --untracked-files=all` (parse with parseStatus). */
export function statusArgv(o: { target: string; baseCommit?: string }): string[] {
  return argv(STATUS_SCRIPT, o.target);
}

/**
 * `git diff <baseCommit>`: working tree (committed, staged and unstaged) vs the baseline; binaries
 * as "Binary files … differ"; untracked files are not included. `baseCommit` is a full id or 'HEAD'.
 */
export function diffArgv(o: { target: string; baseCommit: string }): string[] {
  return argv(DIFF_SCRIPT, o.target, o.baseCommit === 'HEAD' ? 'HEAD' : requireCommit(o.baseCommit));
}

export interface WorkspaceRef {
  ref: string;
  object: string;
  /** The commit the ref peels to (= object unless it is an annotated tag). */
  commit: string;
}

export interface WorkspaceHeads {
  /** HEAD's commit, null in a repo without commits. */
  head: string | null;
  refs: WorkspaceRef[];
  /** Remote-tracking branches: branch name (without `origin/`) → commit. */
  remotes: Record<string, string>;
  /** Distinct commits the workspace has (HEAD + every ref): the basis for an incremental bundle. */
  basis: string[];
}

/** Parse headsArgv's stdout. */
export function parseHeads(stdout: string): WorkspaceHeads {
  let head: string | null = null;
  const refs: WorkspaceRef[] = [];
  for (const line of stdout.split('\n')) {
    const [first = '', object = '', peeled = ''] = line.trim().split(/\s+/);
    if (first === 'HEAD') head = isFullObjectId(object) ? object : null;
    else if (first.startsWith('refs/') && isFullObjectId(object)) {
      refs.push({ ref: first, object, commit: isFullObjectId(peeled) ? peeled : object });
    }
  }
  const remotes: Record<string, string> = {};
  for (const { ref, commit } of refs) {
    if (ref.startsWith('refs/remotes/origin/') && ref !== 'refs/remotes/origin/HEAD') remotes[ref.slice('refs/remotes/origin/'.length)] = commit;
  }
  const basis = [...new Set([...(head ? [head] : []), ...refs.map((r) => r.commit)])];
  return { head, refs, remotes, basis };
}

export type ChangeKind = 'modified' | 'added' | 'deleted' | 'renamed' | 'copied' | 'typechange' | 'untracked' | 'ignored' | 'conflicted';

export interface StatusEntry {
  /** The porcelain XY code, e.g. ' M', 'A ', '??', 'R '. */
  code: string;
  path: string;
  /** Source path of a rename or copy. */
  origPath?: string;
  /** Porcelain X (index) and Y (worktree) letters, e.g. 'M', ' ', '?'. */
  index: string;
  worktree: string;
  kind: ChangeKind;
}

/** Parse `git status --porcelain=v1 -z` output (statusArgv). */
export function parseStatus(stdout: string): StatusEntry[] {
  const fields = stdout.split('\0');
  const entries: StatusEntry[] = [];
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i] ?? '';
    if (field.length < 4) continue;
    const index = field[0] ?? ' ';
    const worktree = field[1] ?? ' ';
    const entry: StatusEntry = { code: `${index}${worktree}`, path: field.slice(3), index, worktree, kind: changeKind(index, worktree) };
    if (index === 'R' || index === 'C') entry.origPath = fields[++i] ?? '';
    entries.push(entry);
  }
  return entries;
}

function changeKind(x: string, y: string): ChangeKind {
  const xy = `${x}${y}`;
  if (xy === '??') return 'untracked';
  if (xy === '!!') return 'ignored';
  if (x === 'U' || y === 'U' || xy === 'AA' || xy === 'DD') return 'conflicted';
  if (x === 'R') return 'renamed';
  if (x === 'C') return 'copied';
  if (x === 'D' || y === 'D') return 'deleted';
  if (x === 'A') return 'added';
  if (x === 'T' || y === 'T') return 'typechange';
  return 'modified';
}
