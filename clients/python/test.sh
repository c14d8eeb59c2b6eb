#!/usr/bin/env bash
# `npm run test:python`: install the Python SDK (./clients/python) offline into a venv and run its
# pytest suite, which starts a real provider (local backend) itself. The venv sees the system's
# site-packages (Debian's python3-pytest; pip refuses to install outside a venv: PEP 668).
# PYTHON picks the interpreter (default python3), WSP_PYENV the venv (default /tmp/wsp-pyenv);
# arguments go to pytest (e.g. -k drift).
set -euo pipefail
cd "$(dirname "$0")/../.."

python=${PYTHON:-python3}
venv=${WSP_PYENV:-/tmp/wsp-pyenv}
[ -x "$venv/bin/python" ] || "$python" -m venv --system-site-packages "$venv"
# setuptools builds in the tree: a stale build/ would put deleted modules back into the wheel
rm -rf clients/python/build clients/python/src/*.egg-info
"$venv/bin/python" -m pip install -q --no-index --no-build-isolation --no-deps --force-reinstall ./clients/python
rm -rf clients/python/build clients/python/src/*.egg-info
exec "$venv/bin/python" -m pytest -q clients/python "$@"
