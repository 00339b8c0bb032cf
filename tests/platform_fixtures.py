"""pytest fixtures around the local platform server.

``platform_server``: a started `PlatformServer` with one account
(`ACCESS_KEY`/`SECRET_KEY`) and a training dataset seeded as `DATASET_UID`.
``make_platform_client``: builds `PlatformClient`s with small timeouts.
``make_fault_proxy``: a real HTTP proxy in front of the server that answers the
first requests with scripted faults (a status, a dropped connection, a
truncated body, an echo of the request), then forwards.
``silent_server``: accepts TCP connections and never answers.
``raw_request``: sends bytes as they are (malformed requests included) and reads the answer.

tests/conftest.py loads this module as a pytest plugin, so every test asks for them by name;
import only the constants and helpers.
"""

from __future__ import annotations

import http.client
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from buildtool.dev.dataset import write_training_dataset
from buildtool.dev.platform_server import PlatformServer, seed_dataset
from platform_client import PlatformClient

__all__ = [
    "ACCESS_KEY",
    "DATASET_UID",
    "SECRET_KEY",
    "Fault",
    "FaultProxy",
    "SilentServer",
    "make_fault_proxy",
    "RawAnswer",
    "make_platform_client",
    "platform_dataset_zip",
    "platform_server",
    "raw_request",
    "rss_bytes",
    "silent_server",
]

ACCESS_KEY = "pipeline-tester"
SECRET_KEY = "sk-local-5f0c2a9e-never-in-output"
DATASET_UID = "ds-seeded"

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass(frozen=True)
class Fault:
    """What the proxy does with one request.

    kind: ``"status"`` answers `status` without forwarding; ``"drop"`` closes
    the connection without an answer; ``"truncate"`` forwards, then sends the
    headers and only half of the body and closes; ``"echo"`` answers `status`
    with the request's own body; ``"pass"`` forwards as usual.
    """

    kind: str
    status: int = 500


class FaultProxy:
    """A real HTTP proxy on 127.0.0.1 in front of `upstream_port` that plays `faults` in order."""

    def __init__(self, upstream_port: int, faults: Iterable[Fault] = ()) -> None:
        self.upstream_port = upstream_port
        self._faults = list(faults)
        self._lock = threading.Lock()
        self.requests_seen = 0
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        self._httpd = _QuietHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fault-proxy", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def faults_left(self) -> int:
        with self._lock:
            return len(self._faults)

    def next_fault(self) -> Fault | None:
        with self._lock:
            self.requests_seen += 1
            return self._faults.pop(0) if self._faults else None

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (as the client under test does on a timeout) are expected."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms wait on the client's ACK

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = self.owner.next_fault()
        kind = fault.kind if fault else "pass"
        if kind == "drop":
            self.close_connection = True
            return
        if kind in ("status", "echo"):
            payload = body if kind == "echo" else b'{"error": "injected fault"}'
            self.send_response(fault.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self._forward(body, truncate=kind == "truncate")

    def _forward(self, body: bytes, *, truncate: bool) -> None:
        upstream = http.client.HTTPConnection("127.0.0.1", self.owner.upstream_port, timeout=10)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "host"}
            upstream.request("POST", self.path, body=body, headers=headers)
            response = upstream.getresponse()
            content = response.read()
            self.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.end_headers()
            if truncate:
                self.wfile.write(content[: len(content) // 2])
                self.close_connection = True
            else:
                self.wfile.write(content)
        finally:
            upstream.close()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@dataclass(frozen=True)
class RawAnswer:
    """What a server answered to a raw request: `status` is None if it closed without an answer."""

    status: int | None
    headers: dict[str, str]
    body: bytes
    seconds: float


def raw_request(port: int, data: bytes, *, timeout: float = 10.0, body_stream: Iterable[bytes] = ()) -> RawAnswer:
    """Send `data` (then the chunks of `body_stream`, stopping when the server closes) and read one answer."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        try:
            connection.sendall(data)
            for chunk in body_stream:
                connection.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused the rest of the body: its answer may still be readable
        method = data.split(b" ", 1)[0].decode("latin-1")  # a HEAD answer has no body to wait for
        response = http.client.HTTPResponse(connection, method=method)
        try:
            response.begin()
            body = response.read()
        except (http.client.RemoteDisconnected, http.client.IncompleteRead, ConnectionResetError):
            return RawAnswer(None, {}, b"", time.monotonic() - started)
        headers = {name.lower(): value for name, value in response.getheaders()}
        return RawAnswer(response.status, headers, body, time.monotonic() - started)


def rss_bytes() -> int:
    """This process's resident set size (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers, until stopped."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.05)
        self._stop = threading.Event()
        self._connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def start(self) -> SilentServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self._connections:
            connection.close()
        self._socket.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            self._connections.append(connection)


@pytest.fixture(scope="session")
def platform_dataset_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small training dataset zip in the platform's format (shared by all tests: do not modify)."""
    return write_training_dataset(tmp_path_factory.mktemp("dataset") / "training_dataset.zip", samples=40, seed=7)


@pytest.fixture
def platform_server(tmp_path: Path, platform_dataset_zip: Path) -> Iterator[PlatformServer]:
    """A started local platform: account ACCESS_KEY/SECRET_KEY, dataset DATASET_UID."""
    server = PlatformServer(tmp_path / "platform-data", {ACCESS_KEY: SECRET_KEY})
    seed_dataset(server.data_dir, DATASET_UID, platform_dataset_zip)
    with server:
        yield server


@pytest.fixture
def make_platform_client(platform_server: PlatformServer) -> Iterator[Callable[..., PlatformClient]]:
    """``make(port=None, **overrides)``: a client of `platform_server` (or of `port`), with small timeouts."""
    clients: list[PlatformClient] = []

    def make(port: int | str | None = None, **overrides: Any) -> PlatformClient:
        options: dict[str, Any] = {
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "timeout": (2, 5),
            "retries": 2,
            "backoff": 0.01,
        }
        options.update(overrides)
        client = PlatformClient("127.0.0.1", port if port is not None else platform_server.port, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def make_fault_proxy(platform_server: PlatformServer) -> Iterator[Callable[..., FaultProxy]]:
    """``make(faults)``: a started `FaultProxy` in front of `platform_server`."""
    proxies: list[FaultProxy] = []

    def make(faults: Iterable[Fault]) -> FaultProxy:
        proxy = FaultProxy(platform_server.port, faults).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A started `SilentServer`."""
    server = SilentServer().start()
    try:
        yield server
    finally:
        server.stop()
