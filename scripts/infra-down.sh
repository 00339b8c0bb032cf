#!/usr/bin/env bash
# Stop what scripts/infra-up.sh started: the registry and, if infra-up started
# it, the Docker engine. Only processes named in infra-up's pid files are
# touched; an engine or registry started any other way is left running.
# Data (registry storage, images) is kept; the next infra-up.sh reuses it.
#
# Environment: BUILDTOOL_RUN_DIR (pid files, default /run/buildtool).
set -euo pipefail

RUN_DIR=${BUILDTOOL_RUN_DIR:-/run/buildtool}
STOP_WAIT=60   # seconds; dockerd stops its containers first

log() { printf 'infra: %s\n' "$*" >&2; }
die() { printf 'infra: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (the daemons run as root); rerun with sudo"

# Wait for a running infra-up.sh, so we do not stop daemons it is starting.
if [ -d "$RUN_DIR" ]; then
  exec 9>"$RUN_DIR/infra-up.lock"
  flock -w 900 9 || die "infra-up.sh still holds $RUN_DIR/infra-up.lock; wait for it to finish"
fi

stop_one() { # $1 pid file name, $2 expected process name
  local pidfile=$RUN_DIR/$1 name=$2 pid i
  if [ ! -s "$pidfile" ]; then
    log "$name: not started by infra-up, leaving it alone"
    return 0
  fi
  pid=$(cat "$pidfile")
  # A stale file may name a pid that now belongs to something else.
  if ! [[ $pid =~ ^[0-9]+$ ]] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$name" ]; then
    log "$name: pid file is stale (pid $pid not running $name), removing it"
    rm -f "$pidfile"
    return 0
  fi
  log "$name: stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_WAIT; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$pidfile"
      log "$name: stopped"
      return 0
    fi
    sleep 1
  done
  die "$name (pid $pid) still running after ${STOP_WAIT}s; check it, then kill -KILL $pid"
}

# Registry first: it does not depend on the engine, but pushes in flight do.
stop_one registry.pid docker-registry
stop_one dockerd.pid dockerd
