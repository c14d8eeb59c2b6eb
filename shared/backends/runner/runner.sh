#!/bin/sh
# The in-workspace command runner (issue 3 item 5; docs: shared/docs/cloud.md). POSIX sh + coreutils +
# util-linux's setsid, no Node: it runs inside any Linux image, as root, started by whatever channel
# the backend has into the workspace (docker exec today; ECS Exec later). The channel only kicks it:
# a command's result lives in files, never in the channel.
#
#   runner.sh start <dir> <uid> <gid> <timeoutMs> <maxOutputBytes> <cwd> -- <argv...>
#       Start argv detached (own session and process group) as uid:gid in cwd. Idempotent on <dir>:
#       a second start of the same dir does nothing. Returns once the process group is published
#       (or the command has already ended), so a kill right after start reaches it.
#   runner.sh kill <dir> <reason>
#       Record the reason (first writer wins) and SIGKILL the command's process group. No-op once ended.
#   runner.sh killall <cmdroot> <reason> <uid> <gid>
#       kill every running command under <cmdroot>, then every process of uid (kill -1 as that uid).
#   runner.sh init <uid> <gid> <name> <home> <root>
#       Make sure the user exists in /etc/passwd and /etc/group, and home and root exist, owned by it.
#   runner.sh serve
#       The persistent channel: the subcommands above as requests on stdin (see cmd_serve).
#
# The command dir (root-only; the backend bind-mounts it from the host so results survive the
# workspace's compute being replaced and can be read without a round trip):
#   spec.json        written by the provider (the runner does not read it)
#   stdin            fed to the command (removed once opened)
#   env              "export NAME='value'" lines; opened as fd 3 and removed before the command runs,
#                    then read by the command's own shell (env values never appear in any argv)
#   stdout, stderr   appended to by the command (and by background processes it leaves behind)
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

SELF=$0
DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PATH=$DEFAULT_PATH
export PATH
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

# The shell that becomes the command, already as the workspace user: read the env script from fd 3
# (opened by the supervisor, whose file is gone by now), close it, enter cwd, exec argv.
INNER='eval "$(cat <&3)" || exit 126
exec 3<&-
cd "$1" || exit 126
shift
exec "$@"'

cmd_start() {
  dir=$1
  # Claim the dir atomically; a second start (a retry over another channel) only waits like the first.
  if mkdir "$dir/claim" 2> /dev/null; then
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
  [ "${1:-}" = "--" ] && shift
  mkfifo -m 600 "$dir/alive"
  exec 5<> "$dir/alive"
  write_atomic "$dir/pid" "$$"

  exec 3< "$dir/env" 4< "$dir/stdin"
  rm -f "$dir/env" "$dir/stdin"
  # setsid: the command leads a session (and process group) of its own, so a group kill reaches it and
  # everything it started. env -i: nothing of this shell's environment; the env script sets it all.
  # chroot --userspec to "/" (--skip-chdir) drops to uid:gid with coreutils only (no setpriv/su needed).
  setsid env -i "$CHROOT" --userspec="$uid:$gid" --groups="$gid" --skip-chdir / /bin/sh -c "$INNER" sh "$cwd" "$@" \
    <&4 4<&- 5<&- >> "$dir/stdout" 2>> "$dir/stderr" &
  child=$!
  exec 3<&- 4<&-
  # setsid(1) makes the child a group leader only just after it starts. Publish the pgid once the group
  # exists (or the child is gone), so no one sends a group kill to a group that does not exist yet.
  tries=0
  while state=$(stat_field "$child" 3) && [ "$state" != Z ] && [ "$(stat_field "$child" 5)" != "$child" ] \
    && [ "$tries" -lt 5000 ]; do
    tries=$((tries + 1))
    sleep 0.002
  done
  write_atomic "$dir/pgid" "$child"
  # A kill requested before the pgid was known: honour it now.
  [ -e "$dir/kill" ] && kill -KILL "-$child" 2> /dev/null

  timer=
  if [ "$timeout_ms" -gt 0 ]; then
    secs=$((timeout_ms / 1000)).$(printf '%03d' $((timeout_ms % 1000)))
    (
      exec 5<&-
      trap 'kill "$sleeper" 2> /dev/null; exit 0' TERM
      sleep "$secs" &
      sleeper=$!
      wait "$sleeper"
      (set -C; printf 'timeout\n' > "$dir/kill") 2> /dev/null
      kill -KILL "-$child" 2> /dev/null
    ) &
    timer=$!
  fi

  wait "$child"
  code=$?

  if [ -n "$timer" ]; then
    kill -TERM "$timer" 2> /dev/null
    wait "$timer" 2> /dev/null
  fi

  # Killed by us = a kill reason was recorded AND the command died of SIGKILL (the shell reports 128+9).
  killed=0
  signal=-
  if [ "$code" -eq 137 ] && [ -e "$dir/kill" ]; then
    killed=1
    signal=SIGKILL
  fi

  # Real sizes are recorded; the kept bytes are cut to the limit.
  out_bytes=$(stat -c %s "$dir/stdout" 2> /dev/null || echo 0)
  err_bytes=$(stat -c %s "$dir/stderr" 2> /dev/null || echo 0)
  [ "$out_bytes" -gt "$max_bytes" ] && truncate -s "$max_bytes" "$dir/stdout"
  [ "$err_bytes" -gt "$max_bytes" ] && truncate -s "$max_bytes" "$dir/stderr"

  write_atomic "$dir/exit" "$code $signal $killed $out_bytes $err_bytes $(date +%s%3N)"
}

cmd_kill() {
  dir=$1 reason=$2
  [ -e "$dir/exit" ] && return 0
  (set -C; printf '%s\n' "$reason" > "$dir/kill") 2> /dev/null
  # No pgid yet: the supervisor sees the kill file right after publishing it.
  [ -s "$dir/pgid" ] && kill -KILL "-$(cat "$dir/pgid")" 2> /dev/null
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
  mkdir -p "$home" "$root"
  # Every directory from home down to root belongs to the user (root may be home itself).
  d=$root
  while :; do
    chown "$uid:$gid" "$d"
    [ "$d" = "$home" ] && break
    case $d in "$home"/*) d=${d%/*} ;; *) break ;; esac
  done
  chown "$uid:$gid" "$home"
  chmod 700 "$home"
}

# The persistent channel: one long-lived process reads requests from stdin, one per line,
# "<id> <base64 of a shell-quoted runner argv>", runs each like `runner.sh <argv>` would, and answers
# "<id> <exit status>" on stdout. A request costs a pipe write instead of a new exec; whoever talks to
# it falls back to a plain exec when the channel dies. Requests run one at a time, each in a subshell
# with its own stdio, so nothing a request starts holds the channel's pipes.
cmd_serve() {
  echo "ready"
  while IFS= read -r line; do
    rid=${line%% *}
    enc=${line#* }
    (
      script=$(printf '%s' "$enc" | base64 -d) && eval "set -- $script" && main "$@"
    ) < /dev/null > /dev/null 2>&1
    printf '%s %s\n' "$rid" "$?"
  done
}

main() {
  sub=${1:-}
  [ $# -gt 0 ] && shift
  case $sub in
    start) cmd_start "$@" ;;
    supervise) cmd_supervise "$@" ;;
    kill) cmd_kill "$@" ;;
    killall) cmd_killall "$@" ;;
    init) cmd_init "$@" ;;
    serve) cmd_serve ;;
    *)
      echo "usage: runner.sh start|kill|killall|init|serve ..." >&2
      return 2
      ;;
  esac
}

main "$@"
