#!/usr/bin/env bash
# The container images of the project, built (or pulled) once and cached.
#
#   ops/containers/images.sh [all|kafka|service]
#
# Prints on stdout the images to use, as lines a shell or a test can read:
#   ZS_KAFKA_IMAGE=...  ZS_SERVICE_IMAGE=...  ZS_SIMULATOR_IMAGE=...
# and on stderr what each step did and how long it took.
#
# Where a registry answers (the official apache/kafka image can be pulled), the official images are
# used: apache/kafka for Kafka and python:3.11-slim under the service. Where none does, everything is
# built here from Debian's packages and Maven Central:
#   local/debian:bookworm   debootstrap --variant=minbase from the machine's own apt mirror
#   local/jre:17            + openjdk-17-jre-headless                        (ops/containers/jre)
#   local/kafka:<version>   + the jars ops/kafka/kafkalocal.py resolves, kafka-tools (ops/containers/kafka)
#   local/python:3.11       + Debian's python3.11 with venv                  (ops/containers/python)
# The service images come from ops/docker/Dockerfile either way: zendesk-stream:local (target service)
# and zendesk-stream-simulator:local (target simulator).
#
# Every image built here carries a label with a hash of its inputs (files, base image id); a run skips
# an image whose label matches. Settings:
#   ZS_IMAGES_SOURCE=auto|local|official   auto (default) tries a pull of the official Kafka image
#   ZS_IMAGES_REBUILD=1                    build even what the cache holds
#   ZS_OFFICIAL_KAFKA_IMAGE                default apache/kafka:4.1.0
#   ZS_BUILD_CA_FILE                       extra CA certificates (PEM) that pip needs during the service
#                                          build behind a TLS-intercepting proxy; default: the machine's
#                                          /usr/local/share/ca-certificates/*.crt. They stay in the
#                                          build stage, not in the images.
# DOCKER_HOST: as set, else what ops/containers/engine.sh prints (which may start an engine).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$repo/ops/containers"
cd "$repo"
work="${XDG_STATE_HOME:-$HOME/.local/state}/zendesk-stream/images"
label=org.zendesk-stream.inputs
source_mode="${ZS_IMAGES_SOURCE:-auto}"
official_kafka="${ZS_OFFICIAL_KAFKA_IMAGE:-apache/kafka:4.1.0}"
official_python=python:3.11-slim
service_image=zendesk-stream:local
simulator_image=zendesk-stream-simulator:local
export DOCKER_BUILDKIT=0 # podman's Docker API has no BuildKit; the classic build API works everywhere

say() { printf 'images: %s\n' "$*" >&2; }
die() { printf 'images: %s\n' "$*" >&2; exit 2; }
now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

if [ -z "${DOCKER_HOST:-}" ]; then
  line="$("$here/engine.sh")" || exit 2
  export "${line?}"
fi
command -v docker >/dev/null || die "the docker CLI is needed (it talks to DOCKER_HOST=$DOCKER_HOST)"

sha_of_files() { # the hash of files' names and contents, in a stable order
  local f
  for f in "$@"; do
    case "$f" in "$repo"/*) printf '%s\n' "${f#"$repo"/}" ;; /*) printf '%s\n' "${f##*/}" ;; *) printf '%s\n' "$f" ;; esac
    sha256sum <"$f"
  done | sha256sum | cut -c1-32
}
sha_of_text() { printf '%s' "$*" | sha256sum | cut -c1-32; }
image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null; }
image_label() { docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$1" 2>/dev/null; }

# cached IMAGE HASH: whether IMAGE exists and was built from inputs with this hash.
cached() {
  [ "${ZS_IMAGES_REBUILD:-}" = 1 ] && return 1
  [ "$(image_label "$1")" = "$2" ]
}

# build IMAGE HASH CONTEXT DOCKERFILE [docker build args...]
build() {
  local image="$1" hash="$2" context="$3" dockerfile="$4" started
  shift 4
  started="$(now)"
  made+=("$image")
  if cached "$image" "$hash"; then
    say "$image: cached ($(since "$started"))"
    return 0
  fi
  say "$image: building"
  local out previous
  previous="$(image_id "$image" || true)"
  out="$(mktemp)"
  if ! docker build --quiet --label "$label=$hash" -t "$image" -f "$dockerfile" "$@" "$context" >"$out" 2>&1; then
    tail -n 25 "$out" >&2
    rm -f "$out"
    die "$image: build failed"
  fi
  rm -f "$out"
  # The image this one replaces, now untagged: removed, unless a container or another image uses it.
  if [ -n "$previous" ] && [ "$previous" != "$(image_id "$image")" ]; then
    docker rmi "$previous" >/dev/null 2>&1 || true
  fi
  say "$image: built in $(since "$started")"
}

# ------------------------------------------------------------------------------------------ source

registry_answers() {
  local started
  started="$(now)"
  if [ -n "$(image_id "$official_kafka")" ]; then return 0; fi
  if timeout 600 docker pull -q "$official_kafka" >/dev/null 2>&1; then
    say "$official_kafka: pulled ($(since "$started"))"
    return 0
  fi
  say "no registry answers (pull of $official_kafka failed in $(since "$started")): building locally"
  return 1
}

case "$source_mode" in
  auto) if registry_answers; then source_mode=official; else source_mode=local; fi ;;
  local | official) ;;
  *) die "ZS_IMAGES_SOURCE must be auto, local or official" ;;
