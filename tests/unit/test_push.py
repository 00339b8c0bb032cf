"""The push's decisions and its rule: which pusher, the content tag only after the check, nothing after a signal.

The registry is a real local HTTP server keeping manifests per repository as the
distribution server does (tests/helpers.py, Store); the pusher is a
stand-in that stores a manifest under the staging tag, as skopeo or the engine
would. The real ones run in tests/integration/test_push_safety.py.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from buildtool import push
from buildtool.config import Config
from buildtool.engine import Endpoint
from buildtool.errors import BuildError, Interrupted, PushError
from buildtool.interrupt import Token
from buildtool.push.engine_push import EnginePusher
from buildtool.push.registry import Manifest, Registry
from buildtool.push.registry_retry import retry_policy
from buildtool.push.skopeo import SkopeoPusher, command
from buildtool.reference import hold_tag, parse

from ..helpers import MANIFEST, MANIFEST_DIGEST, Store

LOCAL = Endpoint(None, "the default socket")


class _Engine:
    def __init__(self, containerd: bool = False, endpoint: Endpoint = LOCAL) -> None:
        self.containerd = containerd
        self.endpoint = endpoint

    def stores_images_in_containerd(self) -> bool:
        return self.containerd


def _config(push_with: str) -> Config:
    return Config(
        path=Path("pyproject.toml"),
        root=Path("."),
        registry="127.0.0.1:5000",
        repository="t",
        base_image="b",
        platform="linux/amd64",
        image_map=Path("image_map.yaml"),
        output=Path("pipeline.yaml"),
        pipeline="p:f",
        steps_module="s",
        image_pull_policy="IfNotPresent",
        images=(),
        push_with=push_with,
    )


@pytest.fixture
def with_skopeo(tmp_path, monkeypatch):
    """A PATH holding an executable named skopeo (found by name, never run here)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    exe = folder / "skopeo"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))
    return exe


@pytest.fixture
def without_skopeo(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))


LARGE, SMALL = push.SKOPEO_FROM_BYTES, push.SKOPEO_FROM_BYTES - 1


@pytest.mark.parametrize(
    "push_with, containerd, new_bytes, expected",
    [
        ("auto", False, LARGE, "skopeo"),
        ("auto", False, SMALL, "engine"),
        ("auto", False, 0, "engine"),
        ("auto", True, LARGE, "engine"),  # compressed layers already: the engine sends them as they are
        ("skopeo", False, 0, "skopeo"),
        ("engine", False, LARGE, "engine"),
    ],
)
def test_the_pusher_is_chosen_by_the_size_of_the_new_layers(with_skopeo, push_with, containerd, new_bytes, expected):
    chosen = push.pusher_for(_config(push_with), _Engine(containerd), new_bytes)  # type: ignore[arg-type]
    assert chosen.name == expected
    assert isinstance(chosen, SkopeoPusher if expected == "skopeo" else EnginePusher)


def test_without_skopeo_the_engine_pushes_even_large_layers(without_skopeo):
    assert push.pusher_for(_config("auto"), _Engine(), LARGE).name == "engine"  # type: ignore[arg-type]


def test_skopeo_asked_for_but_missing_is_a_push_error_with_the_fix(without_skopeo):
    with pytest.raises(PushError, match=r"skopeo is not installed; install it \(apt-get install skopeo"):
        push.pusher_for(_config("skopeo"), _Engine(), 0)  # type: ignore[arg-type]


def _tls(folder: Path) -> SimpleNamespace:
    """What docker.tls.TLSConfig holds for DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH=folder (its files unread)."""
    return SimpleNamespace(
        cert=(str(folder / "cert.pem"), str(folder / "key.pem")), ca_cert=str(folder / "ca.pem"), verify=True
    )


@pytest.mark.parametrize(
    "url, tls, expected",
    [
        (None, False, []),
        ("unix:///run/user/1000/docker.sock", False, ["--src-daemon-host", "unix:///run/user/1000/docker.sock"]),
        (
            "tcp://build.example.com:2376",
            True,
            ["--src-daemon-host", "tcp://build.example.com:2376", "--src-cert-dir", "/certs"],
        ),
        ("tcp://build.example.com:2375", False, None),  # skopeo would speak TLS to it: the engine pushes
        ("ssh://builder@build.example.com", False, None),  # skopeo has no ssh transport
    ],
)
def test_skopeo_is_told_which_engine_to_read(url: str | None, tls: bool, expected: list[str] | None) -> None:
    endpoint = Endpoint(url, "DOCKER_HOST", _tls(Path("/certs")) if tls else None)
    assert endpoint.skopeo_source() == expected


