"""The console script's process: docker-py without its ssh transport unless the engine is reached over ssh://,
and an exit that skips the interpreter's teardown but keeps the exit code, the output and the exit handlers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from buildtool import ssh_transport


def _config(tmp_path: Path, document: object) -> dict[str, str]:
    folder = tmp_path / "docker"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(document if isinstance(document, str) else json.dumps(document))
    return {"DOCKER_CONFIG": str(folder)}


@pytest.mark.parametrize(
    ("environ", "config", "expected"),
    [
        ({"DOCKER_HOST": "ssh://me@builder"}, None, True),
        ({"DOCKER_HOST": "tcp://builder:2376"}, {"currentContext": "remote"}, False),  # DOCKER_HOST wins
        ({"DOCKER_HOST": "unix:///var/run/docker.sock"}, None, False),
        ({"DOCKER_CONTEXT": "remote"}, None, True),
        ({"DOCKER_CONTEXT": "default"}, None, False),
        ({}, {"currentContext": "remote"}, True),
        ({}, {"currentContext": "default"}, False),
        ({}, {"auths": {}}, False),
        ({}, "{not json", True),  # unreadable: keep the transport
        ({}, ["a", "list"], True),
        ({}, None, False),  # no config at all: the default socket
    ],
)
def test_the_ssh_transport_is_needed_only_for_ssh_engines(tmp_path, environ, config, expected) -> None:
    env = {**environ, **(_config(tmp_path, config) if config is not None else {"DOCKER_CONFIG": str(tmp_path)})}
    assert ssh_transport.needed(env) is expected


def _loads_paramiko(env: dict[str, str]) -> bool:
    probe = (
        "import os, sys\nfrom buildtool import ssh_transport\n"
        "ssh_transport.skip_unless_needed(os.environ)\nimport docker\ndocker.APIClient\n"
        "print('paramiko' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip() == "True"


def test_docker_loads_without_paramiko_for_the_default_socket(tmp_path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    assert not _loads_paramiko({**base, "DOCKER_CONFIG": str(tmp_path)})
    assert _loads_paramiko({**base, "DOCKER_CONFIG": str(tmp_path), "DOCKER_HOST": "ssh://me@builder.invalid"})


def test_the_console_exit_keeps_the_code_the_error_and_the_exit_handlers(tmp_path) -> None:
    marker = tmp_path / "handler-ran"
    probe = (
        "import atexit, sys\nfrom pathlib import Path\n"
        f"atexit.register(lambda: Path({str(marker)!r}).write_text('yes'))\n"
        f"sys.argv = ['buildtool', '--config', {str(tmp_path / 'missing.toml')!r}, 'check']\n"
        "from buildtool.cli import run\nprint('before', flush=False)\nrun()\nprint('never')"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    from buildtool.errors import ConfigError

    assert done.returncode == ConfigError.exit_code
    assert done.stdout == "before\n"  # flushed before the exit, and nothing after it
    assert done.stderr.startswith("buildtool: error: ") and len(done.stderr.strip().splitlines()) == 1
    assert marker.read_text() == "yes"