esac

ensure_pulled() { # IMAGE: present, else pulled
  local started
  started="$(now)"
  if [ -n "$(image_id "$1")" ]; then
    say "$1: present ($(since "$started"))"
  elif timeout 600 docker pull -q "$1" >/dev/null 2>&1; then
    say "$1: pulled ($(since "$started"))"
  else
    die "$1: pull failed (ZS_IMAGES_SOURCE=local builds everything here)"
  fi
}

# -------------------------------------------------------------------------------------- local bases

# The machine's Debian mirror (sources.list or deb822 .sources) for SUITE; deb.debian.org otherwise.
apt_mirror() {
  local suite="$1" uri
  uri="$(
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk -v s="$suite" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/) { if ($(i + 1) == s) print $i; break } }'
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      awk -v s="$suite" '
        /^[[:space:]]*$/ { if (uris != "" && suites ~ ("(^| )" s "( |$)")) print uris; uris = ""; suites = ""; next }
        tolower($1) == "uris:" { uris = $2 }
        tolower($1) == "suites:" { $1 = ""; suites = $0 " " }
        END { if (uris != "" && suites ~ ("(^| )" s "( |$)")) print uris }' "$f"
    done
  )"
  uri="$(head -n 1 <<<"$uri")"
  if [ -n "$uri" ]; then echo "${uri%/}"; elif [ "$suite" = bookworm-security ]; then
    echo http://deb.debian.org/debian-security
  else echo http://deb.debian.org/debian; fi
}

ensure_debian() {
  local image=local/debian:bookworm started mirror security hash
  started="$(now)"
  mirror="$(apt_mirror bookworm)"
  security="$(apt_mirror bookworm-security)"
  hash="$(sha_of_text "debootstrap minbase bookworm v1 $mirror $security")"
  made+=("$image")
  if cached "$image" "$hash"; then
    say "$image: cached ($(since "$started"))"
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "$image: debootstrap needs root"
  command -v debootstrap >/dev/null || die "$image: debootstrap is needed (apt-get install debootstrap)"
  say "$image: debootstrap from $mirror"
  local rootfs="$work/rootfs"
  rm -rf "$rootfs"
  mkdir -p "$rootfs"
  if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 5 "$work/debootstrap.log" >&2
    rm -rf "$rootfs"
    die "$image: debootstrap failed; see $work/debootstrap.log"
  fi
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
EOF
  # Slim like Docker's Debian images: no recommends, no docs, man pages or translations.
  cat >"$rootfs/etc/apt/apt.conf.d/90slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
  local previous
  previous="$(image_id "$image" || true)"
  tar --numeric-owner -C "$rootfs" -c . \
    | docker import --change "LABEL $label=$hash" --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
      - "$image" >/dev/null
  rm -rf "$rootfs"
  if [ -n "$previous" ]; then docker rmi "$previous" >/dev/null 2>&1 || true; fi
  say "$image: built in $(since "$started")"
}

ensure_local_base() { # IMAGE DIR: an image from ops/containers/DIR/Dockerfile on the Debian base
  local image="$1" dir="$here/$2" base_id
  base_id="$(image_id local/debian:bookworm)"
  build "$image" "$(sha_of_files "$dir/Dockerfile")-${base_id:7:12}" "$dir" "$dir/Dockerfile" \
    --build-arg BASE_IMAGE=local/debian:bookworm
}

# ------------------------------------------------------------------------------------------- kafka

kafka_version() { sed -n 's/^KAFKA_VERSION = "\(.*\)"$/\1/p' "$repo/ops/kafka/kafkalocal.py"; }

