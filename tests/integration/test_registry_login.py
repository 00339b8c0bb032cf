"""A registry that requires a login: the engine's credential store (`auths`, or a credential helper) reaches it.

A real registry (Debian's docker-registry, htpasswd auth, plain HTTP on a loopback port of this test's own),
real skopeo pushing a one-layer image with the authfile buildtool writes for it, and the registry client
reading it back with the same stored credentials. No engine.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from buildtool.errors import RegistryError
from buildtool.push import skopeo
from buildtool.push.registry import Registry
from buildtool.reference import parse

USER, PASSWORD = "robot", "s3cret-login-pw"
SERVER = "/usr/bin/docker-registry"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def login_registry(tmp_path: Path) -> Iterator[str]:
    """host:port of a registry of this test's own that answers 401 without the right login."""
    if not os.access(SERVER, os.X_OK) or shutil.which("skopeo") is None:
        pytest.fail(f"needs {SERVER} and skopeo (scripts/infra-up.sh installs both)", pytrace=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # crypt: the one bcrypt of the standard library
        import crypt

        hashed = crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH))
    (tmp_path / "htpasswd").write_text(f"{USER}:{hashed}\n")
    host = f"127.0.0.1:{_free_port()}"
    config = {
        "version": 0.1,
        "log": {"level": "error"},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
        "http": {"addr": host},
        "auth": {"htpasswd": {"realm": "buildtool-test", "path": str(tmp_path / "htpasswd")}},
    }
    (tmp_path / "registry.yml").write_text(json.dumps(config))  # JSON is YAML
    with open(tmp_path / "registry.log", "w") as log:
        server = subprocess.Popen([SERVER, "serve", str(tmp_path / "registry.yml")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"http://{host}/v2/", timeout=2).status_code == 401:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "registry.log").read_text()
            time.sleep(0.1)
        yield host
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The engine's credential store (DOCKER_CONFIG), empty; a folder on PATH for credential helpers."""
    folder = tmp_path / "docker"
    folder.mkdir()
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return folder / "config.json"


def _store_login(store: Path, way: str, host: str, password: str) -> None:
    if way == "auths":  # what `docker login` writes without a helper
        auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
        store.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
        return
    helper = store.parent.parent / "bin" / "docker-credential-lab"  # the credential helper protocol: `get`, stdin
    answer = json.dumps({"ServerURL": host, "Username": USER, "Secret": password})
    helper.write_text(
        f"#!/bin/sh\nread server\n"
        f'[ "$server" = "{host}" ] || {{ echo "credentials not found"; exit 1; }}\n'
        f"echo '{answer}'\n"
    )
    helper.chmod(0o755)
    store.write_text(json.dumps({"credHelpers": {host: "lab"}}))


def _oci_layout(folder: Path) -> None:
    """A one-layer image as an OCI layout on disk (what skopeo copies from)."""
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes, media_type: str) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    layer = subprocess.run(["tar", "-cz", "--files-from", "/dev/null"], capture_output=True, check=True).stdout
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(b'').hexdigest()}"]},
        }
    )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": blob(config.encode(), "application/vnd.oci.image.config.v1+json"),
            "layers": [blob(layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                **blob(manifest, "application/vnd.oci.image.manifest.v1+json"),
                "annotations": {"org.opencontainers.image.ref.name": "t"},
            }
        ],
    }
    (folder / "index.json").write_text(json.dumps(index))
    (folder / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


@pytest.mark.parametrize("way", ["auths", "credential-helper"])
def test_stored_credentials_push_through_skopeo_and_read_back(
    login_registry: str, store: Path, tmp_path: Path, way: str
) -> None:
    _store_login(store, way, login_registry, PASSWORD)
    _oci_layout(tmp_path / "image")
    authfile = skopeo.write_authfile(tmp_path, login_registry)  # what a push by skopeo is given
    done = subprocess.run(
        [
            "skopeo",
            "copy",
            "--authfile",
            str(authfile),
            "--dest-tls-verify=false",
            f"oci:{tmp_path / 'image'}:t",
            f"docker://{login_registry}/lab/tiny:t1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    client = Registry(timeout=10)
    try:
        digest = client.digest(parse(f"{login_registry}/lab/tiny:t1"))
        assert digest is not None and digest.startswith("sha256:")
        assert client.digest(parse(f"{login_registry}/lab/tiny:absent")) is None
    finally:
        client.close()
    assert PASSWORD not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "stored, fragment",
    [
        (
            None,
            "requires credentials for the manifest of {host}/lab/tiny:t1, and none are stored for it: "
            "run `docker login {host}`",
        ),
        ("wrong-password", "refused the stored credentials for the manifest of {host}/lab/tiny:t1 (401)"),
    ],
    ids=["none-stored", "wrong-password"],
)
@pytest.mark.parametrize("way", ["auths", "credential-helper"])
def test_a_missing_or_wrong_login_is_named(
    login_registry: str, store: Path, way: str, stored: str | None, fragment: str
) -> None:
    if stored is not None:
        _store_login(store, way, login_registry, stored)
    client = Registry(timeout=10)
    try:
        with pytest.raises(RegistryError) as caught:
            client.digest(parse(f"{login_registry}/lab/tiny:t1"))
    finally:
        client.close()
    assert fragment.format(host=login_registry) in str(caught.value)
    assert PASSWORD not in str(caught.value) and (stored is None or stored not in str(caught.value))
