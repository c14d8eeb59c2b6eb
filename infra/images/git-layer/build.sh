#!/bin/sh
# Builds the worker function's git Lambda layer into $1: git, its helpers (git-remote-https, …) and
# the shared libraries they need beyond glibc, laid out for /opt (Lambda extracts layers there; /opt/bin
# is on its PATH, /opt/lib on its LD_LIBRARY_PATH; the function sets GIT_EXEC_PATH=/opt/libexec/git-core).
#
# `cdk deploy` runs it in Amazon Linux 2023 for arm64 (the nodejs22.x runtime's OS and the functions'
# architecture: infra/constructs/git-layer.ts); CI runs it in its Debian test image to check the result
# stands on its own. git is installed only when the image lacks it.
set -eu
out=${1:?usage: build.sh OUTPUT_DIR}

if ! command -v git > /dev/null 2>&1 || ! command -v cmp > /dev/null 2>&1; then
  if command -v dnf > /dev/null 2>&1; then
    dnf install -y -q git-core diffutils findutils # git-core: git without the Perl tools
  else
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends git diffutils
  fi
fi

exec_path=$(git --exec-path)
mkdir -p "$out/bin" "$out/lib" "$out/libexec"
cp "$(command -v git)" "$out/bin/git"
cp -a "$exec_path" "$out/libexec/git-core"
# Builtins are copies (or hard links) of the git binary: links keep the layer small.
for f in "$out"/libexec/git-core/*; do
  if [ -f "$f" ] && [ ! -L "$f" ] && cmp -s "$f" "$out/bin/git"; then ln -sf /opt/bin/git "$f"; fi
done
# Shared libraries of git and its https helper (libcurl, libpcre2, …), glibc's own excepted.
ldd "$out/bin/git" "$exec_path/git-remote-http" | awk '/=> \//{print $3}' | sort -u |
  grep -Ev '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*)\.so' |
  while read -r lib; do cp -L "$lib" "$out/lib/"; done
echo "git layer: $(du -sh "$out" | cut -f1) in $out"
