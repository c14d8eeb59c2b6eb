#!/bin/sh
# Detached command wrapper of the local backend (shared/backends/local/commands.ts starts it).
#
# usage: run-command.sh <command dir> <timeoutMs> <maxOutputBytes> -- <launch chain...>
#
# It outlives the provider (the provider spawns it detached, in its own session), so a command's
# result survives a provider restart. Everything it knows is in the command dir, which only the
# provider (root) can write:
#   stdin            fed to the command (removed once opened)
#   stdout, stderr   the kept output (at most maxOutputBytes; runner.sh's output cutters fill them)
#   cgroup           cgroup.procs files of the workspace's cgroup, one a line (absent: no cgroup). The
#                    launch chain enters them before anything else runs, while still root: nothing the
#                    command starts is ever outside. The wrapper itself stays out, so a kill of the
#                    whole cgroup leaves it alive to write the exit record.
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

# stat_field, write_atomic and supervise_group (pgid, timeout, exit record) are the shared runner's:
# one implementation of the exec contract's supervision for every backend.
WSP_RUNNER_LIBRARY=1 . "${0%/*}/../runner/runner.sh"

# Start time (field 22, clock ticks since boot) tells this wrapper from a later process with its pid.
write_atomic "$dir/pid" "$$ $(stat_field $$ 22)"

# Enter every listed cgroup.procs (its own pid: $$ of this inner sh), then exec the chain. A failed
# write means the command would run unconfined: it does not run.
JOIN='while IFS= read -r f; do
  echo $$ > "$f" || { echo "wsp: cannot enter the workspace cgroup" >&2; exit 125; }
done < "$0"
exec "$@"'
if [ -e "$dir/cgroup" ]; then
  set -- sh -c "$JOIN" "$dir/cgroup" "$@"
fi

# The chain runs in a session (and process group) of its own, so a group kill reaches the command and
# everything it started without it setsid-ing away, and never this wrapper.
# stdin and fd3 (env values) are opened, then unlinked: they stay on disk no longer than needed.
start_output_cutters "$dir" "$max_bytes"
exec 3< "$dir/fd3" 4< "$dir/stdin"
rm -f "$dir/fd3" "$dir/stdin"
setsid -w "$@" <&4 4<&- > "$dir/stdout.fifo" 2> "$dir/stderr.fifo" &
child=$!
exec 3<&- 4<&-
supervise_group "$dir" "$child" "$timeout_ms" "$max_bytes"
