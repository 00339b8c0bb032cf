"""buildtool.engine through the real docker SDK, against a fake Engine API (tests/fake_engine.py).

The real engine reports failures inside HTTP-200 streams; these tests script those streams
(error chunks, errorDetail, a connection cut midway) and check what buildtool raises.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from buildtool.engine import TAIL_LINES, Engine, images
from buildtool.errors import BuildError, EngineError, Interrupted, PushError
from buildtool.inputs import context
from buildtool.interrupt import Token

from ..fake_engine import CUT, FakeEngine, FakeRegistry, probe_output, sha256
from ..helpers import refused_port


@pytest.fixture
def parts(fake_engine: tuple[FakeEngine, FakeRegistry], tmp_path: Path):
    fake, registry = fake_engine
    root = tmp_path / "ctx"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM scratch\n")
    (root / "app.py").write_text("print(1)\n")
    client = Engine(timeout=20)
    yield fake, registry, client, context.scan(root)
    client.close()


@pytest.mark.parametrize(
    "host",
    [
        "tcp://127.0.0.1:{refused}",
        "unix:///nonexistent/buildtool-test/docker.sock",
    ],
)
def test_an_engine_that_does_not_answer_is_an_engine_error(monkeypatch, host):
    fix = r"; start the Docker engine \(systemctl start docker\), or fix DOCKER_HOST / the docker context"
    with refused_port() as port:
        url = host.format(refused=port)
        monkeypatch.setenv("DOCKER_HOST", url)
        answers = r"no Docker engine answers at " + re.escape(url) + r" \(from DOCKER_HOST;.*\)"
        with pytest.raises(EngineError, match=answers + fix):
            Engine(timeout=5)


def test_build_sends_the_context_args_and_labels_and_returns_the_image_id(parts):
    fake, _, client, ctx = parts
    lines: list[str] = []
    image_id = client.build(
        ctx,
        "r.example/t/app:in-1",
        {"BASE_IMAGE": "b@sha256:" + "1" * 64},
        platform="linux/amd64",
        labels={"k": "v"},
        progress=lines.append,
    )
    assert image_id == sha256(b"r.example/t/app:in-1")
    (sent,) = fake.builds
    assert sent.files == ["Dockerfile", "app.py"] and sent.dockerfile == "Dockerfile"
    assert sent.buildargs == {"BASE_IMAGE": "b@sha256:" + "1" * 64} and sent.labels == {"k": "v"}
    assert [line.split("  [")[0] for line in lines] == ["step 1/2: ARG BASE_IMAGE", "step 2/2: FROM ${BASE_IMAGE}"]


def test_a_long_step_shows_its_latest_output_line(parts, monkeypatch):
    fake, _, client, ctx = parts
    monkeypatch.setattr(images, "_HEARTBEAT", 0.0)
    fake.build_streams["app"] = [
        {"stream": "Step 1/1 : RUN pip install x\n"},
        {"stream": "Collecting x\n"},
        {"stream": "\n"},
        {"aux": {"ID": "sha256:" + "a" * 64}},
    ]
    lines: list[str] = []
    assert client.build(ctx, "r/t/app:1", {}, progress=lines.append) == "sha256:" + "a" * 64
    assert [line.split("  [")[0] for line in lines] == ["step 1/1: RUN pip install x", "  ... Collecting x"]


def test_a_build_error_chunk_names_the_failing_step_and_shows_the_log_tail(parts):
    fake, _, client, ctx = parts
    fake.build_streams["app"] = FakeEngine.build_failing("2/3 : RUN pip install nope", "ERROR: no such package nope", 2)
    with pytest.raises(BuildError) as caught:
        client.build(ctx, "r/t/app:in-1", {})
    message = str(caught.value)
    assert message.startswith(
        "build of r/t/app:in-1 failed at step 2/3 (RUN pip install nope): "
        "The command '/bin/sh -c ...' returned a non-zero code: 2\n"
    )
    tail = message.split("--- last lines of the build log ---\n")[1].splitlines()
    assert tail[-1] == "ERROR: no such package nope" and tail[0] == "Step 1/3 : FROM base"


def test_an_error_before_the_first_step_says_so(parts):
    fake, _, client, ctx = parts
    fake.build_streams["app"] = [{"error": "dockerfile parse error line 1: unknown instruction: FORM"}]
    with pytest.raises(BuildError, match=r"failed at \(before the first step\): dockerfile parse error"):
        client.build(ctx, "r/t/app:in-1", {})


def test_the_build_log_tail_keeps_only_the_last_lines(parts):
    fake, _, client, ctx = parts
    fake.build_streams["app"] = (
        [{"stream": "Step 1/1 : RUN seq 100\n"}] + [{"stream": f"{n}\n"} for n in range(100)] + [{"error": "boom"}]
    )
    with pytest.raises(BuildError) as caught:
        client.build(ctx, "r/t/app:in-1", {})
    tail = str(caught.value).split("--- last lines of the build log ---\n")[1].splitlines()
    assert tail == [str(n) for n in range(100 - TAIL_LINES, 100)]


def test_a_build_stream_cut_midway_is_a_build_error_at_the_step_reached(parts):
    fake, _, client, ctx = parts
    fake.build_streams["app"] = [{"stream": "Step 1/2 : FROM scratch\n"}, {"stream": "Step 2/2 : COPY . /\n"}, CUT]
    with pytest.raises(BuildError, match=r"build of r/t/app:in-1 failed at step 2/2 \(COPY \. /\): "):
        client.build(ctx, "r/t/app:in-1", {})


def test_an_engine_that_announces_no_id_is_asked_for_the_tag(parts):
    fake, _, client, ctx = parts
    fake.build_streams["app"] = [{"stream": "Step 1/1 : FROM scratch\n"}, {"stream": "Successfully built 0123\n"}]
    with pytest.raises(BuildError, match=r"build of r/t/app:in-1 ended without an image; last lines:\nStep 1/1"):
        client.build(ctx, "r/t/app:in-1", {})
    fake.images["r/t/app:in-2"] = "sha256:" + "c" * 64
    assert client.build(ctx, "r/t/app:in-2", {}) == "sha256:" + "c" * 64


def test_push_returns_the_digest_the_stream_reports(parts):
    fake, registry, client, _ = parts
    lines: list[str] = []
    digest = client.push(f"{registry.host}/t/app", "in-1", token=Token(), progress=lines.append)
    assert digest == registry.served("t/app", "in-1")
    assert fake.pushes == [f"{registry.host}/t/app:in-1"]
    assert [line.split("  [")[0] for line in lines] == [
        "push: 1 layer(s) done (pushed aaaaaaaaaaaa)",
        "push: 2 layer(s) done (layer already exists bbbbbbbbbbbb)",
    ]


@pytest.mark.parametrize(
    "chunk, shown",
    [
        (
            {"errorDetail": {"message": "denied: requested access to the resource is denied"}, "error": "denied: x"},
            "denied: requested access to the resource is denied",
        ),
        (
            {"error": "received unexpected HTTP status: 500 Internal Server Error"},
            "received unexpected HTTP status: 500 Internal Server Error",
        ),
    ],
)
def test_an_error_in_the_push_stream_is_a_push_error(parts, chunk, shown):
    fake, _, client, _ = parts
    fake.push_streams["app"] = [
        {"status": "Preparing", "id": "a"},
        {"status": "Pushed", "id": "a"},
        chunk,
        {"aux": {"Digest": "sha256:" + "d" * 64}},
    ]
    with pytest.raises(PushError) as caught:
        client.push("r/t/app", "in-1", token=Token())
    assert str(caught.value) == (
        f"push of r/t/app:in-1 failed: {shown}; is the registry running and are you logged in (docker login)?"
    )


def test_a_push_stream_cut_midway_is_a_push_error(parts):
    fake, _, client, _ = parts
    fake.push_streams["app"] = [{"status": "Preparing", "id": "a"}, CUT]
    with pytest.raises(PushError, match=r"push of r/t/app:in-1 failed: ProtocolError"):
        client.push("r/t/app", "in-1", token=Token())


def test_a_push_that_reports_no_digest_is_a_push_error(parts):
    fake, _, client, _ = parts
    fake.push_streams["app"] = [{"status": "Pushed", "id": "a"}, {"aux": {"Tag": "in-1"}}]
    with pytest.raises(PushError, match="push of r/t/app:in-1 ended without a digest from the registry"):
        client.push("r/t/app", "in-1", token=Token())


def test_a_cancelled_push_stops_its_stream_and_raises_interrupted(parts):
    """A signal (or a failed check) cancels the push's token: the stream is cut at once, not read to its end."""
    fake, _, client, _ = parts
    fake.push_streams["app"] = [{"status": "Preparing", "id": "a"}] + [{"status": "Pushing", "id": "a"}] * 3
    fake.push_delays["app"] = 10.0  # an upload that would take long
    token = Token()
    threading.Timer(0.3, token.cancel).start()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        client.push("r/t/app", "in-1", token=token)
    assert time.monotonic() - started < 5.0
    already = Token()
    already.cancel()
    with pytest.raises(Interrupted):
        client.push("r/t/app", "in-1", token=already)


