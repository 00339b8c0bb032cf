"""The engine's credential store, read from a real config.json (DOCKER_CONFIG) as `docker login` writes it."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from buildtool.credentials import Credentials, stored_credentials


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "docker"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    monkeypatch.setenv("PATH", str(tmp_path / "bin") + os.pathsep + os.environ.get("PATH", ""))
    return folder / "config.json"


@pytest.mark.parametrize(
    "config, domain, expected",
    [
        pytest.param(
            {"auths": {"127.0.0.1:5000": {"auth": _auth("robot", "pw")}}},
            "127.0.0.1:5000",
            Credentials("robot", "pw"),
            id="auths",
        ),
        pytest.param(
            {"auths": {"127.0.0.1:5000": {"auth": _auth("robot", "pw")}}}, "127.0.0.1:5001", None, id="another-registry"
        ),
        pytest.param(
            {"auths": {"https://index.docker.io/v1/": {"auth": _auth("hubber", "pw")}}},
            "docker.io",
            Credentials("hubber", "pw"),
            id="docker-hub-key",
        ),
        pytest.param({"auths": {"reg.example.com": {}}}, "reg.example.com", None, id="entry-without-auth"),
        pytest.param(
            {"credHelpers": {"reg.example.com": "missing"}},
            "reg.example.com",
            None,
            id="helper-not-installed",  # the SDK warns of it (Python's warnings, not buildtool's output)
            marks=pytest.mark.filterwarnings("ignore:docker-credential-missing not installed"),
        ),
        pytest.param({"credsStore": "broken"}, "reg.example.com", None, id="helper-that-fails"),
    ],
)
def test_stored_credentials(store: Path, config: dict[str, object], domain: str, expected: Credentials | None) -> None:
    helper = store.parent.parent / "bin" / "docker-credential-broken"
    helper.parent.mkdir(exist_ok=True)
    helper.write_text("#!/bin/sh\necho 'helper exploded' >&2\nexit 3\n")
    helper.chmod(0o755)
    store.write_text(json.dumps(config))
    assert stored_credentials(domain) == expected


def test_no_config_file_means_no_credentials(store: Path) -> None:
    assert not store.exists()
    assert stored_credentials("127.0.0.1:5000") is None


def test_a_credential_helper_answers_for_its_registry(store: Path) -> None:
    helper = store.parent.parent / "bin" / "docker-credential-lab"
    helper.parent.mkdir(exist_ok=True)
    helper.write_text('#!/bin/sh\nread host\necho "{\\"Username\\": \\"u-$host\\", \\"Secret\\": \\"s3cret\\"}"\n')
    helper.chmod(0o755)
    store.write_text(json.dumps({"credHelpers": {"reg.example.com": "lab"}}))
    assert stored_credentials("reg.example.com") == Credentials("u-reg.example.com", "s3cret")


def test_the_password_never_shows_in_a_repr() -> None:
    shown = repr(Credentials("robot", "s3cret-pw", "idt-secret"))
    assert "robot" in shown and "s3cret-pw" not in shown and "idt-secret" not in shown