def test_a_remote_engine_skopeo_cannot_read_pushes_itself(with_skopeo):
    remote = _Engine(endpoint=Endpoint("ssh://builder@build.example.com", "DOCKER_HOST"))
    assert push.pusher_for(_config("auto"), remote, LARGE).name == "engine"  # type: ignore[arg-type]
    with pytest.raises(PushError, match=r"skopeo cannot read the engine at ssh://builder@build.example.com"):
        push.pusher_for(_config("skopeo"), remote, 0)  # type: ignore[arg-type]
    tls = _Engine(endpoint=Endpoint("tcp://b:2376", "DOCKER_HOST", _tls(Path("/certs"))))
    chosen = push.pusher_for(_config("auto"), tls, LARGE)  # type: ignore[arg-type]
    assert isinstance(chosen, SkopeoPusher) and chosen.source == [
        "--src-daemon-host",
        "tcp://b:2376",
        "--src-cert-dir",
        "/certs",
    ]


def test_skopeo_command_line_names_the_engine(tmp_path):
    job = _job("127.0.0.1:5000", tmp_path)
    source = ["--src-daemon-host", "tcp://b:2376", "--src-cert-dir", "/certs"]
    argv = command("skopeo", job, tmp_path / "a", tmp_path / "d", source)
    assert argv[argv.index("--src-daemon-host") + 1] == "tcp://b:2376" and argv.index("--src-cert-dir") < len(argv) - 2


BASE, TF, SK, NEW = ("sha256:" + c * 64 for c in "abcd")
SIZES = {BASE: 100_000_000, TF: 1_200_000_000, SK: 150_000_000, NEW: 40_000}


@pytest.mark.parametrize(
    "held, known, lacking, new_bytes, engine_bytes, expected",
    [
        # A fresh runner that pulled the previous image: the engine knows every held layer and sends the new one.
        ({BASE, TF, SK}, {BASE, TF, SK}, 1, 40_000, 40_000, "engine"),
        # The previous image was pushed by skopeo: the engine has no digest for TensorFlow's layer and would send it
        # again, so skopeo pushes (it finds the held blobs itself).
        ({BASE, TF, SK}, {BASE}, 1, 40_000, 1_350_040_000, "skopeo"),
        # Cold: the registry holds only the base.
        ({BASE}, {BASE}, 3, 1_350_040_000, 1_350_040_000, "skopeo"),
        # Registry holds the TensorFlow layer, scikit-learn's is new and small.
        ({BASE, TF}, {BASE, TF}, 2, 150_040_000, 150_040_000, "engine"),
    ],
)
def test_layers_are_counted_against_what_the_registry_holds(
    with_skopeo, held, known, lacking, new_bytes, engine_bytes, expected
):
    count = push.count_layers((BASE, TF, SK, NEW), SIZES, sum(SIZES.values()), SIZES[BASE], held, known)
    assert (count.layers, count.lacking, count.new_bytes, count.engine_bytes) == (4, lacking, new_bytes, engine_bytes)
    chosen = push.pusher_for(_config("auto"), _Engine(), count.new_bytes, count.engine_bytes)  # type: ignore[arg-type]
    assert chosen.name == expected
    assert f"in {lacking} layer(s) the registry lacks; it holds the other {4 - lacking}" in count.describe()


def test_without_sizes_every_byte_above_the_base_counts():
    count = push.count_layers((BASE, NEW), None, 500, 100, {BASE}, {BASE})
    assert (count.lacking, count.new_bytes, count.engine_bytes) == (1, 400, 400)


def _job(host: str, tmp_path: Path, token: Token | None = None, tag: str = "in-0123456789abcdef") -> push.PushJob:
    target = parse(f"{host}/lab/training:{tag}")
    return push.PushJob(
        "training",
        f"{host}/lab/training:{tag}",
        "sha256:" + "e" * 64,
        target,
        push.staging_reference(target),
        tmp_path,
        6,
        token or Token(),
        lambda message: None,
    )


def test_skopeo_command_line(tmp_path):
    job = _job("127.0.0.1:5000", tmp_path)
    argv = command("/usr/bin/skopeo", job, tmp_path / "auth.json", tmp_path / "digest")
    assert argv[:2] == ["/usr/bin/skopeo", "copy"]
    assert argv[argv.index("--retry-times") + 1] == "3"
    assert argv[argv.index("--dest-compress-level") + 1] == "6"
    assert argv[argv.index("--authfile") + 1] == str(tmp_path / "auth.json")
    assert "--dest-tls-verify=false" in argv  # loopback only
    assert argv[-2:] == [f"docker-daemon:{job.local}", f"docker://{job.staging}"]
    remote = _job("registry.example.com", tmp_path)
    assert "--dest-tls-verify=false" not in command("skopeo", remote, tmp_path / "a", tmp_path / "d")


