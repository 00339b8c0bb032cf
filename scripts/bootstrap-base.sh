#!/usr/bin/env bash
# Build the python 3.11 base image from Debian packages, without pulling any
# image: debootstrap a minimal bookworm, add python3.11 and a venv at
# /opt/venv, trim it, `docker import` it, check it, push it to the local
# registry. Normally called by scripts/infra-up.sh when the registry lacks the
# image; run it directly to rebuild (e.g. after the host's CA bundle changed).
#
# stdout: BUILDTOOL_BASE_IMAGE=<ref>. Progress on stderr, prefixed "infra:".
#
# Environment (same defaults as infra-up.sh):
#   BUILDTOOL_REGISTRY_ADDR   127.0.0.1:5000
#   BUILDTOOL_STATE_DIR       /var/lib/buildtool  (work dir, package cache, logs)
#   BUILDTOOL_RUN_DIR         /run/buildtool      (lock)
#   BUILDTOOL_BASE_REPO / BUILDTOOL_BASE_TAG  buildtool/python / 3.11-bookworm
#   BUILDTOOL_DEBIAN_MIRROR   Debian mirror; default: the one the host's apt uses
set -euo pipefail

export PATH="${PATH:-/usr/bin:/bin}:/usr/sbin:/sbin"

STATE_DIR=${BUILDTOOL_STATE_DIR:-/var/lib/buildtool}
RUN_DIR=${BUILDTOOL_RUN_DIR:-/run/buildtool}
LOG_DIR=$STATE_DIR/log
REGISTRY_ADDR=${BUILDTOOL_REGISTRY_ADDR:-127.0.0.1:5000}
BASE_REPO=${BUILDTOOL_BASE_REPO:-buildtool/python}
BASE_TAG=${BUILDTOOL_BASE_TAG:-3.11-bookworm}
IMAGE=$REGISTRY_ADDR/$BASE_REPO:$BASE_TAG
SUITE=bookworm
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
HOST_CA=/etc/ssl/certs/ca-certificates.crt
CA=/etc/ssl/certs/ca-certificates.crt   # path inside the image
VENV=/opt/venv
# python3-venv gives /usr/bin/python3 plus ensurepip and the pip/setuptools
# wheels, so `python3 -m venv` yields a venv with pip. (python3.11-venv alone
# does not do: its python3.11-distutils dependency is a virtual package,
# which debootstrap cannot resolve.)
PACKAGES=python3-venv

# Progress lines carry the seconds elapsed, to show where the time goes.
log() { printf 'infra: [%3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { printf 'infra: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap and chroot need it); rerun with sudo"
for tool in debootstrap docker curl chroot tar; do
  command -v "$tool" >/dev/null || die "$tool not found; run scripts/infra-up.sh first (it installs the tools)"
done
[ -r "$KEYRING" ] || die "$KEYRING missing; apt-get install debian-archive-keyring"
[ -s "$HOST_CA" ] || die "$HOST_CA missing; apt-get install ca-certificates"
timeout 10 docker info >/dev/null 2>&1 || die "docker engine does not answer; run scripts/infra-up.sh first"
[ "$(curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$REGISTRY_ADDR/v2/" || true)" = 200 ] \
  || die "no registry answers on http://$REGISTRY_ADDR/v2/; run scripts/infra-up.sh first"

mkdir -p "$STATE_DIR/tmp" "$STATE_DIR/debootstrap-cache" "$RUN_DIR" "$LOG_DIR"
exec 8>"$RUN_DIR/bootstrap-base.lock"
flock -w 1800 8 || die "another bootstrap-base.sh holds $RUN_DIR/bootstrap-base.lock; wait for it"

