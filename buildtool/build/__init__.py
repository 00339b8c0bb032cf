"""The build: gather a plan's inputs, carry it out on the engine, and record the result in the image map.

`prepare.py` reads the source tree and the registry (nothing changes); `build_images` carries out the plan
(`execute.py`: dependencies first, independent images side by side; `image.py`: one image built, checked and
pushed, `layer_count.py` choosing its pusher), then `record.py` adds the digest and extra tags and merges the
images into the map under its lock, only once every image succeeded. A plan with nothing to build needs no
engine: it asks the registry alone, and loads neither the engine's SDK nor the pushers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..config import Config
from ..interrupt import Token
from ..lock.image_map import ImageMap
from ..push.registry import Registry
from ..util.progress import Events
from .prepare import Prepared
from .record import Result, check_extra_tags, publish, reused


@dataclass(frozen=True)
class Outcome:
    results: Mapping[str, Result]
    sizes: Mapping[str, int]  # compressed bytes in the registry, per pushed image
    map_changed: bool | None  # None without --push


def _execute_on_engine(
    selected: Config,
    prepared: Prepared,
    registry: Registry,
    *,
    push: bool,
    jobs: int,
    events: Events,
    token: Token,
    previous: ImageMap | None,
    builder: str | None,
) -> dict[str, Result]:
    # Imported here: the engine's SDK and the pushers load only when something is built.
    from .. import builders
    from ..engine import Engine
    from ..push import workdir
    from .execute import execute

    engine = Engine()
    try:
        chosen, why = builders.choose(selected, engine, builder)
        events("-", why)
        with workdir.work_folder() as folder:
            return execute(
                prepared,
                engine,
                registry,
                selected,
                push=push,
                jobs=jobs,
                events=events,
                token=token,
                workdir=folder,
                previous=previous,
                builder=chosen,
            )
    finally:
        engine.close()


def build_images(
    full: Config,
    selected: Config,
    prepared: Prepared,
    registry: Registry,
    *,
    push: bool,
    jobs: int,
    extra_tags: list[str],
    events: Events,
    token: Token,
    previous: ImageMap | None,
    builder: str | None = None,
) -> Outcome:
    """Carry out the plan; with `push`, add the digest and extra tags and merge the images into the map (under its
    lock). `builder` overrides the configuration's (classic, buildkit, auto)."""
    check_extra_tags(extra_tags, push)
    if prepared.plan.to_build:
        results = _execute_on_engine(
            selected,
            prepared,
            registry,
            push=push,
            jobs=jobs,
            events=events,
            token=token,
            previous=previous,
            builder=builder,
        )
    else:  # a no-op asks the registry alone
        # Still, a killed build's push folder (its credentials file included) goes on the next build of any kind.
        from ..push.workdir import clean_stale

        clean_stale()
        results = {image.name: reused(image, events) for image in prepared.plan.images}
    if not push:
        return Outcome(results, {}, None)
    sizes, changed = publish(full, prepared, results, registry, extra_tags=extra_tags, events=events, token=token)
    return Outcome(results, sizes, changed)
