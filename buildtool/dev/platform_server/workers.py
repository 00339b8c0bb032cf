"""An HTTP server with a bounded pool of workers: a connection over the bound is answered 503 and closed.

So no thread or memory grows with the number of clients; closing the server wakes the workers still
blocked on a read.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

logger = logging.getLogger(__name__)

_BUSY_BODY = b'{"error": "the server is busy: try again in a second"}'
_BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class BoundedHTTPServer(HTTPServer):
    """At most `workers` connections served at once, each on a thread of a fixed pool."""

    request_queue_size = 128  # connections waiting for accept(); each is then served or refused at once

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], workers: int) -> None:
        self._slots = threading.BoundedSemaphore(workers)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="platform-worker")
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer's version asks DNS for the host's full name (socket.getfqdn), which can hang.
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            logger.warning("busy: %s refused (all workers serving)", client_address)
            _refuse_busy(request)
            self.shutdown_request(request)
            return
        with self._open_lock:
            self._open.add(request)
        try:
            self._pool.submit(self._work, request, client_address)
        except RuntimeError:  # the pool is shutting down
            self._done(request)

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._done(request)

    def _done(self, request: Any) -> None:
        self.shutdown_request(request)
        with self._open_lock:
            self._open.discard(request)
        self._slots.release()

    def server_close(self) -> None:
        super().server_close()
        with self._open_lock:
            still_open = list(self._open)
        for connection in still_open:  # wake workers blocked on a read, so the pool can finish
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._pool.shutdown(wait=True, cancel_futures=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log (socketserver's default prints to stderr); a client that hangs up or times out is routine."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            logger.debug("connection from %s lost: %s", client_address, exc)
        else:
            logger.exception("error while serving %s", client_address)


def _refuse_busy(connection: socket.socket) -> None:
    try:
        connection.settimeout(0.2)
        connection.sendall(_BUSY_ANSWER)
    except OSError:
        pass
