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
 */

const SCRIPT = String.raw`set -u
unset IFS
fail() { printf 'wsp-fingerprint: %s\n' "$1" >&2; exit 1; }
[ $# -eq 1 ] || fail "usage: wsp-fingerprint DIR"
export LC_ALL=C
cd -- "$1" || fail "cannot enter the directory"
t=$(mktemp -d /tmp/wsp-fingerprint.XXXXXX) || fail "cannot create a temp directory"
trap 'rm -rf -- "$t"' EXIT
trap 'exit 1' HUP INT TERM
find . -mindepth 1 \( -type f -fprintf "$t/names" '%P\0' -fprintf "$t/meta" 'f\t%m\0' \) \
  -o -fprintf "$t/other" '%P\t%y\t%m\t%l\0' || fail "cannot walk every directory"
xargs -0r sha256sum -z -- < "$t/names" > "$t/sums" || fail "cannot read every file"
cut -z -d ' ' -f 1 < "$t/sums" | tr -d '\\' > "$t/hashes" || fail "cannot cut the hashes"
count() { n=$(tr -cd '\000' < "$1" | wc -c) && echo $((n)); }
files=$(count "$t/names") && hashes=$(count "$t/hashes") && others=$(count "$t/other") || fail "cannot count"
[ "$files" -eq "$hashes" ] || fail "files changed during the walk ($files names, $hashes hashes)"
paste -z -d '\t' "$t/names" "$t/meta" "$t/hashes" > "$t/files" || fail "cannot join the lists"
sort -z -T "$t" -o "$t/sorted" -- "$t/files" "$t/other" || fail "cannot sort"
sum=$(sha256sum < "$t/sorted") || fail "cannot hash"
set -- $sum
printf 'digest %s entries %s\n' "$1" "$((files + others))"
`;

/** argv that fingerprints `dir` (absolute guest path); `dir` travels as $1, never inside the script. */
export function fingerprintArgv(dir: string): string[] {
  return ['sh', '-c', SCRIPT, 'wsp-fingerprint', dir];
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
