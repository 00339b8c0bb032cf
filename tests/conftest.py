"""Shared fixtures: a throw-away project tree for unit tests."""

from __future__ import annotations

import functools
import shutil
import textwrap
from pathlib import Path

import pytest

from buildtool.push import registry
from buildtool.submit import kfp_api

# The local platform's fixtures (platform_server, make_platform_client, ...) and submit's (a locked project and
# the fake KFP server), available to every test by name.
pytest_plugins = ["tests.platform_fixtures", "tests.submit_fixtures"]

REPO = Path(__file__).resolve().parents[1]

PYPROJECT = """\
[tool.buildtool]
registry = "127.0.0.1:5000"
repository = "t"
base_image = "127.0.0.1:5000/lib/python:3.11"
pipeline = "pipeline.training_pipeline:make_pipeline"

[tool.buildtool.images.base]
context = "images/base"

[tool.buildtool.images.download]
context = "images/download"
base = "base"
step = "download_training_dataset"

[tool.buildtool.images.training]
context = "images/training"
base = "base"
step = "training"
build_args = {{ EXTRA = "1" }}

[tool.buildtool.images.upload]
context = "images/upload"
base = "base"
step = "upload_model"
{extra}
"""


def write_project(root: Path, extra: str = "") -> Path:
    """A small project: four image contexts and a copy of the real pipeline package."""
    for name in ("base", "download", "training", "upload"):
        context = root / "images" / name
        context.mkdir(parents=True, exist_ok=True)
        (context / "Dockerfile").write_text(f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nLABEL image={name}\n")
        (context / ".dockerignore").write_text("*.secret\n")
    (root / "images" / "training" / "requirements.txt").write_text("numpy==1\n")
    (root / "images" / "training" / ".dockerignore").write_text("*.secret\ndata/\n")
    shutil.copytree(REPO / "pipeline", root / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    path = root / "pyproject.toml"
    path.write_text(PYPROJECT.format(extra=textwrap.dedent(extra)))
    return path


@pytest.fixture(autouse=True)
def _no_override_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests set what they need; the caller's BUILDTOOL_* overrides must not leak into them."""
    for name in ("BUILDTOOL_REGISTRY", "BUILDTOOL_REPOSITORY", "BUILDTOOL_BASE_IMAGE"):
        monkeypatch.delenv(name, raising=False)


QUICK_BACKOFF = 0.01  # seconds: urllib3 waits 0, 0.02, 0.04 s between tries instead of 0, 1, 2 s


@pytest.fixture(autouse=True)
def _quick_retries(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an engine, the registry and KFP clients retry as many times on the same faults, with short waits.

    The policy's real waits are checked where it is built (tests/unit/test_registry_writes.py); integration tests
    keep them, as their servers are real.
    """
    if request.node.get_closest_marker("integration") is not None:
        return
    quick = functools.partial(registry.retry_policy, backoff=QUICK_BACKOFF)
    monkeypatch.setattr(registry, "retry_policy", quick)
    monkeypatch.setattr(kfp_api, "retry_policy", quick)


@pytest.fixture(scope="session")
def _worker_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder per test process (each pytest-xdist worker has its own)."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch: pytest.MonkeyPatch, _worker_cache: Path) -> None:
    """Builds keep the pip-check cache under XDG_CACHE_HOME: this worker's, never the user's nor another
    worker's (a test changing it could change what a test in a parallel worker sees)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(_worker_cache))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Path of the pyproject.toml of a fresh small project."""
    return write_project(tmp_path)
