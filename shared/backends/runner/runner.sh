#!/bin/sh
# The in-workspace command runner (issue 3 item 5; docs: shared/docs/cloud.md). POSIX sh + coreutils +
# util-linux's setsid, no Node: it runs inside any Linux image, as root, started by whatever channel
# the backend has into the workspace (docker exec on Docker, ECS Exec on Fargate). The channel only kicks it:
# a command's result lives in files, never in the channel.
#
#   runner.sh start <dir> <uid> <gid> <timeoutMs> <maxOutputBytes> <cwd> [--open-stdin] [--tty <rows> <cols>] -- <argv...>
#       Start argv detached (own session and process group) as uid:gid in cwd. Idempotent on <dir>:
#       a second start of the same dir does nothing. Returns once the process group is published
#       (or the command has already ended), so a kill right after start reaches it. --open-stdin: stdin
#       stays open after the stdin file, fed by `stdin` requests until an eof one (see "open stdin").
#       --tty: under a pseudo-terminal of that size (implies --open-stdin; see "terminals"). Exit 9:
#       this image has no util-linux `script` (Debian: bsdutils), which terminals need.
#   runner.sh resize <dir> <rows> <cols>
#       New size (1..1000 each) for the terminal of a --tty command; no-op once it has ended. Exit 3 no
#       such command, 4 the command has no terminal.
#   runner.sh stdin <dir> <write id> <eof 0|1> <maxPending> [<b64 data>]
#       Queue one write (the data, else the file stdin.in.<write id>, else nothing) for the command's
#       open stdin, then close it if eof; never blocks. Idempotent on the write id. Exit 3 no such
#       command, 4 not started with --open-stdin, 5 ended, 6 stdin closed already, 7 full (more than
#       maxPending bytes would wait unread).
#   runner.sh kill <dir> <reason>
#       Record the reason (first writer wins) and SIGKILL the command's process group. No-op once ended.
#   runner.sh killall <cmdroot> <reason> <uid> <gid>
#       kill every running command under <cmdroot>, then every process of uid (kill -1 as that uid).
#   runner.sh init <uid> <gid> <name> <home> <root>
#       Make sure the user exists in /etc/passwd and /etc/group, and home and root exist, owned by it.
#   runner.sh serve
#       The persistent channel: the subcommands above as requests on stdin (see cmd_serve).
#   runner.sh rpc
#       The persistent channel over a PTY (ECS Exec): framed requests in, one sentinel line per answer
#       out (see cmd_rpc; the provider's side is rpc.ts). Every subcommand here is a request.
#   runner.sh prepare <dir> <b64 spec.json> <b64 env script> <b64 stdin>
#       Create the command dir (0700, parents 0700) with stdin, env, empty stdout/stderr and spec.json,
#       atomically (built in a hidden sibling, then renamed). Prints "created", or "exists" if the dir
#       is there already (a retried start). Exit 0 either way.
#   runner.sh status <dir>
#       Prints one JSON object (see status_fields); exit 3 if the dir holds no spec.json.
#   runner.sh status-many <cmdroot>
#       Prints a JSON array of {"id":<dir name>, ...status_fields} for every complete command dir.
#   runner.sh read <dir> <stdout|stderr> <offset> <limit>
#       Prints bytes [offset, min(offset+limit, kept)) of the stream, kept = min(size, maxOutputBytes
#       of spec.json) — what readStream in command-record.ts returns. Exit 3 without spec.json.
#   runner.sh fetch-url <url> <dest> <mode> <uid:gid>
#       GET the url (retries, fails on HTTP errors) into a temp file next to dest, chmod/chown, rename.
#       The url reaches curl on its stdin (a config line), never in an argv.
#   runner.sh put-url <file> <url>
#       PUT the file to the url (from a file, so with Content-Length, as S3 presigned PUTs need).
#   runner.sh put-parts <file> <partBytes> <firstPart> <url...>
#       Upload parts firstPart, firstPart+1, ... of the file (part n = bytes [(n-1)*partBytes, n*partBytes))
#       to the urls in turn (presigned S3 UploadPart URLs), each cut into a temp file beside the file (one
#       part on disk at a time) and PUT with Content-Length; prints "<part number> <ETag>" per part.
#   runner.sh pack <dir> <dest.tar>
#       tar of dir, numeric owners, member names relative to / (home/node/...): a valid image layer.
#       Prints the tar's size in bytes.
#   runner.sh unpack <tar> <destdir> <uid:gid>
#       Extract the tar into destdir, then chown everything under destdir to uid:gid (links themselves).
#   runner.sh pristine-save|pristine-restore ...
#       sh pristine.sh save|restore ... (the baseline copy; pristine.sh sits next to this script).
#   runner.sh mkdirs <mode> <uid:gid> <dir...>    mkdir -p, chmod, chown each (absolute paths only)
#   runner.sh remove <path...>                     rm -rf each (absolute, no "..", never "/")
#   runner.sh clean-tmp                            empty /tmp and /var/tmp (but this channel's work dirs)
#   runner.sh usage <home>
#       What this container uses, from its cgroup (v2, else v1) as root, and du of home and /tmp: prints
#       "key value" lines — source, cpu_usec (v2) or cpu_ns (v1), memory_bytes, memory_limit, pids,
#       pids_limit (a limit may be "max"), disk_bytes; a figure it cannot read is left out.
#
# Exit statuses of the new subcommands: 0 done, 1 failed, 2 bad arguments, 3 no such command dir.
#
# The command dir (root-only; the backend bind-mounts it from the host so results survive the
# workspace's compute being replaced and can be read without a round trip):
#   spec.json        written by the provider (the runner does not read it)
#   stdin            fed to the command (removed once opened)
#   stdin.*          open stdin only: its FIFO, queue and records (see "open stdin" below)
#   tty              terminals only: "<slave path> <session id>" once the terminal is set up (see "terminals")
#   env              "export NAME='value'" lines; opened as fd 3 and removed before the command runs,
#                    then read by the command's own shell (env values never appear in any argv)
#   stdout, stderr   the kept output, at most maxOutputBytes each: the command (and background processes
#                    it leaves behind) write into stdout.fifo/stderr.fifo, a cutter copies up to the cap
#   stdout.rest, stderr.rest   bytes beyond the cap so far (absent: none)
#   alive            a FIFO the supervisor holds open for reading for exactly its lifetime: a writer
#                    that opens it O_NONBLOCK gets ENXIO once the supervisor is gone (liveness
#                    without a process table, across pid namespaces)
#   pid              the supervisor's pid (in the workspace's pid namespace)
#   pgid             process group (= session) of the command
#   kill             reason, written by whoever kills the command (first writer wins)
#   exit             "<code> <signal|-> <killed 0|1> <stdout bytes> <stderr bytes> <ended epoch ms>",
#                    written atomically (exit.tmp, then mv) as the supervisor's very last step
set -u
set -f

