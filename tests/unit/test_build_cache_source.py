"""Fresh-runner layer reuse: the map's previous image is pulled only when the engine lacks it."""

from __future__ import annotations

import pytest

from buildtool.build.image import cache_source
from buildtool.errors import EngineError
from buildtool.lock.image_map import ImageMap, LockedImage

PREVIOUS = "127.0.0.1:5000/lab/training:in-00000000000000aa@sha256:" + "a" * 64
BY_DIGEST = "127.0.0.1:5000/lab/training@sha256:" + "a" * 64
BY_TAG = "127.0.0.1:5000/lab/training:in-00000000000000aa"


class _Engine:
    """Knows some references; records pulls."""

    def __init__(self, known: set[str], pull_fails: bool = False) -> None:
        self.known, self.pull_fails, self.pulled = known, pull_fails, []

    def image_id(self, ref: str) -> str | None:
        return "sha256:" + "e" * 64 if ref in self.known else None

    def pull(self, ref: str) -> None:
        if self.pull_fails:
            raise EngineError(f"pull of {ref} failed: manifest unknown")
        self.pulled.append(ref)


class _Image:
    name = "training"


def _previous() -> ImageMap:
    return ImageMap(
        steps={"training": PREVIOUS}, images={"training": LockedImage(PREVIOUS, "sha256:" + "b" * 64, "image:base")}
    )


@pytest.mark.parametrize(
    "known, pull_fails, expected, pulled",
    [
        (set(), False, [BY_DIGEST], [BY_DIGEST]),  # a fresh runner: pull, then build with cache_from
        ({BY_DIGEST}, False, [], []),  # pulled before: the engine's own cache serves
        ({BY_TAG}, False, [], []),  # built here before (pushed through staging: known by tag only)
        (set(), True, [], []),  # the registry lost it: build without, and say so
    ],
)
def test_the_previous_image_is_pulled_only_when_missing(known, pull_fails, expected, pulled):
    engine = _Engine(known, pull_fails)
    said: list[str] = []
    found = cache_source(engine, _Image(), _previous(), lambda name, message: said.append(message))  # type: ignore[arg-type]
    assert found == expected and engine.pulled == pulled
    if pull_fails:
        assert said[-1].startswith("building without the previous image's layers: pull of")


def test_no_previous_entry_no_pull():
    engine = _Engine(set())
    assert cache_source(engine, _Image(), None, lambda *_: None) == []  # type: ignore[arg-type]
    assert engine.pulled == []