def test_the_staging_reference_is_another_repository_and_never_the_content_tag():
    target = parse("127.0.0.1:5000/lab/training:in-0123456789abcdef")
    first, second = push.staging_reference(target), push.staging_reference(target)
    assert first.repository == "127.0.0.1:5000/lab/training/staging"
    assert first.tag and first.tag.startswith("unchecked-0123456789abcdef-") and first.tag != second.tag
    assert not first.tag.startswith("in-")


def test_the_authfile_holds_only_the_target_registry_and_is_private(tmp_path, docker_config):  # noqa: F811
    from buildtool.push.skopeo import write_authfile

    docker_config({"127.0.0.1:5000": ("robot", "pw"), "other.example.com": ("x", "y")})
    path = write_authfile(tmp_path, "127.0.0.1:5000")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    import json

    assert list(json.loads(path.read_text())["auths"]) == ["127.0.0.1:5000"]


class StagingPusher:
    """Stores the manifest under the staging tag, as skopeo or the engine would, and can be told to wait."""

    name = "stand-in"

    def __init__(self, registry: Registry, store: Store, blobs: set[str]) -> None:
        self.registry, self.store, self.blobs = registry, store, blobs
        self.release = threading.Event()
        self.release.set()

    def push(self, job: push.PushJob) -> str:
        self.store.blobs.setdefault(job.staging.path, set()).update(self.blobs)
        manifest = Manifest(MANIFEST, "application/vnd.docker.distribution.manifest.v2+json", MANIFEST_DIGEST)
        self.registry.put_manifest(job.staging, manifest)
        while not self.release.wait(0.05):
            job.token.raise_if_cancelled()
        return MANIFEST_DIGEST


@pytest.fixture
def setup(serve, docker_config, tmp_path):  # noqa: F811  (fixtures shared with test_registry_writes)
    store = Store()
    server = serve(store)
    registry = Registry(timeout=5, retry=retry_policy(retries=1, backoff=0.01))
    pusher = StagingPusher(registry, store, {"sha256:" + "1" * 64, "sha256:" + "2" * 64})
    return store, server, registry, pusher


def _tags(store: Store, repository: str) -> set[str]:
    return {ref for repo, ref in store.manifests if repo == repository and not ref.startswith("sha256:")}


def test_the_content_tag_appears_only_after_the_check_passed(setup, tmp_path):
    store, server, registry, pusher = setup
    job = _job(server.host, tmp_path)
    seen_during_check: list[set[str]] = []

    def check() -> None:
        pusher_done = threading.Event()
        for _ in range(100):  # wait until the push has staged the image
            if _tags(store, "lab/training/staging"):
                pusher_done.set()
                break
            threading.Event().wait(0.02)
        assert pusher_done.is_set()
        seen_during_check.append(_tags(store, "lab/training"))

    assert push.publish_checked(job, pusher, registry, check) == MANIFEST_DIGEST
    assert seen_during_check == [set()]  # staged, checked, and not pullable under its content tag meanwhile
    assert _tags(store, "lab/training") == {"in-0123456789abcdef", hold_tag(MANIFEST_DIGEST)}  # the pin's own tag
    assert _tags(store, "lab/training/staging") == set()  # the staging tag went with its manifest


def test_a_failed_check_stops_the_push_and_leaves_no_tag(setup, tmp_path):
    store, server, registry, pusher = setup
    pusher.release.clear()  # the push is still running when the check fails
    job = _job(server.host, tmp_path)

    def check() -> None:
        for _ in range(100):
            if _tags(store, "lab/training/staging"):
                break
            threading.Event().wait(0.02)
        raise BuildError("step training imports sklearn: not installed in image training")

    with pytest.raises(BuildError, match="not installed"):
        push.publish_checked(job, pusher, registry, check)
    assert job.token.cancelled
    assert _tags(store, "lab/training") == set()
    assert _tags(store, "lab/training/staging") == set()


def test_no_content_tag_after_a_signal(setup, tmp_path):
    store, server, registry, pusher = setup
    run_token = Token()
    job = _job(server.host, tmp_path, token=run_token.child())

    def check() -> None:
        run_token.cancel(signal.SIGTERM)  # the signal lands while the image is checked

    with pytest.raises(Interrupted) as caught:
        push.publish_checked(job, pusher, registry, check)
    assert caught.value.exit_code == 143
    assert _tags(store, "lab/training") == set()
    assert _tags(store, "lab/training/staging") == set()


def test_a_push_error_is_rewrapped_once_naming_the_image(setup, tmp_path):
    store, server, registry, pusher = setup
    store.refuse_mount = True  # the tag copy cannot link the blobs
    job = _job(server.host, tmp_path)
    with pytest.raises(PushError) as caught:
        push.publish_checked(job, pusher, registry, lambda: None)
    message = str(caught.value)
    assert message.startswith(f"push of {job.target} failed: registry ") and message.count("push of") == 1
    assert _tags(store, "lab/training") == set() and _tags(store, "lab/training/staging") == set()


