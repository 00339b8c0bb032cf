"""Which docker CLI builds with BuildKit here: each candidate tried with a one-label probe build, and a CLI that
passed with this engine remembered (beside the pip-check record) so the next build need not probe again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .check.pip_check_cache import read_own_file
from .engine import Engine
from .util.fsutil import write_atomic

CLI_CANDIDATES = ("/usr/bin/docker", "docker")  # Debian's docker.io CLI embeds BuildKit; the one on PATH may not
_PROBE_TIMEOUT = 60.0


def probe(cli: str, engine: Engine) -> str | None:
    """None when `DOCKER_BUILDKIT=1 cli build` builds a one-label image here (removed again); else why not."""
    dockerfile = "FROM scratch\nLABEL buildtool.probe=buildkit\n"
    with tempfile.TemporaryDirectory(prefix="buildtool-probe-") as folder:
        iidfile = Path(folder) / "iid"
        try:
            done = subprocess.run(
                [cli, "build", "--quiet", "--iidfile", str(iidfile), "-"],
                input=dockerfile.encode(),
                capture_output=True,
                timeout=_PROBE_TIMEOUT,
                env={**os.environ, "DOCKER_BUILDKIT": "1"},
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{cli}: {exc.__class__.__name__}: {exc}"
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
            return f"{cli}: exit {done.returncode}: {lines[-1][:200]}"
        if not iidfile.is_file():
            return f"{cli}: wrote no image ID"
        engine.untag(iidfile.read_text().strip())
    return None


PROBE_FILE = "buildkit-probe.json"  # beside pip-check.json: the CLIs a probe build succeeded with
_PROBES_KEPT = 16


def _probe_key(cli: str, engine: Engine) -> str:
    """A successful probe holds while the CLI's file and the engine are the same."""
    info = os.stat(cli)
    return f"{os.path.realpath(cli)}|{info.st_size}|{info.st_mtime_ns}|{engine.identity()}"


def _known_probes(path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        document = json.loads(read_own_file(path).decode("utf-8"))
    except (OSError, ValueError):  # missing, not ours, too large, not JSON: probe again
        return []
    works = document.get("works") if isinstance(document, dict) else None
    return [k for k in works if isinstance(k, str)][-_PROBES_KEPT:] if isinstance(works, list) else []


def _remember_probe(path: Path | None, key: str) -> None:
    if path is None:
        return
    try:
        write_atomic(path, json.dumps({"works": [*_known_probes(path), key][-_PROBES_KEPT:]}, indent=1) + "\n")
    except OSError:
        pass  # it only saves the next run a probe


def find_cli(engine: Engine, cache: Path | None = None) -> tuple[str | None, list[str]]:
    """The first docker CLI with a working BuildKit, and why each one before it was passed over. A CLI that
    passed its probe with this engine before (`cache`) is taken without probing again."""
    reasons = []
    seen = set()
    for candidate in CLI_CANDIDATES:
        path = candidate if os.path.isabs(candidate) else shutil.which(candidate)
        if path is None or not os.access(path, os.X_OK):
            reasons.append(f"{candidate}: not found")
            continue
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        key = _probe_key(path, engine)
        if key in _known_probes(cache):
            return path, reasons
        why = probe(path, engine)
        if why is None:
            _remember_probe(cache, key)
            return path, reasons
        reasons.append(why)
    return None, reasons
