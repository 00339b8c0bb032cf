"""A local server that speaks the training platform's HTTP API, for development and tests.

Files live on disk as ``<data>/<file_type>/<uid>``, accuracies as
``<data>/model_metadata/<uid>.json``. Accounts are access key -> secret key.
Login answers ``{"token": ...}``; every other call needs
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import re
import secrets
import shutil
import sys
import threading
from collections.abc import Mapping
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import HTTP
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .. import fsutil
from ..errors import ConfigError

__all__ = [
    "FILE_KINDS",
    "PlatformServer",
    "load_accounts",
    "seed_dataset",
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
_FILE_ROUTE = re.compile(r"^/api/v0\.1/file_operation/(?P<kind>[A-Za-z]+)FileManager/(?P<action>download|upload)$")
_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
METADATA_DIR = "model_metadata"

DEFAULT_MAX_BODY_BYTES = 1024**3
_JSON_BODY_LIMIT = 1024 * 1024
_CHUNK_BYTES = 1024 * 1024
_POLL_SECONDS = 0.05  # how soon stop() is noticed


class _Refusal(Exception):
    """Answer the request with `status` and a JSON error message."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def stored_path(data_dir: Path, file_type: str, uid: str) -> Path:
    """Where the server keeps file `uid` of `file_type` under `data_dir`."""
    if file_type not in FILE_KINDS:
        raise ValueError(f"unknown file_type {file_type!r}; valid: {', '.join(FILE_KINDS)}")
    if not _UID.match(uid):
        raise ValueError(
            f"uid {uid!r} is not valid: use letters, digits, '.', '_' and '-', starting with one of the first two"
        )
    return Path(data_dir) / file_type / uid


def seed_dataset(data_dir: Path | str, uid: str, zip_path: Path | str) -> Path:
    """Store the training dataset `zip_path` as uid `uid`; return where it went."""
    dest = stored_path(Path(data_dir), "training_dataset", uid)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(dest, lambda out: _copy_file(Path(zip_path), out))
    logger.info("seeded training_dataset %r from %s", uid, zip_path)
    return dest


