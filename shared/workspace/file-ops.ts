/**
 * The Files API's operations, run INSIDE a workspace as its user, on any backend, with nothing but
 * POSIX sh and GNU coreutils/findutils (the Fargate image has no Node) — the way fingerprint.ts runs.
 * Running inside is what confines them: every path, symlinks included, resolves in the workspace's own
 * view (`home/evil -> /etc/shadow` names the sandbox's /etc/shadow, never the host's), and every write
 * is done with the workspace user's rights, no more.
 *
 * The script resolves the path inside the workspace and refuses one that does not land in the home or
 * /tmp (that rule is a policy of the API; the boundary is the sandbox itself: a symlink swapped in by
 * a workspace process meanwhile can only lead the operation to what that user could touch anyway).
 * `read` and `write` follow a final symlink; `stat` and `delete` act on the link itself (lstat,
 * unlink); `list` follows the directory it is given.
 *
 *   wsp-files read   HOME PATH MAX KIND [A [B]]   stdout: `size first\n` then the bytes. KIND: all |
 *                                                 range FIRST [LAST] | suffix N. MAX caps the bytes sent.
 *   wsp-files write  HOME PATH MODE              stdin: the content (temp file + rename in the same dir;
 *                                                 parents created); MODE '' keeps an existing file's mode
 *                                                 (a new file: 0644). stdout: the stat record.
 *   wsp-files stat   HOME PATH                    stdout: the stat record.
 *   wsp-files list   HOME PATH RECURSIVE CAP      stdout: up to CAP+1 list records (CAP+1 → truncated).
 *   wsp-files delete HOME PATH RECURSIVE
 *
 * Records are NUL-terminated fields (names may hold any byte but NUL): stat = `type\tmode\tsize\tmtime\0
 * target\0`, list = `type\tmode\tsize\tmtime\trelpath\0target\0` (find's %y %m %s %T@ %P %l).
 * Failures exit with a code the service maps to a status (FILE_EXIT) and one line on stderr.
 */

/** Exit codes of the script; anything else is a failure of the step (502). */
export const FILE_EXIT = {
  outside: 3,
  notFound: 4,
  wrongType: 5,
  range: 6,
  notEmpty: 7,
  denied: 8,
  tooLarge: 9,
} as const;

/**
 * What every operation script starts with (archive-ops.ts shares it): strict variables, the C locale,
 * `die`, and the path helpers — `follow`/`entry` set `real`, `inside` applies the rule.
 * `$\{` stands for the shell's `${` (a template literal would interpolate it); put back by `shell`.
 */
export const OP_PRELUDE = String.raw`set -u
unset IFS
export LC_ALL=C
die() { c=$1; shift; printf 'wsp-files: %s\n' "$*" >&2; exit "$c"; }
[ $# -ge 3 ] || die 2 "usage: wsp-files OP HOME PATH ..."
op=$1 home=$2 p=$3
shift 3
# $(...) drops trailing newlines, which a name may end with: append a mark and cut it off again.
keep() { r=$("$@" && echo x) || return 1; r=$\{r%?x}; }
inside() { case $1 in "$home" | "$home"/* | /tmp | /tmp/*) return 0 ;; esac; return 1; }
rule="paths must stay inside the home ($home) or /tmp as the workspace sees them"
# The path with every symlink resolved (-m: parts may not exist yet).
follow() { keep realpath -m -- "$p" || die 1 "cannot resolve the path"; real=$r; }
# The parent resolved, the last component kept as is (the entry itself, even a symlink).
entry() {
  keep dirname -- "$p" && d=$r && keep basename -- "$p" && b=$r || die 1 "cannot split the path"
  keep realpath -m -- "$d" || die 1 "cannot resolve the path"
  case $b in / | . | ..) real=$r ;; *) real=$\{r%/}/$b ;; esac
}
stat1() { find "$1" -maxdepth 0 -printf '%y\t%m\t%s\t%T@\0%l\0'; }
`;

/** A script written with `$\{` for `${` (see OP_PRELUDE) → the shell's text. */
export const shell = (text: string): string => text.replaceAll('$\\{', '$' + '{');

