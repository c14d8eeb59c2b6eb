#!/usr/bin/env bash
# Runs `shellcheck -S warning` on every shell script git tracks: *.sh, *.bash, and any other tracked file whose
# first line is a sh/bash/dash shebang (.ci/run, ...). Listed with git ls-files, so a new script is checked
# without being named here. Part of `npm run lint`; fails on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts=()
shebang='^#!.*[/[:space:]](ba|da)?sh([[:space:]]|$)'
while IFS= read -r -d '' f; do
  case $f in
    *.sh | *.bash) scripts+=("$f") ;;
    *)
      [ -f "$f" ] || continue
      first=''
      IFS= read -r first < "$f" 2> /dev/null || true
      if [[ $first =~ $shebang ]]; then scripts+=("$f"); fi
      ;;
  esac
done < <(git ls-files -z)

if [ ${#scripts[@]} -eq 0 ]; then
  echo "lint.sh: no shell scripts found (is this a git checkout?)" >&2
  exit 1
fi
echo "== shellcheck -S warning: ${scripts[*]}"
shellcheck -S warning -- "${scripts[@]}"
