"""The request handler: the platform's four calls, each request read within its deadlines.

- credentials are checked before a body is read, and "100 Continue" goes out only then;
- the request line and headers (and a JSON body) must arrive within `header_timeout`; an upload's body
  or a download's answer within `body_timeout` plus one second per `min_body_rate` bytes moved; every
  read or write within `io_timeout`;
- a framing error (a duplicate or malformed Content-Length, a Transfer-Encoding) closes the connection,
  so the rest of its bytes are never read as another request;
- every malformed request gets a 4xx naming what is wrong, never a 500.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol

from ...util import fsutil
from . import storage
from .forms import excerpt, finite_number, form_boundary, json_object, receive_file_field
from .refusals import ClientGone, Refusal
from .storage import CHUNK_BYTES, FILE_TYPES, UID_RULE, is_valid_uid, stored_path
from .tokens import TokenStore

logger = logging.getLogger(__name__)

LOGIN_PATH = "/api/v1.1.1/entrypoint/AccountValidator/login"
ACCURACY_PATH = "/api/v1.1.1/entrypoint/ModelMetadataWriter/update"
FILE_ROUTE = re.compile(r"/api/v0\.1/file_operation/(?P<kind>[A-Za-z]+)FileManager/(?P<action>download|upload)")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
JSON_BODY_LIMIT = 64 * 1024  # login, download and accuracy bodies are a few hundred bytes
_LINGER_SECONDS = 1.0  # after refusing an unread body, how long its rest is read and dropped...
_LINGER_BYTES = 4 * 1024 * 1024  # ...and how much, so the client sees the answer instead of a reset


class Platform(Protocol):
    """What the handler reads of the server it serves."""

    data_dir: Path
    max_body_bytes: int
    header_timeout: float
    io_timeout: float
    body_timeout: float
    min_body_rate: float
    tokens: TokenStore


class DeadlineReader(io.RawIOBase):
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


class BodyClock:
    """The deadline of a body in transit: `body_timeout` from its start, one second more per `min_body_rate` bytes."""

    def __init__(self, platform: Platform) -> None:
        self.deadline = time.monotonic() + platform.body_timeout
        self._rate = platform.min_body_rate

    def moved(self, count: int) -> None:
        self.deadline += count / self._rate


class Handler(BaseHTTPRequestHandler):
    platform: Platform
    protocol_version = "HTTP/1.1"
    server_version = "LocalPlatform/1"
    # Errors found before the version is read (a garbage request line) still get a status line;
    # http.server's default, HTTP/0.9, would send a bare body.
    default_request_version = "HTTP/1.0"

    def setup(self) -> None:
        super().setup()  # applies `timeout` to the socket, for writes too
        self.rfile.close()
        self._reader = DeadlineReader(self.connection, self.platform.io_timeout)
        self.rfile = io.BufferedReader(self._reader, CHUNK_BYTES)
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
        except Refusal as refusal:
            self._refuse(refusal)
        except ClientGone as gone:
            self.close_connection = True
            logger.info("POST %s: %s", self.path, gone)
            if gone.timed_out:  # the client may still be listening: tell it why the connection ends
                self._unread = 0
                self._send_json(HTTPStatus.REQUEST_TIMEOUT, {"error": "the request body did not arrive in time"})
        except Exception:
            logger.exception("POST %s failed", self.path)
            self._refuse(Refusal(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the server's log"))

    def do_GET(self) -> None:  # noqa: N802
        self.close_connection = True  # a body it may carry is not read
        self._refuse(Refusal(HTTPStatus.METHOD_NOT_ALLOWED, "every call is a POST", {"Allow": "POST"}))

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the signature http.server uses)
        logger.debug("%s %s", self.address_string(), format % args)

    # -- the calls ----------------------------------------------------------

    def _route(self) -> None:
        self._unread = self._declared_length()
        if self.path == LOGIN_PATH:
            self._login(self._json_body())
            return
        self.platform.tokens.account_for(self.headers.get("Authorization"))
        route = FILE_ROUTE.fullmatch(self.path)
        if self.path == ACCURACY_PATH:
            self._update_accuracy(self._json_body())
        elif route and route["kind"] in FILE_TYPES:
            file_type = FILE_TYPES[route["kind"]]
            if route["action"] == "download":
                self._download(file_type, self._json_body())
            else:
                self._upload(file_type)
        else:
            raise Refusal(HTTPStatus.NOT_FOUND, f"no such call: POST {self.path[:200]}")

    def _login(self, request: dict[str, Any]) -> None:
        account, password = request.get("account_name"), request.get("password")
        if not isinstance(account, str) or not isinstance(password, str):
            expected = '{"account_name": <access key>, "password": <secret key>}'
            raise Refusal(HTTPStatus.BAD_REQUEST, f"expected {expected}")
        token = self.platform.tokens.login(account, password)
        self._send_json(HTTPStatus.OK, {"token": token, "expires_in": int(self.platform.tokens.ttl)})

    def _download(self, file_type: str, request: dict[str, Any]) -> None:
        key = f"{file_type}_uid"
        uid = request.get(key)
        path = self._stored_path(file_type, uid, key)
        try:
            source = path.open("rb")
        except FileNotFoundError:
            raise Refusal(HTTPStatus.NOT_FOUND, f"no {file_type} with uid {uid!r}") from None
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
        boundary = form_boundary(self.headers.get("Content-Type", ""))
        length = self._accept_body(self.platform.max_body_bytes, required=True)
        # The temporary file sits in the data folder (same file system, so the rename is atomic);
        # the file type's folder appears only once an upload succeeded.
        fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=self.platform.data_dir)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                size = receive_file_field(self._body_chunks(), boundary, length, out)
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
            raise Refusal(HTTPStatus.BAD_REQUEST, f"model_uid must be a uid ({UID_RULE}), got {excerpt(uid)}")
        value = finite_number(accuracy)
        if value is None:
            raise Refusal(HTTPStatus.BAD_REQUEST, f"model_accuracy must be a finite number, got {excerpt(accuracy)}")
        storage.write_accuracy(self.platform.data_dir, uid, value)
        logger.info("accuracy of model %r: %s", uid, value)
        self._send_json(HTTPStatus.OK, {"status": "recorded", "model_uid": uid})

    # -- reading the request ------------------------------------------------

    def _stored_path(self, file_type: str, uid: Any, where: str) -> Path:
        if not is_valid_uid(uid):
            raise Refusal(HTTPStatus.BAD_REQUEST, f"{where}: expected a uid ({UID_RULE}), got {excerpt(uid)}")
        return stored_path(self.platform.data_dir, file_type, uid)

    def _declared_length(self) -> int:
        """The body's length as Content-Length declares it (0 if absent); a malformed one is refused."""
        if self.headers.get("Transfer-Encoding") is not None:
            raise Refusal(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not a Transfer-Encoding", close=True)
        values = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if len(values) > 1:
            raise Refusal(HTTPStatus.BAD_REQUEST, "more than one Content-Length", close=True)
        value = values.pop() if values else "0"
        if not _CONTENT_LENGTH.fullmatch(value):
            message = f"Content-Length {value[:40]!r} is not a number of bytes"
            raise Refusal(HTTPStatus.BAD_REQUEST, message, close=True)
        return int(value)

    def _accept_body(self, limit: int, *, required: bool = False) -> int:
        """Check the declared length against `limit`; then, and only then, invite the body."""
        length = self._unread
        if required and self.headers.get("Content-Length") is None:
            raise Refusal(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length")
        if length > limit:
            raise Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a body of {length} bytes; at most {limit} here")
        if self.headers.get("Expect", "").lower() == "100-continue" and self.request_version == "HTTP/1.1":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return length

    def _json_body(self) -> dict[str, Any]:
        length = self._accept_body(JSON_BODY_LIMIT)
        body = b"".join(self._body_chunks())
        if len(body) != length:
            raise ClientGone("the body ended early")
        return json_object(body)

    def _body_chunks(self) -> Iterator[bytes]:
        """The body in chunks as it arrives; a JSON body shares the header deadline, an upload has its own."""
        clock = BodyClock(self.platform) if self._unread > JSON_BODY_LIMIT else None
        while self._unread > 0:
            if clock is not None:
                self._reader.deadline = clock.deadline
            try:
                chunk = self.rfile.read1(min(self._unread, CHUNK_BYTES))
            except OSError as exc:
                timed_out = isinstance(exc, TimeoutError)
                raise ClientGone(f"reading the body failed: {exc or type(exc).__name__}", timed_out=timed_out) from exc
            if not chunk:
                raise ClientGone(f"the connection closed with {self._unread} bytes of the body unsent")
            self._unread -= len(chunk)
            if clock is not None:
                clock.moved(len(chunk))
            yield chunk

    # -- answering ----------------------------------------------------------

    def _send_file(self, source: Any) -> None:
        """Copy `source` to the client within the answer's deadline: a slow reader does not keep a worker."""
        clock = BodyClock(self.platform)
        while chunk := source.read(CHUNK_BYTES):
            remaining = clock.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the client did not read the answer in time")
            self.connection.settimeout(min(self.platform.io_timeout, remaining))
            self.wfile.write(chunk)
            clock.moved(len(chunk))
        self.connection.settimeout(self.platform.io_timeout)

    def _refuse(self, refusal: Refusal) -> None:
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
                chunk = self.rfile.read1(CHUNK_BYTES)
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
