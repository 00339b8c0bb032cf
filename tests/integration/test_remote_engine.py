"""buildtool on an engine reached over the network: DOCKER_HOST=tcp://..., DOCKER_TLS_VERIFY, DOCKER_CERT_PATH.

The remote engine is the local one behind a TLS endpoint of the test's own: a small proxy on 127.0.0.1 that
asks for a client certificate (as dockerd's --tlsverify does) and forwards each connection to the engine's
socket. No second engine is started. What goes through it is counted, so the test knows the build context,
the import check, the push and the step's container all went over that connection.
"""

# No `from __future__ import annotations`: kfp reads the step function's annotations as objects.
import contextlib
import http.server
import os
import select
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from kfp.components import OutputPath

from buildtool import cli, config
from buildtool.lock import image_map

ENGINE_SOCKET = "/var/run/docker.sock"


class TlsProxy:
    """TLS with a required client certificate on 127.0.0.1:<port>, forwarded to the engine's unix socket."""

    def __init__(self, ca: trustme.CA) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(self.context)
        ca.configure_trust(self.context)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = self.refused = 0
        self.bytes_in = self.bytes_out = 0
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self._stopped = True
        self.listener.close()

    def _serve(self) -> None:
        while not self._stopped:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(raw,), daemon=True).start()

    def _connection(self, raw: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            with self._lock:
                self.refused += 1
            raw.close()
            return
        with self._lock:
            self.accepted += 1
        engine = socket.socket(socket.AF_UNIX)
        engine.connect(ENGINE_SOCKET)
        try:
            self._pump(tls, engine)
        finally:
            tls.close()
            engine.close()

    def _pump(self, tls: ssl.SSLSocket, engine: socket.socket) -> None:
        """One thread per connection, both directions: an SSL object is not shared between threads."""
        while True:
            ready = [tls] if tls.pending() else select.select([tls, engine], [], [], 300)[0]
            if not ready:
                return
            for side in ready:
                try:
                    data = side.recv(1 << 16)
                except ssl.SSLWantReadError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                other = engine if side is tls else tls
                other.sendall(data)
                with self._lock:
                    if side is tls:
                        self.bytes_in += len(data)
                    else:
                        self.bytes_out += len(data)


@pytest.fixture
def remote_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TlsProxy]:
    """DOCKER_HOST and its TLS settings pointing at the proxy; DOCKER_CERT_PATH as the docker CLI reads it."""
    ca = trustme.CA()
    proxy = TlsProxy(ca)
    certs = tmp_path / "docker-certs"
    certs.mkdir()
    ca.cert_pem.write_to_path(str(certs / "ca.pem"))
    client = ca.issue_cert("buildtool-client")
    client.cert_chain_pems[0].write_to_path(str(certs / "cert.pem"))
    client.private_key_pem.write_to_path(str(certs / "key.pem"))
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(certs))
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    yield proxy
    proxy.close()


def hello(output: OutputPath()) -> None:  # type: ignore[valid-type]
    # kfp v1 passes a file path whose parent folder exists: the file is the artifact.
    with open(output, "w") as handle:
        handle.write("hello over tls")


def fetch(url: str) -> str:
    from urllib.request import urlopen

    with urlopen(url, timeout=20) as answer:
        return str(answer.read().decode())


def compile_hello(image: str, path: Path) -> None:
    import kfp.compiler
    from kfp import components, dsl

    op = components.func_to_container_op(hello, base_image=image)
    fetch_op = components.func_to_container_op(fetch, base_image=image)

    @dsl.pipeline(name="hello")
    def pipeline(url: str = "") -> None:
        op()
        with dsl.Condition(url != ""):
            fetch_op(url)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kfp.compiler.Compiler().compile(pipeline, str(path))


