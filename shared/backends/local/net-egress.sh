#!/bin/sh
# Network 'egress' for one sandboxed command of the local backend (sandbox.ts buildLaunch puts this
# script at the head of the launch chain; run-command.sh runs the chain).
#
# usage: net-egress.sh <slirp4netns> -- <chain...>
#
# The chain ends in `bwrap --unshare-net --info-fd 5 --block-fd 6 ...`: bwrap makes a fresh network
# namespace (only its own lo), reports the sandbox's pid on fd 5 and waits for a byte on fd 6 before
# it starts the command. Meanwhile this script attaches slirp4netns to that namespace — internet
# through the host's sockets, but with --disable-host-loopback: 10.0.2.2 (slirp's way to the host's
# 127.0.0.1) is refused, and 127.0.0.0/8 inside is the sandbox's own lo. So nothing listening on
# the host's loopback (the provider's API, git servers, …) is reachable; the state store is a unix
# socket in a root-only dir the sandbox cannot see at all.
#
# It runs as root (only a root provider gets egress, see sandbox-detect.ts), before the chain drops
# to the workspace's host uid: slirp4netns joins the network namespace by path (by pid it would
# also enter the workspace's user namespace, where root is unmapped and setns fails), so the
# workspace (another uid, no capabilities) can neither signal nor ptrace it; --enable-sandbox and
# --enable-seccomp confine slirp4netns itself.
#
# slirp4netns ends with this script (its exit fd closes), i.e. when the command ends. The exit status
# is the chain's; a chain killed by a signal is re-raised so the supervisor records the signal.
set -u
set -f

slirp=$1
shift
[ "${1:-}" = "--" ] && shift

fail() {
  echo "wsp: network egress: $*" >&2
  exit 125
}

# Fifos (no data) and slirp4netns's stderr; removed as soon as slirp4netns is ready.
work=$(mktemp -d /tmp/wsp-net-egress.XXXXXX) || fail "cannot make a private temp dir"
trap 'rm -rf "$work"' EXIT
mkfifo -m 600 "$work/info" "$work/block" "$work/ready" "$work/exit" || fail "cannot make fifos"

# fd 3 (bwrap --args data) and stdin belong to the chain only. A background list gets /dev/null as
# stdin unless redirected explicitly, hence the copy on fd 4.
exec 4<&0
"$@" <&4 4<&- 5> "$work/info" 6< "$work/block" &
chain=$!
exec 3<&- 4<&- 7< "$work/info" 8> "$work/block"

# bwrap writes {"child-pid": N, ...} and closes the fd.
pid=$(sed -n 's/^[[:space:]]*"child-pid":[[:space:]]*\([0-9][0-9]*\).*/\1/p' <&7)
exec 7<&-
if [ -z "$pid" ]; then
  exec 8>&-
  wait "$chain"
  exit $?
fi

# bwrap's child sets up the namespace's lo (netlink RTM_NEWADDR) after reporting its pid and before
# it waits on fd 6. slirp4netns --configure talks netlink in the same namespace; started at once,
# it raced that setup (seen under load: "bwrap: loopback: Failed RTM_NEWADDR"). So wait until lo
# carries 127.0.0.1 (the namespace's own fib, read from the host side) — bounded, then go on.
tries=0
while ! grep -q '127\.0\.0\.1' "/proc/$pid/net/fib_trie" 2> /dev/null && [ "$tries" -lt 1000 ]; do
  [ -e "/proc/$pid" ] || break
  tries=$((tries + 1))
  sleep 0.005
done

"$slirp" --configure --mtu=65520 --disable-host-loopback --enable-sandbox --enable-seccomp \
  --ready-fd=5 --exit-fd=6 --netns-type=path "/proc/$pid/ns/net" tap0 5> "$work/ready" 6< "$work/exit" \
  < /dev/null > /dev/null 2> "$work/slirp.err" &
slirp_pid=$!
# Same order as slirp4netns's shell opens them (ready, then exit), or both sides block for ever.
# (dash knows fds 0-9 only.)
exec 7< "$work/ready" 9> "$work/exit"
ready=$(head -c 1 <&7)
exec 7<&-
if [ "$ready" != 1 ]; then
  # No network for this command rather than a half-made one: the command does not start (the
  # sandbox is killed while it still waits on fd 6; closing fd 6 alone would let it go on).
  echo "wsp: network egress: slirp4netns did not start: $(head -c 500 "$work/slirp.err" 2>/dev/null)" >&2
  kill -KILL "$pid" "$chain" 2>/dev/null
  exec 8>&- 9>&-
  wait "$chain"
  exit 125
fi
# Every fifo is open on both ends now and slirp4netns has nothing more to say on stderr: the dir
# goes right away (a group killed later, e.g. by killAll, leaves nothing behind).
rm -rf "$work"
trap - EXIT
# Let the command start.
printf x >&8
exec 8>&-

wait "$chain"
code=$?
exec 9>&-
wait "$slirp_pid" 2>/dev/null
if [ "$code" -gt 128 ] && [ "$code" -lt 160 ]; then
  kill -s "$(kill -l "$code")" $$
fi
exit "$code"
