"""Trust across machines, on the real engine and the real distribution server.

- A content tag moved to another image's bytes (what a step with registry access could do) is rebuilt, not
  reused, and a map pinning those bytes fails `verify`.
- Two builders race on the same inputs against a registry of their own; the registry's own
  `garbage-collect --delete-untagged` runs; every digest either map pins is still pullable.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import requests
import yaml

from buildtool import cli
from buildtool.lock import image_map
from buildtool.push.registry import MANIFEST_TYPES, Registry
from buildtool.reference import Reference, hold_tag, parse

from ..conftest import write_project
from .conftest import BASE_IMAGE, SMALL_STEPS, served_digest

DISTRIBUTION = "/usr/bin/docker-registry"
IMAGES = ("base", "download", "training", "upload")


def run(project: Path, *args: str) -> int:
    return cli.main(["--config", str(project), *args])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Distribution:
    """A distribution server of the test's own (deletes enabled), stopped and started around its garbage
    collection as its documentation requires."""

    config: Path
    host: str
    log: Path
    scheme: str = "http"
    ca: Path | None = None  # the CA of its TLS certificate
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [DISTRIBUTION, "serve", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                answer = requests.get(
                    f"{self.scheme}://{self.host}/v2/", timeout=2, verify=str(self.ca) if self.ca else True
                )
                if answer.status_code in (200, 401):  # 401: it asks for a token, so it serves
                    return
            time.sleep(0.1)
        raise AssertionError(f"registry on {self.host} did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def garbage_collect(self) -> str:
        done = subprocess.run(
            [DISTRIBUTION, "garbage-collect", "--delete-untagged", str(self.config)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout + done.stderr


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[Distribution]:
    if not os.access(DISTRIBUTION, os.X_OK):
        pytest.fail(f"{DISTRIBUTION} is missing: apt-get install docker-registry", pytrace=False)
    port = free_port()
    storage = tmp_path / "registry-storage"
    storage.mkdir()
    config = tmp_path / "registry.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    server = Distribution(config, f"127.0.0.1:{port}", tmp_path / "registry.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def racing_project(root: Path, registry: str, prefix: str) -> Path:
    """The small project; its base's last layer holds a random stamp, so two builds of it never share bytes."""
    path = write_project(root)
    text = path.read_text().replace('repository = "t"', f'repository = "{prefix}"')
    text = text.replace('base_image = "127.0.0.1:5000/lib/python:3.11"', f'base_image = "{BASE_IMAGE}"')
    text = text.replace('registry = "127.0.0.1:5000"', f'registry = "{registry}"')
    text = text.replace(
        'pipeline = "pipeline.training_pipeline:make_pipeline"',
        'pipeline = "pipeline.training_pipeline:make_pipeline"\nsteps_module = "small_steps"',
    )
    path.write_text(text)
    (root / "small_steps.py").write_text(SMALL_STEPS)
    stamp = "import time, uuid; time.sleep(3); open('/opt/stamp', 'w').write(uuid.uuid4().hex)"
    for name in IMAGES:
        run_line = f'RUN python3 -c "{stamp}"' if name == "base" else f"RUN python3 -c \"print('{name} ok')\""
        (root / "images" / name / "Dockerfile").write_text(
            f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nCOPY . /opt/{name}/\n{run_line}\n"
        )
    return path


def remove_local(engine_client: docker.DockerClient, marker: str) -> None:
    """Every local tag and digest reference of the test's repositories (and nothing else)."""
    # The low-level listing: the high-level one inspects every image, and fails on one another test removed.
    for image in engine_client.api.images():
        for ref in (image.get("RepoTags") or []) + (image.get("RepoDigests") or []):
            if marker in ref:
                with contextlib.suppress(docker.errors.APIError):
                    engine_client.api.remove_image(ref, force=True)


def pinned(project: Path) -> dict[str, str]:
    return {name: locked.reference for name, locked in image_map.load(project.parent / "image_map.yaml").images.items()}


