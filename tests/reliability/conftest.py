"""Hostile inputs: run the `buildtool` command on a project an attacker edited, then check what every
refusal must keep.

A row of a reliability table is (input, exit code, message fragment). Whatever the row, the command
must end with that documented, non-zero code and one line `buildtool: error: ...` holding the fragment;
the project's generated files (image_map.yaml, pipeline.yaml) stay byte-identical, no file is left
behind, and no secret of the row shows in the output.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from buildtool import cli, config
from buildtool.gate import compiler

from ..conftest import write_project
from ..helpers import failure_exit_codes, write_lock

GENERATED = ("image_map.yaml", "pipeline.yaml")


DOCUMENTED = failure_exit_codes()  # the only codes a failure may end with


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str
    seconds: float
    max_rss_mb: float | None = None  # measured for subprocess runs only


def run_in_process(project: Path, *args: str) -> Outcome:
    """`buildtool --config PROJECT/pyproject.toml ARGS`, in this process (fast; the kfp import is paid once)."""
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--config", str(project / "pyproject.toml"), *args])
    return Outcome(code, out.getvalue(), err.getvalue(), time.monotonic() - start)


# The child reports its own peak RSS (VmHWM): wait4's ru_maxrss would count the forked copy of pytest.
_CHILD = """\
import os, sys
from buildtool import cli
try:
    code = cli.main(sys.argv[1:])
finally:
    with open("/proc/self/status") as status, open(os.environ["BUILDTOOL_TEST_PEAK"], "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
sys.exit(code)
"""


def run_subprocess(project: Path, *args: str, timeout: float = 60, env: dict[str, str] | None = None) -> Outcome:
    """The same as a child process, with its peak memory: for bombs and size caps."""
    with tempfile.TemporaryDirectory() as tmp:
        peak, out_path, err_path = Path(tmp) / "peak", Path(tmp) / "out", Path(tmp) / "err"
        start = time.monotonic()
        with open(out_path, "w") as out, open(err_path, "w") as err:
            child = subprocess.run(
                [sys.executable, "-c", _CHILD, "--config", str(project / "pyproject.toml"), *args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                cwd=project,
                env={**os.environ, **(env or {}), "BUILDTOOL_TEST_PEAK": str(peak)},
            )
        seconds = time.monotonic() - start
        rss = int(peak.read_text()) / 1024 if peak.exists() else None
        return Outcome(child.returncode, out_path.read_text(), err_path.read_text(), seconds, rss)


def files_of(root: Path) -> set[str]:
    """Every path under `root` (bytecode caches aside): a temp file left behind shows up here."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if "__pycache__" not in p.parts}


class Guard:
    """What a refusal must not change: the generated files byte for byte, and the set of files."""

    def __init__(self, root: Path, watched: Sequence[str] = GENERATED) -> None:
        self.root = root
        self.before = {name: self._read(root / name) for name in watched}
        self.files = files_of(root)

    @staticmethod
    def _read(path: Path) -> bytes | str | None:
        if path.is_symlink():
            return f"<link to {os.readlink(path)}>"
        if not path.exists():
            return None
        if not path.is_file():  # a folder, a FIFO: reading one would block or fail
            return f"<{stat.filemode(path.stat().st_mode)}>"
        return path.read_bytes()

    def check(self) -> None:
        for name, content in self.before.items():
            assert self._read(self.root / name) == content, f"{name} changed"
        left = files_of(self.root) - self.files
        assert not left, f"files left behind: {sorted(left)}"


def assert_refused(outcome: Outcome, code: int, fragment: str, *, secrets: Sequence[str] = ()) -> str:
    """The documented code, one `buildtool: error:` line holding `fragment`, no secret; returns the line."""
    assert code != 0 and code in DOCUMENTED, f"{code} is not a failure code of buildtool/errors.py {sorted(DOCUMENTED)}"
    assert outcome.code == code, f"exit {outcome.code}, expected {code}: {outcome.err!r}"
    lines = outcome.err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {outcome.err!r}"
    line = lines[0]
    assert line.startswith("buildtool: error: "), line
    assert fragment in line, f"{fragment!r} not in {line!r}"
    assert "error: unexpected " not in line and "Traceback" not in outcome.err
    for secret in secrets:
        assert secret not in outcome.out + outcome.err, "a secret shows in the output"
    return line


@pytest.fixture(scope="session")
def _locked_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with a lock written for its tree and a pipeline.yaml compiled from it (built once)."""
    root = tmp_path_factory.mktemp("locked") / "project"
    root.mkdir()
    write_project(root)
    loaded, _ = write_lock(root / "pyproject.toml")
    compiler.compile_pipeline(loaded, loaded.output)
    return root


@pytest.fixture
def locked_project(_locked_template: Path, tmp_path: Path) -> Iterator[Path]:
    """A fresh copy of the locked project: the folder holding pyproject.toml, image_map.yaml and pipeline.yaml."""
    root = tmp_path / "project"
    shutil.copytree(_locked_template, root, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    yield root


def project_config(root: Path) -> config.Config:
    return config.load(root / "pyproject.toml")
