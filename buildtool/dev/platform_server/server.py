"""The server: binds, serves with a bounded pool of workers, and stops; in a background thread or in this one."""

from __future__ import annotations

import errno
import logging
import math
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from ...errors import ConfigError, PlatformError
from .. import DEFAULT_TOKEN_TTL, DEFAULT_WORKERS
from .handler import Handler
from .tokens import TokenStore
from .workers import BoundedHTTPServer

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1024**3  # an upload
DEFAULT_HEADER_TIMEOUT = 5.0  # request line and headers (and a JSON body) must arrive within this
DEFAULT_IO_TIMEOUT = 30.0  # each read or write on the socket
DEFAULT_BODY_TIMEOUT = 10.0  # an upload's body or a download's answer: this, ...
DEFAULT_MIN_BODY_RATE = 256 * 1024  # ... plus one second per this many bytes moved
_POLL_SECONDS = 0.05  # how soon stop() is noticed


class PlatformServer:
    """The platform's four calls over real HTTP, in a background thread.

    ``with PlatformServer(data_dir, {"key": "secret"}) as server: ...`` starts
    it on 127.0.0.1 and a free port (``server.url``) and stops it afterwards.
    """

    def __init__(
        self,
        data_dir: Path | str,
        accounts: Mapping[str, str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        token_ttl: float = DEFAULT_TOKEN_TTL,
        workers: int = DEFAULT_WORKERS,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        io_timeout: float = DEFAULT_IO_TIMEOUT,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        min_body_rate: int = DEFAULT_MIN_BODY_RATE,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise PlatformError(f"port {port!r} is not valid: give a number from 0 to 65535")
        timeouts = {
            "token_ttl": token_ttl,
            "header_timeout": header_timeout,
            "io_timeout": io_timeout,
            "body_timeout": body_timeout,
            "min_body_rate": min_body_rate,
        }
        for name, value in timeouts.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise PlatformError(f"{name} {value!r} is not valid: give a positive number of seconds")
        if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 1024:
            raise PlatformError(f"workers {workers!r} is not valid: give a whole number from 1 to 1024")
        self.data_dir = Path(data_dir)
        self._bind = (host, port)
        self.max_body_bytes = max_body_bytes
        self.token_ttl = float(token_ttl)
        self.workers = workers
        self.header_timeout = float(header_timeout)
        self.io_timeout = float(io_timeout)
        self.body_timeout = float(body_timeout)
        self.min_body_rate = float(min_body_rate)
        self.tokens = TokenStore(accounts, self.token_ttl)
        self._httpd: BoundedHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = self.url if self._httpd else "stopped"
        return f"PlatformServer({str(self.data_dir)!r}, {state})"

    @property
    def host(self) -> str:
        return self._bound()[0]

    @property
    def port(self) -> int:
        return self._bound()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> PlatformServer:
        """Bind and serve in a background thread; return self."""
        if self._httpd is not None:
            raise RuntimeError("the platform server is already running")
        self._httpd = self._make_httpd()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(_POLL_SECONDS,), name=f"platform-server:{self.port}", daemon=True
        )
        self._thread.start()
        logger.info("platform server on %s, data in %s", self.url, self.data_dir)
        return self

    def stop(self) -> None:
        """Stop serving, end the connections still open and release the port."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join()
        self._httpd = self._thread = None
        logger.info("platform server stopped")

    def serve_forever(self, ready: Callable[[PlatformServer], None] | None = None) -> None:
        """Bind and serve in this thread until interrupted; `ready` is called once the port is bound."""
        self._httpd = self._make_httpd()
        logger.info("platform server on %s, data in %s", self.url, self.data_dir)
        if ready is not None:
            ready(self)
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> PlatformServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------

    def _make_httpd(self) -> BoundedHTTPServer:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PlatformError(f"cannot create the data folder {self.data_dir}: {exc.strerror or exc}") from exc
        server = self

        class Served(Handler):
            platform = server
            timeout = server.io_timeout

        host, port = self._bind
        try:
            return BoundedHTTPServer((host, port), Served, self.workers)
        except OverflowError as exc:
            raise PlatformError(f"port {port!r} is not valid: give a number from 0 to 65535") from exc
        except OSError as exc:
            hint = "another process listens there: stop it or choose another --port"
            if exc.errno != errno.EADDRINUSE:
                hint = "check --host and --port"
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise PlatformError(f"cannot listen on {host}:{port}: {reason}; {hint}") from exc

    def _bound(self) -> tuple[str, int]:
        if self._httpd is None:
            raise RuntimeError("the platform server is not running: call start() first")
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)


def serve_forever(
    host: str,
    port: int,
    data_dir: Path | str,
    accounts: Mapping[str, str],
    *,
    token_ttl: float = DEFAULT_TOKEN_TTL,
    workers: int = DEFAULT_WORKERS,
    ready: Callable[[PlatformServer], None] | None = None,
) -> None:
    """Serve the platform API on `host`:`port` from `data_dir` until interrupted."""
    if not accounts:
        raise ConfigError("the platform server needs at least one account (access key -> secret key)")
    PlatformServer(data_dir, accounts, host=host, port=port, token_ttl=token_ttl, workers=workers).serve_forever(ready)
