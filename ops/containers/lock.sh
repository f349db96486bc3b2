#!/usr/bin/env bash
# Regenerates the pinned, hashed requirements the service images install (ops/docker/*.lock), with
# pip-tools' pip-compile from the project's .venv (`.venv/bin/pip install pip-tools`), on Python 3.11.
#   service.lock    the package's dependencies (pyproject.toml [project.dependencies])
#   simulator.lock  the same plus the simulator extra (or ops/docker/simulator.in until the extra exists)
#   build.lock      setuptools and wheel, to build the package without network access to unpinned tools
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
compile="${PIP_COMPILE:-$repo/.venv/bin/pip-compile}"
[ -x "$compile" ] || { echo "lock: $compile not found (.venv/bin/pip install pip-tools)" >&2; exit 2; }
common=(--quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links --resolver=backtracking)
export CUSTOM_COMPILE_COMMAND="ops/containers/lock.sh"

"$compile" "${common[@]}" --output-file ops/docker/service.lock pyproject.toml
if python3 -c 'import sys, tomllib; sys.exit("simulator" not in tomllib.load(open("pyproject.toml", "rb"))["project"].get("optional-dependencies", {}))'; then
  "$compile" "${common[@]}" --extra simulator --output-file ops/docker/simulator.lock pyproject.toml
else
  "$compile" "${common[@]}" --output-file ops/docker/simulator.lock pyproject.toml ops/docker/simulator.in
fi
"$compile" "${common[@]}" --allow-unsafe --output-file ops/docker/build.lock ops/docker/build.in
