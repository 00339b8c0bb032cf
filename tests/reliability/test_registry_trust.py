"""A registry that lies to `verify`: each row edits what a registry holds (or how it answers) behind a locked
project, runs `verify` against it, and expects a documented code with a message naming the image.

The registry is tests/fake_engine.py's distribution API (a real HTTP server): its manifests and config blobs
are stored as the real registry stores them, with the labels `build` gives an image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from buildtool.lock import image_map
from buildtool.push.registry import Registry
from buildtool.reference import Reference, hold_tag, parse

from ..fake_engine import FakeRegistry
from .conftest import Guard, assert_refused, run_in_process

VERIFY_CODE, REGISTRY_CODE = 10, 8


class Broken(FakeRegistry):
    """Answers 500 to every request once `broken` is set."""

    broken = False

    def handle(self, request: Any, method: str) -> None:
        if self.broken:
            request.send(500, {"errors": [{"code": "UNKNOWN", "message": "internal error"}]}, head=method == "HEAD")
            return
        super().handle(request, method)


@dataclass
class Served:
    root: Path
    registry: Broken
    refs: dict[str, str]  # image -> pinned reference, as the map holds it


@pytest.fixture
def served(locked_project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """The locked project, its images stored in a registry of its own (labels, digest tags and all)."""
    registry = Broken()
    monkeypatch.setenv("BUILDTOOL_REGISTRY", registry.host)
    map_path, pipeline = locked_project / "image_map.yaml", locked_project / "pipeline.yaml"
    texts = {path: path.read_text() for path in (map_path, pipeline)}
    refs = {}
    client = Registry(timeout=5)
    try:
        for name, locked in image_map.load(map_path).images.items():
            old = parse(locked.reference)
            digest = registry.store(
                old.path,
                str(old.tag),
                labels={"buildtool.inputs-digest": locked.inputs_digest},
            )
            new = Reference(registry.host, old.path, old.tag, digest)
            client.add_tag(new, hold_tag(digest))
            for path in texts:
                texts[path] = texts[path].replace(locked.reference, str(new))
            refs[name] = str(new)
    finally:
        client.close()
    for path, text in texts.items():
        path.write_text(text)
    assert run_in_process(locked_project, "verify").code == 0  # the control: every check passes untouched
    yield Served(locked_project, registry, refs)
    registry.close()


def forged_download(s: Served) -> None:
    """upload's bytes PUT under download's content tag, and a lock pinning them there (both sections)."""
    download, upload = parse(s.refs["download"]), parse(s.refs["upload"])
    client = Registry(timeout=5)
    try:
        client.copy(upload, Reference(download.domain, download.path, download.tag))
    finally:
        client.close()
    forged = s.refs["download"].replace(str(download.digest), str(upload.digest))
    for name in ("image_map.yaml", "pipeline.yaml"):
        path = s.root / name
        path.write_text(path.read_text().replace(s.refs["download"], forged))


def untagged_pin(s: Served) -> None:
    """training's content tag moved to another build of the same inputs, and its digest tag deleted."""
    training = parse(s.refs["training"])
    labels = {"buildtool.inputs-digest": image_map.load(s.root / "image_map.yaml").images["training"].inputs_digest}
    s.registry.store(training.path, str(training.tag), (5, 6), labels=labels)
    s.registry.forget(training.path, hold_tag(str(training.digest)))


def lost_pin(s: Served) -> None:
    upload = parse(s.refs["upload"])
    s.registry.forget(upload.path, str(upload.digest))


def unlabelled(s: Served) -> None:
    """An image with no inputs label at all under upload's tag, pinned by a lock."""
    upload = parse(s.refs["upload"])
    digest = s.registry.store(upload.path, str(upload.tag), (9,), labels={})
    client = Registry(timeout=5)
    try:
        client.add_tag(upload.with_digest(digest), hold_tag(digest))
    finally:
        client.close()
    for name in ("image_map.yaml", "pipeline.yaml"):
        path = s.root / name
        path.write_text(
            path.read_text().replace(s.refs["upload"], s.refs["upload"].replace(str(upload.digest), digest))
        )


def huge_config(s: Served) -> None:
    """download's tag moved to a manifest declaring a 10 GB config blob (the label check must not read it)."""
    download = parse(s.refs["download"])
    labels = {"buildtool.inputs-digest": image_map.load(s.root / "image_map.yaml").images["download"].inputs_digest}
    digest = s.registry.store(download.path, str(download.tag), labels=labels, config_size=10**10)
    for name in ("image_map.yaml", "pipeline.yaml"):
        path = s.root / name
        path.write_text(path.read_text().replace(str(download.digest), digest))


def always_500(s: Served) -> None:
    s.registry.broken = True


ROWS: list[tuple[str, Callable[[Served], None], int, str]] = [
    (
        "content-tag-moved-to-another-images-bytes",
        forged_download,
        VERIFY_CODE,
        "its image carries buildtool.inputs-digest=",
    ),
    ("pin-held-by-no-tag", untagged_pin, VERIFY_CODE, "the registry's garbage collection may delete it"),
    ("pin-not-in-its-repository", lost_pin, VERIFY_CODE, "not in the registry"),
    ("image-without-inputs-label", unlabelled, VERIFY_CODE, "its image carries no buildtool.inputs-digest label"),
    ("config-blob-of-10GB", huge_config, REGISTRY_CODE, "declares a config blob of 10000000000 bytes"),
    ("registry-answers-500-to-every-try", always_500, REGISTRY_CODE, "answered 500 for the manifest of"),
]


@pytest.mark.parametrize("edit, code, fragment", [pytest.param(e, c, f, id=i) for i, e, c, f in ROWS])
def test_a_registry_that_does_not_hold_the_lock_fails_verify(
    served: Served, edit: Callable[[Served], None], code: int, fragment: str
) -> None:
    edit(served)
    guard = Guard(served.root)
    outcome = run_in_process(served.root, "verify")
    line = assert_refused(outcome, code, fragment)
    if edit is always_500:
        assert "(tried 4 time(s))" in line  # every try the policy allows, and says so
    if code == VERIFY_CODE:
        assert "pipeline.yaml" in line
    guard.check()
