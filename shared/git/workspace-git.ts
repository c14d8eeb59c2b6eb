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

/**
 * For reading what the agent did (status, diff, the content check), where the workspace controls
 * every file git reads: its .git/config, index, info/, ~/.gitconfig and the work tree. Git runs with
 * a fixed PATH, no system or global (~/.gitconfig, ~/.config/git) config, no system attributes, no
 * replace refs, and every config knob that changes what status/diff report forced back on the
 * command line (which wins over any config file):
 *   core.fsmonitor / core.untrackedCache (a hook or cache answering "nothing changed"), core.ignoreStat
 *   / core.checkStat / core.trustctime (stat shortcuts), core.fileMode / core.symlinks / core.ignoreCase
 *   (mode, link and case changes), core.autocrlf / core.safecrlf (line-ending conversion),
 *   core.excludesFile / core.attributesFile (ignore and attribute files outside the repo),
 *   core.sparseCheckout, core.useReplaceRefs, core.hooksPath, status.showUntrackedFiles,
 *   status.relativePaths, diff.relative, diff.ignoreSubmodules, core.quotePath; `a` also fixes the
 *   git dir and work tree (a core.worktree pointing at a pristine copy is ignored).
 */
const READ_PRELUDE = `set -eu
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C
export GIT_TERMINAL_PROMPT=0 GIT_ASKPASS= GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_ATTR_NOSYSTEM=1 GIT_NO_REPLACE_OBJECTS=1 GIT_OPTIONAL_LOCKS=0
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_COMMON_DIR GIT_NAMESPACE GIT_CONFIG GIT_CONFIG_PARAMETERS GIT_CONFIG_COUNT GIT_EXTERNAL_DIFF GIT_DIFF_OPTS GIT_CEILING_DIRECTORIES 2>/dev/null || true
h() { git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c core.untrackedCache=false -c core.ignoreStat=false -c core.checkStat=default -c core.trustctime=true -c core.fileMode=true -c core.symlinks=true -c core.ignoreCase=false -c core.autocrlf=false -c core.safecrlf=false -c core.excludesFile=/dev/null -c core.attributesFile=/dev/null -c core.sparseCheckout=false -c core.useReplaceRefs=false -c core.quotePath=false -c status.showUntrackedFiles=all -c status.relativePaths=false -c diff.relative=false -c diff.ignoreSubmodules=none "$@"; }
cd -- "$1"
[ -e .git ] || { echo "wsp-git: $1 has no .git" >&2; exit 3; }
a() { GIT_DIR=.git GIT_WORK_TREE=. h "$@"; }
t=$(mktemp -d "\${TMPDIR:-/tmp}/wsp-git.XXXXXX")
trap 'rm -rf -- "$t"' EXIT
trap 'exit 1' HUP INT TERM
base=$2
[ "$base" != HEAD ] || base=$(a rev-parse --verify --quiet 'HEAD^{commit}')
`;

/**
 * \`s\` = git over a SHADOW repository of the provider's making: the workspace's work tree, its objects
 * (as alternates, read by id only), an index read from the baseline commit (no stat data: every file
 * is hashed), our config and an info/attributes that unsets every conversion and diff attribute
 * (info/attributes outranks the work tree's .gitattributes). Nothing of the workspace's .git but its
 * objects is read: no index flags, config, filter drivers, hooks, info/exclude or replace refs.
 */
const SHADOW = `objects=$(cd -- "$(a rev-parse --git-path objects)" && pwd -P)
git init --quiet --template= "$t/shadow" > /dev/null
S=$t/shadow/.git
mkdir -p "$S/objects/info" "$S/info"
printf '%s\\n' "$objects" > "$S/objects/info/alternates"
printf '* !text !eol !crlf !ident !filter !working-tree-encoding !diff\\n' > "$S/info/attributes"
w=$(pwd -P)
s() { GIT_DIR="$S" GIT_WORK_TREE="$w" GIT_INDEX_FILE="$S/index" h "$@"; }
s read-tree "$base"
`;

