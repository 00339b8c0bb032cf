#!/usr/bin/env bash
# Lint and type checks, as configured in pyproject.toml: `ruff format --check .` (one formatting style),
# `ruff check .` (style, import order,
# pyupgrade, bugbear, and the bans that keep docker and requests behind their door modules), then
# mypy --strict on buildtool/, the platform client and pipeline/ (the `files` of [tool.mypy]).
# Both run, so one pass shows every finding; fails if either fails.
# Makes or refreshes the venv first (scripts/venv.sh), so it works on a fresh clone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${BUILDTOOL_VENV:-.venv}
scripts/venv.sh
failed=0
echo "lint: ruff format --check ." >&2
"$VENV/bin/ruff" format --check . || failed=1
echo "lint: ruff check ." >&2
"$VENV/bin/ruff" check . || failed=1
echo "lint: mypy (strict, buildtool/, platform_client/, pipeline/)" >&2
"$VENV/bin/mypy" || failed=1
[ "$failed" -eq 0 ] || { echo "lint: error: fix the findings above (\`$VENV/bin/ruff check --fix .\` sorts imports and applies safe fixes; \`$VENV/bin/ruff format .\` formats)" >&2; exit 1; }
echo "lint: clean" >&2
