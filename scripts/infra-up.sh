#!/usr/bin/env bash
# Bring up the local build infrastructure on a Debian machine:
#   1. Debian packages the bootstrap needs (debootstrap, curl, python3, ...)
#   2. a Docker engine: one that already answers (Docker CE on a CI runner, say)
#      is used as it is; docker.io is installed and started only when none does
#   3. a local registry on $BUILDTOOL_REGISTRY_ADDR (default 127.0.0.1:5000);
#      docker-registry is installed only when nothing answers there
#   4. skopeo, which pushes images with large layers (installed only if missing)
#   5. the python base image in that registry (scripts/bootstrap-base.sh)
#
# Idempotent: a second run finds everything up and changes nothing.
# stdout carries exactly one line, BUILDTOOL_BASE_IMAGE=<ref>, so callers can
#   eval "$(scripts/infra-up.sh)"
# Progress goes to stderr, prefixed "infra:". Stop with scripts/infra-down.sh.
#
# Environment:
#   BUILDTOOL_REGISTRY_ADDR  host:port of the registry   (127.0.0.1:5000)
#   BUILDTOOL_STATE_DIR      registry data, configs, logs (/var/lib/buildtool)
#   BUILDTOOL_RUN_DIR        pid files and locks          (/run/buildtool)
#   BUILDTOOL_BASE_REPO / BUILDTOOL_BASE_TAG  base image name (buildtool/python:3.11-bookworm)
set -euo pipefail

# Daemons and admin tools live in sbin, which a non-login PATH may lack.
export PATH="${PATH:-/usr/bin:/bin}:/usr/sbin:/sbin"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE_DIR=${BUILDTOOL_STATE_DIR:-/var/lib/buildtool}
RUN_DIR=${BUILDTOOL_RUN_DIR:-/run/buildtool}
LOG_DIR=$STATE_DIR/log
REGISTRY_ADDR=${BUILDTOOL_REGISTRY_ADDR:-127.0.0.1:5000}
BASE_REPO=${BUILDTOOL_BASE_REPO:-buildtool/python}
BASE_TAG=${BUILDTOOL_BASE_TAG:-3.11-bookworm}
BASE_IMAGE=$REGISTRY_ADDR/$BASE_REPO:$BASE_TAG

DOCKER_WAIT=60     # seconds to wait for an engine to answer
REGISTRY_WAIT=30   # seconds to wait for the registry to answer
PACKAGES=(debootstrap debian-archive-keyring ca-certificates curl python3 python3-venv)
ENGINE_PACKAGES=(docker.io iptables)  # only when no engine answers
REGISTRY_PACKAGES=(docker-registry)   # only when no registry answers

log() { printf 'infra: %s\n' "$*" >&2; }
die() { printf 'infra: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages, starts daemons); rerun with sudo"
[ -r /etc/debian_version ] || die "needs a Debian machine (apt-get); run it on Debian 12"

mkdir -p "$STATE_DIR" "$RUN_DIR" "$LOG_DIR"

# Two concurrent runs would race to start the same daemons.
exec 9>"$RUN_DIR/infra-up.lock"
flock -w 900 9 || die "another infra-up.sh holds $RUN_DIR/infra-up.lock; wait for it to finish"

# Print the last lines of a daemon log on failure, so the cause is visible.
show_log_tail() {
  [ -s "$1" ] || return 0
  log "last lines of $1:"
  tail -n 25 "$1" | sed 's/^/infra:   /' >&2
}

# pid from one of our pid files if that process is alive and is the expected
# program (guards against a stale file whose pid was reused).
live_pid() { # $1 pid file, $2 expected comm
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
  printf '%s\n' "$pid"
}

# ---------------------------------------------------------------- packages --
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q ' installed$'; }

