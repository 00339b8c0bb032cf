"""A local server that speaks the training platform's HTTP API, for development and tests.

Files live on disk as ``<data>/<file_type>/<uid>``, accuracies as
``<data>/model_metadata/<uid>.json``. Accounts are access key -> secret key.
Login answers ``{"token": ...}``; every other call needs
``Authorization: Bearer <token>``, and a token expires after `token_ttl` seconds.

It ships with buildtool and may face a hostile network, so it fails closed:

- credentials are checked before a body is read: an unauthenticated request
  costs its headers and nothing more, and a login body is at most 64 KiB;
- each request has a deadline for its request line and headers (a JSON body
  shares it), an upload's body or a download's answer one that grows only with
  the bytes moved (`body_timeout` plus one second per `min_body_rate` bytes),
  and every read or write a timeout, so a half-sent or trickled request ends;
- a framing error (a duplicate or malformed Content-Length, a
  Transfer-Encoding) closes the connection: the rest of the bytes are never
  read as another request;
- at most `workers` connections are served at once; the next ones get a 503 at
  once and are closed, so no thread or memory grows with the number of clients;
- an upload goes through a streaming multipart parser into a temporary file
  beside its destination, renamed once complete: never held in memory;
- every malformed request gets a 4xx naming what is wrong, never a 500.
"""

from __future__ import annotations

import errno
import hmac
import io
import json
import logging
import math
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import MappingProxyType
from typing import Any

import multipart  # type: ignore[import-untyped]  # the library ships no type information

from .. import fsutil
from ..errors import ConfigError, PlatformError
from . import DEFAULT_TOKEN_TTL, DEFAULT_WORKERS

__all__ = [
    "DEFAULT_TOKEN_TTL",
    "DEFAULT_WORKERS",
    "FILE_KINDS",
    "PlatformServer",
    "ensure_accounts_file",
    "load_accounts",
    "seed_dataset",
    "seed_generated_dataset",
    "serve_forever",
    "stored_path",
]

logger = logging.getLogger(__name__)

# file_type -> {Kind}, written out from the protocol page on its own (not taken
# from the client), so that a mistake in either table shows in the tests.
FILE_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "original_dataset": "OriginalDataset",
        "training_dataset": "TrainingDataset",
        "preprocessing_pipeline": "PreprocessingPipeline",
        "preprocessing_logs": "PreprocessingLogs",
        "preprocessing_image": "PreprocessingImage",
        "training_pipeline": "TrainingPipeline",
        "training_logs": "TrainingLogs",
        "training_image": "TrainingImage",
        "model": "Model",
    }
)
_FILE_TYPES = {kind: file_type for file_type, kind in FILE_KINDS.items()}

LOGIN_PATH = "/api/v1.1.1/entrypoint/AccountValidator/login"
ACCURACY_PATH = "/api/v1.1.1/entrypoint/ModelMetadataWriter/update"
_FILE_ROUTE = re.compile(r"/api/v0\.1/file_operation/(?P<kind>[A-Za-z]+)FileManager/(?P<action>download|upload)")
# Matched with fullmatch: `$` would let a trailing newline through.
_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_UID_RULE = "1 to 200 letters, digits, '.', '_' and '-', starting with a letter or digit"
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
METADATA_DIR = "model_metadata"

DEFAULT_MAX_BODY_BYTES = 1024**3  # an upload
DEFAULT_HEADER_TIMEOUT = 5.0  # request line and headers (and a JSON body) must arrive within this
DEFAULT_IO_TIMEOUT = 30.0  # each read or write on the socket
DEFAULT_BODY_TIMEOUT = 10.0  # an upload's body or a download's answer: this, ...
DEFAULT_MIN_BODY_RATE = 256 * 1024  # ... plus one second per this many bytes moved
JSON_BODY_LIMIT = 64 * 1024  # login, download and accuracy bodies are a few hundred bytes
MAX_SEED_SAMPLES = 100_000  # ~120 MB of float32: a dev dataset, not a memory bomb