/** The agent's own index, copied, with its skip-worktree and assume-unchanged flags cleared. */
const STATUS_SCRIPT = `${READ_PRELUDE}idx=$(a rev-parse --git-path index)
export GIT_INDEX_FILE="$t/index"
if [ -f "$idx" ]; then
  cp -- "$idx" "$GIT_INDEX_FILE"
  a ls-files -v -z | sed -z -n 's/^[Sa-z] //p' > "$t/flagged"
  # One flag per call: given both, update-index applies only the last.
  if [ -s "$t/flagged" ]; then
    a update-index -q --no-skip-worktree -z --stdin < "$t/flagged"
    a update-index -q --no-assume-unchanged -z --stdin < "$t/flagged"
  fi
fi
a status --porcelain=v1 -z --untracked-files=all --ignore-submodules=none
`;

/** New files the agent staged (in its index, not in the baseline, present) diff as new files, as before. */
const DIFF_SCRIPT = `${READ_PRELUDE}${SHADOW}if [ -f "$(a rev-parse --git-path index)" ]; then
  a ls-files -z | sort -z -u > "$t/staged"
  s ls-files -z | sort -z -u > "$t/based"
  comm -z -23 "$t/staged" "$t/based" | xargs -0r sh -c 'for f; do if [ -e "$f" ] || [ -L "$f" ]; then printf "%s\\0" "$f"; fi; done' sh > "$t/new"
  [ ! -s "$t/new" ] || s --literal-pathspecs add --intent-to-add --force --pathspec-from-file="$t/new" --pathspec-file-nul
fi
s diff --no-color --no-ext-diff --no-textconv "$base" --
`;

/**
 * Sections \`<name> NUL <field count> NUL <fields…>\` (a count, so no file name can fake a header):
 *   flagged:   "<ls-files -v tag> <path>" of index entries marked skip-worktree (S) or assume-unchanged (lower case)
 *   changed:   name-status pairs of baseline files whose content, mode or type differs (shadow)
 *   untracked: files absent from the baseline and not ignored by the work tree's .gitignore (shadow)
 *   ignored:   check-ignore -v quads (source, line, pattern, path) of ignored files/directories (shadow)
 *   gitignores: the baseline's .gitignore files; gitignorediff: one field, their -U0 diff (added rules)
 *   attrs:     check-attr triples (path, attribute, value) of changed and untracked files, as the
 *              WORKSPACE's attributes say (what its own git would do with them)
 *   attributes: the size of .git/info/attributes (0 = none)
 */