# Absolute, so requests that change directory can still start `sh "$SELF" supervise`.
case $0 in /*) SELF=$0 ;; *) SELF=$(pwd)/$0 ;; esac
DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PATH=$DEFAULT_PATH
export PATH
NL='
'
CR=$(printf '\r')
# Absolute: after `env -i` the exec lookup falls back to a default path that may lack /usr/sbin.
CHROOT=$(command -v chroot || echo /usr/sbin/chroot)

# Field <n> (n >= 3) of /proc/<pid>/stat, counted after the ')' that closes the command name.
stat_field() {
  read -r st 2> /dev/null < "/proc/$1/stat" || return 1
  st=${st##*) }
  shift_by=$(($2 - 3))
  set -- $st
  shift "$shift_by"
  printf '%s' "$1"
}

write_atomic() { # <file> <content>
  printf '%s\n' "$2" > "$1.tmp" && mv -f "$1.tmp" "$1"
}

# The shell that becomes the command, already as the workspace user: the usual umask (whatever channel
# started the runner — an rpc session runs with 077), then read the env script from fd 3
# (opened by the supervisor, whose file is gone by now) with the shell's own read (no cat process; a
# value may span lines, so it is evaluated whole), close it, enter cwd, exec argv.
INNER='umask 022
e= l=
while IFS= read -r l; do e="$e$l
"; done <&3
eval "$e$l" || exit 126
unset e l
exec 3<&-
cd "$1" || exit 126
shift
exec "$@"'

cmd_start() {
  dir=$1
  # Refused before the claim (nothing starts): a bad --tty size, no `script` for a terminal.
  n=0 tty_at=
  for a in "$@"; do
    n=$((n + 1))
    [ "$n" -le 6 ] && continue
    case $a in
      --) break ;;
      --tty) tty_at=$n ;;
    esac
  done
  if [ -n "$tty_at" ]; then
    eval "rows=\${$((tty_at + 1)):-} cols=\${$((tty_at + 2)):-}"
    valid_tty_size "$rows" "$cols" || { fail2 "start: --tty needs rows and cols, integers 1..1000"; return; }
    command -v script > /dev/null 2>&1 || {
      echo "runner: a terminal (tty) needs util-linux's 'script' (Debian: bsdutils), which this image lacks" >&2
      return 9
    }
  fi
  # Claim the dir atomically; a second start (a retry over another channel) only waits like the first.
  if mkdir "$dir/claim" 2> /dev/null; then
    # Launched straight from here (no command substitution around it): a channel killed right after
    # the claim must not take a not-yet-launched supervisor with it, or the claim waits for ever.
    setsid sh "$SELF" supervise "$@" < /dev/null > /dev/null 2>&1 &
  fi
  tries=0
  while [ ! -e "$dir/pgid" ] && [ ! -e "$dir/exit" ] && [ "$tries" -lt 7500 ]; do
    tries=$((tries + 1))
    sleep 0.002
  done
  if [ ! -e "$dir/pgid" ] && [ ! -e "$dir/exit" ]; then
    echo "runner: the command supervisor did not start" >&2
    return 1
  fi
}

cmd_supervise() {
  dir=$1 uid=$2 gid=$3 timeout_ms=$4 max_bytes=$5 cwd=$6
  shift 6
  open_stdin=0 tty_rows='' tty_cols=''
  while :; do
    case ${1:-} in
      --open-stdin) open_stdin=1 && shift ;;
      # A terminal's keyboard is its open stdin (cmd_start checked the size).
      --tty) tty_rows=$2 tty_cols=$3 open_stdin=1 && shift 3 ;;
      --) shift && break ;;
      *) break ;;
    esac
  done
  mkfifo -m 600 "$dir/alive"
  exec 5<> "$dir/alive"
  # Plain write (one process fewer than write_atomic): read only once the start has returned, i.e.
  # after the pgid, which is written after it.
  printf '%s\n' "$$" > "$dir/pid"

  start_output_cutters "$dir" "$max_bytes"
  exec 3< "$dir/env"
  keeper=
  if [ "$open_stdin" = 1 ]; then start_stdin_keeper "$dir" || exit 1; else exec 4< "$dir/stdin"; fi
  if [ -n "$tty_rows" ]; then
    # The env file stays until pty-child, in the terminal, has opened it (or the command has ended).
    rm -f "$dir/stdin"
    start_terminal "$dir" "$uid" "$gid" "$cwd" "$@"
  else
    rm -f "$dir/env" "$dir/stdin"
    # setsid: the command leads a session (and process group) of its own, so a group kill reaches it and
    # everything it started. env -i: nothing of this shell's environment; the env script sets it all.
    # chroot --userspec to "/" (--skip-chdir) drops to uid:gid with coreutils only (no setpriv/su needed).
    # --default-signal (coreutils >= 8.31): launched by `&` from this shell (no job control), the command
    # would inherit SIGINT and SIGQUIT ignored, and `signal` SIGINT would reach nothing that does not
    # catch it (a shell session's interrupt could not stop a `sleep`).
    dflt=--default-signal=INT,QUIT
    env "$dflt" true 2> /dev/null || dflt=
    setsid env -i ${dflt:+"$dflt"} "$CHROOT" --userspec="$uid:$gid" --groups="$gid" --skip-chdir / /bin/sh -c "$INNER" sh "$cwd" "$@" \
      <&4 4<&- 5<&- 7<&- > "$dir/stdout.fifo" 2> "$dir/stderr.fifo" &
  fi
  child=$!
  exec 3<&- 4<&-
  supervise_group "$dir" "$child" "$timeout_ms" "$max_bytes"
}

# --- terminals (CommandSpec.tty) ------------------------------------------------------------------
#
# The command runs under a pseudo-terminal made by util-linux's `script` (-q quiet, -e its exit status
# is the command's — 128+n for a signal —, -f every chunk passed on at once, /dev/null: no typescript
# file). script runs as root in the supervised session (the group a kill, the timeout and killall
# reach, as for any command); its stdin is the open-stdin FIFO (the keeper feeds it: writeStdin is the
# keyboard, eof is a ^D), its stdout and stderr the command's stdout, so all the terminal shows lands
# in stdout and stderr stays empty. In the terminal, script's child (a session of its own, the slave its
# controlling tty) is `runner.sh pty-child`, still root: it makes the slave root's own 0600 (script made
# it root:tty 0620; no other process of the workspace may open it, to read the keyboard or write to
# the screen — the command keeps its descriptors and /dev/tty), sets the size, records
# "<slave> <session id>" in `tty`, opens the env file, then execs the command as uid:gid (same pid: the
# command is the session leader). With every signal's default action: commands are launched with `&`
# from a shell without job control, which leaves SIGINT and SIGQUIT ignored — ^C would do nothing.
#   kill     script's group (the supervised one) first — its status is then 137 —, then every process
#            of the terminal's session (kill_tty_session): job control puts jobs in groups of their own,
#            and a process that ignores the hangup of a closed terminal would live on.
#   resize   `stty -F <slave> rows R cols C` as root: the kernel sends SIGWINCH to the foreground group.
#   signal   to the terminal's foreground process group, like the key would.

valid_tty_size() { # <rows> <cols>
  for v in "$1" "$2"; do
    is_uint "$v" && [ "${#v}" -le 4 ] && [ "$v" -ge 1 ] && [ "$v" -le 1000 ] || return 1
  done
}

# Appends one shell-quoted word to $quoted (pure sh: any byte but NUL, newlines included).
quote_word() {
  rest=$1 out=
  while :; do
    case $rest in
      *\'*)
        out="$out${rest%%\'*}'\\''"
        rest=${rest#*\'}
        ;;
      *)
        out="$out$rest"
        break
        ;;
    esac
  done
  quoted="$quoted '$out'"
}

start_terminal() { # <dir> <uid> <gid> <cwd> <argv...>; $tty_rows/$tty_cols; stdin on fd 4; sets $!
  quoted=
  for w in "$SELF" pty-child "$1" "$tty_rows" "$tty_cols" "$2" "$3" "$4"; do quote_word "$w"; done
  shift 4
  quoted="$quoted --"
  for w in "$@"; do quote_word "$w"; done
  # script runs `$SHELL -c <string>` (no SHELL: /bin/sh). Its stderr (its own complaints) is stdout.
  setsid env -i PATH="$DEFAULT_PATH" script -q -e -f -c "exec /bin/sh$quoted" /dev/null \
    <&4 3<&- 4<&- 5<&- 7<&- > "$dir/stdout.fifo" 2>&1 &
}

# In the terminal (stdin/stdout/stderr the slave), root, the session leader; see "terminals".
cmd_pty_child() { # <dir> <rows> <cols> <uid> <gid> <cwd> -- <argv...>
  dir=$1 rows=$2 cols=$3 uid=$4 gid=$5 cwd=$6
  shift 6
  [ "${1:-}" = -- ] && shift
  t=$(tty) || { echo "runner: no terminal" >&2; exit 126; }
  case $t in /dev/pts/[0-9]*) ;; *) echo "runner: unexpected terminal $t" >&2; exit 126 ;; esac
  chown 0:0 "$t" && chmod 600 "$t" && stty rows "$rows" cols "$cols" || exit 126
  exec 3< "$dir/env" || exit 126
  rm -f "$dir/env"
  write_atomic "$dir/tty" "$t $$" || exit 126
  # coreutils >= 8.31; without it a terminal still works, but ^C only reaches programs that catch it.
  if env --default-signal=INT true 2> /dev/null; then
    exec env -i --default-signal "$CHROOT" --userspec="$uid:$gid" --groups="$gid" --skip-chdir / /bin/sh -c "$INNER" sh "$cwd" "$@"
  fi
  exec env -i "$CHROOT" --userspec="$uid:$gid" --groups="$gid" --skip-chdir / /bin/sh -c "$INNER" sh "$cwd" "$@"
}

# SIGKILL every process of the terminal's session (not zombies), pass after pass until a pass finds none:
# one that forked meanwhile is found on the next. Only while the command's supervisor runs (the session
# id is a pid: once all of the session is gone it may be reused).
kill_tty_session() { # <dir>
  [ -s "$1/tty" ] || return 0
  read -r _ sid < "$1/tty" || return 0
  is_uint "$sid" && [ "$sid" -gt 1 ] || return 0
  passes=0
  while [ "$passes" -lt 50 ]; do
    found=0
    set +f
    for p in /proc/[0-9]*; do
      read -r st 2> /dev/null < "$p/stat" || continue
      st=${st##*) }
      # Fields 3 (state) and 6 (session).
      # shellcheck disable=SC2086 # numbers and a state letter: no pattern
      set -- $st
      [ "$4" = "$sid" ] && [ "$1" != Z ] && [ "$1" != X ] && kill -KILL "${p#/proc/}" 2> /dev/null && found=1
    done
    set -f
    [ "$found" = 0 ] && return 0
    passes=$((passes + 1))
  done
  return 0
}

# The session id of a --tty command's terminal, if it is still that command's: its leader leads it and
# has the recorded slave as controlling tty (once the command ended, that pty may be another's).
# Status 1: not (or no longer) there; 2: the record is not "/dev/pts/<n> <sid>".
tty_session() { # <dir>; prints "<slave> <sid>"
  [ -s "$1/tty" ] || return 1
  read -r t sid < "$1/tty" || return 1
  case $t in /dev/pts/[0-9]*) ;; *) echo "runner: bad terminal record" >&2; return 2 ;; esac
  is_uint "${t#/dev/pts/}" && is_uint "$sid" || { echo "runner: bad terminal record" >&2; return 2; }
  [ "$(stat_field "$sid" 6)" = "$sid" ] || return 1
  dev=$(stat -c '%t %T' -- "$t" 2> /dev/null) || return 1
  # shellcheck disable=SC2086 # two hex numbers
  set -- $dev
  major=$((0x$1)) minor=$((0x$2))
  [ "$(stat_field "$sid" 7)" = $(((minor & 255) | (major << 8) | ((minor & ~255) << 12))) ] || return 1
  printf '%s %s\n' "$t" "$sid"
}

cmd_resize() { # <dir> <rows> <cols>
  [ $# -eq 3 ] || { fail2 "usage: resize <dir> <rows> <cols>"; return; }
  dir=$1
  valid_tty_size "$2" "$3" || { fail2 "resize: rows and cols must be integers 1..1000"; return; }
  [ -f "$dir/spec.json" ] || { echo "runner: no command at $dir" >&2; return 3; }
  grep -qF '"tty":{' "$dir/spec.json" || { echo "runner: the command has no terminal" >&2; return 4; }
  [ -e "$dir/exit" ] && return 0
  fifo_alive "$dir/alive" || return 0
  # Not (or no longer) there: the command has ended, or its terminal never came up. Nothing to resize.
  ts=$(tty_session "$dir")
  case $? in 0) ;; 2) return 1 ;; *) return 0 ;; esac
  # A child, never the caller itself: a session leader without a terminal would acquire it on open.
  (stty -F "${ts% *}" rows "$2" cols "$3")
}

# --- open stdin (CommandSpec.openStdin) ----------------------------------------------------------
#
# The command's stdin is stdin.fifo (root's, 0600, in the root-only command dir: no process of the
# workspace user can open it — not even through /proc/<pid>/fd/0, which checks the FIFO's own mode).
# Its only writer is the keeper (cmd_keep_stdin, root, a session of its own, started here): it feeds
# spec.stdin, then each write that `runner.sh stdin` queued, in order, and ends — closing the pipe, so
# the command reads end of file — on an eof write. Writes never block a request: `stdin` puts the bytes
# into a file in stdin.q/ (at most <maxPending> bytes wait there; more is refused) and tells the keeper
# over stdin.ctl (a FIFO, one short line per write); the keeper blocks, the request does not.
#   stdin.fed    ids of the writes the keeper has handled (a retried request is recognised by its id)
#   stdin.eof    the id of the eof write, once asked, or "-" once the command closed its stdin (later
#                writes are refused)
#   stdin.in.<id>  a write's bytes before they are queued (the provider's file on Docker, a presigned
#                GET or the request's own base64 on Fargate)
# The keeper is not in the command's process group (a group kill must not end it before the command,
# nor keep the command "running"): the supervisor ends the keeper's session when the command ends (see
# supervise_group); should the supervisor die, the keeper reads end of file on stdin.ctl (the
# supervisor holds its only write end) and ends too.
STDIN_QUEUE_MAX=512 # writes waiting: their notices (<= 70 bytes each) must fit stdin.ctl's 64 KiB

start_stdin_keeper() { # <dir>; opens fd 4 (the command's stdin) and fd 7, sets $keeper
  mkfifo -m 600 "$1/stdin.fifo" "$1/stdin.ctl" && mkdir -m 700 "$1/stdin.q" && : > "$1/stdin.fed" || return 1
  # Every open made here, before the fork, in an order where none blocks: 6 (read-write) lets the
  # command's read end (4) and the keeper's write end (8) open at once, and goes again before the launch,
  # so the keeper's is the only write end (the command sees EOF when it closes). 7: the supervisor's
  # end of stdin.ctl, read-write so it never blocks nor makes the keeper's read see EOF while it lives.
  exec 6<> "$1/stdin.fifo" 4< "$1/stdin.fifo" 8> "$1/stdin.fifo" 7<> "$1/stdin.ctl" 9< "$1/stdin"
  exec 6<&-
  setsid sh "$SELF" keep-stdin "$1" < "$1/stdin.ctl" 3>&8 4<&- 5<&- 7<&- 8<&- > /dev/null 2>&1 &
  keeper=$!
  exec 8<&- 9<&-
}

# The keeper (see above): stdin = stdin.ctl, fd 3 = the write end of the command's stdin, fd 9 = spec.stdin.
cmd_keep_stdin() { # <dir>
  # A failed write means the command closed its stdin (it may run on): later writes are refused as
  # closed rather than queued for no one.
  cat <&9 >&3 || { write_atomic "$1/stdin.eof" -; return 0; }
  exec 9<&-
  while IFS=' ' read -r id eof; do
    # A retried request may have told us twice: each write goes in once.
    if ! grep -qxF -e "$id" "$1/stdin.fed"; then
      if [ -f "$1/stdin.q/$id" ]; then cat -- "$1/stdin.q/$id" >&3 || { write_atomic "$1/stdin.eof" -; return 0; }; fi
      printf '%s\n' "$id" >> "$1/stdin.fed"
    fi
    rm -f -- "$1/stdin.q/$id"
    [ "$eof" = 1 ] && return 0
  done
  return 0
}

# Pending bytes and writes in stdin.q (one stat for all).
queued_stdin() { # <queue dir>; sets q_bytes and q_count
  q_bytes=0 q_count=0
  set +f
  sizes=$(stat -c %s -- "$1"/* 2> /dev/null)
  set -f
  for n in $sizes; do
    q_bytes=$((q_bytes + n))
    q_count=$((q_count + 1))
  done
}

cmd_stdin() { # <dir> <write id> <eof 0|1> <maxPending> [<base64 data>]
  { [ $# -eq 4 ] || [ $# -eq 5 ]; } || { fail2 "usage: stdin <dir> <write id> <eof 0|1> <maxPending> [<b64 data>]"; return; }
  dir=${1%/} id=$2 eof=$3 max=$4
  # Short: its notice must stay one atomic pipe write.
  case $id in '' | *[!A-Za-z0-9]*) fail2 "stdin: the write id must be [A-Za-z0-9]{1,64}"; return ;; esac
  [ ${#id} -le 64 ] || { fail2 "stdin: the write id must be [A-Za-z0-9]{1,64}"; return; }
  case $eof in 0 | 1) ;; *) fail2 "stdin: eof must be 0 or 1"; return ;; esac
  is_uint "$max" || { fail2 "stdin: maxPending must be an integer >= 0"; return; }
  [ -f "$dir/spec.json" ] || { echo "runner: no command at $dir" >&2; return 3; }
  umask 077
  in=$dir/stdin.in.$id
  # The data as an argument (over a channel whose requests no `ps` shows; printf is a builtin).
  if [ $# -eq 5 ] && ! printf '%s' "$5" | base64 -d > "$in"; then
    rm -f "$in"
    fail2 "stdin: bad base64 data"
    return
  fi
  queue_stdin "$dir" "$id" "$eof" "$max" "$in"
  st=$?
  rm -f "$in"
  return $st
}

# Statuses: 0 queued (or queued already), 4 not open, 5 ended, 6 closed, 7 full; messages on stderr.
queue_stdin() { # <dir> <id> <eof> <max> <data file, absent: no data>
  dir=$1 id=$2 eof=$3 max=$4 in=$5
  [ -f "$dir/stdin.fed" ] || { echo "runner: the command was not started with open stdin" >&2; return 4; }
  grep -qxF -e "$id" "$dir/stdin.fed" && return 0
  if [ -f "$dir/stdin.eof" ] && [ "$(cat "$dir/stdin.eof")" != "$id" ]; then
    echo "runner: the command's stdin is closed already" >&2
    return 6
  fi
  [ -f "$dir/exit" ] && { echo "runner: the command has ended" >&2; return 5; }
  fifo_alive "$dir/alive" || { echo "runner: the command has ended" >&2; return 5; }
  size=0
  [ -f "$in" ] && size=$(size_or_0 "$in")
  q=$dir/stdin.q/$id
  # Queued by an earlier attempt of this very request: only the notice may be missing.
  if [ ! -f "$q" ]; then
    queued_stdin "$dir/stdin.q"
    if [ "$q_count" -ge "$STDIN_QUEUE_MAX" ] || [ $((q_bytes + size)) -gt "$max" ]; then
      echo "runner: stdin is full: the command is not reading" >&2
      return 7
    fi
    if [ "$size" -gt 0 ] && ! mv -f "$in" "$q"; then
      # The queue goes when the command ends (supervise_group): then that is the answer.
      [ -d "$dir/stdin.q" ] || { echo "runner: the command has ended" >&2; return 5; }
      return 1
    fi
  fi
  [ "$eof" = 1 ] && { write_atomic "$dir/stdin.eof" "$id" || return 1; }
  # The notice: one line, well under PIPE_BUF (written whole or not at all), never blocking (the queue
  # cap keeps the FIFO from filling; ENXIO: no reader, the keeper is gone).
  if ! printf '%s %s\n' "$id" "$eof" | dd of="$dir/stdin.ctl" oflag=nonblock conv=nocreat,notrunc status=none 2> /dev/null; then
    rm -f "$q"
    [ "$eof" = 1 ] && rm -f "$dir/stdin.eof"
    echo "runner: the command has ended" >&2
    return 5
  fi
}

# Output capped while the command runs (not only at exit): the command writes into a FIFO per stream,
# and a cutter copies at most <max_bytes> of it into the kept file — as it comes, so readers stream the
# file while it grows — then drains the rest, counting it into <file>.rest, so the exit record still
# holds the real byte count. POSIX sh + coreutils: GNU head -c reads no byte past its count, so the
# kept bytes and the counted rest add up exactly. Call before the launch, whose stdout/stderr go to
# "$dir/stdout.fifo" and "$dir/stderr.fifo"; supervise_group collects the cutters.
start_output_cutters() { # <dir> <max_bytes>
  rm -f "$1/stdout.fifo" "$1/stderr.fifo" "$1/stdout.rest" "$1/stderr.rest"
  mkfifo -m 600 "$1/stdout.fifo" "$1/stderr.fifo"
  # Not the supervisor's liveness FIFO (fd 5, when there is one): a cutter may outlive the supervisor.
  ( exec 5<&-; cut_stream "$1/stdout" "$2" ) < "$1/stdout.fifo" > /dev/null 2>&1 &
  cut_out=$!
  ( exec 5<&-; cut_stream "$1/stderr" "$2" ) < "$1/stderr.fifo" > /dev/null 2>&1 &
  cut_err=$!
}

cut_stream() { # <file> <max_bytes>; stdin: the stream
  # head writes through stdio (buffered into a file until it exits): stdbuf -o0 makes every chunk it
  # reads reach the file at once, so the output streams. Without stdbuf it lands in 4 KiB pieces.
  # (Not dd iflag=count_bytes: from a pipe, its short reads count as whole blocks — not a byte cap.)
  if command -v stdbuf > /dev/null 2>&1; then stdbuf -o0 head -c "$2" >> "$1"; else head -c "$2" >> "$1"; fi
  # Fewer than max bytes kept: the stream ended before the cap, there is no rest.
  [ "$(stat -c %s "$1" 2> /dev/null || echo 0)" -lt "$2" ] && return 0
  # One byte past the cap is enough to know the stream is truncated: recorded at once, so an exit
  # record written while a background process still holds the stream says so. The rest is counted
  # in chunks (exact once the stream ends).
  rest=$(dd bs=1 count=1 status=none | wc -c)
  [ "$rest" -gt 0 ] || return 0
  write_atomic "$1.rest" "$rest"
  while n=$(head -c 1048576 | wc -c) && [ "$n" -gt 0 ]; do
    rest=$((rest + n))
    write_atomic "$1.rest" "$rest"
  done
}

# How long the exit record waits for the cutters once the command has ended. They end with the last
# writer of their FIFO — at once, unless a background process the command left behind still holds
# its stdout; then the record counts what came so far and the cutter goes on capping alone. When the
# command's process group is empty, nothing of it should hold the stream: the longer wait only covers
# a loaded machine (the cutter not yet scheduled) and a holder that left the group (setsid).
CUTTER_GRACE=1
CUTTER_GRACE_GROUP_EMPTY=10

# Wait (bounded) for the cutters, then set out_bytes and err_bytes: kept + rest of each stream.
# (Not in a subshell: it waits for children of this shell.)
finish_output_cutters() { # <dir> <pgid of the command>
  for s in stdout stderr; do
    # A FIFO no writer ever opened would block its cutter's open for ever: opening it read-write
    # (never blocks on Linux) and closing it again wakes the cutter, which then reads EOF.
    if [ -p "$1/$s.fifo" ]; then exec 7<> "$1/$s.fifo" && exec 7<&-; fi
  done
  rm -f "$1/stdout.fifo" "$1/stderr.fifo"
  # A trapped signal interrupts `wait` (POSIX): the grace timer sends one. The trap stays set, so a
  # late signal is harmless.
  trap : USR1
  wait_s=$CUTTER_GRACE_GROUP_EMPTY
  kill -0 "-$2" 2> /dev/null && wait_s=$CUTTER_GRACE
  ( exec 5<&- 7<&- > /dev/null 2>&1; sleep "$wait_s"; kill -USR1 $$ ) &
  grace=$!
  wait "$cut_out" "$cut_err"
  kill "$grace" 2> /dev/null
  # One stat for both kept files (one each should either be missing); the rests by the shell's read.
  sizes=$(stat -c %s "$1/stdout" "$1/stderr" 2> /dev/null)
  case $sizes in
    *"$NL"*) kept_out=${sizes%%"$NL"*} kept_err=${sizes#*"$NL"} ;;
    *) kept_out=$(size_or_0 "$1/stdout") kept_err=$(size_or_0 "$1/stderr") ;;
  esac
  read_rest "$1/stdout.rest"
  out_bytes=$((kept_out + rest_n))
  read_rest "$1/stderr.rest"
  err_bytes=$((kept_err + rest_n))
}

# rest_n = the number in a .rest file, 0 when there is none (no process started).
read_rest() {
  rest_n=0
  [ -f "$1" ] && read -r rest_n < "$1"
  case $rest_n in '' | *[!0-9]*) rest_n=0 ;; esac
}

# The supervision every command of a Docker container or Fargate task gets (the local backend has its
# own supervisor, local/supervisor/daemon.ts, writing the same files): publish the process group of <child> (a `setsid` launch, already started), kill
# it on timeout, wait for it, collect the output cutters (start_output_cutters, called before the
# launch) and write the exit record atomically.
supervise_group() { # <dir> <child pid> <timeout_ms> <max_bytes>
  dir=$1 child=$2 timeout_ms=$3 max_bytes=$4
  # setsid(1) makes the child a group leader only just after it starts. Publish the pgid once the group
  # exists (or the child is gone), so no one sends a group kill to a group that does not exist yet.
  # (A child that died before setsid stays a zombie in our group until we wait: stop on state Z.)
  # A terminal: also until it is set up (its record written), so a kill finds its session.
  tries=0
  while state=$(stat_field "$child" 3) && [ "$state" != Z ] \
    && { [ "$(stat_field "$child" 5)" != "$child" ] || { [ -n "$tty_rows" ] && [ ! -e "$dir/tty" ]; }; } \
    && [ "$tries" -lt 5000 ]; do
    tries=$((tries + 1))
    sleep 0.002
  done
  # Published without a process (no mv): the command may be a fork bomb that has taken every pid of
  # the container by now, and a pgid never published is a start that fails. One small write: readers
  # take an empty file for "not yet" (cmd_kill's -s, the provider's readPgid), never half a number.
  printf '%s\n' "$child" > "$dir/pgid"
  # A kill requested before the pgid was known: honour it now. (dash's kill takes no "--".)
  [ -e "$dir/kill" ] && kill_command "$dir" "$child"

  timer=
  if [ "$timeout_ms" -gt 0 ]; then
    secs=$((timeout_ms / 1000)).$(printf '%03d' $((timeout_ms % 1000)))
    (
      # Not the supervisor's liveness FIFO (fd 5, when there is one) nor stdin.ctl (fd 7): only the
      # supervisor holds them.
      exec 5<&- 7<&-
      trap 'kill "$sleeper" 2> /dev/null; exit 0' TERM
      sleep "$secs" &
      sleeper=$!
      wait "$sleeper"
      (set -C; printf 'timeout\n' > "$dir/kill") 2> /dev/null
      kill_command "$dir" "$child"
    ) &
    timer=$!
  fi

  wait "$child"
  code=$?
  if [ -n "$tty_rows" ]; then
    # Killed: what forked while the kill went through the terminal's session goes too.
    [ -e "$dir/kill" ] && kill_tty_session "$dir"
    rm -f "$dir/env"
  fi
  # The command has ended: so has its stdin. The keeper's whole session (a cat blocked on the full
  # pipe included), then its control FIFO; queued bytes no one will read go with it.
  if [ -n "$keeper" ]; then
    kill -KILL "-$keeper" "$keeper" 2> /dev/null
    wait "$keeper" 2> /dev/null
    exec 7<&-
    rm -rf "$dir/stdin.q" "$dir/stdin.fifo" "$dir/stdin.ctl"
  fi

  if [ -n "$timer" ]; then
    kill -TERM "$timer" 2> /dev/null
    wait "$timer" 2> /dev/null
  fi

  # Killed by us = a kill reason was recorded AND the command died of SIGKILL (the shell reports 128+9).
  # A kill request that came after the command had ended by itself does not make it "killed".
  killed=0
  signal=-
  if [ "$code" -eq 137 ] && [ -e "$dir/kill" ]; then
    killed=1
    signal=SIGKILL
  fi

  # Real sizes are recorded (kept + counted rest); the kept files never grew past the limit.
  finish_output_cutters "$dir" "$child"

  write_atomic "$dir/exit" "$code $signal $killed $out_bytes $err_bytes $(date +%s%3N)"
}

# SIGKILL the command's process group and, for a terminal, its session (see "terminals").
kill_command() { # <dir> <pgid>
  kill -KILL "-$2" 2> /dev/null
  kill_tty_session "$1"
}

cmd_kill() {
  dir=$1 reason=$2
  [ -e "$dir/exit" ] && return 0
  (set -C; printf '%s\n' "$reason" > "$dir/kill") 2> /dev/null
  # No pgid yet: the supervisor sees the kill file right after publishing it.
  [ -s "$dir/pgid" ] && kill_command "$dir" "$(cat "$dir/pgid")"
  return 0
}

# <dir> <INT|TERM>: to the command's group (it leads a session of its own: only its processes); for a
# terminal, to the terminal's foreground process group (what the key would reach; script, which would
# turn any of them into a SIGTERM for the command, gets none).
cmd_signal() {
  dir=$1 sig=$2
  case $sig in INT | TERM) ;; *) echo "runner: signal '$sig' is not offered" >&2; return 2 ;; esac
  [ -e "$dir/exit" ] && return 0
  if [ -e "$dir/tty" ]; then
    ts=$(tty_session "$dir") || return 0
    sid=${ts#* }
    fg=$(stat_field "$sid" 8)
    is_uint "$fg" && [ "$fg" -gt 1 ] || fg=$sid
    kill "-$sig" "-$fg" 2> /dev/null
    return 0
  fi
  [ -s "$dir/pgid" ] && kill "-$sig" "-$(cat "$dir/pgid")" 2> /dev/null
  return 0
}

cmd_killall() {
  root=$1 reason=$2 uid=$3 gid=$4
  set +f
  for d in "$root"/*/; do
    d=${d%/}
    [ -e "$d/claim" ] && [ ! -e "$d/exit" ] && cmd_kill "$d" "$reason"
  done
  set -f
  # kill(-1) as the user reaches every process it may signal — all of its uid — in one atomic sweep
  # (the kernel holds the task list while it signals, so a fork cannot slip through). Root-owned
  # supervisors survive it and record their commands as killed.
  env -i "$CHROOT" --userspec="$uid:$gid" --groups="$gid" --skip-chdir / /bin/sh -c 'kill -KILL -1' 2> /dev/null
  return 0
}

