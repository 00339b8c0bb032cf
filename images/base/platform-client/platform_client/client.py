"""HTTP client for the training platform: log in, download, upload, record accuracy.

The protocol is the platform's (see the project's platform API page). Unlike the
platform's own client, every call here has a timeout, retries dropped
connections, timeouts and 5xx answers a bounded number of times, streams files
to and from disk, and raises `PlatformError` instead of returning an error.
"""

from __future__ import annotations

import io
import logging
import math
import mimetypes
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack, suppress
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar, Union

import requests

from .errors import PlatformError

__all__ = ["FILE_KINDS", "PlatformClient"]

logger = logging.getLogger(__name__)

#: file_type -> the {Kind} in the file manager's URL.
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

LOGIN_PATH = "/api/v1.1.1/entrypoint/AccountValidator/login"
ACCURACY_PATH = "/api/v1.1.1/entrypoint/ModelMetadataWriter/update"
FILE_PATH = "/api/v0.1/file_operation/{kind}FileManager/{action}"

TimeoutSpec = Union[float, tuple[float, float]]
T = TypeVar("T")

_CHUNK_BYTES = 1024 * 1024
_EXCERPT_CHARS = 200
_EXCERPT_READ_BYTES = 4096
_MAX_DELAY_SECONDS = 30.0


class _IncompleteBody(Exception):
    """The connection ended before the body announced by Content-Length arrived."""


_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError, _IncompleteBody)


