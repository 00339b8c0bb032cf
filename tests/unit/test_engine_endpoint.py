"""Where the engine is: resolved as the docker CLI resolves it (DOCKER_HOST, DOCKER_CONTEXT, the current context)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trustme
from docker.context import ContextAPI

from buildtool.engine import Engine, resolve_endpoint
from buildtool.errors import EngineError


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty DOCKER_CONFIG of the test's own (contexts live under it)."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    # docker-py keeps contexts beside the config file it finds: without one, under the current folder.
    (folder / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    return folder


def _certs(folder: Path) -> Path:
    ca = trustme.CA()
    folder.mkdir()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    client = ca.issue_cert("client")
    client.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    client.private_key_pem.write_to_path(str(folder / "key.pem"))
    return folder


def test_nothing_set_is_the_default_socket(docker_config: Path) -> None:
    endpoint, _ = resolve_endpoint({})
    assert endpoint.url is None and endpoint.skopeo_source() == []


def test_docker_host_with_tls_verify_and_cert_path(docker_config: Path, tmp_path: Path) -> None:
    certs = _certs(tmp_path / "certs")
    endpoint, params = resolve_endpoint(
        {"DOCKER_HOST": "tcp://build.example.com:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}
    )
    assert endpoint.url == "tcp://build.example.com:2376" and endpoint.source == "DOCKER_HOST"
    assert params["tls"].verify and params["tls"].ca_cert == str(certs / "ca.pem")
    assert endpoint.skopeo_source() == [
        "--src-daemon-host",
        "tcp://build.example.com:2376",
        "--src-cert-dir",
        str(certs),
    ]


def test_the_current_context_when_docker_host_is_unset(
    docker_config: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    ContextAPI.create_context("builder", host="tcp://ctx.example.com:2376")
    (docker_config / "config.json").write_text(json.dumps({"currentContext": "builder"}))
    endpoint, _ = resolve_endpoint({})
    assert endpoint.url == "tcp://ctx.example.com:2376" and "builder" in endpoint.source
    # DOCKER_CONTEXT wins over the config's current context, DOCKER_HOST over both (as the docker CLI).
    ContextAPI.create_context("other", host="ssh://me@other.example.com")
    assert resolve_endpoint({"DOCKER_CONTEXT": "other"})[0].url == "ssh://me@other.example.com:22"
    assert resolve_endpoint({"DOCKER_CONTEXT": "other", "DOCKER_HOST": "tcp://h:2375"})[0].url == "tcp://h:2375"


def test_a_context_that_does_not_exist_is_an_engine_error(docker_config: Path) -> None:
    with pytest.raises(EngineError, match=r"DOCKER_CONTEXT names the context 'nosuch'"):
        resolve_endpoint({"DOCKER_CONTEXT": "nosuch"})


def test_an_engine_that_does_not_answer_names_where_it_was_looked_for(
    docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    with pytest.raises(EngineError, match=r"no Docker engine answers at tcp://127.0.0.1:9 \(from DOCKER_HOST"):
        Engine(timeout=5)
