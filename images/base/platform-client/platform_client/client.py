"""HTTP client for the training platform: log in, download, upload, record accuracy.

The protocol is the platform's (see the project's platform API page). Unlike the
platform's own client, every call here has a timeout, retries dropped
connections, timeouts and 5xx answers a bounded number of times (one urllib3
`Retry` policy), streams files to and from disk, never follows a redirect with
credentials, and raises `PlatformError` instead of returning an error.
"""

from __future__ import annotations

import io
import json
import logging
import math
import mimetypes
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack, suppress
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar, Union
from urllib.parse import quote, quote_plus, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ProtocolError
from urllib3.util.retry import Retry

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

#: Secrets shorter than this are not masked in messages: masking "1" would turn
#: "127.0.0.1" into "***27.0.0.***" and hide nothing a guess would not find.
MIN_REDACTED_CHARS = 4

_CHUNK_BYTES = 1024 * 1024
_EXCERPT_CHARS = 200
_EXCERPT_READ_BYTES = 4096
_MAX_DELAY_SECONDS = 30.0
_RETRIED_STATUSES = frozenset({429, *range(500, 600)})


class _IncompleteBody(Exception):
    """The connection ended before the body announced by Content-Length arrived."""


class _BodyCut(Exception):
    """A 200 answer's body broke off while it was read (the request is worth asking again)."""


class _Retry(Retry):
    """urllib3's Retry, with a server's Retry-After capped (an answer cannot park a step for hours),
    that logs a retried status (urllib3 logs a retried connection error itself, but not a status)."""

    def get_retry_after(self, response: Any) -> float | None:
        value = super().get_retry_after(response)
        return None if value is None else min(value, _MAX_DELAY_SECONDS)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> _Retry:
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        # urllib3 2 types this as Self, 1.26's stubs as Retry; both build the next one with type(self).
        assert isinstance(retry, _Retry), "urllib3's Retry.increment returns an instance of the caller's class"
        if error is None and response is not None:
            status = f"HTTP {response.status} {getattr(response, 'reason', '') or ''}".rstrip()
            logger.warning("%s %s: %s; trying again (retries left: %s)", method, url, status, retry.total)
        return retry


def retry_policy(retries: int, backoff: float) -> Retry:
    """The client's one retry policy: dropped connections, timeouts, 429 and 5xx, `retries` times.

    Waits grow as `backoff` * 2**n seconds (urllib3 tries the first retry at once). Every
    call is a POST that can be repeated safely (a login, a download, an upload or a record
    that overwrites the same uid), so POST is retried. Redirects are never followed.

    buildtool's registry client (buildtool/push/registry.py, `retry_policy`) builds the same
    urllib3 Retry in the same shape; this package ships alone in an image and cannot import
    it, so the two are kept alike by hand: change one, look at the other.
    """
    return _Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        redirect=False,
        allowed_methods=frozenset({"POST"}),
        status_forcelist=_RETRIED_STATUSES,
        backoff_factor=backoff,
        raise_on_status=False,  # the last answer comes back, so the error can quote it
    )


