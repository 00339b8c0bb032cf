"""The registry client against small real HTTP servers: tag copies, staging deletes, retries, and where
credentials go.

The servers answer like the distribution server (mounts answer 201 or 202,
manifests carry Docker-Content-Digest). They stand in for faults the real
registry cannot be made to produce here: a token service on another host, a
503, a connection cut mid-answer, an answer that never comes. Credentials come
from a real engine config file (DOCKER_CONFIG), as `docker login` writes it.
"""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable

import pytest
import urllib3
from urllib3.exceptions import MaxRetryError

from buildtool.errors import RegistryError
from buildtool.push.registry import Manifest, Registry
from buildtool.push.registry_auth import realm_may_get_credentials
from buildtool.push.registry_retry import MAX_WAIT, RETRIES, retry_policy
from buildtool.reference import parse

from ..helpers import MANIFEST, MANIFEST_DIGEST, Handler, Server, Store, basic, refused_port

USER, PASSWORD = "robot", "s3cret-pw"
TRIES = 3
FAST = retry_policy(retries=TRIES - 1, backoff=0.01)


def client() -> Registry:
    return Registry(timeout=5, retry=FAST)


# -- credentials --------------------------------------------------------------------------------------------------


def _token_registry(serve: Callable[..., Server], realm_address: str) -> tuple[Server, Server, list[str | None]]:
    """A registry asking for a bearer token at a plain-HTTP realm on `realm_address`; the realm records what it got."""
    realm_hits: list[str | None] = []

    def realm(h: Handler) -> None:
        realm_hits.append(h.headers.get("Authorization"))
        h.answer(200, {"Content-Type": "application/json"}, b'{"token": "the-token"}')

    token_service = serve(realm, address=realm_address)

    def registry(h: Handler) -> None:
        if h.headers.get("Authorization") == "Bearer the-token":
            h.answer(200, {"Docker-Content-Digest": "sha256:" + "a" * 64})
        else:
            h.answer(401, {"WWW-Authenticate": f'Bearer realm="http://{token_service.host}/token",service="reg"'})

    return serve(registry), token_service, realm_hits


def test_a_plain_http_token_service_on_another_host_never_gets_the_credentials(serve, docker_config):
    reg, token_service, realm_hits = _token_registry(serve, "127.0.0.2")
    docker_config({reg.host: (USER, PASSWORD)})
    registry = client()
    assert registry.digest(parse(f"{reg.host}/lab/training:t1")) == "sha256:" + "a" * 64
    assert realm_hits == [None]  # asked anonymously: neither the stored credentials nor ~/.netrc's
    assert all(auth in (None, "Bearer the-token") for _, _, auth in reg.seen)


def test_a_token_service_beside_a_loopback_registry_gets_them(serve, docker_config):
    reg, token_service, realm_hits = _token_registry(serve, "127.0.0.1")
    docker_config({reg.host: (USER, PASSWORD)})
    assert client().digest(parse(f"{reg.host}/lab/training:t1")) == "sha256:" + "a" * 64
    assert realm_hits == [basic(USER, PASSWORD)]


def test_each_scope_of_a_challenge_is_asked_for_in_a_parameter_of_its_own(serve, docker_config):
    """A blob mount's challenge names the target's and the source's scopes, space-separated, in one attribute."""
    asked: list[list[tuple[str, str]]] = []

    def realm(h: Handler) -> None:
        asked.append(urllib.parse.parse_qsl(urllib.parse.urlsplit(h.path).query))
        h.answer(200, {"Content-Type": "application/json"}, b'{"token": "the-token"}')

    token_service = serve(realm)

    def registry(h: Handler) -> None:
        if h.headers.get("Authorization") == "Bearer the-token":
            h.answer(200, {"Docker-Content-Digest": "sha256:" + "a" * 64})
        else:
            h.answer(
                401,
                {
                    "WWW-Authenticate": f'Bearer realm="http://{token_service.host}/token",service="reg",'
                    'scope="repository:lab/x:pull,push repository:lab/y:pull"'
                },
            )

    reg = serve(registry)
    assert client().digest(parse(f"{reg.host}/lab/x:t1")) == "sha256:" + "a" * 64
    assert asked == [[("service", "reg"), ("scope", "repository:lab/x:pull,push"), ("scope", "repository:lab/y:pull")]]


