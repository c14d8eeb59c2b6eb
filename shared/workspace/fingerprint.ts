import { StepFailedError } from '../contract/errors.js';

/**
 * The workspace fingerprint computed INSIDE a workspace, on any backend, with nothing but POSIX sh,
 * GNU findutils and coreutils (the Fargate image has no Node). It is the same algorithm as the
 * host's `hostFingerprint` (shared/backends/local/tree/fingerprint.ts) and gives the same digest
 * for the same tree — test/workspace/fingerprint.test.ts proves it:
 *
 *   one record per entry below the directory (the directory itself excluded):
 *     relpath TAB type TAB perm TAB (sha256 of the content | symlink target | nothing)
 *   type = `find %y` letter, perm = `find %m` (mode & 07777, octal); records NUL-terminated,
 *   sorted bytewise (LC_ALL=C sort -z), the sha256 of their concatenation is the digest.
 *
 * Names may hold any byte but NUL (spaces, newlines, tabs, non-UTF-8): every list stays
 * NUL-separated end to end. One `find` walk writes three aligned lists (file names, file
 * metadata, other entries); `xargs -0 sha256sum -z` hashes the files in batches (no fork per file)
 * in list order, and `paste -z` zips names, metadata and hashes back together. Any failure
 * (unreadable file or directory, short list, no temp space) exits non-zero with a message on
 * stderr and no digest line. Mtimes and owners are not part of it.
 *
 * Three more modes serve a backend that derives the digest from what changed (docker: see
 * shared/backends/docker/fingerprint.ts); the digest line and its records stay the same:
 *   --records  also writes the sorted records themselves before a trailer line
 *              `digest <hex> entries <n> records <bytes>`;
 *   --paths    records of the NUL-separated relpaths on stdin only (those that exist; unsorted is fine,
 *              sorted here), then, read AFTER hashing, one `ctime TAB relpath` NUL-terminated entry per
 *              existing path (`.` for DIR itself is allowed), then `... records <bytes> ctimes <bytes>`.
 *              A listed directory the user cannot read and enter fails, as the full walk would.
 *   --stat     no record, no file read: the clock (`mark`, the ctime of a file made first), then per
 *              entry `type TAB perm TAB size TAB inode TAB ctime TAB relpath` NUL `symlink target` NUL,
 *              then `stat <bytes> mark <ctime>`. A file whose ctime is older than the mark has not
 *              changed since before the walk began (the workspace cannot set a ctime).
 * Their output is bytes (names are not UTF-8): parse it with parseRecordsOutput (./records.ts).
 */

