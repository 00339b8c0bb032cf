"""Hostile requests against the real local platform server on 127.0.0.1.

Each row of the table is one malformed or hostile request, sent as raw bytes.
After every row the same invariants hold: the answer is the expected 4xx with
a message naming the problem, the secret key is not in it, nothing was written
to the data folder, and the server still serves a good login.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from buildtool.dev.platform_server import ACCURACY_PATH, LOGIN_PATH, PlatformServer, seed_dataset, stored_path
from tests.platform_fixtures import ACCESS_KEY, DATASET_UID, SECRET_KEY, raw_request, rss_bytes

DOWNLOAD = "/api/v0.1/file_operation/TrainingDatasetFileManager/download"
UPLOAD = "/api/v0.1/file_operation/ModelFileManager/upload"
TOKEN = "{token}"  # replaced by a valid token in the rows that need one
MB = 1024 * 1024


def _request(method: str, path: str, headers: dict[str, str], body: bytes = b"", *, length: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if length and not any(name.lower() in ("content-length", "transfer-encoding") for name in headers):
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def _login_body(password: str) -> bytes:
    return b'{"account_name": "%s", "password": "%s"}' % (ACCESS_KEY.encode(), password.encode())


def _multipart(parts: list[tuple[str, bytes]], boundary: str = "b0undary", *, close: bool = True) -> bytes:
    body = b"".join(
        b'--%s\r\nContent-Disposition: form-data; name="%s"; filename="f.zip"\r\n\r\n%s\r\n'
        % (boundary.encode(), name.encode(), content)
        for name, content in parts
    )
    return body + (b"--%s--\r\n" % boundary.encode() if close else b"")


AUTH = {"Authorization": f"Bearer {TOKEN}"}
FORM = {"Content-Type": "multipart/form-data; boundary=b0undary"}

# (id, request bytes, expected status, fragment of the answer)
CASES = [
    # -- login: the body is read only after its size is checked --------------------------------
    ("password-lone-surrogate", _request("POST", LOGIN_PATH, {}, _login_body("\\udcff")), 401, "wrong access key"),
    (
        "account-lone-surrogate",
        _request("POST", LOGIN_PATH, {}, b'{"account_name": "\\ud800", "password": "x"}'),
        401,
        "wrong access key",
    ),
    ("nested-brackets-200KB", _request("POST", LOGIN_PATH, {}, b"[" * 200_000), 413, "at most 65536"),
    ("nested-brackets-60KB", _request("POST", LOGIN_PATH, {}, b"[" * 60_000), 400, "not valid JSON"),
    (
        "integer-10e400-as-password",
        _request("POST", LOGIN_PATH, {}, b'{"account_name": "a", "password": 1' + b"0" * 400 + b"}"),
        400,
        "expected",
    ),
    (
        "integer-5000-digits",
        _request("POST", LOGIN_PATH, {}, b'{"account_name": 1' + b"0" * 5000 + b"}"),
        400,
        "not valid JSON",
    ),
    ("bad-json", _request("POST", LOGIN_PATH, {}, b"{not json"), 400, "not valid JSON"),
    ("invalid-utf8", _request("POST", LOGIN_PATH, {}, b'{"account_name": "\xff"}'), 400, "not valid JSON"),
    ("json-array", _request("POST", LOGIN_PATH, {}, _json([ACCESS_KEY, SECRET_KEY])), 400, "JSON object"),
    (
        "password-wrong-type",
        _request("POST", LOGIN_PATH, {}, _json({"account_name": ACCESS_KEY, "password": 1})),
        400,
        "expected",
    ),
    (
        "password-null",
        _request("POST", LOGIN_PATH, {}, _json({"account_name": ACCESS_KEY, "password": None})),
        400,
        "expected",
    ),
    ("empty-body", _request("POST", LOGIN_PATH, {}), 400, "not valid JSON"),
    # -- Content-Length and framing ------------------------------------------------------------
    ("content-length-text", _request("POST", LOGIN_PATH, {"Content-Length": "abc"}), 400, "Content-Length 'abc'"),
    ("content-length-negative", _request("POST", LOGIN_PATH, {"Content-Length": "-5"}), 400, "Content-Length '-5'"),
    (
        "content-length-plus",
        _request("POST", LOGIN_PATH, {"Content-Length": "+5"}, b"{}   "),
        400,
        "Content-Length '+5'",
    ),
    ("content-length-underscore", _request("POST", LOGIN_PATH, {"Content-Length": "1_0"}), 400, "Content-Length"),
    ("content-length-huge-number", _request("POST", LOGIN_PATH, {"Content-Length": "9" * 40}), 400, "Content-Length"),
    (
        "content-length-twice",
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}" % LOGIN_PATH.encode(),
        400,
        "more than one Content-Length",
    ),
    ("login-claims-900MB", _request("POST", LOGIN_PATH, {"Content-Length": str(900 * MB)}), 413, "at most 65536"),
    (
        "chunked-body",
        _request("POST", LOGIN_PATH, {"Transfer-Encoding": "chunked"}, b"2\r\n{}\r\n0\r\n\r\n"),
        411,
        "Content-Length",
    ),
    # -- requests that are not calls -----------------------------------------------------------
    ("method-get", _request("GET", LOGIN_PATH, {}), 405, "POST"),
    ("method-unknown", _request("BREW", LOGIN_PATH, {}), 405, "POST"),
    ("http-version-2", b"POST %s HTTP/2.0\r\nHost: x\r\n\r\n" % LOGIN_PATH.encode(), 400, "HTTP/1"),
    ("request-line-garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, ""),
    ("path-70KB", _request("POST", "/" + "a" * 70_000, {}), 414, ""),
    ("header-line-70KB", _request("POST", LOGIN_PATH, {"X-Big": "a" * 70_000}), 431, ""),
    ("headers-200", _request("POST", LOGIN_PATH, {f"X-H{i}": "v" for i in range(200)}), 431, ""),
    # -- calls after login: credentials before anything else ---------------------------------
    ("no-token", _request("POST", DOWNLOAD, {}, _json({"training_dataset_uid": DATASET_UID})), 401, "log in first"),
    ("bearer-without-token", _request("POST", DOWNLOAD, {"Authorization": "Bearer"}, b"{}"), 401, "log in first"),
    ("basic-auth", _request("POST", DOWNLOAD, {"Authorization": "Basic " + "a" * 40}, b"{}"), 401, "log in first"),
    (
        "upload-no-token-claims-900MB",
        _request("POST", UPLOAD, {"Content-Length": str(900 * MB), "Uid": "m1"}),
        401,
        "log in first",
    ),
    ("unknown-path", _request("POST", "/api/v9/nothing", AUTH, b"{}"), 404, "no such call"),
    ("unknown-kind", _request("POST", DOWNLOAD.replace("TrainingDataset", "Secret"), AUTH, b"{}"), 404, "no such call"),
    ("path-with-query", _request("POST", DOWNLOAD + "?x=1", AUTH, b"{}"), 404, "no such call"),
    # -- downloads -----------------------------------------------------------------------------
    (
        "download-uid-newline",
        _request("POST", DOWNLOAD, AUTH, _json({"training_dataset_uid": DATASET_UID + "\n"})),
        400,
        "expected a uid",
    ),
    (
        "download-uid-parent",
        _request("POST", DOWNLOAD, AUTH, _json({"training_dataset_uid": "../../etc/passwd"})),
        400,
        "expected a uid",
    ),
    (
        "download-uid-list",
        _request("POST", DOWNLOAD, AUTH, _json({"training_dataset_uid": [DATASET_UID]})),
        400,
        "expected a uid",
    ),
    (
        "download-uid-big-int",
        _request("POST", DOWNLOAD, AUTH, b'{"training_dataset_uid": 1' + b"0" * 400 + b"}"),
        400,
        "expected a uid",
    ),
    ("download-uid-missing", _request("POST", DOWNLOAD, AUTH, b"{}"), 400, "expected a uid"),
    (
        "download-uid-unknown",
        _request("POST", DOWNLOAD, AUTH, _json({"training_dataset_uid": "ds-none"})),
        404,
        "no training_dataset",
    ),
    ("download-body-over-64KB", _request("POST", DOWNLOAD, AUTH, b" " * 70_000), 413, "at most 65536"),
    # -- accuracy ------------------------------------------------------------------------------
    (
        "accuracy-uid-newline",
        _request("POST", ACCURACY_PATH, AUTH, _json({"model_uid": "m1\n", "model_accuracy": 0.5})),
        400,
        "model_uid",
    ),
    (
        "accuracy-10e400",
        _request("POST", ACCURACY_PATH, AUTH, b'{"model_uid": "m1", "model_accuracy": 1' + b"0" * 400 + b"}"),
        400,
        "finite number",
    ),
    (
        "accuracy-1e400",
        _request("POST", ACCURACY_PATH, AUTH, b'{"model_uid": "m1", "model_accuracy": 1e400}'),
        400,
        "finite number",
    ),
    (
        "accuracy-nan",
        _request("POST", ACCURACY_PATH, AUTH, b'{"model_uid": "m1", "model_accuracy": NaN}'),
        400,
        "finite number",
    ),
    (
        "accuracy-string",
        _request("POST", ACCURACY_PATH, AUTH, _json({"model_uid": "m1", "model_accuracy": "0.9"})),
        400,
        "finite number",
    ),
    (
        "accuracy-bool",
        _request("POST", ACCURACY_PATH, AUTH, _json({"model_uid": "m1", "model_accuracy": True})),
        400,
        "finite number",
    ),
    # -- uploads -------------------------------------------------------------------------------
    (
        "upload-missing-file-field",
        _request("POST", UPLOAD, {**AUTH, **FORM, "Uid": "m1"}, _multipart([("other", b"x")])),
        400,
        "no form field 'file'",
    ),
    (
        "upload-two-file-fields",
        _request("POST", UPLOAD, {**AUTH, **FORM, "Uid": "m1"}, _multipart([("file", b"a"), ("file", b"b")])),
        400,
        "more than one",
    ),
    (
        "upload-unterminated",
        _request("POST", UPLOAD, {**AUTH, **FORM, "Uid": "m1"}, _multipart([("file", b"a")], close=False)),
        400,
        "not well-formed",
    ),
    (
        "upload-not-multipart",
        _request("POST", UPLOAD, {**AUTH, "Content-Type": "application/zip", "Uid": "m1"}, b"PK"),
        400,
        "multipart/form-data",
    ),
    (
        "upload-no-boundary",
        _request("POST", UPLOAD, {**AUTH, "Content-Type": "multipart/form-data", "Uid": "m1"}, b"x"),
        400,
        "boundary",
    ),
    ("upload-no-uid", _request("POST", UPLOAD, {**AUTH, **FORM}, _multipart([("file", b"a")])), 400, "Uid header"),
    (
        "upload-uid-parent",
        _request("POST", UPLOAD, {**AUTH, **FORM, "Uid": "../m1"}, _multipart([("file", b"a")])),
        400,
        "Uid header",
    ),
    (
        "upload-uid-unicode",
        _request("POST", UPLOAD, {**AUTH, **FORM, "Uid": "m\xe91"}, _multipart([("file", b"a")])),
        400,
        "Uid header",
    ),
    (
        "upload-no-content-length",
        _request("POST", UPLOAD, {**AUTH, **FORM, "Uid": "m1"}, length=False),
        411,
        "Content-Length",
    ),
    (
        "upload-other-field-over-64KB",
        _request("POST", UPLOAD, {**AUTH, **FORM, "Uid": "m1"}, _multipart([("other", b"x" * 70_000), ("file", b"a")])),
        413,
        "form field 'other'",
    ),
    (
        "upload-part-headers-huge",
        _request(
            "POST",
            UPLOAD,
            {**AUTH, **FORM, "Uid": "m1"},
            b"--b0undary\r\nX: " + b"h" * 10_000 + b"\r\n\r\na\r\n--b0undary--\r\n",
        ),
        400,
        "not well-formed",
    ),
]


def _files(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*"))


def _login_token(server: PlatformServer) -> str:
    answer = raw_request(
        server.port, _request("POST", LOGIN_PATH, {}, _json({"account_name": ACCESS_KEY, "password": SECRET_KEY}))
    )
    assert answer.status == 200, answer
    return str(json.loads(answer.body)["token"])


@pytest.mark.parametrize(("data", "status", "fragment"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_malformed_request_gets_a_4xx(platform_server, data, status, fragment):
    before = _files(platform_server.data_dir)
    data = data.replace(TOKEN.encode(), _login_token(platform_server).encode())

    answer = raw_request(platform_server.port, data, timeout=10)

    assert answer.status == status, answer
    assert fragment in answer.body.decode("utf-8", "replace")
    assert SECRET_KEY.encode() not in answer.body
    assert answer.seconds < 5
    assert _files(platform_server.data_dir) == before  # nothing stored, no temporary file left
    _login_token(platform_server)  # and the server still serves


def test_the_table_has_a_row_per_case():
    assert len({case[0] for case in CASES}) == len(CASES) >= 50


def test_uid_with_a_trailing_newline_creates_nothing(platform_server):
    token = _login_token(platform_server)
    body = _json({"model_uid": "m1\n", "model_accuracy": 0.5})
    answer = raw_request(
        platform_server.port, _request("POST", ACCURACY_PATH, {"Authorization": f"Bearer {token}"}, body)
    )

    assert answer.status == 400
    assert not (platform_server.data_dir / "model_metadata").exists()
    with pytest.raises(Exception, match="not valid"):
        stored_path(platform_server.data_dir, "model", "m1\n")


def test_an_expired_token_is_refused(tmp_path, platform_dataset_zip):
    with PlatformServer(tmp_path / "data", {ACCESS_KEY: SECRET_KEY}, token_ttl=0.5) as server:
        seed_dataset(server.data_dir, DATASET_UID, platform_dataset_zip)
        token = _login_token(server)
        download = _request(
            "POST", DOWNLOAD, {"Authorization": f"Bearer {token}"}, _json({"training_dataset_uid": DATASET_UID})
        )
        assert raw_request(server.port, download).status == 200

        time.sleep(0.7)
        answer = raw_request(server.port, download)

    assert answer.status == 401
    assert "expired" in json.loads(answer.body)["error"]
    assert answer.headers["www-authenticate"] == "Bearer"


def test_a_refused_upload_leaves_no_temporary_file(platform_server):
    token = _login_token(platform_server)
    headers = {"Authorization": f"Bearer {token}", **FORM, "Uid": "m1"}
    body = _multipart([("file", b"x" * MB)], close=False)

    answer = raw_request(platform_server.port, _request("POST", UPLOAD, headers, body))

    assert answer.status == 400
    assert _files(platform_server.data_dir) == ["training_dataset", f"training_dataset/{DATASET_UID}"]


def test_an_upload_cut_off_midway_leaves_nothing(platform_server):
    token = _login_token(platform_server)
    head = _request(
        "POST", UPLOAD, {"Authorization": f"Bearer {token}", **FORM, "Uid": "m1", "Content-Length": str(10 * MB)}
    )
    with socket.create_connection(("127.0.0.1", platform_server.port), timeout=5) as connection:
        connection.sendall(head + b'--b0undary\r\nContent-Disposition: form-data; name="file"\r\n\r\n' + b"x" * MB)

    # The server handles the request on a worker of its own: wait for its temp file to appear (it may
    # already be gone on a fast machine), then for it to go, so the check below cannot run too early.
    def uploading() -> bool:
        return any(".upload-" in name for name in _files(platform_server.data_dir))

    deadline = time.monotonic() + 2
    while not uploading() and time.monotonic() < deadline:
        time.sleep(0.02)
    deadline = time.monotonic() + 10
    while uploading() and time.monotonic() < deadline:
        time.sleep(0.05)

    assert _files(platform_server.data_dir) == ["training_dataset", f"training_dataset/{DATASET_UID}"]
    _login_token(platform_server)


# -- memory: an unauthenticated body is never read ---------------------------------------------


def _stream(megabytes: int):
    chunk = b"\0" * MB
    for _ in range(megabytes):
        yield chunk


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [(LOGIN_PATH, {}, 413), (UPLOAD, {"Uid": "m1", **FORM}, 401)],
    ids=["login", "upload"],
)
def test_900MB_unauthenticated_posts_cost_no_memory(platform_server, path, headers, status):
    head = _request("POST", path, {**headers, "Content-Length": str(900 * MB)})
    answers = []
    rss_before = rss_bytes()

    def post() -> None:
        answers.append(raw_request(platform_server.port, head, body_stream=_stream(64), timeout=10))

    threads = [threading.Thread(target=post) for _ in range(3)]  # three at once
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    growth = rss_bytes() - rss_before

    assert [answer.status for answer in answers] == [status] * 3
    assert growth < 64 * MB, f"RSS grew {growth / MB:.1f} MB"
    assert all(answer.seconds < 5 for answer in answers)


def test_a_large_authenticated_upload_is_streamed_to_disk(platform_server, make_platform_client, tmp_path):
    size = 192 * MB
    model = tmp_path / "model.zip"
    with model.open("wb") as out:
        out.truncate(size)  # sparse: quick to make, all zeros
    client = make_platform_client(timeout=(5, 30))
    client.login()
    rss_before = rss_bytes()

    client.upload("model", "big-model", model)
    growth = rss_bytes() - rss_before

    assert stored_path(platform_server.data_dir, "model", "big-model").stat().st_size == size
    assert growth < 64 * MB, f"RSS grew {growth / MB:.1f} MB for a {size // MB} MB upload"
    stored_path(platform_server.data_dir, "model", "big-model").unlink()


# -- connections: bounded workers, deadlines ---------------------------------------------------


def test_300_half_sent_requests_hold_no_more_than_the_workers(tmp_path):
    workers = 8
    with PlatformServer(tmp_path / "data", {ACCESS_KEY: SECRET_KEY}, workers=workers, header_timeout=1.0) as server:
        threads_before = threading.active_count()
        half = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Le" % LOGIN_PATH.encode()
        sockets = []
        try:
            for _ in range(300):
                connection = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                connection.sendall(half)
                sockets.append(connection)
            time.sleep(0.3)
            threads_during = threading.active_count() - threads_before
            # The first connection past the workers was answered 503 at once. (Not the last one: on a loaded
            # machine opening 300 connections can outlast the 1 s header deadline, and the workers free up.)
            sockets[workers].settimeout(2)
            refused = sockets[workers].recv(200)

            started = time.monotonic()
            while True:
                login = _request("POST", LOGIN_PATH, {}, _json({"account_name": ACCESS_KEY, "password": SECRET_KEY}))
                answer = raw_request(server.port, login, timeout=5)
                if answer.status == 200 or time.monotonic() - started > 10:
                    break
                assert answer.status in (503, None)
                time.sleep(0.2)
            waited = time.monotonic() - started
        finally:
            for connection in sockets:
                connection.close()

    assert threads_during <= workers
    assert refused.startswith(b"HTTP/1.1 503")
    assert answer.status == 200
    assert waited < 1.0 + 5  # the half-sent requests were dropped at their deadline (1 s), not held


def test_a_trickled_request_is_dropped_at_its_deadline(tmp_path):
    with PlatformServer(tmp_path / "data", {ACCESS_KEY: SECRET_KEY}, header_timeout=1.0, io_timeout=5) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
            started = time.monotonic()
            closed_after = None
            for byte in (b"POST %s HTTP/1.1\r\nHost: x\r\n" % LOGIN_PATH.encode()) * 10:
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    closed_after = time.monotonic() - started
                    break
                time.sleep(0.1)  # each read is on time; the whole request is not
            if closed_after is None:
                connection.settimeout(2)
                assert connection.recv(100) == b""
                closed_after = time.monotonic() - started

    assert closed_after < 1.0 + 2


def test_a_json_body_that_never_arrives_is_answered_408(tmp_path):
    with PlatformServer(tmp_path / "data", {ACCESS_KEY: SECRET_KEY}, header_timeout=0.5) as server:
        answer = raw_request(server.port, _request("POST", LOGIN_PATH, {"Content-Length": "100"}) + b"{")

    assert answer.status == 408
    assert answer.seconds < 2


@pytest.mark.parametrize(("authorized", "first_answer"), [(False, b"HTTP/1.1 401"), (True, b"HTTP/1.1 100 Continue")])
def test_100_continue_only_after_the_credentials(platform_server, authorized, first_answer):
    headers = {**FORM, "Uid": "m1", "Expect": "100-continue", "Content-Length": str(900 * MB)}
    if authorized:
        headers["Authorization"] = f"Bearer {_login_token(platform_server)}"
    with socket.create_connection(("127.0.0.1", platform_server.port), timeout=5) as connection:
        connection.sendall(_request("POST", UPLOAD, headers))
        answer = connection.recv(200)

    assert answer.startswith(first_answer)


# -- framing: after a framing error the connection ends, so the rest is never a second request ---------------

_SMUGGLED = _request("POST", LOGIN_PATH, {}, _json({"account_name": ACCESS_KEY, "password": SECRET_KEY}))


def _framed(headers: bytes) -> bytes:
    """A login whose framing headers are `headers`, followed on the same connection by a smuggled good login."""
    head = b"POST %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (LOGIN_PATH.encode(), headers)
    return head + b"{}" + _SMUGGLED


FRAMING = [
    ("content-length-twice", _framed(b"Content-Length: 2\r\nContent-Length: %d\r\n" % (2 + len(_SMUGGLED))), 400),
    ("content-length-twice-same-line", _framed(b"Content-Length: 2, 2\r\n"), 400),
    ("content-length-text", _framed(b"Content-Length: 2x\r\n"), 400),
    ("content-length-and-chunked", _framed(b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n"), 411),
    ("chunked-only", _framed(b"Transfer-Encoding: chunked\r\n"), 411),
    ("transfer-encoding-identity", _framed(b"Content-Length: 2\r\nTransfer-Encoding: identity\r\n"), 411),
]


@pytest.mark.parametrize(("data", "status"), [case[1:] for case in FRAMING], ids=[case[0] for case in FRAMING])
def test_a_framing_error_closes_the_connection(platform_server, data, status):
    before = _files(platform_server.data_dir)
    with socket.create_connection(("127.0.0.1", platform_server.port), timeout=5) as connection:
        connection.sendall(data)
        received = b""
        started = time.monotonic()
        while time.monotonic() - started < 4:
            try:
                chunk = connection.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            received += chunk
        closed_after = time.monotonic() - started

    assert received.startswith(b"HTTP/1.1 %d " % status), received[:200]
    assert received.count(b"HTTP/1.1 ") == 1  # one answer: the smuggled login was never served
    assert b"token" not in received
    assert b"Connection: close" in received
    assert SECRET_KEY.encode() not in received
    assert closed_after < 3  # closed by the server, not by this test's patience
    assert _files(platform_server.data_dir) == before
    _login_token(platform_server)  # and the server still serves


# -- a total deadline: bodies trickled by authenticated clients do not hold the workers ----------------------


def _trickle_upload(port: int, token: str, stop: threading.Event) -> None:
    """An authenticated upload that sends its body one byte every 2 s until the server hangs up (or `stop`)."""
    head = _request("POST", UPLOAD, {"Authorization": f"Bearer {token}", **FORM, "Uid": "m1", "Content-Length": "4096"})
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(head)
        while not stop.wait(2.0):
            try:
                connection.sendall(b"-")
            except OSError:
                return


def _slow_download(port: int, token: str, stop: threading.Event) -> None:
    """An authenticated download read one small piece every 2 s, so the server's writes wait on it."""
    body = _json({"training_dataset_uid": "ds-large"})
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        connection.sendall(_request("POST", DOWNLOAD, {"Authorization": f"Bearer {token}"}, body))
        while not stop.wait(2.0):
            try:
                if not connection.recv(16):
                    return
            except OSError:
                return


