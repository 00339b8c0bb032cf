"""What a build leaves behind: each image's result, the digest tag that keeps its pin from garbage collection,
the extra tags, and the image map's entries, merged under the map's lock only once every image succeeded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .. import reference
from ..config import Config
from ..errors import ConfigError
from ..inputs.plan import ImagePlan
from ..interrupt import Token
from ..lock import map_lock
from ..lock.image_map import LockedImage
from ..push.registry import Registry
from ..util.fanout import each
from ..util.progress import Events
from .prepare import Prepared


@dataclass(frozen=True)
class Result:
    name: str
    reference: str  # pinned after a push or a reuse; the local tag after a build without push
    action: str
    seconds: float


def reused(image: ImagePlan, events: Events) -> Result:
    """The result of an image the registry already holds: its pinned reference, nothing built."""
    events(image.name, f"reuse {image.tagged}@{image.existing_digest}")
    return Result(image.name, f"{image.tagged}@{image.existing_digest}", image.action, 0.0)


def entries(prepared: Prepared, results: Mapping[str, Result]) -> dict[str, LockedImage]:
    """The map's entries for this build's images."""
    locked = {}
    for name, result in results.items():
        planned = prepared.plan.get(name)
        locked[name] = LockedImage(
            result.reference, planned.inputs.digest, planned.base_label, dict(planned.inputs.items)
        )
    return locked


def check_extra_tags(tags: list[str], push: bool) -> None:
    for tag in tags:
        if not push:
            raise ConfigError("--tag needs --push: extra tags are added in the registry")
        if not reference.TAG_RE.match(tag):
            raise ConfigError(
                f"--tag {tag!r}: a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
            )


@dataclass(frozen=True)
class _Pinned:
    """A pushed or reused image as the registry holds it: whether its digest tag is missing, and its size."""

    ref: reference.Reference
    unheld: bool
    size: int


def _read(registry: Registry, text: str, platform: str) -> _Pinned:
    pinned = reference.parse(text)
    assert pinned.digest is not None, "a result of a push is pinned"
    on_hold = reference.Reference(pinned.domain, pinned.path, reference.hold_tag(pinned.digest))
    unheld = registry.digest(on_hold) != pinned.digest
    return _Pinned(pinned, unheld, registry.size(pinned, platform).total)


def publish(
    full: Config,
    prepared: Prepared,
    results: Mapping[str, Result],
    registry: Registry,
    *,
    extra_tags: list[str],
    events: Events,
    token: Token,
) -> tuple[dict[str, int], bool]:
    """Tag every pinned image by its digest (so that moving its content tag never leaves it to the registry's
    garbage collection; an image pushed before digest tags existed gets its tag on reuse) and by the extra tags,
    then merge the images into the map. Returns the compressed sizes and whether the map changed.

    The registry is read for all images at once; the writes follow in name order, so the lines say the same
    thing in the same order on every run."""
    names = sorted(results)
    found = dict(zip(names, each(names, lambda n: _read(registry, results[n].reference, full.platform)), strict=True))
    for name in names:
        pinned = found[name].ref
        if found[name].unheld:
            tag = reference.hold_tag(str(pinned.digest))
            with token.publishing():
                registry.add_tag(pinned, tag)
            events(name, f"tagged {pinned.repository}:{tag[:19]}… so the pinned image outlives garbage collection")
        for tag in extra_tags:
            with token.publishing():
                registry.add_tag(pinned, tag)
    # Only now, with every image built, checked, pushed and tagged, does the map change.
    with token.publishing():
        changed = map_lock.update(full.image_map, entries(prepared, results), {i.name: i.step for i in full.images})
    return {name: found[name].size for name in names}, changed