# --------------------------------------------------------------- mirrors --
# First http(s) URI that the host's apt uses for suite $1, from one-line
# (sources.list, *.list) and deb822 (*.sources) files.
host_uri_for_suite() {
  local suite=$1 f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk -v s="$suite" '
      $1 == "deb" {
        i = 2
        if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }   # skip [options]
        if ($(i + 1) == s && $i ~ /^https?:\/\//) { print $i; exit }
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk -v s="$suite" '
      BEGIN { RS = ""; FS = "\n" }
      {
        delete v; key = ""
        for (j = 1; j <= NF; j++) {
          line = $j
          if (line ~ /^#/) continue
          if (line ~ /^[ \t]/ && key != "") { v[key] = v[key] " " line; continue }
          if (match(line, /^[A-Za-z-]+:/)) {
            key = tolower(substr(line, 1, RLENGTH - 1)); v[key] = substr(line, RLENGTH + 1)
          }
        }
        if (tolower(v["enabled"]) ~ /no/) next
        if ((" " v["types"] " ") !~ /[ \t]deb[ \t]/) next
        if ((" " v["suites"] " ") !~ ("[ \t]" s "[ \t]")) next
        n = split(v["uris"], u, /[ \t]+/)
        for (k = 1; k <= n; k++) if (u[k] ~ /^https?:\/\//) { print u[k]; exit }
      }' "$f"
  done
}

first_uri() { host_uri_for_suite "$1" | head -n 1 | sed 's:/*$::'; }

# shellcheck disable=SC1091  # a system file, read only for VERSION_CODENAME
host_codename=$( . /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}" )
MIRROR=${BUILDTOOL_DEBIAN_MIRROR:-}
[ -n "$MIRROR" ] || MIRROR=$(first_uri "$SUITE")
# A host on another release still names a mirror that serves bookworm.
host_id=$( . /etc/os-release 2>/dev/null && echo "${ID:-}" )
[ -n "$MIRROR" ] || [ "$host_id" != debian ] || { [ -z "$host_codename" ] || MIRROR=$(first_uri "$host_codename"); }
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=$(first_uri "$SUITE-security")
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}

# ------------------------------------------------------------- work dir --
WORK=$(mktemp -d "$STATE_DIR/tmp/base.XXXXXX")
ROOT=$WORK/rootfs
BLOG=$LOG_DIR/bootstrap-base.log
: >"$BLOG"
cleanup() {
  # Unmount anything left below the work dir before deleting it, and never
  # let rm cross into another file system.
  { findmnt -rn -o TARGET | grep -F "$WORK/" || true; } | sort -r | while IFS= read -r m; do umount -l "$m" || true; done
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

fail_with_log() { # $1 message
  log "last lines of $BLOG:"
  tail -n 25 "$BLOG" | sed 's/^/infra:   /' >&2
  die "$1"
}

in_root() { # run a command in the image root with a clean environment
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive SSL_CERT_FILE=$CA "$@"
}

SECONDS=0

# ----------------------------------------------------------- debootstrap --
log "debootstrap $SUITE (minbase + $PACKAGES) from $MIRROR (log: $BLOG)"
debootstrap --variant=minbase --keyring="$KEYRING" --cache-dir="$STATE_DIR/debootstrap-cache" \
  --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" >>"$BLOG" 2>&1 \
  || { cat "$ROOT/debootstrap/debootstrap.log" >>"$BLOG" 2>/dev/null || true
       fail_with_log "debootstrap failed; check the mirror ($MIRROR) or set BUILDTOOL_DEBIAN_MIRROR"; }

# The host's CA bundle: pip inside containers trusts only this file (apt in
# the root needs it too, for an https mirror). The host's local CAs also go
# to /usr/local/share/ca-certificates, so that update-ca-certificates in a
# derived image (run by any ca-certificates upgrade) keeps trusting them.
install_host_ca() {
  mkdir -p "$ROOT/etc/ssl/certs" "$ROOT/usr/local/share/ca-certificates"
  install -m 0644 "$HOST_CA" "$ROOT$CA"
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    install -m 0644 /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
  fi
}
install_host_ca

# Settings that keep images built FROM this one small, as in Debian's
# official container images: no docs/man/locales, no recommends, no apt
# cache, no service starts during apt-get install.
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/buildtool-minimal" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
cat >"$ROOT/etc/apt/apt.conf.d/buildtool-minimal" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
EOF
printf '#!/bin/sh\n# no service starts inside containers\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"

# debootstrap only reads the release suite; pull in point and security
# updates (openssl, python) so the image is current.
cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
EOF
log "applying $SUITE-updates and $SUITE-security"
{ in_root apt-get update -q && in_root apt-get -y -q upgrade; } >>"$BLOG" 2>&1 \
  || fail_with_log "apt-get upgrade inside the image root failed; check $SECURITY and $MIRROR"

# A venv so `pip install` in derived images is not refused by Debian's
# externally-managed marker, and needs no --break-system-packages.
log "creating venv at $VENV"
in_root python3 -m venv "$VENV" >>"$BLOG" 2>&1 || fail_with_log "python3 -m venv failed"

# The upgrade may have regenerated the bundle; the host's one is what counts.
install_host_ca

# ------------------------------------------------------------------ trim --
log "trimming docs, locales, caches, bytecode"
rm -rf "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* \
  "$ROOT"/usr/share/lintian "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin \
  "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/cache/apt/archives/partial/* \
  "$ROOT"/var/cache/debconf/*-old "$ROOT"/var/lib/dpkg/*-old "$ROOT"/root/.cache "$ROOT"/tmp/* \
  "$ROOT"/debootstrap
# Locales: only C (C.UTF-8 lives in /usr/lib/locale and stays).
[ ! -d "$ROOT/usr/share/locale" ] || find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
find "$ROOT/var/log" -type f -delete
# glibc's iconv modules (Python has codecs of its own; UTF-8/16/32 are built into
# glibc) and the wheels that only `python3 -m venv` needs, now that the venv exists.
rm -rf "$ROOT"/usr/lib/*-linux-gnu/gconv/*.so "$ROOT"/usr/share/python-wheels
find "$ROOT" -xdev -depth -type d -name __pycache__ -exec rm -rf {} +
find "$ROOT" -xdev -type f -name '*.py[co]' -delete
# Host-specific identity; the engine supplies these at run time.
: >"$ROOT/etc/resolv.conf"
printf 'localhost\n' >"$ROOT/etc/hostname"
[ ! -e "$ROOT/etc/machine-id" ] || : >"$ROOT/etc/machine-id"
for cc in gcc cc c++ g++ clang; do
  [ ! -e "$ROOT/usr/bin/$cc" ] || die "compiler /usr/bin/$cc slipped into the image; check PACKAGES"
done

# ---------------------------------------------------------------- import --
old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
log "importing as $IMAGE"
# /dev, /proc, /sys contents come from the engine at run time.
new_id=$(tar --numeric-owner -C "$ROOT" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . \
  | docker import \
      --message "buildtool python base: debootstrap $SUITE minbase + $PACKAGES, venv $VENV" \
      --change "ENV PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      --change "ENV VIRTUAL_ENV=$VENV" \
      --change "ENV LANG=C.UTF-8" \
      --change "ENV PIP_NO_CACHE_DIR=1" \
      --change "ENV PIP_DISABLE_PIP_VERSION_CHECK=1" \
      --change "ENV PIP_CERT=$CA" \
      --change "ENV REQUESTS_CA_BUNDLE=$CA" \
      --change "ENV SSL_CERT_FILE=$CA" \
      --change 'CMD ["python3"]' \
      - "$IMAGE")
trap - EXIT
cleanup

# ----------------------------------------------------------------- check --
# Checked before the push, so the registry never holds a broken base; a
# failing image is dropped locally too, so no build picks it up by tag.
check_failed() { docker image rm -f "$new_id" >/dev/null 2>&1 || true; die "$1"; }
log "checking the image"
docker run --rm "$IMAGE" python3 -c 'import ssl, venv, sys; assert sys.version_info[:2] == (3, 11); print(1)' >/dev/null \
  || check_failed "python3 with ssl/venv does not work in $IMAGE; see the error above"
docker run --rm "$IMAGE" sh -c 'python --version && pip --version' 2>&1 | sed 's/^/infra:   /' >&2 \
  || check_failed "python or pip does not resolve in $IMAGE; see the error above"
log "checking pip reaches PyPI from a container"
docker run --rm "$IMAGE" sh -c 'pip download -q --no-deps -d /tmp/dl six && pip install -q --no-deps six && python -c "import six"' 2>&1 | sed 's/^/infra:   /' >&2 \
  || check_failed "pip in $IMAGE cannot download/install from PyPI; check the container network and $HOST_CA"

log "pushing $IMAGE"
docker push "$IMAGE" >>"$BLOG" 2>&1 || fail_with_log "docker push $IMAGE failed"

# A rebuild leaves the previous image untagged; drop it if nothing uses it.
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then docker image rm "$old_id" >/dev/null 2>&1 || true; fi

# ---------------------------------------------------------------- report --
manifest=$(curl --noproxy '*' -fsS --max-time 10 \
  -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
  -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://$REGISTRY_ADDR/v2/$BASE_REPO/manifests/$BASE_TAG") || die "cannot read the pushed manifest"
compressed=$(printf '%s' "$manifest" | tr -d '\n' | sed 's/.*"layers"//' | grep -o '"size": *[0-9]*' \
  | grep -o '[0-9]*$' | awk '{ s += $1 } END { print s + 0 }')
digest=$(docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$IMAGE" | grep -F "$REGISTRY_ADDR/$BASE_REPO@" | head -n 1)
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
log "image size $((size / 1000000)) MB uncompressed, $((compressed / 1000000)) MB compressed in the registry"
log "pushed $digest"
log "bootstrap done"
printf 'BUILDTOOL_BASE_IMAGE=%s\n' "$IMAGE"
