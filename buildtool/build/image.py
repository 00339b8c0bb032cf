"""One image of a build: built on its base, its step's imports checked inside it, pushed while that check runs,
and published under its content tag only once the check passed."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import reference
from ..builders import Builder, ClassicBuilder
from ..check.pip_check_cache import PipCheckCache
from ..config import BASE_IMAGE_ARG, Config
from ..engine import Engine
from ..errors import BuildError, EngineError
from ..inputs import context, step_imports
from ..inputs.digest import LABEL_INPUTS
from ..inputs.plan import BUILD, ImagePlan
from ..interrupt import Token
from ..lock.image_map import ImageMap
from ..push import Pusher, PushJob, publish_checked, pusher_for, staging_reference
from ..push.registry import Registry
from ..util.progress import Events
from .layer_count import layers_to_push
from .prepare import Prepared
from .record import Result, reused


@dataclass(frozen=True)
class Shared:
    """What every image of one build shares."""

    prepared: Prepared
    engine: Engine | None
    registry: Registry
    config: Config
    push: bool
    events: Events
    token: Token
    workdir: Path | None
    previous: ImageMap | None
    pip_checks: PipCheckCache
    builder: Builder | None


def check_image(
    engine: Engine, image: ImagePlan, modules: list[str], events: Events, token: Token, pip_checks: PipCheckCache
) -> None:
    """Before anything is pushed: the step's imports load in its image (no network), and `pip check` passes.

    pip check is skipped when the image's distributions (their fingerprint) already passed it in another image.
    """
    known = pip_checks.known()
    output = engine.call(image.tagged, step_imports.probe_command(modules, known), token=token).output
    try:
        probe = step_imports.parse_probe(output, known)
    except BuildError as exc:
        raise BuildError(f"image {image.name}: {exc}") from None
    if probe.failed_imports:
        raise BuildError(
            step_imports.describe_failures(str(image.step), image.name, probe.failed_imports)
            + "; add the package to the image's requirements"
        )
    if probe.pip_check_code is None:
        pip_check = "pip check: same distributions as an image already checked"
    elif probe.pip_check_code != 0:
        found = "; ".join(line.strip() for line in probe.pip_check_output.splitlines() if line.strip())
        raise BuildError(f"image {image.name}: `pip check` found broken requirements: {found[-800:]}")
    else:
        pip_check = "pip check passed"
        if probe.fingerprint is not None:
            pip_checks.record(probe.fingerprint)
    events(image.name, f"imports of step {image.step} load ({', '.join(modules)}); {pip_check}")


def cache_source(engine: Engine, image: ImagePlan, previous: ImageMap | None, events: Events) -> list[str]:
    """On an engine that lacks the image's previous version (a fresh runner), pull it to reuse its layers.

    An engine that has it needs nothing: its own cache already holds the layers.
    """
    locked = previous.images.get(image.name) if previous is not None else None
    if locked is None:
        return []
    ref = reference.parse(locked.reference)
    by_digest = f"{ref.repository}@{ref.digest}"
    # Built here before: the engine knows it by its content tag (a push through a staging repository records
    # no digest under this repository), or, pulled before, by its digest.
    if engine.image_id(by_digest) is not None or engine.image_id(locked.reference.split("@")[0]) is not None:
        return []
    events(image.name, f"pull {by_digest} (the map's previous image) to reuse its layers")
    try:
        engine.pull(by_digest)
    except EngineError as exc:
        events(image.name, f"building without the previous image's layers: {exc}")
        return []
    return [by_digest]


def _build(engine: Engine, image: ImagePlan, base: str, cache_from: list[str], shared: Shared) -> str:
    """Build `image` on `base` from the context as planned; its image ID."""
    planned = shared.prepared.contexts[image.name]
    if context.scan(planned.root, planned.dockerfile) != planned:
        # The tag names what was hashed: sources edited since then must not be pushed under it.
        raise BuildError(
            f"image {image.name}: files of {planned.root} changed since the build was planned; run it again"
        )
    shared.token.raise_if_cancelled()
    builder = shared.builder or ClassicBuilder(engine)
    image_id = builder.build(
        planned,
        image.tagged,
        {**dict(image.build_args), BASE_IMAGE_ARG: base},
        platform=shared.config.platform,
        labels={LABEL_INPUTS: image.inputs.digest},
        cache_from=cache_from,
        progress=lambda message: shared.events(image.name, message),
        token=shared.token,
    )
    shared.token.raise_if_cancelled()
    return image_id


def _push_checked(
    engine: Engine,
    image: ImagePlan,
    image_id: str,
    base: str,
    pulled: list[str],
    check: Callable[[], None],
    shared: Shared,
) -> str:
    """Push `image` to its staging repository while `check` runs; its digest under the content tag."""
    assert shared.workdir is not None
    target = reference.parse(image.tagged)
    job = PushJob(
        image.name,
        image.tagged,
        image_id,
        target,
        staging_reference(target),
        shared.workdir,
        shared.config.compression_level,
        shared.token.child(),
        lambda message: shared.events(image.name, message),
    )

    def choose() -> Pusher:
        count = layers_to_push(engine, shared.registry, shared.config, shared.previous, image, image_id, base, pulled)
        pusher = pusher_for(shared.config, engine, count.new_bytes, count.engine_bytes)
        shared.events(image.name, f"push via {pusher.name} ({count.describe()}) to {job.staging} while it is checked")
        return pusher

    return publish_checked(job, _ChosenWhenPushing(choose), shared.registry, check)


class _ChosenWhenPushing:
    """A pusher chosen in the push's own thread: counting the layers the registry lacks takes a few engine and
    registry reads, which then overlap the check instead of delaying its start."""

    def __init__(self, choose: Callable[[], Pusher]) -> None:
        self._choose = choose
        self.name = "the pusher"  # until chosen

    def push(self, job: PushJob) -> str:
        pusher = self._choose()
        self.name = pusher.name
        return pusher.push(job)


def build_one(image: ImagePlan, results: Mapping[str, Result], shared: Shared) -> Result:
    """Build, check and (with push) push one image whose base is in `results`; a reused image is taken as is."""
    if image.action != BUILD:
        return reused(image, shared.events)
    started = time.monotonic()
    engine = shared.engine
    assert engine is not None, "an image to build needs an engine"
    base = results[image.base_image].reference if image.base_image else str(image.external_base)
    cache_from = cache_source(engine, image, shared.previous, shared.events)
    reusing = " (layers of the previous image reusable)" if cache_from else ""
    shared.events(image.name, f"build {image.tagged} on {base}{reusing}")
    image_id = _build(engine, image, base, cache_from, shared)
    modules = shared.prepared.step_modules.get(image.step, []) if image.step else None
    check_token = shared.token.child()

    def check() -> None:
        if modules is not None:
            check_image(engine, image, modules, shared.events, check_token, shared.pip_checks)

    if not shared.push:
        check()
        shared.events(image.name, f"built {image.tagged} in {time.monotonic() - started:.0f}s (not pushed)")
        return Result(image.name, image.tagged, image.action, time.monotonic() - started)
    digest = _push_checked(engine, image, image_id, base, cache_from, check, shared)
    shared.events(image.name, f"pushed {image.tagged}@{digest} in {time.monotonic() - started:.0f}s")
    return Result(image.name, f"{image.tagged}@{digest}", image.action, time.monotonic() - started)