const SCRIPT = shell(
  OP_PRELUDE +
    String.raw`case $op in
read)
  [ $# -ge 2 ] || die 2 "usage: read HOME PATH MAX KIND [A [B]]"
  max=$1 kind=$2
  follow
  inside "$real" || die 3 "the path resolves outside: $rule"
  [ -e "$real" ] || die 4 "no such file"
  [ -d "$real" ] && die 5 "is a directory"
  [ -f "$real" ] || die 5 "not a regular file"
  [ -r "$real" ] || die 8 "permission denied"
  size=$(stat -c %s -- "$real") || die 1 "cannot stat the file"
  case $kind in
  all) first=0 count=$size ;;
  range)
    first=$3 last=$\{4:-}
    [ "$first" -lt "$size" ] || { printf '%s 0\n' "$size"; exit 6; }
    if [ -z "$last" ] || [ "$last" -ge "$size" ]; then last=$((size - 1)); fi
    count=$((last - first + 1)) ;;
  suffix)
    n=$3
    [ "$n" -gt 0 ] && [ "$size" -gt 0 ] || { printf '%s 0\n' "$size"; exit 6; }
    [ "$n" -gt "$size" ] && n=$size
    first=$((size - n)) count=$n ;;
  *) die 2 "unknown read kind" ;;
  esac
  [ "$count" -le "$max" ] || { printf '%s %s\n' "$size" "$first"; exit 9; }
  printf '%s %s\n' "$size" "$first"
  [ "$count" -gt 0 ] || exit 0
  # nonblock: were the file swapped for a FIFO since the test above, the open does not wait for a writer.
  exec dd if="$real" iflag=nonblock,skip_bytes,count_bytes,fullblock skip="$first" count="$count" bs=65536 status=none
  ;;
write)
  [ $# -eq 1 ] || die 2 "usage: write HOME PATH MODE"
  mode=$1
  follow
  inside "$real" || die 3 "the path resolves outside: $rule"
  [ -d "$real" ] && die 5 "is a directory"
  if [ -e "$real" ] || [ -L "$real" ]; then [ -f "$real" ] || die 5 "not a regular file"; fi
  keep dirname -- "$real" || die 1 "cannot split the path"
  dir=$r
  mkdir -p -- "$dir" 2> /dev/null || { [ -d "$dir" ] || die 5 "a parent is not a directory"; }
  [ -w "$dir" ] || die 8 "permission denied"
  tmp=$(mktemp -- "$dir/.wsp-put.XXXXXX") || die 8 "cannot create a file in the directory"
  trap 'rm -f -- "$tmp"' EXIT
  trap 'exit 1' HUP INT TERM
  cat > "$tmp" || die 1 "cannot write the file"
  if [ -n "$mode" ]; then chmod -- "$mode" "$tmp"
  elif [ -f "$real" ]; then chmod --reference="$real" -- "$tmp"
  else chmod 0644 -- "$tmp"; fi || die 1 "cannot set the mode"
  mv -f -- "$tmp" "$real" || die 1 "cannot rename the file into place"
  trap - EXIT
  stat1 "$real"
  ;;
stat)
  entry
  inside "$real" || die 3 "the path is outside: $rule"
  [ -e "$real" ] || [ -L "$real" ] || die 4 "no such file or directory"
  stat1 "$real" || die 8 "cannot stat the path"
  ;;
list)
  [ $# -eq 2 ] || die 2 "usage: list HOME PATH RECURSIVE CAP"
  follow
  inside "$real" || die 3 "the path resolves outside: $rule"
  [ -e "$real" ] || die 4 "no such directory"
  [ -d "$real" ] || die 5 "not a directory"
  [ -r "$real" ] && [ -x "$real" ] || die 8 "permission denied"
  depth='-maxdepth 1'
  [ "$1" = true ] && depth=''
  # Unreadable subdirectories are skipped (find says so on stderr); two records per entry.
  # shellcheck disable=SC2086
  find "$real" -mindepth 1 $depth -printf '%y\t%m\t%s\t%T@\t%P\0%l\0' 2> /dev/null | head -z -n $((2 * ($2 + 1)))
  ;;
delete)
  [ $# -eq 1 ] || die 2 "usage: delete HOME PATH RECURSIVE"
  entry
  inside "$real" || die 3 "the path is outside: $rule"
  case $real in "$home" | /tmp) die 3 "the home and /tmp themselves cannot be deleted" ;; esac
  [ -e "$real" ] || [ -L "$real" ] || die 4 "no such file or directory"
  if [ -d "$real" ] && [ ! -L "$real" ]; then
    if [ "$1" = true ]; then rm -rf -- "$real" || die 8 "cannot delete everything in the directory"
    else rmdir -- "$real" 2> /dev/null || { [ -n "$(ls -A -- "$real" 2> /dev/null)" ] && die 7 "directory not empty (recursive=true deletes it)"; die 8 "cannot delete the directory"; }; fi
  else
    rm -f -- "$real" || die 8 "cannot delete the file"
  fi
  ;;
*) die 2 "unknown operation" ;;
esac
`,
);

/** argv running one operation; every value travels as an argument, never inside the script. */
export function fileOpArgv(op: 'read' | 'write' | 'stat' | 'list' | 'delete', home: string, args: string[]): string[] {
  return ['sh', '-c', SCRIPT, 'wsp-files', op, home, ...args];
}
