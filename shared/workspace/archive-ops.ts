import { OP_PRELUDE, shell } from './file-ops.js';

/**
 * The archive routes' operations (GET/PUT /workspaces/{id}/archive), run INSIDE the workspace as its
 * user with GNU tar, on the same footing as file-ops.ts (whose prelude and rule they share): the
 * directory resolves in the sandbox's view and must land in the home or /tmp.
 *
 *   wsp-files archive-out HOME DIR MAX   stdout: a tar of DIR (`tar -C DIR -cf - .`, GNU format: any
 *                                        byte but NUL in names), symlinks stored as links (never followed),
 *                                        cut after MAX+1 bytes (the service answers 413 beyond MAX).
 *   wsp-files archive-in  HOME DIR       stdin: a tar, extracted into DIR (created if missing).
 *                                        stdout: the number of entries.
 *
 * Extraction refuses an archive, before writing anything, when an entry (or a hard link's target):
 *   - is absolute or has a `..` component,
 *   - is a device node, FIFO or anything but a file, directory, symlink or hard link,
 *   - lies under a symlink of the same archive (`x -> /etc` then `x/passwd`, in any order),
 *   - is a hard link to something that is not an earlier entry of the archive,
 *   - lies under a directory the archive does not list before it and that resolves, on disk now, outside
 *     the home and /tmp (a symlink the workspace already had there).
 * A directory the archive lists replaces a symlink of that name (GNU tar's default), so entries under it
 * never follow one. GNU tar itself strips `/` and `..` and defers symlinks that point up or out until
 * the end — a second net. Owners are not restored (`--no-same-owner`); permission bits are, except
 * setuid, setgid and sticky (`--no-same-permissions` under umask 0: tar clears those for a non-root
 * user). An existing DIR keeps its own mode (the archive's `./` applies to a DIR it creates), and a DIR
 * that is not the user's (/tmp) is no failure. Directories the archive implies without listing are made by `mkdir -p` under the usual umask.
 * A workspace process racing the extraction can only lead it where that user may write anyway: the
 * check is the API's rule, the sandbox is the boundary (as for files). Not atomic: an archive tar fails
 * on half way leaves what it extracted (the answer says tar's message).
 */

/** Exit code of both operations when tar refuses the archive or fails (with tar's or the scan's message). */
export const ARCHIVE_EXIT = { failed: 10 } as const;

/**
 * Reads `tar -tv --quoting-style=c --numeric-owner` lines (one per entry: names C-quoted, so a newline
 * in a name is `\n` and `/`, `.` are literal) and applies the rules above. Prints, NUL-terminated and
 * decoded to raw bytes, every directory entries lie under that the archive does not list before them;
 * refusals: one `wsp-files:` line on stderr, exit 10. mawk and gawk alike (LC_ALL=C: bytes).
 */
const SCAN = String.raw`
function refuse(m) { printf "wsp-files: %s\n", m > "/dev/stderr"; failed = 1; exit 10 }
# Index just past the closing quote of the C string opening at index i of s (0: none).
function closing(s, i,   c) {
  for (i++; i <= length(s); i++) { c = substr(s, i, 1); if (c == "\\") i++; else if (c == "\"") return i + 1 }
  return 0
}
# A C-quoted name's inside → its bytes.
function decode(e,   out, i, c, n, k) {
  out = ""
  for (i = 1; i <= length(e); i++) {
    c = substr(e, i, 1)
    if (c == "\\") {
      c = substr(e, ++i, 1)
      if (c ~ /[0-7]/) {
        n = 0
        for (k = 0; k < 3 && substr(e, i, 1) ~ /[0-7]/; k++) n = n * 8 + substr(e, i++, 1)
        i--; c = sprintf("%c", n)
      } else if (c == "n") c = "\n"; else if (c == "t") c = "\t"; else if (c == "r") c = "\r"
      else if (c == "a") c = "\007"; else if (c == "b") c = "\b"; else if (c == "f") c = "\f"; else if (c == "v") c = "\v"
    }
    out = out c
  }
  return out
}
# "./a//b/." → "a/b"; sets BAD when absolute or with a ".." component.
function norm(e,   parts, n, i, out) {
  BAD = substr(e, 1, 1) == "/"
  n = split(e, parts, "/"); out = ""
  for (i = 1; i <= n; i++) {
    if (parts[i] == "" || parts[i] == ".") continue
    if (parts[i] == "..") BAD = 1
    out = out == "" ? parts[i] : out "/" parts[i]
  }
  return out
}
{
  type = substr($0, 1, 1)
  q = index($0, "\"")
  end = q ? closing($0, q) : 0
  if (!end) refuse("the archive has an entry tar cannot name: " $0)
  shown = substr($0, q, end - q)
  name = norm(substr($0, q + 1, end - q - 2))
  if (BAD) refuse("entry " shown " leaves the directory: entries must be relative, without '..'")
  if (type !~ /^[-dlh]$/)
    refuse("entry " shown " is a device node, FIFO or other special file: only files, directories, symlinks and hard links are extracted")
  if (name == "") { if (type != "d") refuse("entry " shown " names the directory itself but is not a directory"); next }
  if (type == "h") {
    rest = substr($0, end); t = index(rest, "\"")
    if (substr(rest, 1, 10) != " link to \"" || !(e2 = closing(rest, t))) refuse("hard link " shown " has no readable target")
    target = norm(substr(rest, t + 1, e2 - t - 2))
    if (BAD || !(target in plain)) refuse("hard link " shown " must point to an earlier entry of the archive")
  }
  k = split(name, c, "/"); p = ""
  for (j = 1; j < k; j++) { p = j == 1 ? c[j] : p "/" c[j]; if (!(p in dirs)) implied[p] = 1 }
  entries[name] = shown
  if (type == "d") dirs[name] = 1; else { delete dirs[name]; plain[name] = 1 }
  if (type == "l") links[name] = 1
}
END {
  if (failed) exit 10
  for (name in entries) {
    k = split(name, c, "/"); p = ""
    for (j = 1; j < k; j++) {
      p = j == 1 ? c[j] : p "/" c[j]
      if (p in links) refuse("entry " entries[name] " lies under the archive's symlink " entries[p] ": an archive may not write through its own links")
    }
  }
  for (p in implied) printf "%s%c", decode(p), 0
}
`;

