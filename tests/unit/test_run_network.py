"""The --allow-host forwarder's image: on an engine that lacks it, it is pulled by its digest first, as the
steps' images are; an image that can be neither found nor pulled is one run error, and nothing starts."""

from __future__ import annotations

import pytest

from buildtool.dev import run_network
from buildtool.errors import EngineError, RunError

IMAGE = "127.0.0.1:5000/lab/step:in-1@sha256:" + "1" * 64


class Started(Exception):
    """Raised by the fake instead of starting the forwarder: the test ends there."""


class FreshEngine:
    def __init__(self, pullable: bool) -> None:
        self.pullable = pullable
        self.pulled: list[str] = []
        self.started: list[str] = []

    def image_id(self, ref: str) -> str | None:
        return "sha256:" + "2" * 64 if ref in self.pulled else None

    def pull(self, ref: str, **_: object) -> None:
        if not self.pullable:
            raise EngineError(f"pulling {ref} failed: manifest unknown")
        self.pulled.append(ref)

    def start_detached(self, image: str, *_: object, **__: object) -> str:
        self.started.append(image)
        raise Started

    def remove(self, *_: object) -> None:
        pass


@pytest.mark.parametrize("pullable", [True, False], ids=["pulled-first", "not-pullable"])
def test_the_forwarder_image_is_pulled_when_the_engine_lacks_it(pullable: bool) -> None:
    engine = FreshEngine(pullable)
    endpoint = run_network.parse_endpoint("127.0.0.1:8080")
    isolation = run_network.Isolation(engine, [endpoint], False, IMAGE, {})  # type: ignore[arg-type]
    if pullable:
        with pytest.raises(Started):
            isolation.__enter__()
        assert engine.pulled == [IMAGE] and engine.started == [IMAGE]
    else:
        with pytest.raises(RunError, match=r"neither in the local engine nor pullable: .*manifest unknown"):
            isolation.__enter__()
        assert engine.started == []