def load_accounts(path: Path | str) -> dict[str, str]:
    """Read accounts from a YAML or JSON file: ``accounts: {<access_key>: <secret_key>}``."""
    import yaml  # JSON is YAML too

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the accounts file: {exc.strerror or exc}") from exc
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
    ) -> None:
        self.data_dir = Path(data_dir)
        self._accounts = dict(accounts)
        self._bind = (host, int(port))
        self.max_body_bytes = max_body_bytes
        self._tokens: dict[str, str] = {}
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
        """Stop serving and release the port."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join()
        self._httpd = self._thread = None
        logger.info("platform server stopped")

    def serve_forever(self) -> None:
        """Bind and serve in this thread until interrupted."""
        self._httpd = self._make_httpd()
        logger.info("platform server on %s, data in %s", self.url, self.data_dir)
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
        self.data_dir.mkdir(parents=True, exist_ok=True)
        server = self

        class Handler(_Handler):
            platform = server

        return _HTTPServer(self._bind, Handler)

    def _bound(self) -> tuple[str, int]:
        if self._httpd is None:
            raise RuntimeError("the platform server is not running: call start() first")
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def _authenticate(self, account: str, password: str) -> str:
        """A new token for `account`, if `password` is its secret key."""
        expected = self._accounts.get(account)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            logger.info("login refused for account %r", account)
            raise _Refusal(HTTPStatus.UNAUTHORIZED, "wrong access key or secret key")
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = account
        logger.info("login of account %r", account)
        return token

    def _account_for(self, authorization: str | None) -> str:
        """The account whose token the Authorization header carries."""
        scheme, _, token = (authorization or "").partition(" ")
        with self._lock:
            account = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if account is None:
            raise _Refusal(HTTPStatus.UNAUTHORIZED, "log in first and send 'Authorization: Bearer <token>'")
        return account


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log (socketserver's default prints to stderr); a client that hangs up is routine."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            logger.debug("connection from %s lost: %s", client_address, exc)
        else:
            logger.exception("error while serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    platform: PlatformServer
    protocol_version = "HTTP/1.1"
    server_version = "LocalPlatform/1"

    def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
        try:
            body = self._read_body()
            if self.path == LOGIN_PATH:
                self._login(body)
                return
            self.platform._account_for(self.headers.get("Authorization"))
            route = _FILE_ROUTE.match(self.path)
            if self.path == ACCURACY_PATH:
                self._update_accuracy(body)
            elif route and route["kind"] in _FILE_TYPES:
                file_type = _FILE_TYPES[route["kind"]]
                if route["action"] == "download":
                    self._download(file_type, body)
                else:
                    self._upload(file_type, body)
            else:
                raise _Refusal(HTTPStatus.NOT_FOUND, f"no such call: POST {self.path}")
        except _Refusal as refusal:
            self._send_json(refusal.status, {"error": refusal.message})
        except Exception:
            logger.exception("POST %s failed", self.path)
            self.close_connection = True
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error; see the server's log"})

    def do_GET(self) -> None:  # noqa: N802
        self._refuse_method()

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the signature http.server uses)
        logger.debug("%s %s", self.address_string(), format % args)

    # -- the calls ----------------------------------------------------------

    def _login(self, body: bytes) -> None:
        request = _json_object(body)
        account, password = request.get("account_name"), request.get("password")
        if not isinstance(account, str) or not isinstance(password, str):
            expected = '{"account_name": <access key>, "password": <secret key>}'
            raise _Refusal(HTTPStatus.BAD_REQUEST, f"expected {expected}")
        token = self.platform._authenticate(account, password)
        self._send_json(HTTPStatus.OK, {"token": token})

    def _download(self, file_type: str, body: bytes) -> None:
        key = f"{file_type}_uid"
        uid = _json_object(body).get(key)
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
                shutil.copyfileobj(source, self.wfile, _CHUNK_BYTES)
            except ConnectionError:
                self.close_connection = True
                logger.info("download of %s %r: the client went away", file_type, uid)
                return
        logger.info("download of %s %r: %d bytes", file_type, uid, size)

    def _upload(self, file_type: str, body: bytes) -> None:
        uid = self.headers.get("Uid")
        path = self._stored_path(file_type, uid, "the Uid header")
        content = _multipart_field(self.headers.get("Content-Type", ""), body, "file")
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, lambda out: out.write(content))
        logger.info("upload of %s %r: %d bytes", file_type, uid, len(content))
        self._send_json(HTTPStatus.OK, {"status": "stored", "uid": uid})

    def _update_accuracy(self, body: bytes) -> None:
        request = _json_object(body)
        uid, accuracy = request.get("model_uid"), request.get("model_accuracy")
        if not isinstance(uid, str) or not _UID.match(uid):
            raise _Refusal(HTTPStatus.BAD_REQUEST, f"model_uid must be a valid uid, got {uid!r}")
        if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not math.isfinite(accuracy):
            raise _Refusal(HTTPStatus.BAD_REQUEST, f"model_accuracy must be a finite number, got {accuracy!r}")
        path = self.platform.data_dir / METADATA_DIR / f"{uid}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        record = json.dumps({"model_uid": uid, "model_accuracy": float(accuracy)}, sort_keys=True) + "\n"
        _write_atomically(path, lambda out: out.write(record.encode()))
        logger.info("accuracy of model %r: %s", uid, accuracy)
        self._send_json(HTTPStatus.OK, {"status": "recorded", "model_uid": uid})

    # -- plumbing -----------------------------------------------------------

    def _stored_path(self, file_type: str, uid: Any, where: str) -> Path:
        if not isinstance(uid, str) or not _UID.match(uid):
            raise _Refusal(
                HTTPStatus.BAD_REQUEST, f"{where}: expected a uid (letters, digits, '.', '_', '-'), got {uid!r}"
            )
        return stored_path(self.platform.data_dir, file_type, uid)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise _Refusal(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not a chunked body")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise _Refusal(HTTPStatus.BAD_REQUEST, "Content-Length is not a number") from None
        if length < 0 or length > self.platform.max_body_bytes:
            self.close_connection = True  # the body stays unread
            raise _Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {self.platform.max_body_bytes} bytes")
        return self.rfile.read(length)

    def _refuse_method(self) -> None:
        self.close_connection = True
        self._send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "every call is a POST"}, {"Allow": "POST"})

    def _send_json(self, status: HTTPStatus, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", "Bearer")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def serve_forever(host: str, port: int, data_dir: Path | str, accounts: Mapping[str, str]) -> None:
    """Serve the platform API on `host`:`port` from `data_dir` until interrupted."""
    if not accounts:
        raise ConfigError("the platform server needs at least one account (access key -> secret key)")
    PlatformServer(data_dir, accounts, host=host, port=port).serve_forever()


def _json_object(body: bytes) -> dict[str, Any]:
    if len(body) > _JSON_BODY_LIMIT:
        raise _Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "a JSON body over 1 MiB")
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise _Refusal(HTTPStatus.BAD_REQUEST, "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise _Refusal(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
    return value


def _multipart_field(content_type: str, body: bytes, field: str) -> bytes:
    """The content of form field `field` in a multipart/form-data `body`."""
    header = Message(policy=HTTP)
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary") if header.get_content_type() == "multipart/form-data" else None
    if not isinstance(boundary, str) or not boundary:
        raise _Refusal(HTTPStatus.BAD_REQUEST, "expected a multipart/form-data body with a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    # Parts sit between "--boundary\r\n" and "\r\n--boundary"; the last is followed by "--".
    position = body.find(delimiter)
    while position >= 0:
        position += len(delimiter)
        if body[position : position + 2] == b"--":
            break
        headers_end = body.find(b"\r\n\r\n", position)
        next_delimiter = body.find(b"\r\n" + delimiter, headers_end + 4) if headers_end >= 0 else -1
        if next_delimiter < 0:
            break
        part = BytesHeaderParser(policy=HTTP).parsebytes(body[position:headers_end].lstrip(b"\r\n") + b"\r\n\r\n")
        if part.get_param("name", header="content-disposition") == field:
            return body[headers_end + 4 : next_delimiter]
        position = next_delimiter + 2
    raise _Refusal(HTTPStatus.BAD_REQUEST, f"no form field {field!r} in the multipart body")


def _copy_file(source: Path, out: Any) -> None:
    with source.open("rb") as f:
        shutil.copyfileobj(f, out, _CHUNK_BYTES)


def _write_atomically(dest: Path, write: Any) -> None:
    with fsutil.atomic_file(dest) as out:
        write(out)