const CONTENT_CHECK_SCRIPT = `${READ_PRELUDE}${SHADOW}section() { n=$(tr -cd '\\000' < "$2" | wc -c); printf '%s\\0%s\\0' "$1" "$((n))"; cat -- "$2"; }
if [ -f "$(a rev-parse --git-path index)" ]; then a ls-files -v -z | sed -z -n '/^[Sa-z] /p' > "$t/flagged"; else : > "$t/flagged"; fi
s diff --name-status -z --no-renames "$base" -- > "$t/changed"
s ls-files -z --others --exclude-standard > "$t/untracked"
s ls-files -z --others --ignored --exclude-standard --directory > "$t/ignored-paths"
if [ -s "$t/ignored-paths" ]; then s check-ignore -v -z --no-index --stdin < "$t/ignored-paths" > "$t/ignored" || true; else : > "$t/ignored"; fi
s ls-files -z -- ':(glob)**/.gitignore' > "$t/gitignores"
s diff -U0 --no-color --no-ext-diff --no-textconv "$base" -- ':(glob)**/.gitignore' | tr -d '\\000' > "$t/gitignore-diff"; printf '\\0' >> "$t/gitignore-diff"
{ s diff --name-only -z --no-renames "$base" --; cat -- "$t/untracked"; } > "$t/paths"
a check-attr -z --stdin diff filter ident text eol crlf working-tree-encoding < "$t/paths" > "$t/attrs"
section flagged "$t/flagged"; section changed "$t/changed"; section untracked "$t/untracked"; section ignored "$t/ignored"
section gitignores "$t/gitignores"; section gitignorediff "$t/gitignore-diff"; section attrs "$t/attrs"
attrs=$(cat -- "$(a rev-parse --git-path info/attributes)" 2> /dev/null | wc -c)
printf 'attributes\\0%s\\0%s\\0' 1 "$((attrs))"
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
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this rejects (git forbids them in ref names)
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

/**
 * `git status --porcelain=v1 -z --untracked-files=all` (parse with parseStatus), hardened
 * (READ_PRELUDE) and over a copy of the index whose skip-worktree/assume-unchanged flags are cleared,
 * so flagged files that changed show as changed. Ignore rules still apply here: contentCheckArgv
 * finds what they hid.
 */
export function statusArgv(o: { target: string; baseCommit?: string }): string[] {
  return argv(STATUS_SCRIPT, o.target, baseArg(o.baseCommit ?? 'HEAD'));
}

/**
 * `git diff <baseCommit>`: working tree vs the baseline BY CONTENT, through the shadow repository
 * (no index flags, attributes, filters, textconv or external diff of the workspace's); binaries (by
 * content) as "Binary files … differ"; untracked files are not included. `baseCommit` is a full id or 'HEAD'.
 */
export function diffArgv(o: { target: string; baseCommit: string }): string[] {
  return argv(DIFF_SCRIPT, o.target, baseArg(o.baseCommit));
}

/** The content check against the baseline (parse with parseContentCheck). */
export function contentCheckArgv(o: { target: string; baseCommit: string }): string[] {
  return argv(CONTENT_CHECK_SCRIPT, o.target, baseArg(o.baseCommit));
}

export type HiddenHow = 'skip-worktree' | 'assume-unchanged' | 'ignored' | 'attributes' | 'index';

export interface HiddenChange {
  path: string;
  /**
   * What told git to hide it: an index flag, an ignore rule added since the baseline (or
   * .git/info/exclude), attributes added since the baseline (diff/filter/text/eol/ident…), or
   * 'index' — git's own view said unchanged, the content differs (forged stat data, for one).
   */
  how: HiddenHow;
}

/**
 * The agent's git status (statusArgv) made whole by the content check: every baseline file whose
 * content differs and every added file not ignored by the baseline's rules is in `status`, and
 * `hidden` names each changed file git had been told to hide, and how.
 */
export function reconcileChanges(
  status: StatusEntry[],
  check: ContentCheck,
): { status: StatusEntry[]; hidden: HiddenChange[] } {
  const out = [...status];
  const shown = new Set(status.flatMap((e) => (e.origPath !== undefined ? [e.path, e.origPath] : [e.path])));
  const hidden = new Map<string, HiddenHow>();
  const isAttributesFile = (p: string): boolean => p === '.gitattributes' || p.endsWith('/.gitattributes');
  const attributesChanged =
    check.infoAttributes ||
    [...check.changed.keys(), ...check.untracked, ...check.ignored.map((i) => i.path)].some(isAttributesFile);
  const byAttributes = (p: string): boolean => attributesChanged && check.attributes.has(p);
  const add = (code: string, path: string): void => {
    if (shown.has(path)) return;
    shown.add(path);
    const index = code[0] ?? ' ';
    const worktree = code[1] ?? ' ';
    out.push({ code, path, index, worktree, kind: changeKind(index, worktree) });
  };
  for (const [path, letter] of check.changed) {
    const flag = check.flagged.get(path);
    if (flag) hidden.set(path, flag);
    else if (!shown.has(path)) hidden.set(path, byAttributes(path) ? 'attributes' : 'index');
    else if (byAttributes(path)) hidden.set(path, 'attributes');
    add(` ${letter}`, path);
  }
  for (const path of check.untracked) {
    if (!shown.has(path)) hidden.set(path, 'ignored');
    else if (byAttributes(path)) hidden.set(path, 'attributes');
    add('??', path);
  }
  for (const { path, source, pattern } of check.ignored) {
    const agentRule =
      !check.baseGitignores.has(source) || (check.changed.has(source) && check.addedIgnoreRules.has(pattern));
    if (!agentRule) continue; // ignored by the baseline's own rules (node_modules, build output)
    hidden.set(path, 'ignored');
    add('!!', path);
  }
  return { status: out, hidden: [...hidden].map(([path, how]) => ({ path, how })) };
}

function baseArg(base: string): string {
  return base === 'HEAD' ? 'HEAD' : requireCommit(base);
}

export interface ContentCheck {
  /** Index entries the workspace flagged: path → how. */
  flagged: Map<string, 'skip-worktree' | 'assume-unchanged'>;
  /** Baseline files whose content, mode or type differs now: path → name-status letter (M, D, T). */
  changed: Map<string, string>;
  /** Files not in the baseline and not ignored. */
  untracked: string[];
  /** Ignored files/directories (directories end in '/') with the rule file that decided it. */
  ignored: { path: string; source: string; pattern: string }[];
  /** Whether .git/info/attributes holds anything (attributes no file in the tree shows). */
  infoAttributes: boolean;
  /** The baseline's .gitignore files. */
  baseGitignores: Set<string>;
  /** Lines (rules) added to .gitignore files since the baseline. */
  addedIgnoreRules: Set<string>;
  /** Per changed/untracked path, the hiding-relevant attributes the workspace sets on it (not 'unspecified'). */
  attributes: Map<string, string[]>;
}

/** Parse contentCheckArgv's stdout; throws on a malformed (e.g. cut) output. */
export function parseContentCheck(stdout: string): ContentCheck {
  const fields = stdout.split('\0');
  const sections = new Map<string, string[]>();
  let i = 0;
  while (i + 1 < fields.length) {
    const name = fields[i] ?? '';
    const count = Number(fields[i + 1]);
    if (!/^[a-z]+$/.test(name) || !Number.isInteger(count) || count < 0 || i + 2 + count > fields.length)
      throw new Error('malformed content check output');
    sections.set(name, fields.slice(i + 2, i + 2 + count));
    i += 2 + count;
  }
  const need = (name: string): string[] => {
    const got = sections.get(name);
    if (!got) throw new Error(`content check output has no ${name} section`);
    return got;
  };
  const flagged = new Map<string, 'skip-worktree' | 'assume-unchanged'>();
  for (const f of need('flagged')) {
    const tag = f[0] ?? '';
    flagged.set(f.slice(2), tag === tag.toLowerCase() ? 'assume-unchanged' : 'skip-worktree');
  }
  const changed = new Map<string, string>();
  const pairs = need('changed');
  for (let j = 0; j + 1 < pairs.length; j += 2) changed.set(pairs[j + 1]!, pairs[j]!);
  const ignored: ContentCheck['ignored'] = [];
  const quads = need('ignored');
  for (let j = 0; j + 3 < quads.length; j += 4) {
    if (quads[j] !== '') ignored.push({ source: quads[j]!, pattern: quads[j + 2]!, path: quads[j + 3]! });
  }
  const addedIgnoreRules = new Set<string>();
  for (const line of (need('gitignorediff')[0] ?? '').split('\n')) {
    if (line.startsWith('+') && !line.startsWith('+++')) addedIgnoreRules.add(line.slice(1).trim());
  }
  const attributes = new Map<string, string[]>();
  const triples = need('attrs');
  for (let j = 0; j + 2 < triples.length; j += 3) {
    if (triples[j + 2] === 'unspecified') continue;
    attributes.set(triples[j]!, [...(attributes.get(triples[j]!) ?? []), `${triples[j + 1]}=${triples[j + 2]}`]);
  }
  return {
    flagged,
    changed,
    untracked: need('untracked'),
    ignored,
    infoAttributes: Number(need('attributes')[0]) > 0,
    baseGitignores: new Set(need('gitignores')),
    addedIgnoreRules,
    attributes,
  };
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
    if (ref.startsWith('refs/remotes/origin/') && ref !== 'refs/remotes/origin/HEAD')
      remotes[ref.slice('refs/remotes/origin/'.length)] = commit;
  }
  const basis = [...new Set([...(head ? [head] : []), ...refs.map((r) => r.commit)])];
  return { head, refs, remotes, basis };
}

export type ChangeKind =
  | 'modified'
  | 'added'
  | 'deleted'
  | 'renamed'
  | 'copied'
  | 'typechange'
  | 'untracked'
  | 'ignored'
  | 'conflicted';

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
    const entry: StatusEntry = {
      code: `${index}${worktree}`,
      path: field.slice(3),
      index,
      worktree,
      kind: changeKind(index, worktree),
    };
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