class PlatformClient:
    """A logged-in client of the training platform.

    `host` may carry a scheme (``https://name``), which then wins over `scheme`.
    `timeout` is seconds, or a (connect, read) pair, applied to every request.
    Dropped connections, timeouts, 429 and 5xx answers are tried again up to
    `retries` times, waiting `backoff`, 2*`backoff`, 4*`backoff`... seconds.
    Any other failure raises `PlatformError`; its message never contains the
    secret key.
    """

    def __init__(
        self,
        host: str,
        port: str | int,
        access_key: str,
        secret_key: str,
        *,
        scheme: str = "http",
        timeout: TimeoutSpec = (10, 300),
        retries: int = 4,
        backoff: float = 0.5,
    ) -> None:
        host = str(host).strip()
        if "://" in host:
            scheme, _, host = host.partition("://")
        host = host.rstrip("/")
        if not host:
            raise ValueError("host is empty: give the platform's host name or address")
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme must be 'http' or 'https', got {scheme!r}")
        try:
            port_number = int(str(port).strip())
        except ValueError:
            raise ValueError(f"port must be a number, got {port!r}") from None
        if not 0 < port_number < 65536:
            raise ValueError(f"port must be between 1 and 65535, got {port_number}")
        if host.count(":") == 1:
            raise ValueError(f"host {host!r} includes a port: pass the port separately")
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address
        if not isinstance(access_key, str) or not access_key:
            raise ValueError("access_key must be a non-empty string")
        if not isinstance(secret_key, str):
            raise ValueError("secret_key must be a string")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
        if not backoff >= 0:
            raise ValueError(f"backoff must be >= 0 seconds, got {backoff!r}")
        self.timeout = _check_timeout(timeout)
        self.base_url = f"{scheme}://{host}:{port_number}"
        self.access_key = access_key
        self.retries = retries
        self.backoff = float(backoff)
        self._secret_key = secret_key
        self._token: str | None = None
        self._logged_in = False
        self._http = requests.Session()

    def __repr__(self) -> str:
        return f"PlatformClient({self.base_url!r}, access_key={self.access_key!r})"

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    @property
    def logged_in(self) -> bool:
        return self._logged_in

    # -- the four calls ------------------------------------------------------

    def login(self) -> None:
        """Log in; later calls send the token the platform answers with, if any."""
        what = f"login as {self.access_key!r} to {self.base_url}"
        payload = {"account_name": self.access_key, "password": self._secret_key}

        def handle(response: requests.Response) -> None:
            body = response.content
            try:
                credentials = response.json()
            except ValueError:
                credentials = None
            if not isinstance(credentials, dict):
                raise self._error(
                    f"{what} failed: the platform answered HTTP 200 with a body that is not "
                    f"a JSON object: {self._excerpt(body)}"
                )
            token = credentials.get("token") or credentials.get("access_token")
            self._token = token if isinstance(token, str) and token else None
            self._logged_in = True
            if self._token is None:
                logger.info("%s: no token in the answer; later calls go without Authorization", what)
            else:
                logger.info("%s: logged in", what)

        self._call(what, LOGIN_PATH, authenticated=False, build=lambda stack: {"json": payload}, handle=handle)

    def download(self, file_type: str, uid: str, dest: str | Path) -> Path:
        """Download a file to `dest` (a file path); return it.

        The body is streamed to a temporary file beside `dest`, which is renamed
        onto `dest` only once it is complete.
        """
        path = FILE_PATH.format(kind=_kind(file_type), action="download")
        _check_uid(uid)
        dest = Path(dest)
        what = f"download of {file_type} {uid!r} from {self.base_url}"
        self._ensure_login()

        def handle(response: requests.Response) -> Path:
            written = _stream_to_file(response, dest)
            logger.info("%s: %d bytes written to %s", what, written, dest)
            return dest

        return self._call(
            what, path, authenticated=True, build=lambda stack: {"json": {f"{file_type}_uid": uid}}, handle=handle
        )

    def upload(self, file_type: str, uid: str, path: str | Path) -> None:
        """Upload the file at `path` as `uid` (multipart field ``file``), read from disk in chunks."""
        url_path = FILE_PATH.format(kind=_kind(file_type), action="upload")
        _check_uid(uid)
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"cannot upload {file_type} {uid!r}: {source} is not a file")
        what = f"upload of {file_type} {uid!r} ({source.name}) to {self.base_url}"
        self._ensure_login()

        def build(stack: ExitStack) -> dict[str, Any]:
            body = _MultipartFile(source, "file", stack)
            return {"data": body, "headers": {"Uid": uid, "Content-Type": body.content_type}}

        def handle(response: requests.Response) -> None:
            logger.info("%s: stored", what)

        self._call(what, url_path, authenticated=True, build=build, handle=handle)

    def upload_accuracy(self, model_uid: str, accuracy: float) -> None:
        """Record a model's accuracy (a finite number)."""
        _check_uid(model_uid)
        if isinstance(accuracy, bool):
            raise ValueError(f"accuracy must be a number, got {accuracy!r}")
        value = float(accuracy)
        if not math.isfinite(value):
            raise ValueError(f"accuracy must be a finite number, got {accuracy!r}")
        what = f"accuracy update of model {model_uid!r} at {self.base_url}"
        self._ensure_login()
        payload = {"model_uid": model_uid, "model_accuracy": value}

        def handle(response: requests.Response) -> None:
            logger.info("%s: recorded %s", what, value)

        self._call(what, ACCURACY_PATH, authenticated=True, build=lambda stack: {"json": payload}, handle=handle)

    # -- plumbing -----------------------------------------------------------

    def _ensure_login(self) -> None:
        if not self._logged_in:
            self.login()

    def _call(
        self,
        what: str,
        path: str,
        *,
        authenticated: bool,
        build: Callable[[ExitStack], dict[str, Any]],
        handle: Callable[[requests.Response], T],
    ) -> T:
        """POST to `path`, retrying transient failures; `handle` gets a 200 answer."""
        url = self.base_url + path
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                with ExitStack() as stack:
                    kwargs = build(stack)
                    headers = dict(kwargs.pop("headers", {}))
                    if authenticated and self._token:
                        headers["Authorization"] = f"Bearer {self._token}"
                    response = self._http.post(url, headers=headers, timeout=self.timeout, stream=True, **kwargs)
                    stack.callback(response.close)
                    if response.status_code == 200:
                        return handle(response)
                    status = f"HTTP {response.status_code} {response.reason or ''}".rstrip()
                    if not (_is_transient_status(response.status_code) and attempt < attempts):
                        answer = self._excerpt(_read_head(response))
                        tried = f" after {attempt} attempts" if attempt > 1 else ""
                        raise self._error(f"{what} failed{tried}: the platform answered {status}: {answer}")
                    retry_reason = status
            except _TRANSIENT as exc:
                retry_reason = self._describe(exc)
                if attempt == attempts:
                    raise self._error(f"{what} failed after {attempts} attempt(s): {retry_reason}") from exc
            except requests.RequestException as exc:
                raise self._error(f"{what} failed: {type(exc).__name__}: {_root_cause(exc)}") from exc
            self._pause(what, retry_reason, attempt, attempts)
        raise AssertionError("unreachable")  # pragma: no cover

    def _pause(self, what: str, reason: str, attempt: int, attempts: int) -> None:
        delay = min(self.backoff * 2 ** (attempt - 1), _MAX_DELAY_SECONDS)
        logger.warning("%s: %s (attempt %d of %d); trying again in %.2fs", what, reason, attempt, attempts, delay)
        time.sleep(delay)

    def _describe(self, exc: BaseException) -> str:
        connect, read = self.timeout
        if isinstance(exc, requests.ConnectTimeout):
            return f"could not connect within {connect:g}s"
        if isinstance(exc, requests.ReadTimeout) or "timed out" in str(exc).lower():
            return f"timed out: no answer within {read:g}s"
        if isinstance(exc, _IncompleteBody):
            return str(exc)
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return f"connection lost while reading the answer: {_root_cause(exc)}"
        return f"connection failed: {_root_cause(exc)}"

    def _redact(self, text: str) -> str:
        for secret in (self._secret_key, self._token):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _error(self, message: str) -> PlatformError:
        return PlatformError(self._redact(message))

    def _excerpt(self, body: bytes) -> str:
        text = " ".join(body.decode("utf-8", errors="replace").split())
        text = self._redact(text)  # before cutting, so no prefix of a secret survives the cut
        if not text:
            return "(empty body)"
        return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