cmd_init() {
  set -e
  uid=$1 gid=$2 name=$3 home=$4 root=$5
  grep -q "^[^:]*:[^:]*:$gid:" /etc/group || printf '%s:x:%s:\n' "$name" "$gid" >> /etc/group
  grep -q "^$name:" /etc/passwd || printf '%s:x:%s:%s::%s:/bin/sh\n' "$name" "$uid" "$gid" "$home" >> /etc/passwd
  # The home may come from an image the workspace wrote (a cache entry is its setup's container): a
  # symlink there (root -> /usr/local/bin) would make this root chown a system dir to the user, who
  # could then shadow a tool this runner calls as root. No component from home down to root may be a
  # symlink (nothing of the user runs yet to swap one in later), and nothing here dereferences one.
  d=$root
  while :; do
    if [ -L "$d" ]; then echo "runner: init: $d is a symbolic link" >&2; exit 1; fi
    [ "$d" = "$home" ] && break
    case $d in "$home"/*) d=${d%/*} ;; *) break ;; esac
  done
  if [ -L "$home" ]; then echo "runner: init: $home is a symbolic link" >&2; exit 1; fi
  mkdir -p "$home" "$root"
  # Every directory from home down to root belongs to the user (root may be home itself).
  d=$root
  while :; do
    chown -h "$uid:$gid" "$d"
    [ "$d" = "$home" ] && break
    case $d in "$home"/*) d=${d%/*} ;; *) break ;; esac
  done
  chown -h "$uid:$gid" "$home"
  chmod 700 "$home"
}

# The persistent channel: one long-lived process reads requests from stdin, one per line,
# "<id> <base64 of a shell-quoted runner argv>", runs each like `runner.sh <argv>` would, and answers
# "<id> <exit status>" on stdout. A request costs a pipe write instead of a new exec; whoever talks to
# it falls back to a plain exec when the channel dies. Requests run one at a time, each in a subshell
# with its own stdio, so nothing a request starts holds the channel's pipes.
# shellcheck disable=SC2120 # "$@" is the request's argv, set by eval "set -- …", not the caller's
cmd_serve() {
  echo "ready"
  while IFS= read -r line; do
    rid=${line%% *}
    enc=${line#* }
    (
      # "=<quoted argv>" as it is (no base64 process; only requests without a newline or CR come so).
      case $enc in
        =*) script=${enc#=} ;;
        *) script=$(printf '%s' "$enc" | base64 -d) || exit ;;
      esac
      eval "set -- $script" && main "$@"
    ) < /dev/null > /dev/null 2>&1
    printf '%s %s\n' "$rid" "$?"
  done
}

# --- command dirs for backends without a host view of them (Fargate) -------------------------------

is_uint() { case $1 in '' | *[!0-9]*) return 1 ;; esac; }
fail2() { echo "runner: $*" >&2; return 2; }

cmd_prepare() {
  [ $# -eq 4 ] || { fail2 "usage: prepare <dir> <b64 spec.json> <b64 env> <b64 stdin>"; return; }
  dir=${1%/}
  case $dir in /?*) ;; *) fail2 "prepare: dir must be absolute"; return ;; esac
  if [ -e "$dir" ]; then echo exists; return 0; fi
  umask 077
  parent=${dir%/*}
  [ -n "$parent" ] && { mkdir -p "$parent" || return 1; }
  # A hidden sibling ("*" never matches it, so killall and status-many skip it), renamed into place
  # complete: a request cut off half-way (a dropped session) leaves no half dir behind that a retry
  # would take for a finished prepare.
  tmp=$(mktemp -d "$parent/.prepare.XXXXXX") || return 1
  if printf '%s' "$4" | base64 -d > "$tmp/stdin" && printf '%s' "$3" | base64 -d > "$tmp/env" \
    && : > "$tmp/stdout" && : > "$tmp/stderr" && printf '%s' "$2" | base64 -d > "$tmp/spec.json"; then
    # -T: never move INTO an existing dir; rename(2) of a dir onto an existing non-empty dir fails.
    if mv -T "$tmp" "$dir" 2> /dev/null; then
      echo created
      return 0
    fi
    rm -rf "$tmp"
    [ -e "$dir" ] && { echo exists; return 0; }
    echo "runner: prepare: cannot create $dir" >&2
    return 1
  fi
  rm -rf "$tmp"
  echo "runner: prepare: bad base64 input" >&2
  return 2
}

# "<base64 of the file>" with quotes, or null when the file is missing.
b64_or_null() {
  if [ -f "$1" ]; then printf '"%s"' "$(base64 -w0 < "$1")"; else printf null; fi
}

size_or_0() { stat -c %s "$1" 2> /dev/null || echo 0; }
# Bytes a stream produced so far: the kept file + what its cutter counted past the cap (streamBytes).
stream_bytes() { echo $(($(size_or_0 "$1") + $(cat "$1.rest" 2> /dev/null || echo 0))); }

# The supervisor holds `alive` (a FIFO) open for exactly its lifetime: a non-blocking open for writing
# fails (ENXIO) once no one has it open — supervisorAlive in command-files.ts, in coreutils. nocreat:
# never turn a missing FIFO into a file.
fifo_alive() {
  [ -p "$1" ] && dd of="$1" oflag=nonblock conv=nocreat,notrunc count=0 status=none < /dev/null 2> /dev/null
}

# The fields of a status answer; statusFromRecord (command-record.ts) turns them into a CommandStatus.
# File contents travel as base64 (exact bytes, no JSON escaping in sh):
#   "spec": spec.json, "exit": the exit line or null, "kill": the kill reason or null,
#   "alive": the supervisor holds its FIFO (only looked at while there is no exit record),
#   "stdoutBytes"/"stderrBytes": bytes so far (kept file + counted rest).
status_fields() {
  d=$1
  alive=false
  if [ ! -f "$d/exit" ] && fifo_alive "$d/alive"; then alive=true; fi
  # The exit record is read after the liveness check: a supervisor that ended in between has written it.
  printf '"spec":%s,"exit":%s,"kill":%s,"alive":%s,"stdoutBytes":%s,"stderrBytes":%s' \
    "$(b64_or_null "$d/spec.json")" "$(b64_or_null "$d/exit")" "$(b64_or_null "$d/kill")" "$alive" \
    "$(stream_bytes "$d/stdout")" "$(stream_bytes "$d/stderr")"
}

cmd_status() {
  [ $# -eq 1 ] || { fail2 "usage: status <dir>"; return; }
  [ -f "$1/spec.json" ] || { echo "runner: no command at $1" >&2; return 3; }
  printf '{'
  status_fields "$1"
  printf '}\n'
}

cmd_status_many() {
  [ $# -eq 1 ] || { fail2 "usage: status-many <cmdroot>"; return; }
  sep=
  printf '['
  set +f
  for d in "$1"/*/; do
    d=${d%/}
    name=${d##*/}
    [ -f "$d/spec.json" ] || continue
    # Names become JSON strings unescaped: only the characters command ids are made of.
    case $name in *[!A-Za-z0-9._-]*) continue ;; esac
    printf '%s{"id":"%s",' "$sep" "$name"
    status_fields "$d"
    printf '}'
    sep=,
  done
  set -f
  printf ']\n'
}

