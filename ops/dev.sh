#!/usr/bin/env bash
# One entry point for a fresh machine (Python 3.11+, Java 17, Maven):
#   ops/dev.sh setup   create .venv, install the package with its dev extras, fetch the Kafka jars
#                      (and, as root on Debian, promtool: tests/integration/test_promtool.py)
#   ops/dev.sh demo    setup, then local Kafka + Zendesk simulator + sample events + the consumer
#   ops/dev.sh test    setup, then lint (ruff, mypy) and the default test suite on real Kafka
#   ops/dev.sh lint    setup, then ruff and mypy only
# Extra arguments after `test` go to pytest (e.g. `ops/dev.sh test -m slow`).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
venv="$repo/.venv"
python="${PYTHON:-python3}"

say() { printf '\n== %s\n' "$*" >&2; }

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "ops/dev.sh: $1 is required ($2)" >&2; exit 2; }
}

setup() {
  need "$python" "Python 3.11 or newer"
  need java "Java 17 runs the local Kafka broker"
  need mvn "Maven fetches the Kafka jars once"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "ops/dev.sh: Python 3.11 or newer is required" >&2; exit 2; }
  stamp="$venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    say "installing Python dependencies into .venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet -e '.[dev]'
    rm -f "$venv"/.installed-* && touch "$stamp"
  fi
  say "Kafka jars"
  "$venv/bin/python" ops/kafka/kafkalocal.py fetch >&2
  promtool_setup
}

# promtool checks ops/prometheus/ (tests/integration/test_promtool.py). Debian's `prometheus` package has
# it; installed only as root on Debian and only when missing. Elsewhere, install Prometheus 2.x yourself.
promtool_setup() {
  command -v promtool >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ] || [ ! -f /etc/debian_version ]; then
    echo "ops/dev.sh: promtool is missing (not root on Debian: install Prometheus 2.x for its tests)" >&2
    return 0
  fi
  say "promtool (Debian package prometheus)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
}

lint() {
  say "ruff"
  "$venv/bin/ruff" check stream tests ops
  "$venv/bin/ruff" format --check stream tests ops
  say "mypy (strict on stream/)"
  "$venv/bin/mypy"
}

command="${1:-}"
shift || true
case "$command" in
  setup) setup ;;
  lint) setup; lint ;;
  test)
    setup
    lint
    say "pytest"
    exec "$venv/bin/pytest" -m "not slow and not containers" "$@"
    ;;
  demo)
    setup
    exec "$venv/bin/zendesk-stream" demo "$@"
    ;;
  *)
    sed -n '2,7p' "$0" >&2
    exit 2
    ;;
esac
