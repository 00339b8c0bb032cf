#!/usr/bin/env bash
# Create (or refresh) .venv with buildtool (platform client included) and its test tools.
# Reinstalls only when pyproject.toml or the client's pyproject changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${BUILDTOOL_VENV:-.venv}
UV_VERSION=0.13.9
stamp="$VENV/.buildtool-installed"
want=$(cat pyproject.toml images/base/platform-client/pyproject.toml | sha256sum | cut -d' ' -f1)

if [ ! -x "$VENV/bin/pip" ]; then
  echo "venv: creating $VENV" >&2
  rm -rf "$VENV"
  python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV" \
    || { rm -rf "$VENV"; echo "venv: error: cannot create $VENV; install python3.11 and python3-venv" >&2; exit 1; }
fi
"$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { echo "venv: error: $VENV is not Python 3.11; remove it and install python3.11" >&2; exit 1; }
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "venv: installing buildtool[test] (the platform client included) into $VENV" >&2
  # The platform client is its own package (the `platform` extra needs it): installed from its folder.
  packages=(-e images/base/platform-client -e '.[test]')
  # uv installs the same resolution about 4 times faster than pip (bench/README.md, "The venv"); pip stays
  # the fallback where uv cannot be installed. uv does not read pip's configuration: a machine-wide pip
  # constraint file is passed on.
  if "$VENV/bin/python" -m pip install --quiet "uv==$UV_VERSION" >&2; then
    constraint=$("$VENV/bin/python" -m pip config get global.constraint 2>/dev/null || true)
    # --compile-bytecode: pip compiles what it installs, uv only when asked; without it every command
    # compiles the modules it loads again whenever PYTHONDONTWRITEBYTECODE is set.
    "$VENV/bin/uv" pip install --quiet --compile-bytecode --python "$VENV/bin/python" \
      ${constraint:+--constraint "$constraint"} "${packages[@]}" >&2
  else
    echo "venv: uv could not be installed; installing with pip" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
    "$VENV/bin/python" -m pip install --quiet "${packages[@]}" >&2
  fi
  # The editable project's own modules, for the same reason (Python checks their dates and compiles an
  # edited module again).
  "$VENV/bin/python" -m compileall -q buildtool images/base/platform-client >/dev/null || true
  echo "$want" > "$stamp"
fi