install_packages() { # packages to install unless present
  local missing=() p policy_tmp=""
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  if [ ${#missing[@]} -eq 0 ]; then
    log "packages present: $*"
    return 0
  fi
  log "installing packages: ${missing[*]}"
  # Without a policy-rc.d the packages' postinst would start Debian's own
  # docker and registry services (the packaged registry config enables auth
  # on :5000), which would then squat on what this script manages.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy_tmp=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\n# temporary, from buildtool infra-up.sh\nexit 101\n' >"$policy_tmp"
    chmod 0755 "$policy_tmp"
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  local apt_opts=(-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  export DEBIAN_FRONTEND=noninteractive
  # Update only when there are no package lists yet, or when the install
  # fails on stale lists (404 on a superseded .deb, unknown package).
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    log "apt-get update (no package lists yet)"
    apt-get update -q >&2 || die "apt-get update failed; check /etc/apt/sources.list* and the network"
  fi
  if ! apt-get install "${apt_opts[@]}" "${missing[@]}" >&2; then
    log "install failed, refreshing package lists and retrying"
    apt-get update -q >&2 || die "apt-get update failed; check /etc/apt/sources.list* and the network"
    apt-get install "${apt_opts[@]}" "${missing[@]}" >&2 \
      || die "apt-get install ${missing[*]} failed; see the apt output above"
  fi
  if [ -n "$policy_tmp" ]; then rm -f "$policy_tmp"; trap - EXIT; fi
  for p in "${missing[@]}"; do pkg_installed "$p" || die "package $p still not installed; run apt-get install $p and look at its errors"; done
}

# ------------------------------------------------------------------ docker --
docker_answers() {
  if command -v docker >/dev/null; then
    timeout 10 docker info >/dev/null 2>&1
    return
  fi
  # No CLI yet: ask the engine's socket itself, so an engine without our packages is still found.
  local sock=${DOCKER_HOST:-unix:///var/run/docker.sock}
  [ "${sock#unix://}" != "$sock" ] && [ -S "${sock#unix://}" ] \
    && [ "$(curl -s --max-time 5 --unix-socket "${sock#unix://}" http://localhost/_ping 2>/dev/null)" = OK ]
}

start_docker() {
  local pidfile=$RUN_DIR/dockerd.pid logf=$LOG_DIR/dockerd.log pid extra=() i
  if docker_answers; then
    if pid=$(live_pid "$pidfile" dockerd); then
      log "docker engine running (started by infra-up, pid $pid)"
    else
      log "docker engine already running, using it unchanged"
    fi
    return 0
  fi
  # An engine elsewhere is the caller's business, not ours to start.
  case "${DOCKER_HOST:-unix:///var/run/docker.sock}" in
    unix:///var/run/docker.sock|unix:///run/docker.sock) ;;
    *) die "DOCKER_HOST=$DOCKER_HOST does not answer; start that engine or unset DOCKER_HOST" ;;
  esac
  command -v dockerd >/dev/null || die "dockerd not found; install docker.io (apt-get install docker.io)"

  if pid=$(live_pid "$pidfile" dockerd); then
    log "docker engine (pid $pid) is starting, waiting"
  elif pid=$(pidof dockerd 2>/dev/null); then
    # A second dockerd on the same data root would fight the first one.
    log "a dockerd not started by infra-up (pid $pid) does not answer yet, waiting for it"
    pid=""
  else
    # Docker trusts plain-http registries only on loopback by default.
    case "$REGISTRY_ADDR" in
      127.*|localhost:*|\[::1\]:*) ;;
      *) extra+=(--insecure-registry "$REGISTRY_ADDR") ;;
    esac
    log "starting docker engine (log: $logf)"
    printf '\n==== %s infra-up.sh starts dockerd\n' "$(date -Is)" >>"$logf"
    # setsid: own session, so the engine outlives this shell and its terminal.
    # 9>&-: the daemon must not inherit (and so hold forever) our lock.
    setsid dockerd "${extra[@]}" >>"$logf" 2>&1 </dev/null 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$pidfile"
  fi

  for ((i = 0; i < DOCKER_WAIT; i++)); do
    if docker_answers; then
      log "docker engine up after ${i}s ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
      return 0
    fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$pidfile"
      show_log_tail "$logf"
      die "dockerd exited during startup; see $logf (often: iptables or cgroup trouble)"
    fi
    sleep 1
  done
  show_log_tail "$logf"
  die "docker engine did not answer within ${DOCKER_WAIT}s; see $logf, or run scripts/infra-down.sh and retry"
}

# ---------------------------------------------------------------- registry --
registry_code() {
  curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 3 "http://$REGISTRY_ADDR/v2/" 2>/dev/null || true
}

write_registry_config() { # $1 path; rewritten only when the content changes
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp" <<EOF
# Written by scripts/infra-up.sh; edits are overwritten on the next run.
version: 0.1
log:
  level: info
  fields:
    service: buildtool-registry
storage:
  filesystem:
    rootdirectory: $STATE_DIR/registry
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $REGISTRY_ADDR
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
EOF
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

start_registry() {
  local pidfile=$RUN_DIR/registry.pid logf=$LOG_DIR/registry.log conf=$STATE_DIR/registry.yml
  local code pid i unset_env=()
  code=$(registry_code)
  if [ "$code" = 200 ]; then
    if pid=$(live_pid "$pidfile" docker-registry); then
      log "registry running on $REGISTRY_ADDR (started by infra-up, pid $pid)"
    else
      log "registry already answering on $REGISTRY_ADDR, using it unchanged"
    fi
    return 0
  fi
  [ "$code" = 000 ] \
    || die "http://$REGISTRY_ADDR/v2/ answers HTTP $code, not an open registry; stop what listens there or set BUILDTOOL_REGISTRY_ADDR"
  command -v docker-registry >/dev/null || die "docker-registry not found; install it (apt-get install docker-registry)"

  if pid=$(live_pid "$pidfile" docker-registry); then
    grep -qxF "  addr: $REGISTRY_ADDR" "$conf" 2>/dev/null \
      || die "the registry infra-up started (pid $pid) serves another address than $REGISTRY_ADDR; run scripts/infra-down.sh first"
    log "registry (pid $pid) is starting, waiting"
  else
    mkdir -p "$STATE_DIR/registry"
    write_registry_config "$conf"
    # REGISTRY_* variables override the config file; keep ours authoritative.
    while IFS= read -r v; do unset_env+=(-u "$v"); done < <(compgen -e | grep '^REGISTRY_' || true)
    log "starting registry on $REGISTRY_ADDR (config: $conf, log: $logf)"
    printf '\n==== %s infra-up.sh starts docker-registry\n' "$(date -Is)" >>"$logf"
    setsid env "${unset_env[@]}" docker-registry serve "$conf" >>"$logf" 2>&1 </dev/null 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$pidfile"
  fi

  for ((i = 0; i < REGISTRY_WAIT; i++)); do
    if [ "$(registry_code)" = 200 ]; then
      log "registry up on $REGISTRY_ADDR"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$pidfile"
      show_log_tail "$logf"
      die "docker-registry exited during startup; see $logf (port $REGISTRY_ADDR taken?)"
    fi
    sleep 1
  done
  show_log_tail "$logf"
  die "registry did not answer on http://$REGISTRY_ADDR/v2/ within ${REGISTRY_WAIT}s; see $logf"
}

# -------------------------------------------------------------- base image --
base_image_in_registry() {
  [ "$(curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 10 -I \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.list.v2+json' \
        -H 'Accept: application/vnd.oci.image.index.v1+json' \
        "http://$REGISTRY_ADDR/v2/$BASE_REPO/manifests/$BASE_TAG" 2>/dev/null)" = 200 ]
}

ensure_base_image() {
  if base_image_in_registry; then
    log "base image present in registry"
    return 0
  fi
  log "base image $BASE_IMAGE missing, building it"
  # Its stdout goes to stderr: ours is reserved for the BUILDTOOL_BASE_IMAGE line.
  BUILDTOOL_REGISTRY_ADDR=$REGISTRY_ADDR BUILDTOOL_STATE_DIR=$STATE_DIR BUILDTOOL_RUN_DIR=$RUN_DIR \
    BUILDTOOL_BASE_REPO=$BASE_REPO BUILDTOOL_BASE_TAG=$BASE_TAG \
    "$SCRIPT_DIR/bootstrap-base.sh" >&2 9>&-
  base_image_in_registry || die "base image still missing from the registry after bootstrap; run scripts/bootstrap-base.sh and read its errors"
}

install_packages "${PACKAGES[@]}"
if docker_answers; then
  log "a docker engine answers: using it, no engine package installed"
else
  install_packages "${ENGINE_PACKAGES[@]}"
fi
start_docker
if [ "$(registry_code)" = 200 ]; then
  log "a registry answers on $REGISTRY_ADDR: using it, no registry package installed"
else
  install_packages "${REGISTRY_PACKAGES[@]}"
fi
start_registry
if command -v skopeo >/dev/null; then
  log "skopeo present ($(skopeo --version 2>/dev/null || echo '?'))"
else
  install_packages skopeo
fi
ensure_base_image
log "base image $BASE_IMAGE"
printf 'BUILDTOOL_BASE_IMAGE=%s\n' "$BASE_IMAGE"
