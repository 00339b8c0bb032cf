"""Fuzz the platform server's request parsing: random methods, paths, versions, headers and bodies.

Whatever arrives, the server answers with a 2xx or a 4xx (never a 5xx), within a bounded
time, leaves no temporary file behind, and keeps serving. Hypothesis runs derandomized,
so the suite sees the same inputs on every run.
"""

from __future__ import annotations

import json
import string
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from buildtool.dev.platform_server import ACCURACY_PATH, FILE_KINDS, LOGIN_PATH, PlatformServer, seed_dataset
from tests.helpers import fuzz_examples
from tests.platform_fixtures import ACCESS_KEY, DATASET_UID, SECRET_KEY, raw_request

HEADER_TIMEOUT = 0.3
IO_TIMEOUT = 0.5
WORKERS = 16
BOUNDARY = "fuzzb0undary"
FILE_PATHS = [
    f"/api/v0.1/file_operation/{kind}FileManager/{action}"
    for kind in FILE_KINDS.values()
    for action in ("download", "upload")
]
TOKEN_MARK = "<valid-token>"

_VALUE_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
_TOKEN_CHARS = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4),
    max_leaves=12,
)


@st.composite
def json_calls(draw: st.DrawFn) -> bytes:
    """A JSON object with the keys the calls read, holding values of any type."""
    keys = st.sampled_from(
        ["account_name", "password", "training_dataset_uid", "model_uid", "model_accuracy", "model_uid"]
    )
    document = draw(
        st.dictionaries(
            keys | st.text(max_size=10),
            json_values | st.just(ACCESS_KEY) | st.just(DATASET_UID) | st.just("model-1"),
            max_size=4,
        )
    )
    return json.dumps(document).encode()


@st.composite
def multipart_bodies(draw: st.DrawFn) -> bytes:
    """multipart/form-data with random fields and contents, sometimes cut short or damaged."""
    parts = draw(st.lists(st.tuples(st.sampled_from(["file", "other", ""]), st.binary(max_size=300)), max_size=3))
    body = b"".join(
        b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (BOUNDARY.encode(), name.encode(), content)
        for name, content in parts
    )
    body += draw(st.sampled_from([b"--%s--\r\n" % BOUNDARY.encode(), b"", b"--%s" % BOUNDARY.encode()]))
    cut = draw(st.integers(min_value=0, max_value=len(body)))
    return body[:cut] if draw(st.booleans()) else body


def mostly(common: st.SearchStrategy, rare: st.SearchStrategy, percent: int = 80) -> st.SearchStrategy:
    """`common` about `percent`% of the time, else `rare` (st.one_of would pick each half the time)."""
    return st.integers(0, 99).flatmap(lambda n: common if n < percent else rare)