class _MultipartFile:
    """A multipart/form-data body holding one file field, read from disk as it is sent.

    It has a length, so it goes out with Content-Length rather than chunked.
    """

    def __init__(self, path: Path, field: str, stack: ExitStack) -> None:
        boundary = f"platform-client-{uuid.uuid4().hex}"
        filename = path.name.replace("\\", "\\\\").replace('"', "%22").replace("\r", "").replace("\n", "")
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode("ascii")
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self._path = path
        self._file = stack.enter_context(path.open("rb"))
        self._file_left = os.fstat(self._file.fileno()).st_size
        self._head = io.BytesIO(head)
        self._tail = io.BytesIO(tail)
        self._length = len(head) + self._file_left + len(tail)

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._length
        chunk = self._head.read(size)
        if chunk:
            return chunk
        if self._file_left > 0:
            chunk = self._file.read(min(size, self._file_left))
            if not chunk:
                raise PlatformError(f"{self._path} shrank while it was being uploaded")
            self._file_left -= len(chunk)
            return chunk
        return self._tail.read(size)


def _kind(file_type: str) -> str:
    try:
        return FILE_KINDS[file_type]
    except (KeyError, TypeError):
        raise ValueError(f"unknown file_type {file_type!r}; valid: {', '.join(FILE_KINDS)}") from None


def _check_uid(uid: str) -> None:
    if not isinstance(uid, str) or not uid.strip():
        raise ValueError(f"uid must be a non-empty string, got {uid!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in uid):
        raise ValueError(f"uid must not contain control characters, got {uid!r}")


def _check_timeout(timeout: TimeoutSpec) -> tuple[float, float]:
    pair = timeout if isinstance(timeout, (tuple, list)) else (timeout, timeout)
    try:
        connect, read = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(f"timeout must be seconds or a (connect, read) pair, got {timeout!r}") from None
    if not (connect > 0 and read > 0):
        raise ValueError(f"timeouts must be > 0 seconds, got {timeout!r}")
    return connect, read


def _root_cause(exc: BaseException) -> str:
    """The innermost reason inside requests' and urllib3's wrappers, without object addresses."""
    reason: BaseException = exc
    for _ in range(10):
        inner = getattr(reason, "reason", None)
        if not isinstance(inner, BaseException) and reason.args and isinstance(reason.args[-1], BaseException):
            inner = reason.args[-1]
        if not isinstance(inner, BaseException) or inner is reason:
            break
        reason = inner
    return re.sub(r"<[^<>]*>: ", "", str(reason)) or type(reason).__name__


def _is_transient_status(status: int) -> bool:
    return status == 429 or status >= 500


def _read_head(response: requests.Response) -> bytes:
    """Up to a few KiB of an error answer's body (enough for the message)."""
    head = b""
    with suppress(requests.RequestException):
        for chunk in response.iter_content(1024):
            head += chunk
            if len(head) >= _EXCERPT_READ_BYTES:
                break
    return head


def _stream_to_file(response: requests.Response, dest: Path) -> int:
    """Write the body to a temporary file beside `dest`, check its length, rename it onto `dest`."""
    expected = response.headers.get("Content-Length")
    if response.headers.get("Content-Encoding") or not (expected or "").isdigit():
        expected = None  # a decoded or unannounced length cannot be checked
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in response.iter_content(_CHUNK_BYTES):
                out.write(chunk)
                written += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        if expected is not None and written != int(expected):
            raise _IncompleteBody(f"connection lost: the body ended after {written} of {expected} bytes")
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, dest)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return written