class _Bearer(requests.auth.AuthBase):
    """Sends the login token; also keeps requests from adding ~/.netrc credentials of its own."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.token:
            request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class PlatformClient:
    """A logged-in client of the training platform.

    `host` may carry a scheme (``https://name``), which then wins over `scheme`.
    `timeout` is seconds, or a (connect, read) pair, applied to every request.
    Dropped connections, timeouts, 429 and 5xx answers are tried again up to
    `retries` times (see `retry_policy`), and so is a download whose body
    breaks off. A call that carries credentials never follows a redirect: a 3xx
    answer is an error naming its target. A 401 on a call after login (the
    token expired) logs in again once. Any other failure raises
    `PlatformError`; its message never contains the secret key or the token,
    as written or JSON-, URL- or repr-escaped (unless the secret is shorter
    than `MIN_REDACTED_CHARS`).
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
        self._retry = retry_policy(retries, self.backoff)
        self._http = requests.Session()
        adapter = HTTPAdapter(max_retries=self._retry)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)

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
        """POST to `path` under the retry policy; `handle` gets a 200 answer."""
        url = self.base_url + path
        retry = self._retry
        logged_in_again = False
        while True:
            try:
                return self._post_once(what, url, authenticated, build, handle)
            except _TokenRefused:
                if logged_in_again:
                    raise self._error(f"{what} failed: the platform refused the token of a fresh login") from None
                logged_in_again = True
                logger.info("%s: the token was refused (expired?); logging in again", what)
                self._logged_in = False
                self.login()
            except _BodyCut as cut:
                # The answer's body broke off: the adapter cannot retry that (the status had
                # arrived), so it counts here against the same policy's read budget.
                reason = self._describe(cut.__cause__ or cut)
                try:
                    retry = retry.increment(method="POST", url=url, error=ProtocolError(reason))
                except MaxRetryError:
                    attempts = len(retry.history) + 1
                    raise self._error(f"{what} failed after {attempts} attempt(s): {reason}") from cut
                logger.warning("%s: %s; trying again", what, reason)
                retry.sleep()
            except requests.ConnectionError as exc:  # the policy's retries are spent (or it was not retryable)
                spent = isinstance(exc.args[0] if exc.args else None, MaxRetryError)
                tried = f" after {self.retries + 1} attempt(s)" if spent else ""
                raise self._error(f"{what} failed{tried}: {self._describe(exc)}") from exc
            except requests.RequestException as exc:
                raise self._error(f"{what} failed: {type(exc).__name__}: {_root_cause(exc)}") from exc

    def _post_once(
        self,
        what: str,
        url: str,
        authenticated: bool,
        build: Callable[[ExitStack], dict[str, Any]],
        handle: Callable[[requests.Response], T],
    ) -> T:
        with ExitStack() as stack:
            kwargs = build(stack)
            auth = _Bearer(self._token if authenticated else None)
            # Never follow a redirect: it would carry the password or the token to wherever it points.
            response = self._http.post(
                url, auth=auth, timeout=self.timeout, stream=True, allow_redirects=False, **kwargs
            )
            stack.callback(response.close)
            if response.status_code == 200:
                try:
                    return handle(response)
                except (requests.RequestException, _IncompleteBody) as exc:
                    raise _BodyCut() from exc
            status = f"HTTP {response.status_code} {response.reason or ''}".rstrip()
            if response.is_redirect or 300 <= response.status_code < 400:
                raise self._error(f"{what} failed: the platform answered {status}{_redirect_target(url, response)}")
            if response.status_code == 401 and authenticated and self._token:
                raise _TokenRefused()
            retries = getattr(response.raw, "retries", None)
            attempts = len(retries.history) + 1 if retries is not None else 1
            tried = f" after {attempts} attempts" if attempts > 1 else ""
            answer = self._excerpt(_read_head(response))
            raise self._error(f"{what} failed{tried}: the platform answered {status}: {answer}")

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
        forms = {form for secret in (self._secret_key, self._token) for form in _written_forms(secret)}
        for form in sorted(forms, key=len, reverse=True):  # longest first: an escaped form holds the plain one
            text = text.replace(form, "***")
        return text

    def _error(self, message: str) -> PlatformError:
        return PlatformError(self._redact(message))

    def _excerpt(self, body: bytes) -> str:
        # Redacted before the blanks are squeezed (a secret may hold blanks) and again after,
        # and before cutting, so no prefix of a secret survives the cut.
        text = self._redact(" ".join(self._redact(body.decode("utf-8", errors="replace")).split()))
        if not text:
            return "(empty body)"
        return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


class _MultipartFile:
    """A multipart/form-data body holding one file field, read from disk as it is sent.

    It has a length, so it goes out with Content-Length rather than chunked, and it
    can seek back to the start, so the retry policy can send it again.
    """

    def __init__(self, path: Path, field: str, stack: ExitStack) -> None:
        boundary = f"platform-client-{uuid.uuid4().hex}"
        filename = path.name.replace("\\", "\\\\").replace('"', "%22").replace("\r", "").replace("\n", "")
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        self._tail = f"\r\n--{boundary}--\r\n".encode("ascii")
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self._path = path
        self._file = stack.enter_context(path.open("rb"))
        self._file_size = os.fstat(self._file.fileno()).st_size
        self._length = len(self._head) + self._file_size + len(self._tail)
        self._position = 0

    def __len__(self) -> int:
        return self._length  # the whole body: requests subtracts tell() itself

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or not 0 <= offset <= self._length:
            raise OSError(f"cannot seek the upload body to {offset} (whence {whence})")
        self._position = offset
        return offset

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._length
        head_end = len(self._head)
        file_end = head_end + self._file_size
        start = self._position
        if start < head_end:
            chunk = self._head[start : start + size]
        elif start < file_end:
            self._file.seek(start - head_end)
            chunk = self._file.read(min(size, file_end - start))
            if not chunk:
                raise PlatformError(f"{self._path} shrank while it was being uploaded")
        else:
            chunk = self._tail[start - file_end : start - file_end + size]
        self._position += len(chunk)
        return chunk


class _TokenRefused(Exception):
    """A call after login got 401: the token expired or the server forgot it."""


def _written_forms(secret: str | None) -> set[str]:
    """`secret` as it may appear in an answer: as is, JSON-escaped, URL-encoded, or as a Python repr."""
    if not secret or len(secret) < MIN_REDACTED_CHARS:
        return set()
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        repr(secret)[1:-1],
    }
    return {form for form in forms if form}


def _redirect_target(url: str, response: requests.Response) -> str:
    location = response.headers.get("Location")
    if not location:
        return " (a redirect without a Location); redirects are not followed"
    target = urljoin(url, location)
    downgraded = urlsplit(url).scheme == "https" and urlsplit(target).scheme == "http"
    downgrade = " (from https to plain http)" if downgraded else ""
    return (
        f" redirecting to {target}{downgrade}; a call that carries credentials does not follow redirects: "
        f"if the platform moved, set host and port to its new address"
    )


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
