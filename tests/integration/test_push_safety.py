"""The push on the real engine, registry and skopeo: the content tag only after the check, signals that stop
everything within 2 s, two builds at once, and a fresh runner reusing the previous image's layers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker
import pytest
import requests

from buildtool import config
from buildtool.lock import image_map
from buildtool.push import workdir

from .conftest import BASE_IMAGE, served_digest

REPO = Path(__file__).resolve().parents[2]
BIG_MB = 300  # a layer skopeo needs several seconds to compress and send: long enough to interrupt


def buildtool(project: Path, *args: str, tmpdir: Path | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "BUILDTOOL_BASE_IMAGE": BASE_IMAGE, "PYTHONPATH": str(REPO)}
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return subprocess.Popen(
        [sys.executable, "-m", "buildtool", "--config", str(project), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=project.parent,
    )


def set_push_with(project: Path, way: str) -> None:
    project.write_text(project.read_text().replace("[tool.buildtool]\n", f'[tool.buildtool]\npush_with = "{way}"\n', 1))


def staging_tags(registry: str, repository_path: str) -> list[str]:
    response = requests.get(f"http://{registry}/v2/{repository_path}/staging/tags/list", timeout=10)
    return (response.json().get("tags") or []) if response.status_code == 200 else []


def content_tag(err: str, name: str) -> str:
    match = re.search(rf"\] {name} +build (\S+:in-[0-9a-f]{{16}}) on ", err)
    assert match, err
    return match[1]


def skopeo_processes(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"skopeo") and any(marker.encode() in part for part in cmdline):
                found.append(int(entry.name))
    return found


class Reader:
    """Collects a process's stderr in a thread, so a test can wait for a line while the process runs."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stderr is not None
        self._thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if re.search(pattern, line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n{''.join(self.lines)[-3000:]}")

    def text(self) -> str:
        self._thread.join(5)
        return "".join(self.lines)


def remove_project_images(engine_client: docker.DockerClient, prefix: str) -> None:
    """Every name of this project's prefix: an image goes with its last name, unless another test's image
    builds on it (identical base builds share one image ID across prefixes)."""
    for image in engine_client.images.list():
        for name in image.tags + image.attrs.get("RepoDigests", []):
            if f"/{prefix}/" in name:
                with contextlib.suppress(docker.errors.NotFound):
                    engine_client.images.remove(name, force=True)


def big_training(project: Path) -> None:
    (project.parent / "images" / "training" / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY . /opt/training/\n"
        f"RUN head -c {BIG_MB}000000 /dev/urandom > /opt/big\n"
    )


@pytest.mark.parametrize(
    "sig, code, way, times",
    [
        (signal.SIGTERM, 143, "skopeo", 1),
        (signal.SIGINT, 130, "skopeo", 1),
        (signal.SIGINT, 130, "skopeo", 2),  # a second Ctrl-C during the clean-up ends it no later
        (signal.SIGTERM, 143, "engine", 1),
    ],
)
def test_a_signal_mid_push_stops_everything_within_2s(small_project, registry, tmp_path, sig, code, way, times):
    set_push_with(small_project, way)
    big_training(small_project)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    map_path = small_project.parent / "image_map.yaml"
    map_path.write_text("# the map before the interrupted push\nsteps: {}\n")
    before = map_path.read_bytes()
    prefix = config.load(small_project).repository
    process = buildtool(small_project, "build", "--push", tmpdir=tmpdir)
    reader = Reader(process)
    try:
        reader.wait_for(rf"\] training +push via {way} ", timeout=600)
        time.sleep(2.0)  # well into the transfer of the large layer
        if way == "skopeo":
            assert skopeo_processes(f"/{prefix}/training/staging"), "skopeo should be pushing now"
        sent = time.monotonic()
        process.send_signal(sig)
        if times == 2:
            time.sleep(0.2)
            process.send_signal(sig)
        assert process.wait(timeout=10) == code
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    err = reader.text()
    assert took <= 2.0, f"exit took {took:.2f}s\n{err[-2500:]}"
    errors = [line for line in err.splitlines() if line.startswith("buildtool:")]
    assert errors == [
        f"buildtool: error: interrupted by {signal.Signals(sig).name}: the running builds, checks and "
        "pushes were stopped, their staging images deleted; no tag and no image map was written "
        "after the signal"
    ]
    assert "Traceback" not in err
    assert map_path.read_bytes() == before
    assert served_digest(content_tag(err, "training")) is None  # no content tag after the signal
    time.sleep(0.5)
    assert skopeo_processes(f"/{prefix}/training/staging") == []
    assert staging_tags(registry, f"{prefix}/training") == []
    assert list(tmpdir.glob(workdir.PREFIX + "*")) == []


def test_a_killed_runs_folder_is_removed_by_the_next_run(small_project, registry, tmp_path):
    set_push_with(small_project, "skopeo")
    big_training(small_project)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    prefix = config.load(small_project).repository
    process = buildtool(small_project, "build", "training", "--push", tmpdir=tmpdir)
    reader = Reader(process)
    try:
        reader.wait_for(r"\] training +push via skopeo ", timeout=600)
        time.sleep(2.0)
        assert skopeo_processes(f"/{prefix}/training/staging"), "skopeo should be pushing now"
    finally:
        process.kill()  # SIGKILL: nothing of buildtool runs any more
        process.wait()
    killed = time.monotonic()
    while skopeo_processes(f"/{prefix}/training/staging") and time.monotonic() - killed < 5:
        time.sleep(0.05)
    # skopeo (in a session of its own) got its parent-death signal: it does not go on pushing.
    assert time.monotonic() - killed < 1.0, "skopeo outlived buildtool"
    time.sleep(5)  # longer than the rest of the push would have taken
    assert staging_tags(registry, f"{prefix}/training") == []  # no unchecked manifest written after the kill
    left = list(tmpdir.glob(workdir.PREFIX + "*"))
    assert left, "the killed run leaves its folder"
    authfiles = [path for folder in left for path in (folder / "auth").glob("auth-*.json")]
    assert authfiles and all((path.parent.stat().st_mode & 0o777) == 0o700 for path in authfiles)
    following = buildtool(small_project, "build", "base", tmpdir=tmpdir)  # any build cleans up first
    out, err = following.communicate(timeout=600)
    assert following.returncode == 0, err
    assert list(tmpdir.glob(workdir.PREFIX + "*")) == []


SLOW_MODULE = "import time\ntime.sleep(8)\n"


def _training_imports_slowly(small_project, module: str) -> None:
    """The training step imports `slow_import` (`module`'s source), so its import check takes that long."""
    training = small_project.parent / "images" / "training"
    (training / "slow_import.py").write_text(module)
    (training / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY slow_import.py /opt/slow/\nENV PYTHONPATH=/opt/slow\n"
    )
    steps = small_project.parent / "small_steps.py"
    steps.write_text(
        steps.read_text().replace(
            "def training(input, output):\n    import json",
            "def training(input, output):\n    import json, slow_import",
        )
    )


def test_the_content_tag_is_not_pullable_while_the_image_is_checked(small_project, registry):
    """The check imports a module that takes 8 s: meanwhile the image waits under a staging tag only."""
    _training_imports_slowly(small_project, SLOW_MODULE)
    prefix = config.load(small_project).repository
    process = buildtool(small_project, "build", "--push")
    reader = Reader(process)
    staged_while_checking: list[str] = []
    content_while_checking: list[str | None] = []
    try:
        line = reader.wait_for(r"\] training +push via ", timeout=600)
        assert " to " in line
        deadline = time.monotonic() + 8
        tag = content_tag("".join(reader.lines), "training")
        while time.monotonic() < deadline and not re.search(r"\] training +imports of step", "".join(reader.lines)):
            staged_while_checking += staging_tags(registry, f"{prefix}/training")
            content_while_checking.append(served_digest(tag))
            time.sleep(0.2)
        assert process.wait(timeout=600) == 0, reader.text()
    finally:
        if process.poll() is None:
            process.kill()
    assert staged_while_checking, "the push should have staged the image during the 8 s check"
    assert all(tag.startswith("unchecked-") for tag in staged_while_checking)
    assert set(content_while_checking) == {None}  # never pullable under its content tag before the check passed
    mapping = image_map.load(small_project.parent / "image_map.yaml")
    assert served_digest(tag) == mapping.images["training"].reference.split("@")[1]
    assert staging_tags(registry, f"{prefix}/training") == []


def test_a_failed_check_leaves_neither_content_nor_staging_tag(small_project, registry):
    steps = small_project.parent / "small_steps.py"
    steps.write_text(
        steps.read_text().replace(
            "def training(input, output):\n    import json", "def training(input, output):\n    import json, sklearn"
        )
    )
    prefix = config.load(small_project).repository
    process = buildtool(small_project, "build", "--push")
    out, err = process.communicate(timeout=600)
    assert process.returncode == 6, err
    assert "step training imports sklearn: not installed in image training" in err
    assert served_digest(content_tag(err, "training")) is None
    assert staging_tags(registry, f"{prefix}/training") == []


def test_two_builds_at_once_both_land_in_the_map(small_project, registry):
    first = buildtool(small_project, "build", "--push")
    assert first.wait(timeout=600) == 0, first.communicate()[1]
    map_path = small_project.parent / "image_map.yaml"
    before = image_map.load(map_path)
    images = small_project.parent / "images"
    (images / "download" / "new.txt").write_text("download changed\n")
    (images / "upload" / "new.txt").write_text("upload changed\n")
    runs = [buildtool(small_project, "build", name, "--push") for name in ("download", "upload")]
    outputs = [r.communicate(timeout=600) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], [err for _, err in outputs]
    after = image_map.load(map_path)
    assert after.images["download"] != before.images["download"]
    assert after.images["upload"] != before.images["upload"]  # neither run lost the other's entry
    assert after.images["training"] == before.images["training"]
    for name in ("download", "upload"):
        ref = after.images[name].reference
        assert served_digest(ref.split("@")[0]) == ref.split("@")[1]
    # The same image twice at once: both succeed or one fails cleanly; the map stays whole and true.
    (images / "download" / "new.txt").write_text("download changed again\n")
    runs = [buildtool(small_project, "build", "download", "--push") for _ in range(2)]
    outputs = [r.communicate(timeout=600) for r in runs]
    assert all(r.returncode in (0, 7) for r in runs), [err for _, err in outputs]
    assert 0 in [r.returncode for r in runs], [err for _, err in outputs]
    final = image_map.load(map_path)
    name, digest = final.images["download"].reference.split("@")
    assert final.steps["download_training_dataset"] == final.images["download"].reference
    assert (
        requests.head(
            f"http://{registry}/v2/{name.split('/', 1)[1].rsplit(':', 1)[0]}/manifests/{digest}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            timeout=10,
        ).status_code
        == 200
    )


def test_a_fresh_runner_reuses_the_previous_images_layers(small_project, engine_client, registry):
    training = small_project.parent / "images" / "training" / "Dockerfile"
    # A layer whose content is new on every build: only a cache hit can give the same one again.
    training.write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN head -c 100000 /dev/urandom > /opt/random\n")
    first = buildtool(small_project, "build", "--push")
    assert first.wait(timeout=600) == 0, first.communicate()[1]
    previous = image_map.load(small_project.parent / "image_map.yaml").images["training"].reference
    prefix = config.load(small_project).repository
    remove_project_images(engine_client, prefix)  # a fresh runner: none of this project's images in the engine
    for gone in (previous.split("@")[0], previous.split(":in-")[0] + "@" + previous.split("@")[1]):
        with pytest.raises(docker.errors.ImageNotFound):
            engine_client.images.get(gone)
    training.write_text(training.read_text() + "LABEL changed=yes\n")
    second = buildtool(small_project, "build", "--push")
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err
    assert re.search(r"\] training +pull \S+@sha256:[0-9a-f]{64} \(the map's previous image\)", err), err
    new = image_map.load(small_project.parent / "image_map.yaml").images["training"].reference
    assert new != previous
    pulled = previous.split(":in-")[0] + "@" + previous.split("@")[1]  # pulled by digest: no tag
    old_layers = engine_client.images.get(pulled).attrs["RootFS"]["Layers"]
    new_layers = engine_client.images.get(new.split("@")[0]).attrs["RootFS"]["Layers"]  # built here: its tag
    assert new_layers[: len(old_layers)] == old_layers  # the random layer came from the cache, not a new RUN


def test_a_signal_during_the_check_stops_its_container(small_project, registry, engine_client):
    _training_imports_slowly(small_project, "import time\ntime.sleep(60)\n")
    prefix = config.load(small_project).repository
    process = buildtool(small_project, "build", "--push")
    reader = Reader(process)

    def check_containers() -> list[str]:
        # The low-level list names each container's image as it was created: no inspect of a vanishing container.
        return [c["Id"] for c in engine_client.api.containers(all=True) if f"/{prefix}/training:" in c["Image"]]

    try:
        reader.wait_for(r"\] training +push via ", timeout=600)
        deadline = time.monotonic() + 30
        while not check_containers() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert check_containers(), "the import check should be running"
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 143
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    err = reader.text()
    assert took <= 2.0, f"exit took {took:.2f}s\n{err[-2500:]}"
    assert check_containers() == []  # removed, not left sleeping
    assert served_digest(content_tag(err, "training")) is None
    assert staging_tags(registry, f"{prefix}/training") == []


def test_three_builds_of_one_image_at_once_leave_no_staging_tag(small_project, registry, engine_client):
    set_push_with(small_project, "engine")  # the engine's push tags the image under its staging name locally
    prefix = config.load(small_project).repository
    first = buildtool(small_project, "build", "--push")
    assert first.wait(timeout=600) == 0, first.communicate()[1]
    (small_project.parent / "images" / "download" / "new.txt").write_text("download changed\n")
    runs = [buildtool(small_project, "build", "download", "--push") for _ in range(3)]
    outputs = [r.communicate(timeout=600) for r in runs]
    assert all(r.returncode in (0, 7) for r in runs), [err for _, err in outputs]
    assert 0 in [r.returncode for r in runs], [err for _, err in outputs]
    local = [tag for image in engine_client.images.list() for tag in image.tags if f"/{prefix}/" in tag]
    assert [tag for tag in local if "/staging:" in tag] == [], local
    assert staging_tags(registry, f"{prefix}/download") == []
