#!/usr/bin/env bash
# CI helper for the Docker backend (issue 3): install the engine, start a private dockerd inside a
# loopback-only network namespace (no pull can ever leave the machine), and build the test base image
# once (debootstrap from the apt mirror this machine is configured with; no registry needed).
#
# Idempotent: a daemon that already answers on the socket is reused; an image whose tag exists is kept.
# Tests find the daemon through WSP_DOCKER_SOCKET or, by default, the socket path below
# (test/support/docker-daemon.ts). Prints what it does and how long each part took.
#
#   WSP_CI_DOCKER_DIR   state dir (default /var/lib/wsp-ci-docker): socket, data root, exec root, log
#   WSP_BASE_IMAGE      tag of the base image (default wsp-base:bookworm)
set -euo pipefail

DIR=${WSP_CI_DOCKER_DIR:-/var/lib/wsp-ci-docker}
SOCK=$DIR/docker.sock
TAG=${WSP_BASE_IMAGE:-wsp-base:bookworm}
SUITE=bookworm
started=$(date +%s)

say() { echo "== docker.sh: $*"; }
dk() { docker -H "unix://$SOCK" "$@"; }

# --- 1. packages ---------------------------------------------------------------------------------
need=()
command -v dockerd > /dev/null || need+=(docker.io)
command -v docker > /dev/null || need+=(docker.io)
command -v debootstrap > /dev/null || need+=(debootstrap)
command -v unshare > /dev/null || need+=(util-linux)
command -v ip > /dev/null || need+=(iproute2)
# The loopback OCI registry of the cache-image tests (issue 5); never started as a service here.
command -v docker-registry > /dev/null || need+=(docker-registry)
if [ ${#need[@]} -gt 0 ]; then
  say "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" > /dev/null
fi

# --- 2. the daemon -------------------------------------------------------------------------------
mkdir -p "$DIR"
chmod 711 "$DIR"
if dk version > /dev/null 2>&1; then
  say "dockerd already answers on $SOCK"
else
  # A previous daemon that died leaves its pid file and the netns bind mount behind.
  if [ -f "$DIR/pid" ] && kill -0 "$(cat "$DIR/pid")" 2> /dev/null; then
    say "dockerd pid $(cat "$DIR/pid") exists but does not answer yet; waiting for it"
  else
    rm -f "$DIR/pid" "$SOCK"
    if mountpoint -q "$DIR/exec/netns/default" 2> /dev/null; then umount "$DIR/exec/netns/default" || true; fi
    say "starting dockerd (socket $SOCK, data $DIR/root) in a loopback-only network namespace"
    # setsid -f: the daemon outlives this script and the CI shell's process group.
    setsid -f unshare --net sh -c "ip link set lo up; exec dockerd --host unix://$SOCK --data-root $DIR/root \
      --exec-root $DIR/exec --pidfile $DIR/pid --bridge=none --iptables=false --ip6tables=false --ip-masq=false" \
      >> "$DIR/dockerd.log" 2>&1 < /dev/null
  fi
  for _ in $(seq 1 300); do
    dk version > /dev/null 2>&1 && break
    sleep 0.1
  done
  if ! dk version > /dev/null 2>&1; then
    say "dockerd did not answer within 30 s; last log lines:"
    tail -n 30 "$DIR/dockerd.log" >&2 || true
    exit 1
  fi
  say "dockerd ready ($(dk version --format '{{.Server.Version}} API {{.Server.APIVersion}}'))"
fi

# --- 3. the base image ---------------------------------------------------------------------------
# The first non-security Debian URI that serves $SUITE, from deb822 .sources or one-line .list files.
apt_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk -v suite="$SUITE" '
      BEGIN { RS = ""; FS = "\n" }
      {
        u = ""; s = 0; deb = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); split($i, a, /[ \t]+/); u = a[1] }
          if ($i ~ /^Suites:/) { n = split($i, b, /[ \t]+/); for (j = 2; j <= n; j++) if (b[j] == suite) s = 1 }
          if ($i ~ /^Types:/ && $i ~ /(^|[ \t])deb([ \t]|$)/) deb = 1
        }
        if (u != "" && s && deb && u !~ /security/) { print u; exit }
      }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk -v suite="$SUITE" '$1 == "deb" { u = ($2 ~ /^\[/) ? $3 : $2; s = ($2 ~ /^\[/) ? $4 : $3; if (s == suite && u !~ /security/) { print u; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  return 1
}

# curl is part of the base contract since the Fargate backend (bundles and layers move through
# presigned S3 URLs); an older image without it is rebuilt.
if dk image inspect "$TAG" > /dev/null 2>&1 && ! dk run --rm --network none "$TAG" sh -c 'command -v curl' > /dev/null 2>&1; then
  say "base image $TAG lacks curl; rebuilding it"
  dk image rm -f "$TAG" > /dev/null
fi
if dk image inspect "$TAG" > /dev/null 2>&1; then
  say "base image $TAG exists ($(dk image inspect "$TAG" --format '{{.Size}}') bytes); reusing it"
else
  mirror=$(apt_mirror) || { say "no apt mirror for $SUITE found in /etc/apt/sources.list*"; exit 1; }
  rootfs=$(mktemp -d /var/tmp/wsp-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  t0=$(date +%s)
  say "debootstrap --variant=minbase $SUITE from $mirror (into $rootfs)"
  debootstrap --variant=minbase --include=git,ca-certificates,curl,procps,findutils "$SUITE" "$rootfs" "$mirror" > "$DIR/debootstrap.log" 2>&1 \
    || { tail -n 30 "$DIR/debootstrap.log" >&2; exit 1; }
  say "debootstrap took $(($(date +%s) - t0)) s"
  # The default workspace user (config default: node, uid/gid 1000, home /home/node).
  chroot "$rootfs" groupadd -g 1000 node
  chroot "$rootfs" useradd -u 1000 -g 1000 -m -d /home/node -s /bin/bash node
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
  t1=$(date +%s)
  say "importing $rootfs as $TAG"
  tar -C "$rootfs" -c . | dk import -c 'CMD ["/bin/bash"]' - "$TAG" > /dev/null
  say "import took $(($(date +%s) - t1)) s; $TAG is $(dk image inspect "$TAG" --format '{{.Size}}') bytes"
  rm -rf "$rootfs"
  trap - EXIT
fi

say "done in $(($(date +%s) - started)) s; tests use WSP_DOCKER_SOCKET=$SOCK (the default)"
