"""What a `run` step can reach on the network: nothing by default, named host endpoints when allowed.

A step may be hostile (its workflow came from someone else), and the host's loopback holds services that
trust whoever reaches them: the registry on 127.0.0.1:5000 accepts pushes without a password. So steps get
no network at all (`none`) unless `--allow-host HOST:PORT` names an endpoint. Then every step of the run
shares the network namespace of one forwarder container (as a pod's containers share its sandbox's): that
namespace has only a loopback interface, on which the forwarder listens at each allowed port and relays
each connection through a Unix socket, bind-mounted from a private host folder, to this process, which
connects it to HOST:PORT on the host. A step therefore reaches `127.0.0.1:8080` (the platform server) as
the example pipeline's parameters say, and nothing else: no route, no DNS, no other port.
`--host-network` gives the steps the host's network instead, and with it every loopback service.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EngineError, RunError

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = ["FORWARDER", "Endpoint", "Isolation", "describe", "parse_endpoint"]

log = logging.getLogger(__name__)

_MOUNT = "/run/buildtool-relay"
_MAX_CONNECTIONS = 64
_READY_SECONDS = 20.0
#: The forwarder, run by the image's own python3: listen on 127.0.0.1:PORT, relay to MOUNT/PORT.sock.
FORWARDER = f"""
import os, socket, sys, threading
def pipe(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass
def serve(port):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    while True:
        client, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX)
        try:
            upstream.connect("{_MOUNT}/%d.sock" % port)
        except OSError:
            client.close()
            continue
        threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
threads = [threading.Thread(target=serve, args=(int(p),)) for p in sys.argv[1:]]
for t in threads:
    t.start()
print("ready", flush=True)
for t in threads:
    t.join()
"""


@dataclass(frozen=True)
class Endpoint:
    """A host endpoint steps may reach, at the same address inside their namespace."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """`--allow-host HOST:PORT`: HOST a loopback address or localhost (the address the step will use)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise RunError(f"--allow-host {text!r}: expected HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:8080")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback or ":" in host:
        raise RunError(
            f"--allow-host {text!r}: only an IPv4 loopback address or localhost can be forwarded "
            "(steps reach it at that address in their own namespace)"
        )
    return Endpoint(host, int(port))


class Isolation:
    """The network every step of one run gets: see the module's docstring. Use as a context manager."""

    def __init__(
        self, engine: Engine, endpoints: list[Endpoint], host_network: bool, image: str, labels: dict[str, str]
    ) -> None:
        self._engine, self._endpoints, self._host = engine, endpoints, host_network
        self._image, self._labels = image, labels
        self._folder: Path | None = None
        self._listeners: list[socket.socket] = []
        self._container: str | None = None
        self._slots = threading.BoundedSemaphore(_MAX_CONNECTIONS)
        self._closed = threading.Event()

    @property
    def network_mode(self) -> str:
        if self._host:
            return "host"
        if self._container is not None:
            return f"container:{self._container}"
        return "none"

    def __enter__(self) -> Isolation:
        if self._host or not self._endpoints:
            return self
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _start(self) -> None:
        from ..engine import Bind
        from ..errors import EngineError

        if self._engine.image_id(self._image) is None:  # a fresh machine: pulled by its digest, as the steps are
            try:
                self._engine.pull(self._image)
            except EngineError as exc:
                raise RunError(
                    f"image {self._image} (the --allow-host forwarder runs in it) is neither in the "
                    f"local engine nor pullable: {exc}; build and push it with `buildtool build --push`"
                ) from None
        self._folder = Path(tempfile.mkdtemp(prefix="buildtool-relay-"))  # 0700: only this user reaches the sockets
        for endpoint in self._endpoints:
            listener = socket.socket(socket.AF_UNIX)
            listener.bind(str(self._folder / f"{endpoint.port}.sock"))
            listener.listen(_MAX_CONNECTIONS)
            self._listeners.append(listener)
            threading.Thread(target=self._accept, args=(listener, endpoint), daemon=True).start()
        self._container = self._engine.start_detached(
            self._image,
            ["python3", "-c", FORWARDER, *(str(e.port) for e in self._endpoints)],
            network_mode="none",
            binds=[Bind(str(self._folder), _MOUNT)],
            labels=self._labels,
        )
        deadline = time.monotonic() + _READY_SECONDS
        while True:
            status, _, output = self._engine.logs(self._container).partition("\n")
            if "ready" in output.split():
                return
            if status not in ("created", "running") or time.monotonic() > deadline:
                raise RunError(
                    f"the forwarder for --allow-host did not start in image {self._image} "
                    f"(it runs that image's python3): {output.strip()[-300:] or status}"
                )
            time.sleep(0.1)

    def _accept(self, listener: socket.socket, endpoint: Endpoint) -> None:
        while not self._closed.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                client.close()  # a step opening connections without end gets no more than the bound
                continue
            threading.Thread(target=self._relay, args=(client, endpoint), daemon=True).start()

    def _relay(self, client: socket.socket, endpoint: Endpoint) -> None:
        try:
            try:
                upstream = socket.create_connection((endpoint.host, endpoint.port), timeout=10)
            except OSError as exc:
                log.debug("forward to %s: %s", endpoint, exc)
                return
            upstream.settimeout(None)
            pumps = [
                threading.Thread(target=_pipe, args=pair, daemon=True)
                for pair in ((client, upstream), (upstream, client))
            ]
            for pump in pumps:
                pump.start()
            for pump in pumps:
                pump.join()
            upstream.close()
        finally:
            client.close()
            self._slots.release()

    def close(self) -> None:
        self._closed.set()
        if self._container is not None:
            with contextlib.suppress(EngineError):
                self._engine.remove(self._container)
            self._container = None
        for listener in self._listeners:
            listener.close()
        self._listeners = []
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def describe(endpoints: list[Endpoint], host_network: bool) -> str:
    """What the steps of a run can reach, in one line."""
    if host_network:
        return "network: the host's (--host-network): steps reach every service of the host, its loopback included"
    if not endpoints:
        return "network: none (--allow-host HOST:PORT forwards an endpoint of the host to the steps)"
    return "network: steps reach only " + ", ".join(str(e) for e in endpoints) + " (forwarded); nothing else"
