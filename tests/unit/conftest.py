"""Unit fixtures: a small project wired to a fake engine and a fake registry (tests/fake_engine.py); a scripted
HTTP server (`serve`) and the engine's credential store (`docker_config`) for the registry client's tests."""

from __future__ import annotations

import base64
import json
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from buildtool import cli

from ..conftest import write_project
from ..fake_engine import FakeEngine, FakeRegistry, fakes
from ..helpers import Handler, Server

CLI_DEADLINE = 30.0  # seconds; a whole fake build takes about one


@dataclass
class FakeSetup:
    engine: FakeEngine
    registry: FakeRegistry
    project: Path  # its pyproject.toml
    capsys: pytest.CaptureFixture[str]

    @property
    def root(self) -> Path:
        return self.project.parent

    @property
    def image_map(self) -> Path:
        return self.root / "image_map.yaml"

    def cli(self, *args: str) -> tuple[int, str, str]:
        """Run `buildtool --config <project> ARGS` in this process; (exit code, stdout, stderr).

        In a thread with a deadline: a run that never ends (an executor waiting on work that will
        not come) fails the test instead of hanging the suite.
        """
        self.capsys.readouterr()
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["code"] = cli.main(["--config", str(self.project), *args])
            except BaseException as exc:  # handed to the test's thread
                box["raised"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(CLI_DEADLINE)
        out, err = self.capsys.readouterr()
        if thread.is_alive():
            pytest.fail(f"buildtool {' '.join(args)} still running after {CLI_DEADLINE}s; stderr so far:\n{err}")
        if "raised" in box:
            raise box["raised"]
        return box["code"], out, err


@pytest.fixture(autouse=True)
def _forget_modules_of_the_test_project(tmp_path: Path) -> Iterator[None]:
    """The pipeline package a test imports lives in its tmp_path: drop it from sys.modules afterwards,
    so the next test (or a forked mutation-testing worker) imports its own copy, not a deleted one."""
    yield
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path.parent.parent)):
            del sys.modules[name]


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeEngine, FakeRegistry]]:
    """A fake engine as DOCKER_HOST, wired to a fake registry."""
    for name in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    for engine, registry in fakes():
        monkeypatch.setenv("DOCKER_HOST", engine.host)
        yield engine, registry


@pytest.fixture
def fake(tmp_path: Path, fake_engine: tuple[FakeEngine, FakeRegistry], capsys: pytest.CaptureFixture[str]) -> FakeSetup:
    """The four-image project of tests/conftest.py, its registry and base image in the fake registry.

    The engine pushes (push_with = "engine"): the push is the engine's stream, scripted per image.
    """
    engine, registry = fake_engine
    path = write_project(tmp_path)
    text = path.read_text().replace('registry = "127.0.0.1:5000"', f'registry = "{registry.host}"')
    text = text.replace(
        'base_image = "127.0.0.1:5000/lib/python:3.11"',
        f'base_image = "{registry.host}/lib/python:3.11"\npush_with = "engine"',
    )
    path.write_text(text)
    registry.store("lib/python", "3.11")
    return FakeSetup(engine, registry, path, capsys)


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(handle: Callable[[Handler], None], address: str = "127.0.0.1") -> Server:
        server = Server(handle, address)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()  # a quick shutdown
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, tuple[str, str]]], None]:
    """Write the engine's credential store (config.json, as `docker login` does) and point DOCKER_CONFIG at it.
    HOME moves too, with a ~/.netrc that must never be read."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text(
        "machine 127.0.0.1 login netrc-user password netrc-secret\n"
        "machine 127.0.0.2 login netrc-user password netrc-secret\n"
    )
    (home / ".netrc").chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("NETRC", raising=False)
    folder = tmp_path / "docker"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))

    def write(auths: dict[str, tuple[str, str]]) -> None:
        entries = {host: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()} for host, (u, p) in auths.items()}
        (folder / "config.json").write_text(json.dumps({"auths": entries}))

    write({})
    return write