const SCRIPT = String.raw`set -u
unset IFS
fail() { printf 'wsp-fingerprint: %s\n' "$1" >&2; exit 1; }
[ $# -eq 1 ] || [ $# -eq 2 ] || fail "usage: wsp-fingerprint DIR [--records|--paths|--stat]"
mode=''
[ $# -eq 2 ] && mode=$2
case $mode in '' | --records | --paths | --stat) ;; *) fail "unknown mode" ;; esac
export LC_ALL=C
cd -- "$1" || fail "cannot enter the directory"
t=$(mktemp -d /tmp/wsp-fingerprint.XXXXXX) || fail "cannot create a temp directory"
trap 'rm -rf -- "$t"' EXIT
trap 'exit 1' HUP INT TERM
if [ "$mode" = --stat ]; then
  : > "$t/mark" && mark=$(find "$t/mark" -maxdepth 0 -printf '%C@') || fail "cannot read the clock"
  find . -mindepth 1 -printf '%y\t%m\t%s\t%i\t%C@\t%P\0%l\0' > "$t/stat" || fail "cannot walk every directory"
  cat -- "$t/stat" || fail "cannot write"
  printf 'stat %s mark %s\n' "$(wc -c < "$t/stat")" "$mark"
  exit 0
fi
if [ "$mode" = --paths ]; then
  xargs -0r sh -c 'for p; do if [ -e "$p" ] || [ -L "$p" ]; then printf "%s\0" "$p"; fi; done' sh > "$t/list" ||
    fail "cannot read the path list"
  : > "$t/names" && : > "$t/meta" && : > "$t/other" && : > "$t/bad" || fail "cannot create the lists"
  if [ -s "$t/list" ]; then
    find -files0-from "$t/list" -maxdepth 0 \( -type d ! \( -readable -executable \) -fprintf "$t/bad" '%p\0' \) , \
      \( \( -type f -fprintf "$t/names" '%p\0' -fprintf "$t/meta" 'f\t%m\0' \) -o -fprintf "$t/other" '%p\t%y\t%m\t%l\0' \) ||
      fail "cannot stat every path"
  fi
  [ -s "$t/bad" ] && fail "cannot walk every directory"
else
  find . -mindepth 1 \( -type f -fprintf "$t/names" '%P\0' -fprintf "$t/meta" 'f\t%m\0' \) \
    -o -fprintf "$t/other" '%P\t%y\t%m\t%l\0' || fail "cannot walk every directory"
fi
xargs -0r sha256sum -z -- < "$t/names" > "$t/sums" || fail "cannot read every file"
cut -z -d ' ' -f 1 < "$t/sums" | tr -d '\\' > "$t/hashes" || fail "cannot cut the hashes"
count() { n=$(tr -cd '\000' < "$1" | wc -c) && echo $((n)); }
files=$(count "$t/names") && hashes=$(count "$t/hashes") && others=$(count "$t/other") || fail "cannot count"
[ "$files" -eq "$hashes" ] || fail "files changed during the walk ($files names, $hashes hashes)"
paste -z -d '\t' "$t/names" "$t/meta" "$t/hashes" > "$t/files" || fail "cannot join the lists"
sort -z -T "$t" -o "$t/sorted" -- "$t/files" "$t/other" || fail "cannot sort"
sum=$(sha256sum < "$t/sorted") || fail "cannot hash"
set -- $sum
[ -z "$mode" ] && { printf 'digest %s entries %s\n' "$1" "$((files + others))"; exit 0; }
bytes=$(wc -c < "$t/sorted") || fail "cannot count"
extra=''
if [ "$mode" != --records ]; then
  : > "$t/ctimes" || fail "cannot create the lists"
  if [ -s "$t/list" ]; then
    find -files0-from "$t/list" -maxdepth 0 -printf '%C@\t%p\0' > "$t/ctimes" || fail "cannot stat every path"
  fi
  extra=" ctimes $(wc -c < "$t/ctimes")" || fail "cannot count"
fi
cat -- "$t/sorted" || fail "cannot write"
[ "$mode" != --records ] && { cat -- "$t/ctimes" || fail "cannot write"; }
printf 'digest %s entries %s records %s%s\n' "$1" "$((files + others))" "$((bytes))" "$extra"
`;

export type FingerprintMode = '--records' | '--paths' | '--stat';

/** argv that fingerprints `dir` (absolute guest path); `dir` travels as $1, never inside the script. */
export function fingerprintArgv(dir: string, mode?: FingerprintMode): string[] {
  return ['sh', '-c', SCRIPT, 'wsp-fingerprint', dir, ...(mode ? [mode] : [])];
}

const DIGEST_LINE = /^digest ([0-9a-f]{64}) entries (\d+)$/;

/**
 * The result from the script's stdout (its last `digest <hex> entries <n>` line). Throws
 * StepFailedError when there is none (the script failed or its output was cut off).
 */
export function parseFingerprint(stdout: string): { digest: string; entries: number } {
  const lines = stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  const match = DIGEST_LINE.exec(lines[lines.length - 1] ?? '');
  if (!match) throw new StepFailedError('fingerprint', 'no digest line in the fingerprint output');
  return { digest: match[1] as string, entries: Number(match[2]) };
}