def test_tag_and_untag_the_staging_reference(parts):
    """The engine's push needs a local name: the staging tag is added, then removed again (absent is fine)."""
    fake, _, client, _ = parts
    fake.images["r/t/app:in-1"] = "sha256:" + "b" * 64
    client.tag("sha256:" + "b" * 64, "r/t/app/staging", "unchecked-1")
    assert fake.images["r/t/app/staging:unchecked-1"] == "sha256:" + "b" * 64
    client.untag("r/t/app/staging:unchecked-1")
    assert "r/t/app/staging:unchecked-1" not in fake.images and fake.images["r/t/app:in-1"] == "sha256:" + "b" * 64
    client.untag("r/t/app/staging:unchecked-1")  # already gone: nothing to do
    with pytest.raises(EngineError, match="the engine could not tag sha256:0+ as r/t/app/staging:x: "):
        client.tag("sha256:" + "0" * 64, "r/t/app/staging", "x")


def test_pull_by_digest_and_its_error_chunks(parts):
    fake, _, client, _ = parts
    pin = "r.example/t/app@sha256:" + "e" * 64
    lines: list[str] = []
    client.pull(pin, progress=lines.append)
    assert fake.pulls == [pin]
    assert [line.split("  [")[0] for line in lines] == ["pull: layer aaaaaaaaaaaa done"]
    fake.pull_streams["app"] = [{"errorDetail": {"message": "manifest unknown"}, "error": "manifest unknown"}]
    with pytest.raises(EngineError, match=f"pull of {pin} failed: manifest unknown"):
        client.pull(pin)
    fake.pull_streams["app"] = [{"status": "Pulling fs layer", "id": "a"}, CUT]
    with pytest.raises(EngineError, match=f"pull of {pin} failed: ProtocolError"):
        client.pull(pin)