_CHUNK_BYTES = 256 * 1024
_FORM_FIELD_LIMIT = 64 * 1024  # a form field other than `file` is read and dropped, up to this
_FORM_MAX_PARTS = 16
_LINGER_SECONDS = 1.0  # after refusing an unread body, how long its rest is read and dropped...
_LINGER_BYTES = 4 * 1024 * 1024  # ...and how much, so the client sees the answer instead of a reset
_POLL_SECONDS = 0.05  # how soon stop() is noticed
_BUSY_BODY = b'{"error": "the server is busy: try again in a second"}'
_BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class _Refusal(Exception):
    """Answer the request with `status` and a JSON error message."""

    def __init__(
        self, status: HTTPStatus, message: str, headers: Mapping[str, str] | None = None, *, close: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.close = close  # where the request ends is unknown: the connection must not serve another


class _ClientGone(Exception):
    """The connection failed or timed out while the request was being read."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def stored_path(data_dir: Path, file_type: str, uid: str) -> Path:
    """Where the server keeps file `uid` of `file_type` under `data_dir`."""
    if file_type not in FILE_KINDS:
        raise PlatformError(f"unknown file_type {file_type!r}; valid: {', '.join(FILE_KINDS)}")
    if not is_valid_uid(uid):
        raise PlatformError(f"uid {uid!r} is not valid: use {_UID_RULE}")
    return Path(data_dir) / file_type / uid


def is_valid_uid(uid: object) -> bool:
    """True for a uid the server stores: a single safe file name."""
    return isinstance(uid, str) and _UID.fullmatch(uid) is not None


def seed_dataset(data_dir: Path | str, uid: str, zip_path: Path | str) -> Path:
    """Store the training dataset `zip_path` as uid `uid`; return where it went."""
    dest = stored_path(Path(data_dir), "training_dataset", uid)
    try:
        with fsutil.atomic_file(dest) as out, Path(zip_path).open("rb") as source:
            shutil.copyfileobj(source, out, _CHUNK_BYTES)
    except OSError as exc:
        raise PlatformError(f"cannot store training dataset {uid!r} in {dest}: {exc.strerror or exc}") from exc
    logger.info("seeded training_dataset %r from %s", uid, zip_path)
    return dest


def seed_generated_dataset(data_dir: Path | str, uid: str, *, samples: int, format: str) -> Path:  # noqa: A002
    """Generate a learnable training dataset of `samples` samples and store it as `uid`."""
    from . import dataset

    stored_path(Path(data_dir), "training_dataset", uid)  # refuse a bad uid before generating anything
    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_SEED_SAMPLES:
        raise PlatformError(f"--samples {samples!r}: give a whole number from 1 to {MAX_SEED_SAMPLES}")
    with tempfile.TemporaryDirectory() as tmp:
        zipped = dataset.write_training_dataset(Path(tmp) / "training_dataset.zip", samples=samples, format=format)
        return seed_dataset(data_dir, uid, zipped)


def ensure_accounts_file(data_dir: Path | str) -> tuple[Path, bool]:
    """``<data>/accounts.yaml``, created with account ``dev`` and a random secret (mode 0600) if missing.

    Returns the path and whether it was created now.
    """
    data = Path(data_dir)
    path = data / "accounts.yaml"
    try:
        data.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path, False
    except OSError as exc:
        raise PlatformError(f"cannot create the accounts file {path}: {exc.strerror or exc}; check --data") from exc
    with os.fdopen(fd, "w") as handle:
        handle.write(f"accounts:\n  dev: {secrets.token_urlsafe(24)}\n")
    return path, True


def load_accounts(path: Path | str) -> dict[str, str]:
    """Read accounts from a YAML or JSON file: ``accounts: {<access_key>: <secret_key>}``."""
    import yaml  # JSON is YAML too

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"{path}: cannot read the accounts file: {reason}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML or JSON: {exc}") from exc
    accounts = document.get("accounts") if isinstance(document, dict) else None
    if not isinstance(accounts, dict) or not accounts:
        raise ConfigError(
            f"{path}: expected a mapping 'accounts' of access key -> secret key, e.g. accounts: {{dev: <secret>}}"
        )
    for key, value in accounts.items():
        if not isinstance(key, str) or not key or not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: accounts.{key}: access key and secret key must both be non-empty strings")
    return dict(accounts)


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
        timeouts = {"token_ttl": token_ttl, "header_timeout": header_timeout, "io_timeout": io_timeout,
                    "body_timeout": body_timeout, "min_body_rate": min_body_rate}
        for name, value in timeouts.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise PlatformError(f"{name} {value!r} is not valid: give a positive number of seconds")
        if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 1024:
            raise PlatformError(f"workers {workers!r} is not valid: give a whole number from 1 to 1024")
        self.data_dir = Path(data_dir)
        self._accounts = dict(accounts)
        self._bind = (host, port)
        self.max_body_bytes = max_body_bytes
        self.token_ttl = float(token_ttl)
        self.workers = workers
        self.header_timeout = float(header_timeout)
        self.io_timeout = float(io_timeout)
        self.body_timeout = float(body_timeout)
        self.min_body_rate = float(min_body_rate)
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (account, expiry on the monotonic clock)
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
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

    # -- internals, also used by the request handler -------------------------

    def _make_httpd(self) -> _HTTPServer:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PlatformError(f"cannot create the data folder {self.data_dir}: {exc.strerror or exc}") from exc
        server = self

        class Handler(_Handler):
            platform = server
            timeout = server.io_timeout

        host, port = self._bind
        try:
            return _HTTPServer((host, port), Handler, self.workers)
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

    def _authenticate(self, account: str, password: str) -> str:
        """A new token for `account`, if `password` is its secret key."""
        expected = self._accounts.get(account)
        # surrogatepass: a lone surrogate in JSON ("\udcff") is a wrong password, not a crash.
        given = password.encode("utf-8", "surrogatepass")
        if expected is None or not hmac.compare_digest(expected.encode("utf-8", "surrogatepass"), given):
            logger.info("login refused for account %r", account[:64])
            raise _Refusal(HTTPStatus.UNAUTHORIZED, "wrong access key or secret key")
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            for old in [t for t, (_, expiry) in self._tokens.items() if expiry <= now]:
                del self._tokens[old]
            self._tokens[token] = (account, now + self.token_ttl)
        logger.info("login of account %r", account)
        return token

    def _account_for(self, authorization: str | None) -> str:
        """The account whose unexpired token the Authorization header carries."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        with self._lock:
            entry = self._tokens.get(token) if scheme.lower() == "bearer" and token else None
            if entry is not None and entry[1] <= time.monotonic():
                del self._tokens[token]
                raise _Refusal(HTTPStatus.UNAUTHORIZED, "the token has expired: log in again")
        if entry is None:
            raise _Refusal(HTTPStatus.UNAUTHORIZED, "log in first and send 'Authorization: Bearer <token>'")
        return entry[0]


class _HTTPServer(HTTPServer):
    """An HTTP server with a bounded pool of workers: a connection over the bound is answered 503 and closed."""

    request_queue_size = 128  # connections waiting for accept(); each is then served or refused at once

    def __init__(self, address: tuple[str, int], handler: type[_Handler], workers: int) -> None:
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


class _DeadlineReader(io.RawIOBase):
    """The socket's input, each read bounded by the I/O timeout and by the request's deadline (if set)."""

    def __init__(self, connection: socket.socket, io_timeout: float) -> None:
        super().__init__()
        self._connection = connection
        self._io_timeout = io_timeout
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        timeout = self._io_timeout
        if self.deadline is not None:
            timeout = min(timeout, self.deadline - time.monotonic())
            if timeout <= 0:
                raise TimeoutError("the request did not arrive in time")
        self._connection.settimeout(timeout)
        try:
            return self._connection.recv_into(buffer)
        finally:
            self._connection.settimeout(self._io_timeout)


class _BodyClock:
    """The deadline of a body in transit: `body_timeout` from its start, one second more per `min_body_rate` bytes."""

    def __init__(self, platform: PlatformServer) -> None:
        self.deadline = time.monotonic() + platform.body_timeout
        self._rate = platform.min_body_rate

    def moved(self, count: int) -> None:
        self.deadline += count / self._rate


class _Handler(BaseHTTPRequestHandler):
    platform: PlatformServer
    protocol_version = "HTTP/1.1"
    server_version = "LocalPlatform/1"
    # Errors found before the version is read (a garbage request line) still get a status line;
    # http.server's default, HTTP/0.9, would send a bare body.
    default_request_version = "HTTP/1.0"

    def setup(self) -> None:
        super().setup()  # applies `timeout` to the socket, for writes too
        self.rfile.close()
        self._reader = _DeadlineReader(self.connection, self.platform.io_timeout)
        self.rfile = io.BufferedReader(self._reader, _CHUNK_BYTES)
        self._unread = 0

    def handle_one_request(self) -> None:
        # The request line and headers (and, for a keep-alive connection, the wait for them) must
        # arrive before the deadline: a client that trickles them does not keep a worker.
        self._reader.deadline = time.monotonic() + self.platform.header_timeout
        self._unread = 0
        super().handle_one_request()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version not in ("HTTP/1.0", "HTTP/1.1"):
            self.request_version = "HTTP/1.0"  # so that the refusal carries a status line (0.9 has none)
            self.send_error(HTTPStatus.BAD_REQUEST, "only HTTP/1.0 and HTTP/1.1 are served")
            return False
        return True

    def handle_expect_100(self) -> bool:
        # "100 Continue" goes out only once the credentials and sizes are checked (see _accept_body).
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server answers an unknown method with 501 and another HTTP version with 505; both are
        # the client's mistake here, so they get a 4xx like every other malformed request.
        if code == HTTPStatus.NOT_IMPLEMENTED:
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, "every call is a POST"
        elif code == HTTPStatus.HTTP_VERSION_NOT_SUPPORTED:
            code, message = HTTPStatus.BAD_REQUEST, "only HTTP/1.0 and HTTP/1.1 are served"
        self.close_connection = True
        super().send_error(code, message, explain)

    def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
        try:
            self._route()
        except _Refusal as refusal:
            self._refuse(refusal)
        except _ClientGone as gone:
            self.close_connection = True
            logger.info("POST %s: %s", self.path, gone)
            if gone.timed_out:  # the client may still be listening: tell it why the connection ends
                self._unread = 0
                self._send_json(HTTPStatus.REQUEST_TIMEOUT, {"error": "the request body did not arrive in time"})
        except Exception:
            logger.exception("POST %s failed", self.path)
            self._refuse(_Refusal(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the server's log"))

    def do_GET(self) -> None:  # noqa: N802
        self.close_connection = True  # a body it may carry is not read
        self._refuse(_Refusal(HTTPStatus.METHOD_NOT_ALLOWED, "every call is a POST", {"Allow": "POST"}))

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the signature http.server uses)
        logger.debug("%s %s", self.address_string(), format % args)

    # -- the calls ----------------------------------------------------------

    def _route(self) -> None:
        self._unread = self._declared_length()
        if self.path == LOGIN_PATH:
            self._login(self._json_body())
            return
        self.platform._account_for(self.headers.get("Authorization"))
        route = _FILE_ROUTE.fullmatch(self.path)
        if self.path == ACCURACY_PATH:
            self._update_accuracy(self._json_body())
        elif route and route["kind"] in _FILE_TYPES:
            file_type = _FILE_TYPES[route["kind"]]
            if route["action"] == "download":
                self._download(file_type, self._json_body())
            else:
                self._upload(file_type)
        else:
            raise _Refusal(HTTPStatus.NOT_FOUND, f"no such call: POST {self.path[:200]}")

    def _login(self, request: dict[str, Any]) -> None:
        account, password = request.get("account_name"), request.get("password")
        if not isinstance(account, str) or not isinstance(password, str):
            expected = '{"account_name": <access key>, "password": <secret key>}'
            raise _Refusal(HTTPStatus.BAD_REQUEST, f"expected {expected}")
        token = self.platform._authenticate(account, password)
        self._send_json(HTTPStatus.OK, {"token": token, "expires_in": int(self.platform.token_ttl)})

    def _download(self, file_type: str, request: dict[str, Any]) -> None:
        key = f"{file_type}_uid"
        uid = request.get(key)
        path = self._stored_path(file_type, uid, key)
        try:
            source = path.open("rb")
        except FileNotFoundError:
            raise _Refusal(HTTPStatus.NOT_FOUND, f"no {file_type} with uid {uid!r}") from None
        with source:
            size = os.fstat(source.fileno()).st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            try:
                self._send_file(source)
            except OSError as exc:
                self.close_connection = True
                logger.info("download of %s %r: the client went away (%s)", file_type, uid, exc)
                return
        logger.info("download of %s %r: %d bytes", file_type, uid, size)

    def _upload(self, file_type: str) -> None:
        uid = self.headers.get("Uid")
        path = self._stored_path(file_type, uid, "the Uid header")
        boundary = _form_boundary(self.headers.get("Content-Type", ""))
        length = self._accept_body(self.platform.max_body_bytes, required=True)
        # The temporary file sits in the data folder (same file system, so the rename is atomic);
        # the file type's folder appears only once an upload succeeded.
        fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=self.platform.data_dir)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                size = _receive_file_field(self._body_chunks(), boundary, length, out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, fsutil.readable_mode())
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        logger.info("upload of %s %r: %d bytes", file_type, uid, size)
        self._send_json(HTTPStatus.OK, {"status": "stored", "uid": uid})

    def _update_accuracy(self, request: dict[str, Any]) -> None:
        uid, accuracy = request.get("model_uid"), request.get("model_accuracy")
        if not is_valid_uid(uid):
            raise _Refusal(HTTPStatus.BAD_REQUEST, f"model_uid must be a uid ({_UID_RULE}), got {_excerpt(uid)}")
        value = _finite_number(accuracy)
        if value is None:
            raise _Refusal(HTTPStatus.BAD_REQUEST, f"model_accuracy must be a finite number, got {_excerpt(accuracy)}")
        path = self.platform.data_dir / METADATA_DIR / f"{uid}.json"
        record = json.dumps({"model_uid": uid, "model_accuracy": value}, sort_keys=True) + "\n"
        with fsutil.atomic_file(path) as out:
            out.write(record.encode())
        logger.info("accuracy of model %r: %s", uid, value)
        self._send_json(HTTPStatus.OK, {"status": "recorded", "model_uid": uid})

    # -- reading the request ------------------------------------------------

    def _stored_path(self, file_type: str, uid: Any, where: str) -> Path:
        if not is_valid_uid(uid):
            raise _Refusal(HTTPStatus.BAD_REQUEST, f"{where}: expected a uid ({_UID_RULE}), got {_excerpt(uid)}")
        return stored_path(self.platform.data_dir, file_type, uid)

    def _declared_length(self) -> int:
        """The body's length as Content-Length declares it (0 if absent); a malformed one is refused."""
        if self.headers.get("Transfer-Encoding") is not None:
            raise _Refusal(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not a Transfer-Encoding", close=True)
        values = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if len(values) > 1:
            raise _Refusal(HTTPStatus.BAD_REQUEST, "more than one Content-Length", close=True)
        value = values.pop() if values else "0"
        if not _CONTENT_LENGTH.fullmatch(value):
            message = f"Content-Length {value[:40]!r} is not a number of bytes"
            raise _Refusal(HTTPStatus.BAD_REQUEST, message, close=True)
        return int(value)

    def _accept_body(self, limit: int, *, required: bool = False) -> int:
        """Check the declared length against `limit`; then, and only then, invite the body."""
        length = self._unread
        if required and self.headers.get("Content-Length") is None:
            raise _Refusal(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length")
        if length > limit:
            raise _Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a body of {length} bytes; at most {limit} here")
        if self.headers.get("Expect", "").lower() == "100-continue" and self.request_version == "HTTP/1.1":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return length

    def _json_body(self) -> dict[str, Any]:
        length = self._accept_body(JSON_BODY_LIMIT)
        body = b"".join(self._body_chunks())
        if len(body) != length:
            raise _ClientGone("the body ended early")
        return _json_object(body)

    def _body_chunks(self) -> Iterator[bytes]:
        """The body in chunks as it arrives; a JSON body shares the header deadline, an upload has its own."""
        clock = _BodyClock(self.platform) if self._unread > JSON_BODY_LIMIT else None
        while self._unread > 0:
            if clock is not None:
                self._reader.deadline = clock.deadline
            try:
                chunk = self.rfile.read1(min(self._unread, _CHUNK_BYTES))
            except OSError as exc:
                timed_out = isinstance(exc, TimeoutError)
                raise _ClientGone(f"reading the body failed: {exc or type(exc).__name__}", timed_out=timed_out) from exc
            if not chunk:
                raise _ClientGone(f"the connection closed with {self._unread} bytes of the body unsent")
            self._unread -= len(chunk)
            if clock is not None:
                clock.moved(len(chunk))
            yield chunk

    # -- answering ----------------------------------------------------------

    def _send_file(self, source: Any) -> None:
        """Copy `source` to the client within the answer's deadline: a slow reader does not keep a worker."""
        clock = _BodyClock(self.platform)
        while chunk := source.read(_CHUNK_BYTES):
            remaining = clock.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the client did not read the answer in time")
            self.connection.settimeout(min(self.platform.io_timeout, remaining))
            self.wfile.write(chunk)
            clock.moved(len(chunk))
        self.connection.settimeout(self.platform.io_timeout)

    def _refuse(self, refusal: _Refusal) -> None:
        unread = bool(self._unread) or refusal.close
        if unread:
            self.close_connection = True  # the rest of the body is not read: the connection cannot be reused
        self._send_json(refusal.status, {"error": refusal.message}, refusal.headers)
        if unread:
            self._linger()

    def _linger(self) -> None:
        """Read and drop a little of an unread body before closing, so the client sees the answer, not a reset."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self._reader.deadline = time.monotonic() + _LINGER_SECONDS
            drained = 0
            while drained < _LINGER_BYTES:
                chunk = self.rfile.read1(_CHUNK_BYTES)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass

    def _send_json(self, status: HTTPStatus, payload: dict[str, Any], headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", "Bearer")
            if self.close_connection:
                self.send_header("Connection", "close")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except OSError as exc:
            self.close_connection = True
            logger.debug("answer %s to %s not sent: %s", int(status), self.address_string(), exc)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: thousands of nested [
        raise _Refusal(HTTPStatus.BAD_REQUEST, "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise _Refusal(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
    return value


def _finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer such as 10**400
        return None
    return number if math.isfinite(number) else None


def _excerpt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


def _form_boundary(content_type: str) -> str:
    kind, options = multipart.parse_options_header(content_type)
    boundary = options.get("boundary", "")
    if kind != "multipart/form-data" or not boundary:
        raise _Refusal(HTTPStatus.BAD_REQUEST, "expected a multipart/form-data body with a boundary")
    if len(boundary) > 200 or not boundary.isascii():
        raise _Refusal(HTTPStatus.BAD_REQUEST, "the multipart boundary must be at most 200 ASCII characters")
    return str(boundary)


def _receive_file_field(chunks: Iterator[bytes], boundary: str, length: int, out: Any) -> int:
    """Write the form field ``file`` of a multipart/form-data body to `out` as it arrives; return its size.

    Other fields are read and dropped (up to a small size each); a second ``file`` field, a
    missing one, or a body that is not well-formed multipart is refused.
    """
    field: str | None = None
    received = False
    written = dropped = 0
    try:
        parser = multipart.PushMultipartParser(
            boundary, content_length=length, max_segment_count=_FORM_MAX_PARTS, strict=True
        )
        for chunk in _then_end(chunks):
            for event in parser.parse(chunk):
                if isinstance(event, multipart.MultipartSegment):
                    field = event.name
                    if field == "file" and received:
                        raise _Refusal(HTTPStatus.BAD_REQUEST, "more than one form field 'file'")
                    dropped = 0
                elif event is None:
                    received = received or field == "file"
                    field = None
                elif field == "file":
                    out.write(event)
                    written += len(event)
                else:
                    dropped += len(event)
                    if dropped > _FORM_FIELD_LIMIT:
                        raise _Refusal(
                            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"form field {field!r} over {_FORM_FIELD_LIMIT} bytes"
                        )
    except multipart.MultipartError as exc:
        raise _Refusal(HTTPStatus.BAD_REQUEST, f"the multipart body is not well-formed: {exc}") from None
    if not received:
        raise _Refusal(HTTPStatus.BAD_REQUEST, "no form field 'file' in the multipart body")
    return written


def _then_end(chunks: Iterator[bytes]) -> Iterator[bytes]:
    yield from chunks
    yield b""  # tells the parser the input ended: an incomplete body is an error, not a silent success


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