extra_headers = st.dictionaries(
    st.sampled_from(["Content-Type", "Authorization", "Uid", "Expect", "Transfer-Encoding", "Connection", "Host"])
    | st.text(_TOKEN_CHARS, min_size=1, max_size=20),
    st.sampled_from([f"Bearer {TOKEN_MARK}", f"multipart/form-data; boundary={BOUNDARY}", "100-continue", "chunked"])
    | st.text(_VALUE_CHARS, max_size=60),
    max_size=3,
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(
        mostly(
            st.just("POST"),
            st.sampled_from(["GET", "HEAD", "PUT"]) | st.text(string.ascii_uppercase, min_size=1, max_size=8),
            85,
        )
    )
    path = draw(
        mostly(
            st.sampled_from([LOGIN_PATH, ACCURACY_PATH, *FILE_PATHS]),
            st.text(_TOKEN_CHARS + "/?=", max_size=80).map(lambda p: "/" + p),
        )
    )
    version = draw(
        mostly(st.just("HTTP/1.1"), st.sampled_from(["HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "HTTP/1.2", "HTTP/x"]), 90)
    )
    fields: dict[str, str] = {}
    if draw(mostly(st.just(True), st.just(False), 70)):
        fields["Authorization"] = f"Bearer {TOKEN_MARK}"
    if path.endswith("/upload"):
        fields["Uid"] = draw(mostly(st.sampled_from(["model-1", "m.2", "x_3"]), st.text(_VALUE_CHARS, max_size=30)))
        fields["Content-Type"] = draw(
            mostly(st.just(f"multipart/form-data; boundary={BOUNDARY}"), st.text(_VALUE_CHARS, max_size=60))
        )
        body = draw(mostly(multipart_bodies(), st.binary(max_size=300)))
    elif path == LOGIN_PATH:
        body = draw(
            mostly(
                st.just(json.dumps({"account_name": ACCESS_KEY, "password": SECRET_KEY}).encode()),
                json_calls() | st.binary(max_size=300) | st.just(b"[" * 5000),
                30,
            )
        )
    else:
        body = draw(mostly(json_calls(), st.binary(max_size=300) | st.just(b"[" * 5000)))
    fields.update(draw(mostly(st.just({}), extra_headers, 60)))
    length = draw(mostly(st.just("exact"), st.sampled_from(["missing", "shorter", "longer", "text", "twice"])))
    lines = [f"{method} {path} {version}"]
    if length == "exact":
        lines.append(f"Content-Length: {len(body)}")
    elif length == "shorter":
        lines.append(f"Content-Length: {max(0, len(body) - 3)}")
    elif length == "longer":
        lines.append(f"Content-Length: {len(body) + 10}")  # the body never completes: the deadline ends it
    elif length == "text":
        lines.append(f"Content-Length: {draw(st.text(_VALUE_CHARS, max_size=12))}")
    elif length == "twice":
        lines += [f"Content-Length: {len(body)}", f"Content-Length: {len(body) + 1}"]
    lines += [f"{name}: {value}" for name, value in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PlatformServer, str]]:
    data = tmp_path_factory.mktemp("fuzz-platform")
    server = PlatformServer(
        data, {ACCESS_KEY: SECRET_KEY}, workers=WORKERS, header_timeout=HEADER_TIMEOUT, io_timeout=IO_TIMEOUT
    )
    with server:
        seed_dataset(data, DATASET_UID, _tiny_zip(tmp_path_factory.mktemp("zip") / "d.zip"))
        login = json.dumps({"account_name": ACCESS_KEY, "password": SECRET_KEY}).encode()
        answer = raw_request(
            server.port, b"POST %s HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (LOGIN_PATH.encode(), len(login), login)
        )
        yield server, json.loads(answer.body)["token"]


def _tiny_zip(path: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("training_dataset.npy", b"\x93NUMPY")
    return path


@settings(
    max_examples=fuzz_examples(400),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=requests())
def test_any_request_gets_a_2xx_or_4xx_in_bounded_time(fuzz_server, request):
    server, token = fuzz_server
    request = request.replace(TOKEN_MARK.encode(), token.encode())

    answer = raw_request(server.port, request, timeout=5)

    assert answer.status is not None, f"no answer to {request[:300]!r}"
    event(f"HTTP {answer.status}")
    assert 200 <= answer.status < 500, f"HTTP {answer.status} for {request[:300]!r}: {answer.body[:200]!r}"
    assert answer.seconds < max(HEADER_TIMEOUT, IO_TIMEOUT) + 2
    assert SECRET_KEY.encode() not in answer.body


def test_after_the_fuzz_the_server_is_clean_and_serving(fuzz_server):
    server, _ = fuzz_server
    leftovers = [p.name for p in server.data_dir.rglob("*") if p.name.startswith(".") and p.name.endswith(".part")]
    workers = [t for t in threading.enumerate() if t.name.startswith("platform-worker")]
    login = json.dumps({"account_name": ACCESS_KEY, "password": SECRET_KEY}).encode()

    answer = raw_request(
        server.port, b"POST %s HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (LOGIN_PATH.encode(), len(login), login)
    )

    assert leftovers == []
    assert len(workers) <= WORKERS
    assert answer.status == 200