def test_a_token_stops_what_registers_and_refuses_to_publish():
    token = Token()
    stopped = []
    child = token.child()
    with child.stopping(lambda: stopped.append("skopeo")):
        token.cancel(signal.SIGINT)
    assert stopped == ["skopeo"] and child.cancelled
    with pytest.raises(Interrupted) as caught, token.publishing():
        pass
    assert caught.value.exit_code == 130
    assert os.EX_OK == 0


# The engine's history, oldest first, as the two builders leave it (sizes in bytes).
CLASSIC_HISTORY = [
    ("", 100),
    ("/bin/sh -c #(nop)  ENV A=1", 0),
    ("/bin/sh -c #(nop) COPY file:ab in /tmp", 5),
    ("/bin/sh -c pip install x", 50),
    ("/bin/sh -c python3 -m pip check", 0),  # no change: no layer
    ("/bin/sh -c #(nop)  LABEL a=b", 0),
]
BUILDKIT_HISTORY = [
    ("", 100),
    ("ENV A=1", 0),
    ("COPY a /tmp # buildkit", 5),
    ("RUN /bin/sh -c pip install x", 50),
    ("RUN /bin/sh -c python3 -m pip check # buildkit", 0),  # an empty layer of its own
    ("LABEL a=b", 0),
]


@pytest.mark.parametrize(
    "history, layers, expected",
    [
        (CLASSIC_HISTORY, ["p", "c", "i"], {"p": 100, "c": 5, "i": 50}),
        (BUILDKIT_HISTORY, ["p", "c", "i", "e"], {"p": 100, "c": 5, "i": 50, "e": 0}),
        (CLASSIC_HISTORY, ["p", "c"], None),  # nothing lines up: unknown, never a guess
    ],
)
def test_layer_sizes_pair_the_history_with_the_layers(history, layers, expected):
    from buildtool.engine import layer_sizes

    assert layer_sizes(layers, [{"CreatedBy": c, "Size": n} for c, n in history]) == expected


class _FlakyEngine:
    """An engine whose push fails with the given errors first, then reports a digest."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        self.pushes = 0
        self.tags: list[str] = []

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        self.tags.append(f"{repository}:{tag}")

    def untag(self, ref: str) -> None:
        self.tags.remove(ref)

    def push(self, repository: str, tag: str, *, token: Token, progress: object) -> str:
        self.pushes += 1
        if self.failures:
            raise PushError(f"push of {repository}:{tag} failed: {self.failures.pop(0)}; is the registry running")
        return MANIFEST_DIGEST


SERVER_ERROR = "received unexpected HTTP status: 500 Internal Server Error"


@pytest.mark.parametrize(
    ("failures", "pushes", "ok"),
    [
        ([SERVER_ERROR], 2, True),  # two runners committing the same layer at once
        (["received unexpected HTTP status: 503 Service Unavailable"] * 3, 4, True),
        (["received unexpected HTTP status: 429 Too Many Requests"], 2, True),
        ([SERVER_ERROR] * 4, 4, False),  # four tries in all
        (["denied: requested access to the resource is denied"], 1, False),  # not passing: no second try
        (["received unexpected HTTP status: 404 Not Found"], 1, False),
        (["received unexpected HTTP status: 5000 Internal"], 1, False),
    ],
)
def test_the_engine_push_is_sent_again_after_a_passing_registry_failure(
    tmp_path, monkeypatch, failures, pushes, ok
) -> None:
    monkeypatch.setattr("buildtool.push.engine_push.WAITS", (0.0, 0.0, 0.0))
    engine = _FlakyEngine(list(failures))
    job = _job("127.0.0.1:5000", tmp_path)
    pusher = EnginePusher(engine)  # type: ignore[arg-type]
    if ok:
        assert pusher.push(job) == MANIFEST_DIGEST
    else:
        with pytest.raises(PushError):
            pusher.push(job)
    assert engine.pushes == pushes
    assert engine.tags == []  # the staging name is removed after every try


def test_a_cancel_during_the_wait_stops_the_engine_push(tmp_path) -> None:
    token = Token()
    engine = _FlakyEngine([SERVER_ERROR] * 4)
    job = _job("127.0.0.1:5000", tmp_path, token)
    threading.Timer(0.1, token.cancel, args=(signal.SIGTERM,)).start()
    with pytest.raises(Interrupted):
        EnginePusher(engine).push(job)  # type: ignore[arg-type]
    assert engine.pushes == 1