def test_without_stored_credentials_netrc_is_never_read(serve, docker_config):
    reg, token_service, realm_hits = _token_registry(serve, "127.0.0.1")
    client().digest(parse(f"{reg.host}/lab/training:t1"))
    assert realm_hits == [None]
    assert all(auth is None or auth.startswith("Bearer") for _, _, auth in reg.seen)


@pytest.mark.parametrize(
    "realm, registry_url, allowed",
    [
        ("https://auth.example.com/token", "https://registry.example.com/v2/x", True),
        ("https://auth.example.com/token", "http://127.0.0.1:5000/v2/x", True),
        ("http://127.0.0.1:5001/token", "http://127.0.0.1:5000/v2/x", True),
        ("http://127.0.0.2:5001/token", "http://127.0.0.1:5000/v2/x", False),
        ("http://auth.example.com/token", "http://127.0.0.1:5000/v2/x", False),
        ("http://auth.example.com/token", "https://registry.example.com/v2/x", False),
        ("ftp://127.0.0.1/token", "http://127.0.0.1:5000/v2/x", False),
    ],
)
def test_which_token_service_may_get_credentials(realm, registry_url, allowed):
    assert realm_may_get_credentials(realm, registry_url) is allowed


def test_an_https_registry_never_sends_to_plain_http():
    ref = parse("registry.example.com/lab/training:t1")
    with pytest.raises(RegistryError, match="which is not HTTPS; refused"):
        client().http.request("PUT", "http://registry.example.com/v2/upload/1", ref, {})


# -- failures told apart, and retried --------------------------------------------------------------------------


def _basic_registry(h: Handler) -> None:
    if h.headers.get("Authorization") != basic(USER, PASSWORD):
        h.answer(401, {"WWW-Authenticate": 'Basic realm="reg"'})
    else:
        h.answer(200, {"Docker-Content-Digest": "sha256:" + "b" * 64})


def test_a_401_without_stored_credentials_says_log_in(serve, docker_config):
    reg = serve(_basic_registry)
    with pytest.raises(RegistryError, match=r"requires credentials .* none are stored for it: run `docker login 127"):
        client().digest(parse(f"{reg.host}/lab/training:t1"))


def test_a_401_with_wrong_credentials_says_they_are_wrong(serve, docker_config):
    reg = serve(_basic_registry)
    docker_config({reg.host: (USER, "wrong")})
    with pytest.raises(RegistryError, match=r"refused the stored credentials .* wrong or expired"):
        client().digest(parse(f"{reg.host}/lab/training:t1"))
    docker_config({reg.host: (USER, PASSWORD)})
    assert client().digest(parse(f"{reg.host}/lab/training:t1")) == "sha256:" + "b" * 64


def test_a_503_is_retried_with_backoff(serve, docker_config):
    answers = iter([503, 502, 200])

    def flaky(h: Handler) -> None:
        h.answer(next(answers), {"Docker-Content-Digest": "sha256:" + "c" * 64})

    reg = serve(flaky)
    assert client().digest(parse(f"{reg.host}/lab/training:t1")) == "sha256:" + "c" * 64
    assert [m for m, _, _ in reg.seen] == ["HEAD"] * 3


def test_retries_stop_at_the_cap_and_report_the_last_answer(serve, docker_config):
    reg = serve(lambda h: h.answer(503))
    with pytest.raises(RegistryError, match=rf"answered 503 .* \(tried {TRIES} time\(s\)\)"):
        client().digest(parse(f"{reg.host}/lab/training:t1"))
    assert len(reg.seen) == TRIES


def test_the_default_policy_tries_4_times_within_30_seconds():
    """urllib3's own arithmetic on the policy the registry client mounts: waits 0, 1, 2 s, and a server's
    Retry-After (here an hour) cut to MAX_WAIT, so three waits stay within the 30 s budget."""
    policy = retry_policy()
    answer = urllib3.HTTPResponse(status=503, headers={"Retry-After": "3600"})
    backoffs, retry_afters = [], []
    with pytest.raises(MaxRetryError):
        while True:
            policy = policy.increment("HEAD", "/v2/lab/training/manifests/t1", response=answer)
            backoffs.append(policy.get_backoff_time())
            retry_afters.append(policy.get_retry_after(answer))
    assert len(backoffs) + 1 == RETRIES + 1 == 4
    assert backoffs == [0, 1.0, 2.0]
    assert retry_afters == [MAX_WAIT] * RETRIES and sum(retry_afters) <= 30