cmd_read() {
  [ $# -eq 4 ] || { fail2 "usage: read <dir> <stdout|stderr> <offset> <limit>"; return; }
  dir=$1 stream=$2 offset=$3 limit=$4
  case $stream in stdout | stderr) ;; *) fail2 "read: stream must be stdout or stderr"; return ;; esac
  is_uint "$offset" && is_uint "$limit" || { fail2 "read: offset and limit must be integers >= 0"; return; }
  [ -f "$dir/spec.json" ] || { echo "runner: no command at $dir" >&2; return 3; }
  max=$(sed -n 's/.*"maxOutputBytes":\([0-9][0-9]*\).*/\1/p' "$dir/spec.json")
  is_uint "$max" || { echo "runner: read: spec.json has no maxOutputBytes" >&2; return 1; }
  [ -f "$dir/$stream" ] || return 0
  kept=$(size_or_0 "$dir/$stream")
  [ "$kept" -gt "$max" ] && kept=$max
  end=$((offset + limit))
  [ "$end" -gt "$kept" ] && end=$kept
  [ "$end" -le "$offset" ] && return 0
  dd if="$dir/$stream" bs=65536 iflag=skip_bytes,count_bytes skip="$offset" count=$((end - offset)) status=none
}

# The url goes to curl as a config line on stdin: an argv is readable by every process in the task.
curl_url_config() {
  case $1 in
    *'"'* | *'\'* | *"$NL"* | *"$CR"*) echo "runner: url contains characters it may not" >&2; return 2 ;;
    http://* | https://*) printf 'url = "%s"\n' "$1" ;;
    *) echo "runner: url must be http(s)" >&2; return 2 ;;
  esac
}
# Retries transient failures (timeouts, 5xx, refused connections); a transfer slower than 1 KiB/s for
# a minute is abandoned rather than hanging the request.
CURL_OPTS='-fsS --retry 3 --retry-connrefused --connect-timeout 20 --speed-limit 1024 --speed-time 60'

