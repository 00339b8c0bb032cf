#!/usr/bin/env bash
# Run the test suite from a fresh machine: local engine, registry and base
# image (scripts/infra-up.sh), the venv, then pytest. Extra arguments go to
# pytest, e.g. `scripts/test.sh -m "not integration"` for the quick unit run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

infra=$(scripts/infra-up.sh) || exit   # prints BUILDTOOL_BASE_IMAGE=...
eval "$infra"
export BUILDTOOL_BASE_IMAGE
scripts/venv.sh
exec .venv/bin/python -m pytest "$@"
