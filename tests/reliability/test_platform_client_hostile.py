"""The platform client against hostile or broken servers: redirects, echoed secrets, refused tokens.

Every server here is real HTTP on 127.0.0.1. A second server on another port (another
origin) records whatever reaches it, so a test can show the credentials never went there.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import trustme

from buildtool.dev.platform_server import LOGIN_PATH, PlatformServer, seed_dataset
from platform_client import PlatformClient, PlatformError
from platform_client import client as client_module
from tests.platform_fixtures import ACCESS_KEY, DATASET_UID, SECRET_KEY, Fault

SERVER_TOKEN = "tok-9d1e7f3a5b-server-issued"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms wait on the client's ACK
    answer: Callable[[_Handler, bytes], tuple[int, dict[str, str], bytes]]
    seen: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status, headers, payload = type(self).answer(self, body)
        self.send_response(status)
        for name, value in {"Content-Length": str(len(payload)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextmanager
def _serve(
    answer: Callable[[_Handler, bytes], tuple[int, dict[str, str], bytes]], tls: ssl.SSLContext | None = None
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A scripted HTTP(S) server: yields its base URL and the list of requests it received."""
    seen: list[dict[str, Any]] = []
    handler = type("Handler", (_Handler,), {"answer": staticmethod(answer), "seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _token_answer(handler: _Handler, body: bytes) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps({"token": SERVER_TOKEN}).encode()


@pytest.fixture
def observer() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Another origin that would accept anything: what reaches it is what leaked."""
    with _serve(_token_answer) as served:
        yield served


@pytest.fixture
def tls_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server TLS context for 127.0.0.1 from a throwaway CA that the client trusts (REQUESTS_CA_BUNDLE)."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    return context


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert SECRET_KEY not in caplog.text and SERVER_TOKEN not in caplog.text


def _client(url: str, **overrides: Any) -> PlatformClient:
    scheme, _, rest = url.partition("://")
    host, _, port = rest.rpartition(":")
    options: dict[str, Any] = {"timeout": (2, 5), "retries": 1, "backoff": 0.01, **overrides}
    return PlatformClient(
        f"{scheme}://{host}",
        port,
        options.pop("access_key", ACCESS_KEY),
        options.pop("secret_key", SECRET_KEY),
        **options,
    )


def _call(client: PlatformClient, call: str, tmp_path: Path) -> None:
    if call == "login":
        client.login()
    elif call == "download":
        client.download("training_dataset", DATASET_UID, tmp_path / "out.zip")
    elif call == "upload":
        model = tmp_path / "model.zip"
        model.write_bytes(b"PK model")
        client.upload("model", "m-1", model)
    else:
        client.upload_accuracy("m-1", 0.5)


# -- redirects ---------------------------------------------------------------------------------

REDIRECT_CASES = [
    ("login", 307, False),
    ("login", 308, False),
    ("login", 301, False),
    ("login", 302, False),
    ("login", 303, False),
    ("download", 307, False),
    ("upload", 308, False),
    ("accuracy", 307, False),
    ("login", 307, True),
    ("download", 308, True),
]


@pytest.mark.parametrize(
    ("call", "status", "https"),
    REDIRECT_CASES,
    ids=[f"{call}-{status}{'-https-to-http' if https else ''}" for call, status, https in REDIRECT_CASES],
)
def test_a_redirect_is_never_followed(observer, tls_context, tmp_path, call, status, https):
    target_base, leaked = observer

    def redirect(handler: _Handler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if handler.path == LOGIN_PATH and call != "login":
            return _token_answer(handler, body)
        return status, {"Location": target_base + handler.path}, b""

    with _serve(redirect, tls_context if https else None) as (base, seen):
        client = _client(base)
        with pytest.raises(PlatformError) as caught:
            _call(client, call, tmp_path)
        client.close()

    message = str(caught.value)
    assert f"HTTP {status}" in message and target_base in message and "does not follow redirects" in message
    assert ("from https to plain http" in message) == https
    assert leaked == []  # neither the password nor the token went to the other origin
    assert SECRET_KEY not in message and SERVER_TOKEN not in message
    assert len(seen) == (1 if call == "login" else 2)  # asked once: a 3xx is not retried either


# -- redaction ---------------------------------------------------------------------------------


def _echo_every_form(handler: _Handler, body: bytes) -> tuple[int, dict[str, str], bytes]:
    password = json.loads(body)["password"]
    forms = [
        password,
        json.dumps(password)[1:-1],
        json.dumps(password, ensure_ascii=False)[1:-1],
        quote(password, safe=""),
        quote_plus(password),
        repr(password),
    ]
    text = " | ".join(f"form{i}={form}" for i, form in enumerate(forms))
    return 403, {"Content-Type": "text/plain; charset=utf-8"}, f"denied: {text}".encode()


@pytest.mark.parametrize(
    "secret",
    ['sk-"quoted"\\back', "sk-pässwörd-ünïcode", "sk a&b=c/d?e+f", "sk-'single'", "sk-\ttab\nline", "sk-€🔑"],
    ids=["quote-backslash", "non-ascii", "url-specials", "single-quote", "control-chars", "astral"],
)
def test_an_echoed_secret_is_redacted_in_every_form(tmp_path, secret):
    with _serve(_echo_every_form) as (base, _):
        client = _client(base, secret_key=secret)
        with pytest.raises(PlatformError) as caught:
            client.login()
        client.close()

    message = str(caught.value)
    assert "HTTP 403" in message and "***" in message
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        repr(secret)[1:-1],
    }
    for form in forms:
        assert form not in message, f"{form!r} shows in {message!r}"


@pytest.mark.parametrize(("secret", "masked"), [("1", False), ("abc", False), ("abcd", True)])
def test_a_secret_under_4_characters_is_not_masked(tmp_path, secret, masked):
    with _serve(_echo_every_form) as (base, _):
        client = _client(base, secret_key=secret)
        with pytest.raises(PlatformError) as caught:
            client.login()
        client.close()

    message = str(caught.value)
    assert "http://127.0.0.1:" in message  # "1" did not turn the address into ***27.0.0.***
    assert ("***" in message) == masked


def test_a_short_wrong_secret_keeps_the_message_readable(platform_server, make_platform_client):
    client = make_platform_client(secret_key="1")

    with pytest.raises(PlatformError) as caught:
        client.login()

    message = str(caught.value)
    assert f"{platform_server.url}" in message and "HTTP 401" in message and "***" not in message


# -- tokens and the retry policy ------------------------------------------------------------------


def test_an_expired_token_is_renewed_by_logging_in_again(tmp_path, platform_dataset_zip, caplog):
    with PlatformServer(tmp_path / "data", {ACCESS_KEY: SECRET_KEY}, token_ttl=0.5) as server:
        seed_dataset(server.data_dir, DATASET_UID, platform_dataset_zip)
        client = _client(server.url)
        client.login()
        time.sleep(0.7)

        client.download("training_dataset", DATASET_UID, tmp_path / "out.zip")
        client.close()

    assert (tmp_path / "out.zip").read_bytes() == platform_dataset_zip.read_bytes()
    assert caplog.text.count("login of account") == 2


def test_a_token_refused_after_a_fresh_login_fails(make_fault_proxy, make_platform_client, tmp_path):
    proxy = make_fault_proxy([Fault("pass"), Fault("status", 401), Fault("pass"), Fault("status", 401)])
    client = make_platform_client(proxy.port)

    with pytest.raises(PlatformError, match="refused the token of a fresh login"):
        client.download("training_dataset", DATASET_UID, tmp_path / "out.zip")
    assert proxy.requests_seen == 4


def test_a_busy_server_is_asked_again(tmp_path):
    with PlatformServer(tmp_path / "data", {ACCESS_KEY: SECRET_KEY}, workers=1, header_timeout=0.5) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as hog:
            hog.sendall(b"POST / HTTP/1.1\r\n")  # holds the only worker until its deadline
            time.sleep(0.1)
            client = _client(server.url, retries=3, backoff=0.1)
            started = time.monotonic()
            client.login()
            elapsed = time.monotonic() - started
            client.close()

    assert client.logged_in
    assert elapsed < 4  # a 503 with Retry-After: 1, then the worker is free


def test_a_huge_retry_after_is_capped(monkeypatch, caplog):
    monkeypatch.setattr(client_module, "_MAX_DELAY_SECONDS", 0.2)

    def busy(handler: _Handler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return 503, {"Retry-After": "86400"}, b"busy"

    with _serve(busy) as (base, seen):
        client = _client(base, retries=2)
        started = time.monotonic()
        with pytest.raises(PlatformError, match="after 3 attempts.*HTTP 503"):
            client.login()
        elapsed = time.monotonic() - started
        client.close()

    assert len(seen) == 3 and elapsed < 3
    assert caplog.text.count("HTTP 503 Service Unavailable; trying again") == 2  # each retry says why


def test_the_retry_policy_is_urllib3s():
    client = PlatformClient("127.0.0.1", 80, ACCESS_KEY, SECRET_KEY, retries=3, backoff=0.5)
    adapter = client._http.get_adapter("http://127.0.0.1:80/")
    policy = adapter.max_retries

    assert policy.total == 3 and policy.backoff_factor == 0.5 and not policy.redirect
    assert "POST" in policy.allowed_methods and {429, 500, 502, 503, 504} <= set(policy.status_forcelist)
    client.close()