def test_a_long_retry_after_is_waited_for_but_capped(serve, docker_config):
    reg = serve(lambda h: h.answer(503, {"Retry-After": "20"}))  # not an hour: an uncapped wait fails, not hangs
    registry = Registry(timeout=5, retry=retry_policy(retries=2, backoff=0.01, max_wait=0.3))
    started = time.monotonic()
    with pytest.raises(RegistryError, match="answered 503"):
        registry.digest(parse(f"{reg.host}/lab/training:t1"))
    assert 0.55 < time.monotonic() - started < 3  # two waits of 0.3 s: not 20 s each, and not none
    assert len(reg.seen) == 3


def _reset(h: Handler) -> None:
    """Drop the connection with a TCP reset (SO_LINGER 0), without a byte of answer."""
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.rfile.close()
    h.wfile.close()
    h.connection.close()  # the last reference: the socket closes, with a reset
    h.wfile = io.BytesIO()  # for the handler's own flush once this returns
    h.close_connection = True


def test_a_refused_connection_is_named_as_such(docker_config):
    started = time.monotonic()
    with (
        refused_port() as port,
        pytest.raises(RegistryError, match=r"refused the connection \(nothing listens there\).*tried 3 time"),
    ):
        client().digest(parse(f"127.0.0.1:{port}/lab/training:t1"))
    assert time.monotonic() - started < 5


