#!/usr/bin/env bash
# One entry point for a fresh machine (Python 3.11+, Java 17, Maven):
#   ops/dev.sh setup   create .venv, install the package with its dev extras, fetch the Kafka jars
#                      (and, as root on Debian, promtool: tests/integration/test_promtool.py)
#   ops/dev.sh demo    setup, then local Kafka + Zendesk simulator + sample events + the consumer
#   ops/dev.sh test    setup, lint (ruff, mypy), then both legs of the test suite:
#                        the native leg: the default suite on a broker of the native launcher;
#                        the container leg: tests/containers and the end-to-end, rebalance and kill
#                        tests on a Kafka container (podman set up from Debian where no engine runs)
#   ops/dev.sh test-native [pytest args]     the native leg only (e.g. `ops/dev.sh test-native -m slow`)
#   ops/dev.sh test-containers [pytest args] the container leg only
#   ops/dev.sh lint    setup, then ruff and mypy only
# The container leg runs where an engine answers or can be set up (root on Debian); elsewhere it is
# skipped with the reason, except under CI=true, where it is required.
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

# The tests that run again on a Kafka container, to prove that path behaves like the native one.
CONTAINER_LEG=(tests/containers tests/integration/test_run_end_to_end.py
  tests/integration/test_engine_rebalance.py tests/integration/test_engine_kill.py)

native_leg() {
  say "pytest, native leg (Kafka from ops/kafka/kafkalocal.py)"
  local started=$SECONDS status=0
  # --durations: the slowest tests named in every run, to keep the default suite in its budget.
  ZS_TEST_KAFKA=native "$venv/bin/pytest" -m "not slow and not containers" --durations=25 "$@" || status=$?
  say "native leg: $((SECONDS - started)) s"
  return "$status"
}

container_leg() {
  local why=""
  if ! ops/containers/engine.sh status >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
      why="no container engine answers, and only root can set up podman"
    elif [ ! -f /etc/debian_version ] || ! command -v apt-get >/dev/null; then
      why="no container engine answers, and setting one up is only automated on Debian"
    fi
  fi
  if [ -n "$why" ]; then
    if [ "${CI:-}" = true ]; then
      echo "ops/dev.sh: the container leg is required under CI=true: $why" >&2
      return 1
    fi
    say "container leg skipped: $why"
    return 0
  fi
  say "pytest, container leg (Kafka in a container; engine and images from ops/containers)"
  local started=$SECONDS status=0
  if [ "$#" -gt 0 ]; then
    ZS_TEST_KAFKA=container "$venv/bin/pytest" -m "not slow" "$@" || status=$?
  else
    ZS_TEST_KAFKA=container "$venv/bin/pytest" -m "not slow" "${CONTAINER_LEG[@]}" || status=$?
  fi
  say "container leg: $((SECONDS - started)) s"
  return "$status"
}

command="${1:-}"
shift || true
case "$command" in
  setup) setup ;;
  lint) setup; lint ;;
  test)
    setup
    lint
    native=0
    native_leg || native=$?
    containers=0
    container_leg || containers=$?
    say "native leg: exit $native; container leg: exit $containers"
    [ "$native" = 0 ] && [ "$containers" = 0 ]
    ;;
  test-native)
    setup
    native_leg "$@"
    ;;
  test-containers)
    setup
    container_leg "$@"
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
