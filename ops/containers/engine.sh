#!/usr/bin/env bash
# A Docker-API container engine for this machine, used by images.sh and the container tests.
#
#   ops/containers/engine.sh [up]   print DOCKER_HOST=<url> of an engine that answers, making one if needed
#   ops/containers/engine.sh status print DOCKER_HOST=<url> of an engine that answers; exit 3 if none does
#   ops/containers/engine.sh stop   stop the podman service this script started (and only that one)
#
# `up` uses, in order: $DOCKER_HOST, /var/run/docker.sock, a podman service this script started, the
# standard podman sockets. With none answering, and only as root on Debian, it installs podman from
# Debian's packages and starts `podman system service` on a socket under its state directory
# ($ZS_ENGINE_STATE, default ~/.local/state/zendesk-stream/podman), with its own containers.conf there
# (CONTAINERS_CONF, so no containers.conf of the machine or the user is read or changed).
# Use it as:  export "$(ops/containers/engine.sh)"
# Progress goes to stderr; stdout carries only the DOCKER_HOST line. Exit 2, with one line, when no
# engine can be had.
set -euo pipefail

state="${ZS_ENGINE_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/zendesk-stream/podman}"
sock="$state/podman.sock"
pidfile="$state/podman.pid"
conf="$state/containers.conf"
log="$state/service.log"
# dnsname: with podman 4.3's CNI networking, containers find each other by name (docker-compose.yml's
# kafka:9092) only through this plugin.
packages=(podman crun runc fuse-overlayfs slirp4netns uidmap debootstrap golang-github-containernetworking-plugin-dnsname
  docker-compose)  # Debian's compose client (1.29) for tests/containers/test_compose.py

say() { printf 'engine: %s\n' "$*" >&2; }
die() { printf 'engine: %s\n' "$*" >&2; exit 2; }

# Whether a Docker-API engine answers /_ping at this DOCKER_HOST-style URL.
answers() {
  local url="$1"
  case "$url" in
    unix://*)
      local path="${url#unix://}"
      [ -S "$path" ] || return 1
      [ "$(curl -sf --max-time 3 --unix-socket "$path" http://engine/_ping 2>/dev/null)" = OK ]
      ;;
    tcp://* | http://*)
      local hostport="${url#*://}"
      [ "$(curl -sf --max-time 3 "http://${hostport%/}/_ping" 2>/dev/null)" = OK ]
      ;;
    *) return 1 ;;
  esac
}

# The pid of the podman service this script started, when it still runs.
our_pid() {
  local pid
  pid="$(cat "$pidfile" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "system service --time=0 unix://$sock" || return 1
  echo "$pid"
}

existing_engine() {
  local candidates=()
  [ -n "${DOCKER_HOST:-}" ] && candidates+=("$DOCKER_HOST")
  candidates+=("unix:///var/run/docker.sock")
  our_pid >/dev/null && candidates+=("unix://$sock")
  candidates+=("unix:///run/podman/podman.sock")
  [ -n "${XDG_RUNTIME_DIR:-}" ] && candidates+=("unix://$XDG_RUNTIME_DIR/podman/podman.sock")
  local url
  for url in "${candidates[@]}"; do
    if answers "$url"; then
      echo "$url"
      return 0
    fi
    if [ "$url" = "${DOCKER_HOST:-}" ]; then say "DOCKER_HOST=$DOCKER_HOST does not answer; looking further"; fi
  done
  return 1
}

install_podman() {
  local missing=() pkg
  for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  say "installing ${missing[*]} from Debian"
  local began=$SECONDS
  local apt=(apt-get -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends)
  if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}" >"$state/apt.log" 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 update >>"$state/apt.log" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}" >>"$state/apt.log" 2>&1 \
      || die "apt-get install ${missing[*]} failed; see $state/apt.log"
  fi
  say "installed in $((SECONDS - began))s"
}

write_conf() {
  # Root in a container cannot raise its limits ("setrlimit RLIMIT_NOFILE: Operation not permitted"),
  # so containers get fixed ones within ours; crun fails on hybrid cgroups, runc does not; there is no
  # systemd or journald to lean on.
  cat >"$conf.new" <<'EOF'
# Written by ops/containers/engine.sh for the podman service it starts (CONTAINERS_CONF).
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  mv "$conf.new" "$conf"
}

start_service() {
  [ "$(id -u)" = 0 ] || die "no container engine answers, and only root can install one (run as root, or start Docker/podman)"
  if [ ! -f /etc/debian_version ] || ! command -v apt-get >/dev/null; then
    die "no container engine answers, and installing one is only automated on Debian"
  fi
  mkdir -p "$state"
  install_podman
  write_conf
  rm -f "$sock" "$pidfile"
  say "starting podman system service on $sock"
  # The service records its own pid: setsid forks when its caller leads a process group (a shell with
  # job control), and then `$!` would be the setsid that exited at once.
  CONTAINERS_CONF="$conf" setsid sh -c 'echo $$ >"$1"; shift; exec "$@"' sh "$pidfile" \
    podman system service --time=0 "unix://$sock" >"$log" 2>&1 </dev/null &
  local deadline=$((SECONDS + 30))
  until answers "unix://$sock"; do
    if [ -s "$pidfile" ] && ! our_pid >/dev/null; then
      die "podman service exited at start-up: $(tail -n 3 "$log" | tr '\n' ' ')"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "podman service did not answer within 30s; see $log"
    sleep 0.2
  done
}

up() {
  local url
  if url="$(existing_engine)"; then
    say "using the engine at $url"
  else
    start_service
    url="unix://$sock"
    say "podman service ready (pid $(cat "$pidfile")); stop it with: $0 stop"
  fi
  echo "DOCKER_HOST=$url"
}

clean_state() {
  rm -f "$sock" "$pidfile" "$conf" "$conf.new" "$log" "$state/apt.log"
  rmdir "$state" 2>/dev/null || true
}

stop() {
  local pid
  if ! pid="$(our_pid)"; then
    say "no podman service started by engine.sh runs"
    clean_state
    return 0
  fi
  local running
  running="$(curl -sf --max-time 3 --unix-socket "$sock" 'http://engine/containers/json' 2>/dev/null \
    | grep -o '"Id"' | wc -l || true)"
  if [ "${running:-0}" -gt 0 ]; then
    say "warning: $running container(s) still run; they outlive the service (docker ps to see them)"
  fi
  kill -TERM "$pid"
  local deadline=$((SECONDS + 20))
  while our_pid >/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  if our_pid >/dev/null; then
    say "podman service did not stop on SIGTERM within 20s; killing it"
    kill -KILL "$pid"
    while our_pid >/dev/null; do sleep 0.05; done
  fi
  clean_state
  say "podman service (pid $pid) stopped"
}

status() {
  local url
  url="$(existing_engine)" || { say "no container engine answers"; exit 3; }
  echo "DOCKER_HOST=$url"
}

case "${1:-up}" in
  up) up ;;
  status) status ;;
  stop) stop ;;
  *)
    sed -n '4,6p' "$0" >&2
    exit 2
    ;;
esac
