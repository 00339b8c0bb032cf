"""A registry as Harbor or a cloud registry runs one: TLS from a private CA, and token authentication.

The real distribution server (/usr/bin/docker-registry) serves HTTPS with a certificate of a CA made here, and
answers 401 with a Bearer challenge whose realm is a small token issuer (HTTPS too, same CA) that signs JWTs the
registry checks against its `rootcertbundle`. The CA goes where the engine reads a registry's own CA,
/etc/docker/certs.d/<host:port>/ca.crt (read per registry, no restart), and is removed afterwards; buildtool and
skopeo read it there too. The credentials are stored by the real `docker login` into a DOCKER_CONFIG of the
test's own, and must reach only the issuer, over TLS, and never show in an argument or an output.

Then: build --push through skopeo and through the engine, compile, verify, and `run`, which pulls each image by
its digest.
"""

# No `from __future__ import annotations`: kfp reads the step function's annotations as objects.
import base64
import contextlib
import datetime
import http.server
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from kfp.components import OutputPath

from buildtool import cli
from buildtool.lock import image_map
from buildtool.push.registry_tls import ENGINE_CERTS
from buildtool.reference import hold_tag, parse

from ..conftest import write_project
from .conftest import BASE_IMAGE, SMALL_STEPS
from .test_trust import DISTRIBUTION, Distribution, free_port, remove_local

SERVICE, ISSUER = "buildtool-test-registry", "buildtool-test-issuer"
USER = "robot"


# -- a private CA, and certificates it signs ----------------------------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@dataclass
class Issued:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    def write(self, folder: Path, stem: str) -> tuple[Path, Path]:
        cert, key = folder / f"{stem}.crt", folder / f"{stem}.key"
        cert.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key.chmod(0o600)
        return cert, key


def issue(common: str, ca: Issued | None, *, server: bool = False) -> Issued:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(ca.cert.subject if ca else _name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if ca is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    if server:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return Issued(key, builder.sign(ca.key if ca else key, hashes.SHA256()))


# -- the token issuer -----------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenIssuer:
    """Grants what a registry's token service grants: every asked action to the right user, none to others."""

    signer: Issued
    password: str
    seen: list[dict[str, Any]] = field(default_factory=list)  # path, scope, whether Basic credentials came

    def token(self, account: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64.b64encode(self.signer.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": ISSUER,
            "sub": account,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.signer.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"

    def answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        pairs = urllib.parse.parse_qsl(urllib.parse.urlsplit(handler.path).query)
        query = dict(pairs)
        scopes = [value for key, value in pairs if key == "scope"]  # one parameter per scope, as the spec says
        header = handler.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{USER}:{self.password}".encode()).decode()
        self.seen.append({"service": query.get("service"), "scopes": scopes, "basic": header.startswith("Basic ")})
        if header and header != expected:
            handler.send_response(401)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        account = USER if header else ""
        token = self.token(account, scopes if account else [])
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


@contextlib.contextmanager
def serve_tls(issuer: TokenIssuer, cert: Path, key: Path) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            issuer.answer(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/token"
    finally:
        server.shutdown()
        server.server_close()


# -- the registry, its CA in the engine's certs.d, and a docker login -----------------------------------------------


@dataclass
class Secured:
    host: str
    password: str
    issuer: TokenIssuer
    docker_config: Path


@pytest.fixture
def secured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Secured]:
    if not os.access(DISTRIBUTION, os.X_OK):
        pytest.fail(f"{DISTRIBUTION} is missing: apt-get install docker-registry", pytrace=False)
    pki = tmp_path / "pki"
    pki.mkdir()
    ca = issue("buildtool test CA", None)
    ca_cert, _ = ca.write(pki, "ca")
    server_cert, server_key = issue("127.0.0.1", ca, server=True).write(pki, "server")
    signer = issue("buildtool test token signer", ca)
    password = "pw-" + secrets.token_urlsafe(18)
    issuer = TokenIssuer(signer, password)
    port = free_port()
    host = f"127.0.0.1:{port}"
    storage = tmp_path / "storage"
    storage.mkdir()
    certs = ENGINE_CERTS / host
    created_certs_d = not ENGINE_CERTS.exists()
    with serve_tls(issuer, server_cert, server_key) as realm:
        config = tmp_path / "registry.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "version": 0.1,
                    "log": {"level": "warn"},
                    "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
                    "http": {"addr": host, "tls": {"certificate": str(server_cert), "key": str(server_key)}},
                    "auth": {
                        "token": {"realm": realm, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(ca_cert)}
                    },
                }
            )
        )
        server = Distribution(config, host, tmp_path / "registry.log", scheme="https", ca=ca_cert)
        certs.mkdir(parents=True)
        shutil.copy(ca_cert, certs / "ca.crt")
        try:
            server.start()
            docker_config = tmp_path / "docker-config"
            docker_config.mkdir()
            monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
            login = subprocess.run(
                ["docker", "login", "--username", USER, "--password-stdin", host],
                input=password,
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, "DOCKER_CONFIG": str(docker_config)},
            )
            assert login.returncode == 0, login.stderr
            yield Secured(host, password, issuer, docker_config)
        finally:
            server.stop()
            shutil.rmtree(certs, ignore_errors=True)
            if created_certs_d:
                with contextlib.suppress(OSError):  # another registry's folder may have appeared meanwhile
                    ENGINE_CERTS.rmdir()


