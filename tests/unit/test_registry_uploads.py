"""Blob and manifest writes of the registry client, against a small HTTP registry that asks for basic auth.

It answers like the distribution server: uploads start with a POST that
returns a relative Location carrying a query, finish with a PUT ?digest=,
mounts answer 201 or 202, manifests answer with Docker-Content-Digest.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
import urllib.parse
from collections.abc import Iterator

import pytest

from buildtool.errors import PushError, RegistryError
from buildtool.push.registry import Registry
from buildtool.reference import parse

USER, PASSWORD = "robot", "s3cret-pw"


class FakeRegistry(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.blobs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, bool]] = []  # method, path, carried credentials
        self.bodies_refused = 0  # bytes of bodies sent without credentials and refused
        self.send_digest = True
        self.mountable: set[str] = set()
        self.mount_status = 0  # answer every mount with this status instead

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FakeRegistry

    def _authorized(self) -> bool:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return self.headers.get("Authorization") == expected

    def _answer(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        authorized = self._authorized()
        self.server.requests.append((self.command, self.path, authorized))
        if not authorized:
            self.server.bodies_refused += len(body)
            self._answer(401, {"WWW-Authenticate": 'Basic realm="fake"'})
            return
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if self.command == "POST" and url.path.endswith("/blobs/uploads/"):
            if "mount" in query:
                if self.server.mount_status:
                    self._answer(self.server.mount_status)
                elif query["mount"] in self.server.mountable:
                    self._answer(201)
                else:
                    self._answer(202, {"Location": "/v2/upload/declined?_state=x"})
                return
            self._answer(202, {"Location": "/v2/upload/session-1?_state=abc"})
        elif self.command == "PUT" and url.path == "/v2/upload/session-1":
            assert query["_state"] == "abc"  # the Location's own query is kept
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            if digest != query["digest"]:
                self._answer(400, body=b'{"errors":[{"code":"DIGEST_INVALID"}]}')
                return
            self.server.blobs[digest] = body
            self._answer(201, {"Docker-Content-Digest": digest})
        elif self.command == "DELETE":
            self._answer(204)
        elif self.command == "PUT" and "/manifests/" in url.path:
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            self._answer(201, {"Docker-Content-Digest": digest} if self.server.send_digest else {})
        else:
            self._answer(404)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    server = FakeRegistry()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(monkeypatch) -> Iterator[Registry]:
    monkeypatch.setattr(Registry, "_credentials", lambda self, ref: (USER, PASSWORD))
    registry = Registry(timeout=10)
    yield registry
    registry.close()


def test_a_blob_goes_up_once_with_credentials_and_the_locations_query(fake, client, tmp_path):
    data = b"layer bytes " * 50_000
    path = tmp_path / "blob"
    path.write_bytes(data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    ref = parse(f"{fake.host}/lab/training:t1")
    client.upload_blob(ref, path, digest)
    assert fake.blobs[digest] == data
    # Basic auth is asked once (on the empty POST); the PUT then carries credentials with its body.
    assert fake.bodies_refused == 0
    assert [(m, ok) for m, _, ok in fake.requests] == [("POST", False), ("POST", True), ("PUT", True)]


def test_a_mount_the_registry_declines_is_closed_and_reported(fake, client):
    ref = parse(f"{fake.host}/lab/training:t1")
    fake.mountable.add("sha256:" + "1" * 64)
    assert client.mount_blob(ref, "sha256:" + "1" * 64, "lab/base") is True
    assert client.mount_blob(ref, "sha256:" + "2" * 64, "lab/base") is False
    assert ("DELETE", "/v2/upload/declined?_state=x", True) in fake.requests


def test_a_mount_refused_for_another_reason_than_a_decline_fails_the_push(fake, client):
    ref = parse(f"{fake.host}/lab/training:t1")
    fake.mount_status = 404  # the source repository unknown here: upload instead
    assert client.mount_blob(ref, "sha256:" + "1" * 64, "lab/base") is False
    fake.mount_status = 429  # rate limited: say so now, not at the next upload
    with pytest.raises(PushError, match="registry answered 429 when mounting"):
        client.mount_blob(ref, "sha256:" + "1" * 64, "lab/base")


def test_credentials_never_go_to_a_token_service_over_plain_http(client):
    class Refused:
        headers = {"WWW-Authenticate": 'Bearer realm="http://auth.example.com/token",service="registry"'}

    ref = parse("registry.example.com/lab/training:t1")
    not_https = "asks for credentials at http://auth.example.com/token, which is not HTTPS"
    with pytest.raises(RegistryError, match=not_https):
        client._answer_challenge("GET", "https://registry.example.com/v2/lab/training/manifests/t1", ref, {},
                                 Refused(), None, 10)


def test_a_manifest_without_a_digest_header_is_accepted(fake, client):
    ref = parse(f"{fake.host}/lab/training:t1")
    assert client.put_manifest(ref, b"{}") == "sha256:" + hashlib.sha256(b"{}").hexdigest()
    fake.send_digest = False
    assert client.put_manifest(ref, b"{}") is None


def test_a_refused_upload_is_a_push_error_naming_the_image(fake, client, tmp_path, monkeypatch):
    monkeypatch.setattr(Registry, "_credentials", lambda self, ref: None)
    path = tmp_path / "blob"
    path.write_bytes(b"x")
    with pytest.raises(PushError, match=r"push of 127\.0\.0\.1:\d+/lab/training:t1 failed: registry answered 401 "
                                        r"when starting an upload.*docker login 127\.0\.0\.1:\d+"):
        client.upload_blob(parse(f"{fake.host}/lab/training:t1"), path, "sha256:" + "0" * 64)


def test_credentials_never_go_to_another_host(fake, client):
    ref = parse(f"{fake.host}/lab/training:t1")
    other = FakeRegistry()
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        client.digest(ref)  # learns that fake.host wants basic auth
        response = client._request("GET", f"http://{other.host}/v2/elsewhere", ref, {})
        assert response.status_code == 401
        assert other.requests == [("GET", "/v2/elsewhere", False)]
    finally:
        other.shutdown()
        other.server_close()


def test_an_https_registry_never_sends_to_plain_http(client):
    ref = parse("registry.example.com/lab/training:t1")
    with pytest.raises(RegistryError, match="which is not HTTPS; refused"):
        client._request("PUT", "http://registry.example.com/v2/upload/1", ref, {})


@pytest.mark.parametrize("location, same", [
    ("https://Registry.Example.com:443/v2/lab/training/blobs/uploads/1", True),
    ("https://registry.example.com/v2/x", True),
    ("https://registry.example.com:5000/v2/x", False),
    ("https://storage.example.com/v2/x", False),
])
def test_an_upload_location_on_the_same_registry_keeps_its_credentials(location, same):
    from buildtool.push.registry import _origin
    home = urllib.parse.urlsplit("https://registry.example.com/v2/lab/training")
    assert (_origin(urllib.parse.urlsplit(location)) == _origin(home)) is same