ensure_kafka() {
  if [ "$source_mode" = official ]; then
    kafka_image="$official_kafka"
    ensure_pulled "$kafka_image"
    return 0
  fi
  ensure_debian
  ensure_local_base local/jre:17 jre
  local started libs tools version ctx
  version="$(kafka_version)"
  kafka_image="local/kafka:$version"
  started="$(now)"
  libs="$(python3 "$repo/ops/kafka/kafkalocal.py" fetch)" || die "resolving the Kafka jars failed"
  tools="${XDG_CACHE_HOME:-$HOME/.cache}/zendesk-stream/kafka-image/$version/tools"
  if [ ! -f "$tools/resolved" ]; then
    rm -rf "$tools"
    mkdir -p "$work"
    mvn -q -B -f "$here/kafka/tools-pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
      "-Dkafka.version=$version" "-DoutputDirectory=$tools" >"$work/mvn.log" 2>&1 \
      || die "resolving kafka-tools with Maven failed; see $work/mvn.log"
    touch "$tools/resolved"
  fi
  say "kafka $version jars: $libs + kafka-tools ($(since "$started"))"
  local files=("$here"/kafka/{Dockerfile,kafka-entrypoint.sh,kafka-run-class.sh,log4j2.properties,tools-log4j2.properties})
  local hash jre_id
  jre_id="$(image_id local/jre:17)"
  hash="$(sha_of_files "${files[@]}" "$libs"/*.jar "$tools"/*.jar)-${jre_id:7:12}"
  ctx="$work/kafka-context"
  if ! cached "$kafka_image" "$hash"; then
    rm -rf "$ctx"
    mkdir -p "$ctx/libs"
    cp "$libs"/*.jar "$tools"/*.jar "$ctx/libs/"
    cp "${files[@]}" "$ctx/"
  fi
  build "$kafka_image" "$hash" "$ctx" "$ctx/Dockerfile" --build-arg BASE_IMAGE=local/jre:17
  rm -rf "$ctx"
}

# ----------------------------------------------------------------------------------------- service

extra_ca() {
  local files=()
  if [ -n "${ZS_BUILD_CA_FILE:-}" ]; then
    files=("$ZS_BUILD_CA_FILE")
  else
    shopt -s nullglob
    files=(/usr/local/share/ca-certificates/*.crt)
    shopt -u nullglob
  fi
  [ "${#files[@]}" -gt 0 ] && cat "${files[@]}"
  return 0
}

ensure_service() {
  local base
  if [ "$source_mode" = official ]; then
    base="$official_python"
    ensure_pulled "$base"
  else
    ensure_debian
    ensure_local_base local/python:3.11 python
    base=local/python:3.11
  fi
  # The build context is the repository root, filtered by .dockerignore to these inputs.
  local inputs base_id hash ca
  mapfile -d '' inputs < <(
    find .dockerignore pyproject.toml README.md ops/docker stream topics -type f \
      ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z
  )
  base_id="$(image_id "$base" || true)"
  hash="$(sha_of_files "${inputs[@]}")-$(sha_of_text "$base ${base_id:-unpulled}")"
  ca="$(extra_ca)"
  local target image
  for target in service simulator; do
    image="$service_image"
    [ "$target" = simulator ] && image="$simulator_image"
    build "$image" "$hash" . ops/docker/Dockerfile --target "$target" \
      --build-arg "BASE_IMAGE=$base" --build-arg "PIP_EXTRA_CA=$ca"
  done
}

# -------------------------------------------------------------------------------------------- main

mkdir -p "$work"
began="$(now)"
made=()
kafka_image=""
what="${1:-all}"
case "$what" in
  all) ensure_kafka; ensure_service ;;
  kafka) ensure_kafka ;;
  service) ensure_service ;;
  *) sed -n '4p' "$0" >&2; exit 2 ;;
esac
# Untagged images of earlier builds of ours (stages, replaced images): their inputs' hash is not one of
# the images just made. Nothing without our label is touched, nor any tagged image.
current=" $(for i in "${made[@]}"; do image_label "$i"; done | tr '\n' ' ') "
for id in $(docker images -q --filter dangling=true --filter "label=$label" 2>/dev/null | sort -u); do
  [[ "$current" == *" $(image_label "$id") "* ]] || docker rmi "$id" >/dev/null 2>&1 || true
done
rm -f "$work/debootstrap.log" "$work/mvn.log"
rmdir "$work" 2>/dev/null || true
say "done in $(since "$began") (images from: $source_mode)"
[ -n "$kafka_image" ] && echo "ZS_KAFKA_IMAGE=$kafka_image"
if [ "$what" != kafka ]; then
  echo "ZS_SERVICE_IMAGE=$service_image"
  echo "ZS_SIMULATOR_IMAGE=$simulator_image"
fi