@pytest.mark.parametrize("push_with", ["auto", "skopeo"])
def test_build_push_and_run_through_a_tls_docker_host(
    small_project: Path, remote_engine: TlsProxy, push_with: str, tmp_path: Path, capsys: Any
) -> None:
    if push_with == "skopeo":
        small_project.write_text(
            small_project.read_text().replace(
                'steps_module = "small_steps"', 'steps_module = "small_steps"\npush_with = "skopeo"'
            )
        )
    code = cli.main(["--config", str(small_project), "build", "--push"])
    err = capsys.readouterr().err
    assert code == 0, err
    # skopeo reads the image over the same connection (--src-daemon-host, --src-cert-dir): the engine is remote.
    assert f"push via {'skopeo' if push_with == 'skopeo' else 'engine'}" in err
    loaded = image_map.load(config.load(small_project).image_map)
    assert set(loaded.steps) == {"download_training_dataset", "training", "upload_model"}
    # The build contexts and the pushed layers went over the TLS connection.
    counts = (remote_engine.accepted, remote_engine.bytes_in, remote_engine.bytes_out)
    assert counts[0] >= 1 and counts[1] > 10_000 and counts[2] > 10_000, counts
    sent_before = remote_engine.bytes_in

    pipeline, workdir = tmp_path / "hello.yaml", tmp_path / "work"
    image = loaded.steps["download_training_dataset"]
    compile_hello(image, pipeline)
    steps = tmp_path / "hello-map.yaml"
    steps.write_text(f"steps:\n  hello: {image}\n  fetch: {image}\n")
    capsys.readouterr()
    assert cli.main(["run", str(pipeline), "--image-map", str(steps), "--workdir", str(workdir)]) == 0, (
        capsys.readouterr().err
    )
    assert (workdir / "hello" / "hello-output" / "data").read_text() == "hello over tls"
    assert remote_engine.bytes_in > sent_before
    # Steps have no network; --allow-host relays one endpoint of this machine to them, the engine being remote.
    with served("from this machine") as port:
        url = f"http://127.0.0.1:{port}/"
        assert (
            cli.main(
                [
                    "run",
                    str(pipeline),
                    "--image-map",
                    str(steps),
                    "--workdir",
                    str(tmp_path / "fetch"),
                    "-p",
                    f"url={url}",
                    "--allow-host",
                    f"127.0.0.1:{port}",
                ]
            )
            == 0
        ), capsys.readouterr().err
    assert (tmp_path / "fetch" / "condition-1" / "fetch" / "fetch-Output" / "data").read_text() == "from this machine"


@contextlib.contextmanager
def served(body: str) -> Iterator[int]:
    """An HTTP server on 127.0.0.1 answering every GET with `body`; yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's name)
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_an_engine_endpoint_refusing_the_client_is_one_line(
    small_project: Path, remote_engine: TlsProxy, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = trustme.CA()  # a client certificate the endpoint does not trust
    certs = tmp_path / "foreign-certs"
    certs.mkdir()
    (certs / "ca.pem").write_bytes((tmp_path / "docker-certs" / "ca.pem").read_bytes())
    client = other.issue_cert("intruder")
    client.cert_chain_pems[0].write_to_path(str(certs / "cert.pem"))
    client.private_key_pem.write_to_path(str(certs / "key.pem"))
    monkeypatch.setenv("DOCKER_CERT_PATH", str(certs))
    capsys.readouterr()
    assert cli.main(["--config", str(small_project), "build", "--push"]) == 5
    err = capsys.readouterr().err
    assert err.startswith("buildtool: error: no Docker engine answers at tcp://127.0.0.1:") and err.count("\n") == 1
    # The proxy counts a refused handshake in its own thread, after the client has already seen the refusal.
    deadline = time.monotonic() + 5
    while remote_engine.refused == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert remote_engine.accepted == 0 and remote_engine.refused >= 1
    assert not (small_project.parent / "image_map.yaml").exists()


SSH_STAND_IN = """#!{python}
# Stands in for ssh: records its arguments, then does what `docker system dial-stdio` does on the far side
# (bridges stdin/stdout to the engine's socket).
import os, socket, sys, threading
with open({log!r}, "a") as handle:
    handle.write(" ".join(sys.argv[1:]) + "\\n")
engine = socket.socket(socket.AF_UNIX)
engine.connect({engine!r})

def upstream():
    while True:
        data = os.read(0, 65536)
        if not data:
            engine.shutdown(socket.SHUT_WR)
            return
        engine.sendall(data)

threading.Thread(target=upstream, daemon=True).start()
while True:
    data = engine.recv(65536)
    if not data:
        break
    os.write(1, data)
"""


def test_build_push_through_an_ssh_docker_host(
    small_project: Path, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DOCKER_HOST=ssh://... goes through the ssh client (here a stand-in on PATH), as the docker CLI's does;
    skopeo cannot read such an engine, so the engine pushes."""
    import sys

    folder, log = tmp_path / "bin", tmp_path / "ssh.log"
    folder.mkdir()
    ssh = folder / "ssh"
    ssh.write_text(SSH_STAND_IN.format(python=sys.executable, log=str(log), engine=ENGINE_SOCKET))
    ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_HOST", "ssh://builder@build.invalid:2222")
    for name in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    small_project.write_text(
        small_project.read_text().replace(
            'steps_module = "small_steps"', 'steps_module = "small_steps"\npush_with = "auto"'
        )
    )
    code = cli.main(["--config", str(small_project), "build", "--push"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "push via engine" in err
    calls = log.read_text().splitlines()
    assert calls and all(call == "-l builder -p 2222 -- build.invalid docker system dial-stdio" for call in calls)
    assert set(image_map.load(config.load(small_project).image_map).steps) == {
        "download_training_dataset",
        "training",
        "upload_model",
    }
