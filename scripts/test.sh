#!/usr/bin/env bash
# Run the whole test suite from a fresh machine, fast checks first, stopping at the first failing stage:
#   1. the venv (scripts/venv.sh)
#   2. lint and types (scripts/lint.sh)
#   3. unit tests (-m "not integration", in 3 parallel workers): no engine, under a minute
#   4. the local engine, registry and base image (scripts/infra-up.sh, as root)
#   5. integration tests (-m "integration and not slow"): real engine, registry and kfp compiler
#   6. slow tests (-m "integration and slow"): the real step images, TensorFlow included
# With arguments, runs one pytest with them instead of the stages, after the venv and the
# infrastructure, e.g. `scripts/test.sh -k push`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${BUILDTOOL_VENV:-.venv}
started=$(date +%s)
stage() { echo "test: [$(( $(date +%s) - started ))s] $*" >&2; }

infra_ready=""
infra_up() {
  [ -z "$infra_ready" ] || return 0
  local infra
  infra=$(scripts/infra-up.sh) || exit   # prints BUILDTOOL_BASE_IMAGE=...
  eval "$infra"
  export BUILDTOOL_BASE_IMAGE
  infra_ready=1
}

# One stage's pytest run: $1 names its report, the rest goes to pytest. pytest exits 5 when a
# selection holds no test: an empty stage is not a failure.
run_pytest() {
  local name=$1 code=0
  shift
  "$VENV/bin/python" -m pytest --junit-xml="$reports/$name.xml" "$@" || code=$?
  [ "$code" -eq 5 ] && code=0
  return "$code"
}

# On a bare Debian machine python3-venv comes with the infrastructure's packages: set it up first
# when no venv can be made yet.
if [ ! -x "$VENV/bin/python" ] && ! { python3.11 -c 'import ensurepip, venv' || python3 -c 'import ensurepip, venv'; } 2>/dev/null; then
  stage "no venv support yet: infrastructure first (it installs python3-venv)"
  infra_up
fi
stage "venv"
scripts/venv.sh

if [ $# -gt 0 ]; then
  infra_up
  exec "$VENV/bin/python" -m pytest "$@"
fi

# Each stage's results, for the closing line over all of them.
reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT

stage "lint and types"
scripts/lint.sh
stage "unit tests"
# In parallel workers: some unit tests still wait on sockets, threads and child processes, so 3 workers beat 2
# on 2 cores (4 use more CPU for no gain: each worker collects and sets up the suite). Each worker has its own
# pip-check cache (tests/conftest.py) and ports (tests/helpers.py). Developers' runs fuzz at hypothesis's
# default depth; CI at the fuzzers' full depth (BUILDTOOL_FUZZ, tests/helpers.py).
if [ -n "${CI:-}" ]; then
  export BUILDTOOL_FUZZ=${BUILDTOOL_FUZZ:-deep}
fi
run_pytest unit -m "not integration" -n 3
stage "infrastructure: engine, registry, base image"
infra_up
stage "integration tests"
run_pytest integration -m "integration and not slow"
stage "slow tests (step images, TensorFlow included)"
run_pytest slow -m "integration and slow"
stage "all stages passed"
"$VENV/bin/python" - "$reports"/*.xml <<'PY'
import sys
import xml.etree.ElementTree as ET

counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for path in sys.argv[1:]:
    for suite in ET.parse(path).getroot().iter("testsuite"):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
failed = counts["failures"] + counts["errors"]
passed = counts["tests"] - failed - counts["skipped"]
print(f"test: {passed} passed, {failed} failed, {counts['skipped']} skipped")
PY