def tls_project(root: Path, registry: str, prefix: str, push_with: str) -> Path:
    path = write_project(root)
    text = path.read_text().replace('repository = "t"', f'repository = "{prefix}"')
    text = text.replace('base_image = "127.0.0.1:5000/lib/python:3.11"', f'base_image = "{BASE_IMAGE}"')
    text = text.replace('registry = "127.0.0.1:5000"', f'registry = "{registry}"')
    text = text.replace(
        'pipeline = "pipeline.training_pipeline:make_pipeline"',
        'pipeline = "pipeline.training_pipeline:make_pipeline"\nsteps_module = "small_steps"\n'
        f'push_with = "{push_with}"',
    )
    path.write_text(text)
    (root / "small_steps.py").write_text(SMALL_STEPS)
    for name in ("base", "download", "training", "upload"):
        (root / "images" / name / "Dockerfile").write_text(
            f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nCOPY . /opt/{name}/\nRUN python3 -c \"print('{name} ok')\"\n"
        )
    return path


def greet(greeting: str, output: OutputPath()) -> None:  # type: ignore[valid-type]
    # kfp v1 passes a file path whose parent folder exists: the file is the artifact.
    with open(output, "w") as handle:
        handle.write(greeting)


def compile_greet(image: str, path: Path) -> None:
    """A one-step pipeline whose step runs in `image` (pinned in the TLS registry)."""
    import kfp.compiler
    from kfp import components, dsl

    op = components.func_to_container_op(greet, base_image=image)

    @dsl.pipeline(name="greet")
    def pipeline(greeting: str) -> None:
        op(greeting=greeting)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kfp.compiler.Compiler().compile(pipeline, str(path))


@pytest.mark.parametrize("push_with", ["skopeo", "engine"])
def test_build_push_verify_and_run_against_a_tls_registry_with_token_auth(
    secured: Secured,
    tmp_path: Path,
    push_with: str,
    engine_client: docker.DockerClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = f"tls-{uuid.uuid4().hex[:10]}"
    project = tls_project(tmp_path / "project", secured.host, prefix, push_with)
    config = ["--config", str(project)]
    try:
        assert cli.main([*config, "build", "--push"]) == 0
        out, err = capsys.readouterr()
        assert f"push via {push_with}" in out + err
        locked = image_map.load(project.parent / "image_map.yaml")
        for name, entry in locked.images.items():
            ref = parse(entry.reference)
            assert ref.domain == secured.host, name
        assert cli.main([*config, "compile"]) == 0
        assert cli.main([*config, "verify"]) == 0
        assert cli.main([*config, "check"]) == 0
        # Every pin is held by its digest tag in the TLS registry too (asked with a token of the issuer's).
        ca = ENGINE_CERTS / secured.host / "ca.crt"
        for entry in locked.images.values():
            ref = parse(entry.reference)
            assert ref.digest
            token = secured.issuer.token(USER, [f"repository:{ref.path}:pull"])
            answer = requests.head(
                f"https://{ref.api_host}/v2/{ref.path}/manifests/{hold_tag(ref.digest)}",
                headers={
                    "Authorization": f"Bearer {token}",
                    "Accept": "application/vnd.docker.distribution.manifest.v2+json",
                },
                verify=str(ca),
                timeout=10,
            )
            assert answer.headers.get("Docker-Content-Digest") == ref.digest
        # run: the engine lacks the image, so it pulls it by its digest, with the engine's stored credentials.
        image = locked.steps["download_training_dataset"]
        pipeline = tmp_path / "greet.yaml"
        compile_greet(image, pipeline)
        (tmp_path / "greet-map.yaml").write_text(f"steps:\n  greet: {image}\n")
        remove_local(engine_client, f"/{prefix}/")
        workdir = tmp_path / "work"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "buildtool",
                "run",
                str(pipeline),
                "--image-map",
                str(tmp_path / "greet-map.yaml"),
                "-p",
                "greeting=hello",
                "--workdir",
                str(workdir),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env={"PATH": os.environ["PATH"], "DOCKER_CONFIG": str(secured.docker_config)},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"pull {image}" in done.stdout + done.stderr
        assert (workdir / "greet" / "greet-output" / "data").read_text() == "hello"
        # The credentials went to the issuer alone, over TLS (it speaks nothing else), and never show.
        assert any(seen["basic"] for seen in secured.issuer.seen)
        assert all(seen["service"] == SERVICE for seen in secured.issuer.seen)
        for text in (
            out,
            err,
            done.stdout,
            done.stderr,
            (project.parent / "pipeline.yaml").read_text(),
            (project.parent / "image_map.yaml").read_text(),
            pipeline.read_text(),
        ):
            assert secured.password not in text
    finally:
        remove_local(engine_client, f"/{prefix}/")