cmd_fetch_url() {
  [ $# -eq 4 ] || { fail2 "usage: fetch-url <url> <dest> <mode> <uid:gid>"; return; }
  url=$1 dest=$2 mode=$3 owner=$4
  config=$(curl_url_config "$url") || return 2
  tmp=$(mktemp "$dest.XXXXXX") || return 1
  # shellcheck disable=SC2086
  if printf '%s\n' "$config" | curl $CURL_OPTS -o "$tmp" -K - && chmod "$mode" "$tmp" && chown "$owner" "$tmp" \
    && mv -f "$tmp" "$dest"; then
    return 0
  fi
  rm -f "$tmp"
  return 1
}

cmd_put_url() {
  [ $# -eq 2 ] || { fail2 "usage: put-url <file> <url>"; return; }
  [ -f "$1" ] || { echo "runner: put-url: no file $1" >&2; return 1; }
  config=$(curl_url_config "$2") || return 2
  # -T <file>: a PUT with Content-Length (never chunked); the response body is not wanted.
  # shellcheck disable=SC2086
  printf '%s\n' "$config" | curl $CURL_OPTS -T "$1" -o /dev/null -K - || return 1
}

cmd_put_parts() {
  [ $# -ge 4 ] || { fail2 "usage: put-parts <file> <partBytes> <firstPart> <url...>"; return; }
  file=$1 psize=$2 n=$3
  shift 3
  is_uint "$psize" && [ "$psize" -gt 0 ] && is_uint "$n" && [ "$n" -ge 1 ] \
    || { fail2 "put-parts: partBytes and firstPart must be integers >= 1"; return; }
  [ -f "$file" ] || { echo "runner: put-parts: no file $file" >&2; return 1; }
  size=$(size_or_0 "$file")
  for url in "$@"; do curl_url_config "$url" > /dev/null || return 2; done
  part=$(mktemp "$file.part.XXXXXX") || return 1
  head=$(mktemp "$file.head.XXXXXX") || { rm -f "$part"; return 1; }
  st=0
  for url in "$@"; do
    offset=$(((n - 1) * psize))
    len=$((size - offset))
    [ "$len" -gt "$psize" ] && len=$psize
    # Only an empty file has an empty part (its one part).
    if [ "$len" -le 0 ] && [ "$n" -ne 1 ]; then
      echo "runner: put-parts: part $n starts past the end ($size bytes)" >&2
      st=2
      break
    fi
    if ! dd if="$file" of="$part" bs=1M iflag=skip_bytes,count_bytes skip="$offset" count="$len" status=none; then
      st=1
      break
    fi
    # -D: the response headers, for the part's ETag (the last one, should a retry have answered too).
    # shellcheck disable=SC2086
    if ! curl_url_config "$url" | curl $CURL_OPTS -T "$part" -D "$head" -o /dev/null -K -; then
      echo "runner: put-parts: part $n failed" >&2
      st=1
      break
    fi
    etag=$(tr -d '\r' < "$head" | sed -n 's/^[Ee][Tt][Aa][Gg]:[[:space:]]*//p' | tail -n 1)
    case $etag in
      '' | *[[:space:]]*)
        echo "runner: put-parts: part $n: no ETag in the answer" >&2
        st=1
        break
        ;;
    esac
    printf '%s %s\n' "$n" "$etag"
    n=$((n + 1))
  done
  rm -f "$part" "$head"
  return $st
}

cmd_pack() {
  [ $# -eq 2 ] || { fail2 "usage: pack <dir> <dest.tar>"; return; }
  dir=${1%/} dest=$2
  case $dir in /?*) ;; *) fail2 "pack: dir must be absolute"; return ;; esac
  [ -d "$dir" ] || { echo "runner: pack: no dir $dir" >&2; return 1; }
  umask 077
  tmp=$(mktemp "$dest.XXXXXX") || return 1
  # Members relative to / (home/node/...), numeric owners: the tar is an image layer as it is.
  # Exit 1 is GNU tar's "a file changed as we read it": a snapshot of a workspace whose commands run
  # on (a fork point) is crash-consistent per file, and the archive is complete.
  rc=0
  tar -C / --numeric-owner -cf "$tmp" -- "${dir#/}" || rc=$?
  if { [ "$rc" -eq 0 ] || [ "$rc" -eq 1 ]; } && mv -f "$tmp" "$dest"; then
    size_or_0 "$dest"
    return 0
  fi
  rm -f "$tmp"
  return 1
}

cmd_unpack() {
  [ $# -eq 3 ] || { fail2 "usage: unpack <tar> <destdir> <uid:gid>"; return; }
  mkdir -p "$2" || return 1
  # -h: chown a symlink itself, never what it points to (a link into /etc must not hand it over).
  tar -C "$2" --numeric-owner -xf "$1" && chown -R -h "$3" "$2"
}

# Refuses what no request should ever remove or create: relative paths, "/", paths with "..".
check_abs() {
  case $1 in
    /*/.. | /*/../* | */./* | /.. | /../* | / | //*) return 1 ;;
    /?*) return 0 ;;
    *) return 1 ;;
  esac
}

cmd_mkdirs() { # <mode> <uid:gid> <dir...>
  [ $# -ge 3 ] || { fail2 "usage: mkdirs <mode> <uid:gid> <dir...>"; return; }
  mode=$1 owner=$2
  shift 2
  for d in "$@"; do
    check_abs "$d" || { fail2 "mkdirs: not an absolute path: $d"; return; }
    mkdir -p "$d" && chmod "$mode" "$d" && chown "$owner" "$d" || return 1
  done
}

cmd_remove() { # <path...>
  [ $# -ge 1 ] || { fail2 "usage: remove <path...>"; return; }
  for p in "$@"; do
    check_abs "$p" || { fail2 "remove: not an absolute path below /: $p"; return; }
    rm -rf -- "$p" || return 1
  done
}

# Empty /tmp and /var/tmp (a reset leaves nothing of the agent's there). The channel's own work dirs
# live elsewhere (RPC_WORK_ROOT), so the workspace never sees them.
cmd_clean_tmp() {
  for t in /tmp /var/tmp; do
    [ -d "$t" ] || continue
    find "$t" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} + || return 1
  done
}

# --- usage ---------------------------------------------------------------------------------------
#
# Root-owned cgroup files (the workspace user can write none of them, and /sys/fs/cgroup is read-only
# in a container), never anything in the home. du as root: a directory the user made unreadable counts.

# This process's cgroup dir under the hierarchy mounted at <mount> (<controller>: "" for v2). A
# container's own cgroup is normally the root of its mount (a private cgroup namespace, or the engine's
# bind of that one dir); the path /proc/self/cgroup names is looked for first, for a mount of a whole
# hierarchy.
cgroup_dir() { # <mount> <controller>
  rel=
  while IFS=: read -r _ ctl p; do
    if [ -z "$2" ]; then
      [ -z "$ctl" ] && rel=$p
    else
      case ",$ctl," in *",$2,"*) rel=$p ;; esac
    fi
  done < /proc/self/cgroup
  if [ -n "$rel" ] && [ "$rel" != / ] && [ -d "$1$rel" ]; then echo "$1$rel"; else echo "$1"; fi
}

usage_line() { # <key> <file>: "<key> <first line>" when the file reads as a number or "max"
  v=
  read -r v 2> /dev/null < "$2" || true
  if [ "$v" = max ] || is_uint "$v"; then echo "$1 $v"; fi
}

cmd_usage() { # <home>
  [ $# -eq 1 ] || { fail2 "usage: usage <home>"; return; }
  check_abs "$1" || { fail2 "usage: not an absolute path: $1"; return; }
  cg=${WSP_CGROUP_ROOT:-/sys/fs/cgroup} # another root: tests only (the provider never sets it)
  if [ -f "$cg/cgroup.controllers" ]; then
    echo "source task cgroup v2"
    d=$(cgroup_dir "$cg" '')
    v=$(sed -n 's/^usage_usec \([0-9]*\)$/\1/p' "$d/cpu.stat" 2> /dev/null)
    [ -n "$v" ] && echo "cpu_usec $v"
    usage_line memory_bytes "$d/memory.current"
    usage_line memory_limit "$d/memory.max"
    usage_line pids "$d/pids.current"
    usage_line pids_limit "$d/pids.max"
  else
    echo "source task cgroup v1"
    for h in cpuacct cpu,cpuacct cpuacct,cpu; do
      if [ -d "$cg/$h" ]; then
        usage_line cpu_ns "$(cgroup_dir "$cg/$h" cpuacct)/cpuacct.usage"
        break
      fi
    done
    d=$(cgroup_dir "$cg/memory" memory)
    usage_line memory_bytes "$d/memory.usage_in_bytes"
    usage_line memory_limit "$d/memory.limit_in_bytes"
    d=$(cgroup_dir "$cg/pids" pids)
    usage_line pids "$d/pids.current"
    usage_line pids_limit "$d/pids.max"
  fi
  # Bounded: a home of millions of files gives no disk figure rather than an answer that never comes.
  v=$(timeout -s KILL 60 du -s -x -B1 -c -- "$1" /tmp 2> /dev/null | sed -n 's/^\([0-9]*\)[[:space:]]*total$/\1/p')
  [ -n "$v" ] && echo "disk_bytes $v"
  return 0
}

cmd_pristine() { # <save|restore> ...
  sh "${SELF%/*}/pristine.sh" "$@"
}

# --- the channel over a PTY (ECS Exec) ------------------------------------------------------------
#
# The session is a PTY: whatever it echoes, however it ends lines, whatever a login prints first.
# Requests (provider → runner) are printable ASCII lines of at most 1000 characters, so no tty mode
# can cut, reinterpret or drop them (canonical mode keeps 4095 per line):
#   WSPREQ <id>                   id: [A-Za-z0-9]{1,64}, new per request
#   <base64 text>                 any number of lines: base64 of the shell-quoted argv (as cmd_serve)
#   WSPEND <id> <chars>           chars: the base64 length without newlines (a damaged request is refused)
# Answers (runner → provider) are ONE line each; the parser finds them in any noise:
#   <<<wsp:<id>:<status>:<base64>>>>
#   status: the request's exit status; base64 of its stdout when 0, of its stderr (last 64 KiB) if not.
#   Id "ready" is the banner, printed once the tty is set up: base64 of '{"rpc":1}'.
# A request of argv ['bye'] answers 0 and ends the session, like EOF on the tty.
#
# Each request runs in a session of its own (setsid): a hangup of the channel (the provider's session
# dropped) reaches this loop, never a request in flight, so a request that arrived whole completes, and
# its effect is there for the next session to see. The loop finishes that request before it exits.
cmd_rpc() {
  umask 077
  # Root-only and outside /tmp: invisible to the workspace user, untouched by a reset's clean-tmp.
  root=${WSP_RPC_WORK_ROOT:-/var/lib/wsp/rpc}
  # shellcheck disable=SC2174 # parents get the umask (077) above: 0700 as well
  mkdir -p -m 700 "$root" || return 1
  work=$(mktemp -d "$root/wsp-rpc.XXXXXX") || return 1
  trap 'rm -rf "$work"' EXIT
  trap 'exit 129' HUP
  trap 'exit 143' TERM
  # No echo, no line editing, no signal/flow-control/literal-next keys, a byte at a time. Framing does
  # not depend on it (WSP_RPC_KEEP_TTY=1 keeps the tty as it is: the tests prove both).
  if [ -t 0 ] && [ "${WSP_RPC_KEEP_TTY:-0}" != 1 ]; then
    stty -echo -icanon -isig -ixon -iexten min 1 time 0 2> /dev/null || true
  fi
  printf '{"rpc":1}' > "$work/banner"
  rpc_answer ready 0 "$work/banner"
  rid=
  while IFS= read -r line; do
    line=${line%"$CR"}
    case $line in
      "WSPREQ "*)
        rid=${line#WSPREQ }
        case $rid in '' | *[!A-Za-z0-9]*) rid= ;; esac
        : > "$work/req"
        ;;
      "WSPEND "*)
        set -- ${line#WSPEND }
        if [ -n "$rid" ] && [ "${1:-}" = "$rid" ]; then
          rpc_run "$rid" "${2:-}" || break
        fi
        rid=
        ;;
      *)
        # Base64 lines of the open request; anything else (noise, a request whose head was lost) is dropped.
        [ -n "$rid" ] && printf '%s\n' "$line" >> "$work/req"
        ;;
    esac
  done
  return 0
}

# Run the request in $work/req and answer it; returns 1 when the session should end (bye).
rpc_run() { # <id> <expected chars>
  got=$(tr -d '\n' < "$work/req" | wc -c)
  if [ "$got" != "$2" ]; then
    printf 'runner: request damaged in transit (%s of %s characters)' "$got" "$2" > "$work/err"
    rpc_answer "$1" 2 "$work/err"
    return 0
  fi
  if [ "$got" -le 8 ] && [ "$(base64 -d < "$work/req" 2> /dev/null)" = "'bye'" ]; then
    : > "$work/out"
    rpc_answer "$1" 0 "$work/out"
    return 1
  fi
  setsid -w sh "$SELF" rpc-exec < "$work/req" > "$work/out" 2> "$work/err"
  st=$?
  if [ "$st" -eq 0 ]; then
    rpc_answer "$1" 0 "$work/out"
  else
    tail -c 65536 "$work/err" > "$work/err.tail"
    rpc_answer "$1" "$st" "$work/err.tail"
  fi
  return 0
}

rpc_answer() { # <id> <status> <payload file>
  printf '<<<wsp:%s:%s:' "$1" "$2"
  base64 -w0 < "$3"
  printf '>>>\n'
}

# One request, in its own session: argv = the shell-quoted words on stdin, base64-encoded.
# shellcheck disable=SC2120 # "$@" is the request's argv, set by eval "set -- …", not the caller's
cmd_rpc_exec() {
  script=$(base64 -d) || { echo "runner: request is not base64" >&2; return 2; }
  exec < /dev/null
  eval "set -- $script" || { echo "runner: request is not a quoted argv" >&2; return 2; }
  case ${1:-} in
    rpc | serve | rpc-exec | supervise | keep-stdin | pty-child | '') echo "runner: '${1:-}' is not a request" >&2; return 2 ;;
  esac
  main "$@"
}

main() {
  sub=${1:-}
  [ $# -gt 0 ] && shift
  case $sub in
    start) cmd_start "$@" ;;
    supervise) cmd_supervise "$@" ;;
    keep-stdin) cmd_keep_stdin "$@" ;;
    pty-child) cmd_pty_child "$@" ;;
    resize) cmd_resize "$@" ;;
    stdin) cmd_stdin "$@" ;;
    kill) cmd_kill "$@" ;;
    signal) cmd_signal "$@" ;;
    killall) cmd_killall "$@" ;;
    init) cmd_init "$@" ;;
    serve) cmd_serve ;;
    rpc) cmd_rpc ;;
    rpc-exec) cmd_rpc_exec ;;
    prepare) cmd_prepare "$@" ;;
    status) cmd_status "$@" ;;
    status-many) cmd_status_many "$@" ;;
    read) cmd_read "$@" ;;
    fetch-url) cmd_fetch_url "$@" ;;
    put-url) cmd_put_url "$@" ;;
    put-parts) cmd_put_parts "$@" ;;
    pack) cmd_pack "$@" ;;
    unpack) cmd_unpack "$@" ;;
    mkdirs) cmd_mkdirs "$@" ;;
    remove) cmd_remove "$@" ;;
    clean-tmp) cmd_clean_tmp ;;
    usage) cmd_usage "$@" ;;
    pristine-save) cmd_pristine save "$@" ;;
    pristine-restore) cmd_pristine restore "$@" ;;
    *)
      echo "usage: runner.sh start|stdin|resize|kill|signal|killall|init|serve|rpc|prepare|mkdirs|remove|clean-tmp|usage|status|status-many|read|fetch-url|put-url|put-parts|pack|unpack|pristine-save|pristine-restore ..." >&2
      return 2
      ;;
  esac
}

main "$@"
