"""How much of a built image the registry lacks: the count the pusher is chosen by (push/__init__.py).

A layer the registry already holds is not uploaded again, whichever pusher runs; the engine can skip it only
when it knows the layer's registry digest (it pushed or pulled that layer)."""

from __future__ import annotations

import logging

from .. import reference
from ..config import Config
from ..engine import Engine
from ..errors import RegistryError
from ..inputs.plan import ImagePlan
from ..lock.image_map import ImageMap
from ..push import LayerCount, count_layers
from ..push.registry import Registry

log = logging.getLogger(__name__)


def base_size(engine: Engine, base: str) -> int:
    """Bytes of the base the image was built on: by its pinned reference, or by the local tag of a base built in
    this build (an image pushed by skopeo is known to the engine by tag only)."""
    for candidate in (base, base.split("@")[0]):
        found = engine.image_id(candidate)
        if found:
            return engine.size(found)
    return 0


def held_by_registry(
    registry: Registry, config: Config, previous: ImageMap | None, image: ImagePlan, base: str, pulled: list[str]
) -> tuple[set[str], set[str]]:
    """Diff IDs of the layers the registry holds among the images this one shares layers with (its base, and the
    map's previous image of it), and those of them whose registry digests the engine keeps, so that its push
    skips them: the base's (the engine pushed or pulled it) and the previous image's when this build pulled it
    (`pulled`). The engine's RepoDigests do not tell: a pull of an image it already has records none of its
    layers. Only images in the target's registry count; an unreadable one counts as none."""
    target = reference.parse(image.tagged)
    sources = [base]
    locked = previous.images.get(image.name) if previous is not None else None
    if locked is not None:
        sources.append(locked.reference)
    held: set[str] = set()
    known: set[str] = set()
    for text in sources:
        ref = reference.parse(text)
        if ref.domain != target.domain or not ref.digest:
            continue
        try:
            layers = registry.layers(ref, config.platform)
        except RegistryError as exc:
            log.info("not counting the layers of %s: %s", text, exc)
            continue
        held |= set(layers)
        if text == base or f"{ref.repository}@{ref.digest}" in pulled:
            known |= set(layers)
    return held, known


def layers_to_push(
    engine: Engine,
    registry: Registry,
    config: Config,
    previous: ImageMap | None,
    image: ImagePlan,
    image_id: str,
    base: str,
    pulled: list[str],
) -> LayerCount:
    """The new layers of the built image `image_id`, and those of them the registry or the engine lacks."""
    info = engine.layers(image_id)
    held, known = held_by_registry(registry, config, previous, image, base, pulled)
    return count_layers(info.diff_ids, info.sizes, info.size, base_size(engine, base), held, known)