def test_a_content_tag_moved_to_other_bytes_is_rebuilt_and_a_map_pinning_them_fails_verify(small_project, capsys):
    assert run(small_project, "build", "--push") == 0
    assert run(small_project, "compile") == 0
    map_path, pipeline = small_project.parent / "image_map.yaml", small_project.parent / "pipeline.yaml"
    good_map, good_pipeline = map_path.read_text(), pipeline.read_text()
    refs = pinned(small_project)
    download, upload = parse(refs["download"]), parse(refs["upload"])
    assert upload.digest and download.digest
    # The attacker (a step with access to the registry): upload's blobs mounted into download's repository, and
    # upload's manifest PUT under download's content tag.
    client = Registry(timeout=10)
    try:
        client.copy(upload, Reference(download.domain, download.path, download.tag))
        # A lock holding what the old build wrote after that: download's tag, upload's bytes, in both sections.
        forged = refs["download"].replace(download.digest, upload.digest)
        map_path.write_text(good_map.replace(refs["download"], forged))
        pipeline.write_text(good_pipeline.replace(refs["download"], forged))
        capsys.readouterr()
        assert run(small_project, "verify") == 10
        err = capsys.readouterr().err
        assert f"{forged}: its image carries buildtool.inputs-digest=" in err
        assert "these bytes were not built from what the lock records" in err
        assert len(err.splitlines()) == 1
        # The next build does not trust the tag: download is rebuilt (upload, untouched, is reused).
        map_path.write_text(good_map)
        pipeline.write_text(good_pipeline)
        assert run(small_project, "build", "--push") == 0
        out = capsys.readouterr().out
        assert f"built from other inputs (label buildtool.inputs-digest={upload_inputs(good_map)})" in out
        assert [line.split()[1] for line in out.splitlines() if line.startswith("build ")] == ["download"]
        rebuilt = parse(pinned(small_project)["download"])
        assert rebuilt.digest not in (upload.digest, None)
        assert served_digest(f"{download.repository}:{download.tag}") == rebuilt.digest
        assert run(small_project, "compile") == 0
        assert run(small_project, "verify") == 0
        assert run(small_project, "check") == 0
    finally:
        client.close()


def upload_inputs(map_text: str) -> str:
    return str(yaml.safe_load(map_text)["images"]["upload"]["inputs_digest"])


def test_two_builders_race_and_every_pin_outlives_garbage_collection(
    distribution: Distribution, tmp_path: Path, engine_client: docker.DockerClient
) -> None:
    prefix = f"race-{uuid.uuid4().hex[:10]}"
    projects = [racing_project(tmp_path / side, distribution.host, prefix) for side in ("a", "b")]
    env = {**os.environ, "BUILDTOOL_BASE_IMAGE": BASE_IMAGE}
    try:
        builders = [
            subprocess.Popen(
                [sys.executable, "-m", "buildtool", "--config", str(p), "build", "--push"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
            for p in projects
        ]
        outputs = [b.communicate(timeout=600)[0] for b in builders]
        assert [b.returncode for b in builders] == [0, 0], "\n".join(outputs)[-4000:]
        maps = [pinned(p) for p in projects]
        said = "\n".join(outputs)
        every = sorted({ref for m in maps for ref in m.values()})
        repository_of = {ref: parse(ref) for ref in every}
        # The race happened: a later builder adopted the earlier one's image, or both wrote the content tag and the
        # earlier one's pin is held by its digest tag alone (what garbage collection used to delete).
        untagged_but_held = [
            ref for ref, r in repository_of.items() if served_digest(f"{r.repository}:{r.tag}") != r.digest
        ]
        assert untagged_but_held or "adopt " in said, said[-4000:]
        print("\n".join(line for line in said.splitlines() if "adopt " in line or "meanwhile" in line))
        for ref in untagged_but_held:
            # Both wrote the content tag. It serves the other builder's pin, never a third image; this pin stays held
            # by its digest tag (below). Whether a builder says so depends on when it read the tag back: before the
            # other's write, each sees its own digest ("written by another build meanwhile" only after it).
            r = repository_of[ref]
            pins = {other.digest for other in repository_of.values() if other.repository == r.repository}
            assert served_digest(f"{r.repository}:{r.tag}") in pins - {r.digest}, said[-4000:]
        for ref, r in repository_of.items():
            assert r.digest is not None
            assert served_digest(f"{r.repository}:{hold_tag(r.digest)}") == r.digest, ref

        distribution.stop()
        distribution.garbage_collect()
        distribution.start()

        for ref, r in repository_of.items():
            manifest = requests.get(
                f"http://{r.api_host}/v2/{r.path}/manifests/{r.digest}",
                headers={"Accept": ", ".join(MANIFEST_TYPES)},
                timeout=10,
            )
            assert manifest.status_code == 200, ref
            document = manifest.json()
            for blob in [document["config"]["digest"]] + [layer["digest"] for layer in document["layers"]]:
                head = requests.head(f"http://{r.api_host}/v2/{r.path}/blobs/{blob}", timeout=10)
                assert head.status_code == 200, f"{ref}: blob {blob} gone after garbage collection"
        remove_local(engine_client, f"/{prefix}/")
        for ref, r in repository_of.items():
            pulled = engine_client.images.pull(f"{r.repository}@{r.digest}")
            assert f"{r.repository}@{r.digest}" in pulled.attrs["RepoDigests"], ref
        for project in projects:
            assert run(project, "compile") == 0
            assert run(project, "verify") == 0
    finally:
        remove_local(engine_client, f"/{prefix}/")
