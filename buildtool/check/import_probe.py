"""The check that runs inside a step's image: import the step's modules, and `pip check` unless already answered.

buildtool sends this file's source as `python3 -c SOURCE KNOWN MODULE...`: KNOWN is a comma-separated list of
distribution fingerprints that already passed `pip check`, MODULE the step's modules. It prints one line,
`IMPORT-PROBE {json}`, last. Only the standard library is used, and nothing newer than Python 3.8, so that any
image's python3 runs it; buildtool's own tests import it to test `fingerprint` in-process.

`pip check`'s answer depends only on the installed distributions (names, versions, requirements, wheel tags)
and on the interpreter and platform that evaluate markers and tags: `fingerprint` hashes exactly those, with
importlib.metadata (milliseconds) instead of starting pip (about a second).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import platform
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from typing import Any

MARKER = "IMPORT-PROBE "
FINGERPRINT_SCHEME = "buildtool-pip-check/1"  # changes whenever what is hashed changes


def _glibc() -> str:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, OSError, ValueError):
        return ""


def _environment() -> list[Any]:
    """What pip evaluates requirement markers and wheel tags against: the interpreter, the platform, the libc."""
    return [
        sys.version,
        sys.implementation.name,
        sys.implementation.cache_tag,
        sys.platform,
        os.name,
        sys.maxsize > 2**32,
        platform.machine(),
        platform.system(),
        platform.release(),
        platform.version(),
        platform.python_implementation(),
        list(platform.libc_ver()),
        _glibc(),
        sysconfig.get_platform(),
        sysconfig.get_config_var("SOABI"),
        sysconfig.get_config_var("EXT_SUFFIX"),
    ]


def _canonical(name: str) -> str:
    return "-".join(name.replace("_", "-").replace(".", "-").lower().split("-"))  # PEP 503, without `re`


def _wheel_tags(dist: Any) -> list[str]:
    text = dist.read_text("WHEEL") or ""
    return sorted(line.split(":", 1)[1].strip() for line in text.splitlines() if line.lower().startswith("tag:"))


def fingerprint(path: Iterable[str] | None = None) -> str | None:
    """sha256 over the sorted (name, version, requirements, wheel tags) of every distribution on `path`
    (default: sys.path, what `python -m pip check` sees), and the environment.

    None, so that pip check runs, whenever the answer might not be a function of that: a distribution without
    a name or version, two distributions of one name (which one pip takes depends on the order it finds them),
    a legacy editable install (*.egg-link), or any error reading them.
    """
    try:
        from importlib import metadata

        entries_on_path = list(sys.path if path is None else path)
        for entry in entries_on_path:
            # pip also reads the distributions that legacy editable installs (*.egg-link) point to;
            # importlib.metadata does not see them.
            if os.path.isdir(entry or ".") and any(c.lower().endswith(".egg-link") for c in os.listdir(entry or ".")):
                return None
        found = metadata.distributions(path=entries_on_path)
        names: set[str] = set()
        entries = []
        for dist in found:
            name, version = dist.metadata["Name"], dist.metadata["Version"]
            if not name or not version or _canonical(name) in names:
                return None
            names.add(_canonical(name))
            entries.append([name, version, sorted(dist.requires or []), _wheel_tags(dist)])
        text = json.dumps([FINGERPRINT_SCHEME, _environment(), sorted(entries)], sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    except Exception:  # fail closed: no fingerprint means pip check runs
        return None


def probe(known: Iterable[str], modules: Iterable[str]) -> dict[str, Any]:
    """Import `modules` while `pip check` runs in a subprocess, unless this environment's fingerprint is `known`.

    The fingerprint is taken first, before any step module runs.
    """
    digest = fingerprint()
    pip = None
    if digest is None or digest not in set(known):
        pip = subprocess.Popen([sys.executable, "-m", "pip", "check"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    failed = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # a step module may raise anything, SystemExit included
            failed[name] = f"{type(exc).__name__}: {exc}"
    pip_check = None
    if pip is not None:
        output = pip.communicate()[0].decode(errors="replace")
        pip_check = [pip.returncode, output[-2000:]]
    return {"imports": failed, "fingerprint": digest, "pip_check": pip_check}


def main(argv: list[str]) -> None:
    known = [item for item in (argv[0] if argv else "").split(",") if item]
    result = probe(known, argv[1:])
    sys.stdout.flush()
    print(MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
