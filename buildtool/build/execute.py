"""Carry out a plan: an image starts once its base is done, independent images side by side, and on the first
failure nothing new starts.

Images are built in daemon threads that the main thread waits for in short slices, so a signal reaches it at
once; the token then stops what the images started (skopeo, the engine's push, check containers).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from ..builders import Builder
from ..check.pip_check_cache import PipCheckCache
from ..config import Config
from ..engine import Engine
from ..errors import BuildError, BuildtoolError, Interrupted
from ..inputs.plan import ImagePlan
from ..interrupt import Token
from ..lock.image_map import ImageMap
from ..push.registry import Registry
from ..util.progress import Events
from .image import Shared, build_one
from .prepare import Prepared
from .record import Result

log = logging.getLogger(__name__)

_STOP_WAIT = 1.0  # seconds the main thread gives running images to stop and clean up after a signal
_SLICE = 0.2  # seconds the main thread waits for a finished image before it looks again


class _Runner:
    """The images of one plan in flight: which wait, which run, what finished, what failed."""

    def __init__(self, prepared: Prepared, shared: Shared, jobs: int) -> None:
        self.shared = shared
        self.jobs = max(1, jobs)
        self.results: dict[str, Result] = {}
        self.pending = list(prepared.plan.images)
        self.errors: list[BuildtoolError] = []
        self.finished: queue.Queue[tuple[ImagePlan, Result | BaseException]] = queue.Queue()
        self.running: dict[str, threading.Thread] = {}

    def _work(self, image: ImagePlan, done: Mapping[str, Result]) -> None:
        try:
            outcome: Result | BaseException = build_one(image, done, self.shared)
        except BaseException as exc:  # handed to the main thread
            outcome = exc
        self.finished.put((image, outcome))

    def start_ready(self) -> None:
        for image in [i for i in self.pending if not i.base_image or i.base_image in self.results]:
            # A free worker starts an image now; a queued one would still start after a failure.
            if self.errors or len(self.running) >= self.jobs:
                break
            self.pending.remove(image)
            thread = threading.Thread(
                target=self._work, args=(image, dict(self.results)), name=f"build-{image.name}", daemon=True
            )
            self.running[image.name] = thread
            thread.start()

    def collect_one(self) -> None:
        try:
            image, outcome = self.finished.get(timeout=_SLICE)
        except queue.Empty:
            return
        self.running.pop(image.name).join()
        if isinstance(outcome, Result):
            self.results[image.name] = outcome
            return
        self.shared.events(image.name, "failed")
        if isinstance(outcome, BuildtoolError):
            self.errors.append(outcome)
        else:  # unanticipated: still stop starting new work, and say which image
            self.errors.append(BuildError(f"image {image.name}: unexpected {outcome.__class__.__name__}: {outcome}"))

    def busy(self) -> bool:
        return bool((self.pending and not self.errors) or self.running)

    def stop(self) -> None:
        """After a signal: cancel, and give the running images a moment to delete their staging images."""
        self.shared.token.cancel()
        deadline = time.monotonic() + _STOP_WAIT
        for thread in self.running.values():  # the process exit ends the rest
            thread.join(max(0.0, deadline - time.monotonic()))

    def outcome(self) -> dict[str, Result]:
        interrupted = [e for e in self.errors if isinstance(e, Interrupted)]
        if interrupted:
            raise interrupted[0]
        if self.errors:
            for extra in self.errors[1:]:
                log.error("%s", extra)
            raise self.errors[0]
        return self.results


def execute(
    prepared: Prepared,
    engine: Engine | None,
    registry: Registry,
    config: Config,
    *,
    push: bool,
    jobs: int,
    events: Events,
    token: Token | None = None,
    workdir: Path | None = None,
    previous: ImageMap | None = None,
    pip_checks: PipCheckCache | None = None,
    builder: Builder | None = None,
) -> dict[str, Result]:
    """Carry out the plan; every image's result, or the first failure."""
    shared = Shared(
        prepared,
        engine,
        registry,
        config,
        push,
        events,
        token or Token(),
        workdir,
        previous,
        pip_checks or PipCheckCache.default(),
        builder,
    )
    runner = _Runner(prepared, shared, jobs)
    try:
        while runner.busy():
            runner.start_ready()
            runner.collect_one()
    except Interrupted:
        runner.stop()
        raise
    return runner.outcome()