def _partial(h: Handler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
    h.send_header("Content-Length", "5000")
    h.end_headers()
    h.wfile.write(b'{"schemaVersion": 2, "lay')
    h.wfile.flush()


def _partial_then_closed(h: Handler) -> None:
    _partial(h)
    h.close_connection = True
    h.connection.shutdown(socket.SHUT_RDWR)


def _partial_then_reset(h: Handler) -> None:
    _partial(h)
    _reset(h)


@pytest.mark.parametrize(
    "fault",
    [_partial_then_closed, _partial_then_reset, _reset],
    ids=["body-short-then-closed", "body-short-then-reset", "reset-before-answer"],
)
def test_an_answer_cut_mid_transfer_is_named_as_such(serve, docker_config, fault):
    reg = serve(fault)
    with pytest.raises(RegistryError, match=rf"cut mid-transfer.*\(tried {TRIES} time\(s\)\)") as caught:
        client().manifest(parse(f"{reg.host}/lab/training:t1"))
    assert "not JSON" not in str(caught.value)
    assert len(reg.seen) == TRIES  # retried, then reported


def test_an_answer_that_never_comes_is_a_timeout(serve, docker_config):
    release = threading.Event()
    reg = serve(lambda h: release.wait(10))
    registry = Registry(timeout=0.5, retry=retry_policy(retries=1, backoff=0.01))
    try:
        with pytest.raises(RegistryError, match=r"stopped answering for [01]s \(timeout\).*\(tried 2 time\(s\)\)"):
            registry.digest(parse(f"{reg.host}/lab/training:t1"))
        assert len(reg.seen) == 2
    finally:
        release.set()


# -- the tag copy a checked image gets, and the staging manifest's removal --------------------------------------


def test_a_copy_across_repositories_mounts_the_blobs_then_tags(serve, docker_config):
    store = Store()
    reg = serve(store)
    store.manifests[("lab/training/staging", MANIFEST_DIGEST)] = MANIFEST
    store.blobs["lab/training/staging"] = {"sha256:" + "1" * 64, "sha256:" + "2" * 64}
    registry = client()
    source = parse(f"{reg.host}/lab/training/staging:unchecked-x@{MANIFEST_DIGEST}")
    assert registry.copy(source, parse(f"{reg.host}/lab/training:in-0123")) == MANIFEST_DIGEST
    assert store.blobs["lab/training"] == store.blobs["lab/training/staging"]
    assert store.manifests[("lab/training", "in-0123")] == MANIFEST  # byte for byte: the digest stays
    methods = [m for m, _, _ in reg.seen]
    assert methods.index("PUT") > max(i for i, m in enumerate(methods) if m == "POST")  # blobs first


def test_a_declined_mount_fails_the_copy_before_any_tag(serve, docker_config):
    store = Store()
    store.refuse_mount = True
    reg = serve(store)
    store.manifests[("lab/training/staging", MANIFEST_DIGEST)] = MANIFEST
    with pytest.raises(RegistryError, match="declined to mount"):
        client().copy(
            parse(f"{reg.host}/lab/training/staging:u@{MANIFEST_DIGEST}"), parse(f"{reg.host}/lab/training:in-0123")
        )
    assert ("lab/training", "in-0123") not in store.manifests
    assert ("DELETE", "/v2/lab/training/blobs/uploads/opened", None) in reg.seen  # the opened upload is closed


def test_a_manifest_whose_bytes_do_not_hash_to_its_digest_is_refused(serve, docker_config):
    store = Store()
    reg = serve(store)
    store.manifests[("lab/training/staging", "sha256:" + "9" * 64)] = MANIFEST
    with pytest.raises(RegistryError, match="hashes to"):
        client().raw_manifest(parse(f"{reg.host}/lab/training/staging@sha256:{'9' * 64}"))


def test_deleting_the_staging_manifest_leaves_other_repositories_alone(serve, docker_config):
    store = Store()
    reg = serve(store)
    for repo, tag in (("lab/training/staging", "unchecked-1"), ("lab/training", "in-0123")):
        store.manifests[(repo, tag)] = store.manifests[(repo, MANIFEST_DIGEST)] = MANIFEST
    client().delete_manifest(parse(f"{reg.host}/lab/training/staging@{MANIFEST_DIGEST}"))
    assert ("lab/training/staging", "unchecked-1") not in store.manifests
    assert store.manifests[("lab/training", "in-0123")] == MANIFEST
    client().delete_manifest(parse(f"{reg.host}/lab/training/staging@{MANIFEST_DIGEST}"))  # gone already: fine


def test_manifest_blobs_are_its_config_and_layers():
    assert Manifest(MANIFEST, "x", MANIFEST_DIGEST).blobs() == ["sha256:" + "1" * 64, "sha256:" + "2" * 64]


# -- which calls the policy retries -----------------------------------------------------------------------------


class Flaky(Store):
    """The Store, failing the first request of one method with `fault`: a 503, or a reset before any answer."""

    def __init__(self, method: str, fault: str) -> None:
        super().__init__()
        self.method, self.fault, self.failed = method, fault, ""  # failed: the path that got the fault

    def __call__(self, h: Handler) -> None:
        if h.command != self.method or self.failed:
            return super().__call__(h)
        self.failed = h.path
        if self.fault == "503":
            h.answer(503)
        else:
            _reset(h)


@pytest.mark.parametrize(
    "method, fault, retried, error",
    [
        ("HEAD", "503", True, None),
        ("GET", "503", True, None),
        ("PUT", "503", True, None),
        ("DELETE", "503", True, None),
        ("HEAD", "reset", True, None),
        ("PUT", "reset", True, None),
        # A blob-mount POST is not sent again once it reached the server: a declined mount opens an upload each time.
        ("POST", "503", False, "answered 503 for mounting blob"),
        ("POST", "reset", False, r"cut mid-transfer .* \(tried 1 time\(s\)\)"),
    ],
)
def test_which_calls_are_retried(serve, docker_config, method, fault, retried, error):
    store = Flaky(method, fault)
    reg = serve(store)
    store.manifests[("lab/training/staging", MANIFEST_DIGEST)] = MANIFEST
    store.manifests[("lab/training", "old")] = store.manifests[("lab/training", MANIFEST_DIGEST)] = MANIFEST
    store.blobs["lab/training/staging"] = {"sha256:" + "1" * 64, "sha256:" + "2" * 64}
    registry = client()
    source = parse(f"{reg.host}/lab/training/staging:u@{MANIFEST_DIGEST}")

    def calls() -> None:
        assert registry.digest(parse(f"{reg.host}/lab/training:old")) == MANIFEST_DIGEST  # HEAD
        assert registry.copy(source, parse(f"{reg.host}/lab/training:in-0123")) == MANIFEST_DIGEST  # GET, POST, PUT
        registry.delete_manifest(parse(f"{reg.host}/lab/training@{MANIFEST_DIGEST}"))  # DELETE

    if error:
        with pytest.raises(RegistryError, match=error):
            calls()
    else:
        calls()
        assert ("lab/training", "in-0123") not in store.manifests  # deleted last, with every tag on it
    assert store.failed
    assert reg.seen.count((method, store.failed, None)) == (2 if retried else 1)