@pytest.mark.parametrize("client", [_trickle_upload, _slow_download], ids=["upload-trickled", "download-read-slowly"])
def test_16_slow_authenticated_requests_do_not_hold_login_for_long(tmp_path, client):
    workers, body_timeout = 16, 1.5
    large = tmp_path / "large.zip"
    large.write_bytes(b"\0" * (64 * MB))  # more than the socket buffers hold
    with PlatformServer(
        tmp_path / "data", {ACCESS_KEY: SECRET_KEY}, workers=workers, body_timeout=body_timeout, min_body_rate=MB
    ) as server:
        seed_dataset(server.data_dir, "ds-large", large)
        token = _login_token(server)
        before = _files(server.data_dir)
        stop = threading.Event()
        threads = [threading.Thread(target=client, args=(server.port, token, stop)) for _ in range(workers)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # every worker is now serving a slow client
        started = time.monotonic()
        statuses = []
        try:
            while time.monotonic() - started < 20:
                login = _request("POST", LOGIN_PATH, {}, _json({"account_name": ACCESS_KEY, "password": SECRET_KEY}))
                answer = raw_request(server.port, login, timeout=5)
                statuses.append(answer.status)
                if answer.status == 200:
                    break
                time.sleep(0.2)
            waited = time.monotonic() - started
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        after = _files(server.data_dir)

    assert statuses[0] == 503  # the slow clients did hold every worker
    assert statuses[-1] == 200
    assert set(statuses[:-1]) <= {503, None}
    # Their deadline freed the workers (plus the few MB the socket buffers took): not a per-read timeout (30 s).
    assert waited < body_timeout + 6
    assert after == before  # no upload stored, no temporary file left
