#!/bin/sh
# Detached command wrapper of the local backend (shared/backends/local/commands.ts starts it).
#
# usage: run-command.sh <command dir> <timeoutMs> <maxOutputBytes> -- <launch chain...>
#
# It outlives the provider (the provider spawns it detached, in its own session), so a command's
# result survives a provider restart. Everything it knows is in the command dir, which only the
# provider (root) can write:
#   stdin            fed to the command (removed once opened)
#   stdout, stderr   appended to by the command (and by background processes it leaves behind)
#   fd3              opened as fd 3 for the launch chain (bwrap --args data, or an env script);
#                    it carries env values, so it is removed as soon as it is open
#   pid              "<wrapper pid> <start time>"  (start time = field 22 of /proc/<pid>/stat)
#   pgid             process group of the launch chain (the command runs in a session of its own)
#   kill             reason, written by whoever kills the command (first writer wins)
#   exit             "<code> <signal|-> <killed 0|1> <stdout bytes> <stderr bytes> <ended epoch ms>",
#                    written atomically (exit.tmp, then mv) as the very last step
set -u
set -f

dir=$1
timeout_ms=$2
max_bytes=$3
shift 3
[ "${1:-}" = "--" ] && shift

# Field <n> (n >= 3) of /proc/<pid>/stat, counted after the ')' that closes the command name
# (which may itself contain spaces). Fails when the process is gone.
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

# Start time (field 22, clock ticks since boot) tells this wrapper from a later process with its pid.
write_atomic "$dir/pid" "$$ $(stat_field $$ 22)"

# The chain runs in a session (and process group) of its own, so a group kill reaches the command and
# everything it started without it setsid-ing away, and never this wrapper.
# stdin and fd3 (env values) are opened, then unlinked: they stay on disk no longer than needed.
exec 3< "$dir/fd3" 4< "$dir/stdin"
rm -f "$dir/fd3" "$dir/stdin"
setsid -w "$@" <&4 4<&- >> "$dir/stdout" 2>> "$dir/stderr" &
child=$!
exec 3<&- 4<&-
# setsid(1) makes the child a group leader only just after it starts. Publish the pgid once the group
# exists (or the child is gone), so no one sends a group kill to a group that does not exist yet.
# (A child that died before setsid stays a zombie in our group until we wait: stop on state Z.)
tries=0
while state=$(stat_field "$child" 3) && [ "$state" != Z ] && [ "$(stat_field "$child" 5)" != "$child" ] \
  && [ "$tries" -lt 5000 ]; do
  tries=$((tries + 1))
  sleep 0.002
done
write_atomic "$dir/pgid" "$child"
# A kill requested before the pgid was known: honour it now. (dash's kill takes no "--".)
[ -e "$dir/kill" ] && kill -KILL "-$child" 2> /dev/null

timer=
if [ "$timeout_ms" -gt 0 ]; then
  secs=$((timeout_ms / 1000)).$(printf '%03d' $((timeout_ms % 1000)))
  (
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

# Killed by us = a kill reason was recorded AND the chain died of SIGKILL (the shell reports 128+9).
# A kill request that came after the command had ended by itself does not make it "killed".
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