def test_run_returns_exit_code_and_output_and_removes_the_container(parts):
    fake, _, client, _ = parts
    fake.call_results["app"] = (3, "line one\nline two\n")
    result = client.call("r/t/app:in-1", ["python3", "-c", "x"])
    assert (result.exit_code, result.output) == (3, "line one\nline two\n")
    (container,) = fake.containers.values()
    assert container.command == ["python3", "-c", "x"] and container.removed
    assert client.call("r/t/other:1", ["true"]).output == probe_output()


def test_inspect_size_and_the_image_store(parts):
    fake, _, client, _ = parts
    assert client.image_id("r/t/app:none") is None
    fake.images["r/t/app:1"] = "sha256:" + "f" * 64
    fake.sizes["app"] = 123456789
    assert client.image_id("r/t/app:1") == "sha256:" + "f" * 64
    assert client.size("r/t/app:1") == 123456789
    assert client.size("sha256:" + "f" * 64) == 123456789  # by image ID, as the push sizes a built image
    assert client.stores_images_in_containerd() is False
    fake.driver_status = [["driver-type", "io.containerd.snapshotter.v1"]]
    assert client.stores_images_in_containerd() is False  # asked once per connection
    again = Engine(timeout=5)
    assert again.stores_images_in_containerd() is True
    again.close()


def test_an_engine_gone_mid_session_is_an_engine_error_for_every_call(parts):
    fake, _, client, ctx = parts
    fake.close()
    with pytest.raises(EngineError, match="the engine could not inspect r/t/app:1: ConnectionError"):
        client.image_id("r/t/app:1")
    with pytest.raises(EngineError, match="the engine could not inspect r/t/app:1"):
        client.size("r/t/app:1")
    with pytest.raises(EngineError, match="the engine could not describe itself"):
        client.stores_images_in_containerd()
    with pytest.raises(EngineError, match="the engine could not tag r/t/app:1 as r/t/app/staging:x"):
        client.tag("r/t/app:1", "r/t/app/staging", "x")
    with pytest.raises(EngineError, match="pull of r/t/app:1 failed: ConnectionError"):
        client.pull("r/t/app:1")
    with pytest.raises(EngineError, match="running a container of r/t/app:1 failed: ConnectionError"):
        client.call("r/t/app:1", ["true"])
    with pytest.raises(BuildError, match=r"build of r/t/app:1 failed at \(before the first step\): ConnectionError"):
        client.build(ctx, "r/t/app:1", {})
    with pytest.raises(PushError, match="push of r/t/app:1 failed: ConnectionError"):
        client.push("r/t/app", "1", token=Token())
