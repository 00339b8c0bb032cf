#!/usr/bin/env bash
# Run the test suite from a fresh machine: local engine, registry and base
# image (scripts/infra-up.sh), the venv, then pytest. Extra arguments go to
# pytest, e.g. `scripts/test.sh -m "not integration"` for the quick unit run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

eval "$(scripts/infra-up.sh)"   # sets BUILDTOOL_BASE_IMAGE
export BUILDTOOL_BASE_IMAGE
scripts/venv.sh
exec .venv/bin/python -m pytest "$@"