const SCRIPT = shell(
  OP_PRELUDE +
    String.raw`scan=$1
shift
case $op in
archive-out)
  [ $# -eq 1 ] || die 2 "usage: archive-out HOME DIR MAX"
  max=$1
  follow
  inside "$real" || die 3 "the path resolves outside: $rule"
  [ -e "$real" ] || die 4 "no such directory"
  [ -d "$real" ] || die 5 "not a directory"
  [ -r "$real" ] && [ -x "$real" ] || die 8 "permission denied"
  # No pipefail in sh: tar's status comes back on fd 3 while its bytes go on to head and out on fd 4.
  exec 4>&1
  rc=$({ { tar -C "$real" --format=gnu -cf - . 4>&-; echo $? >&3; } | head -c "$((max + 1))" >&4; } 3>&1)
  # A cut (over MAX) kills tar with SIGPIPE: the service looks at the size before this code. 1 is
  # "a file changed as we read it" (a build writing meanwhile): the tar is still whole, that file's
  # bytes as read. Anything else (an unreadable file) fails the download.
  case $rc in 0 | 1) ;; *) die 10 "tar could not archive the directory whole" ;; esac
  ;;
archive-in)
  [ $# -eq 0 ] || die 2 "usage: archive-in HOME DIR"
  follow
  inside "$real" || die 3 "the path resolves outside: $rule"
  # An existing DIR keeps its mode whatever the archive's top entry (./) says; a new one takes it.
  kept=''
  if [ -e "$real" ] || [ -L "$real" ]; then
    [ -d "$real" ] || die 5 "not a directory"
    kept=$(stat -c %a -- "$real") || die 1 "cannot stat the directory"
  fi
  mkdir -p -- "$real" 2> /dev/null || { [ -d "$real" ] || die 5 "a parent is not a directory"; }
  [ -w "$real" ] && [ -x "$real" ] || die 8 "permission denied"
  t=$(mktemp -d) || die 1 "cannot make a temp dir"
  trap 'rm -rf -- "$t"' EXIT
  trap 'exit 1' HUP INT TERM
  cat > "$t/tar" || die 1 "cannot keep the archive"
  tar -tvf "$t/tar" --quoting-style=c --numeric-owner > "$t/list" 2> "$t/err" ||
    die 10 "not a tar archive: $(head -n 1 "$t/err")"
  awk "$scan" "$t/list" > "$t/implied" || exit 10
  cd -- "$real" || die 1 "cannot enter the directory"
  # Directories entries lie under without the archive listing them: made here, if they resolve inside.
  xargs -0 -r sh -c '
    h=$1; shift
    for d; do
      r=$(realpath -m -- "$d" && echo x) || exit 255
      case $\{r%?x} in "$h" | "$h"/* | /tmp | /tmp/*) ;; *)
        printf "wsp-files: entries lie under %s, which resolves outside the home (%s) or /tmp\n" "$d" "$h" >&2; exit 255 ;;
      esac
      mkdir -p -- "$d" || exit 255
    done' wsp-archive "$home" < "$t/implied" || exit 3
  if ! (umask 0 && exec tar -xf "$t/tar" --no-same-owner --no-same-permissions) 2> "$t/err"; then
    # The archive's top entry (./) names DIR itself, which may not be this user's (/tmp): its mode and
    # times not applied is no failure. Any other message is.
    grep -v -E -e '^tar: \.: Cannot (utime|change mode to [^:]*): Operation not permitted$' \
      -e '^tar: Exiting with failure status due to previous errors$' "$t/err" > "$t/other"
    [ -s "$t/other" ] && die 10 "tar could not extract the archive whole: $(head -n 1 "$t/other")"
  fi
  [ -z "$kept" ] || chmod -- "$kept" . 2> /dev/null || :
  wc -l < "$t/list"
  ;;
*) die 2 "unknown operation" ;;
esac
`,
);

/** argv running one archive operation; values travel as arguments, never inside the script. */
export function archiveOpArgv(op: 'archive-out' | 'archive-in', home: string, dir: string, args: string[]): string[] {
  // The scan program travels as an argument too, after the prelude's OP HOME PATH.
  return ['sh', '-c', SCRIPT, 'wsp-files', op, home, dir, SCAN, ...args];
}
