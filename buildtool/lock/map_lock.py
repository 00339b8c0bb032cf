"""One writer of image_map.yaml at a time: an exclusive lock, and this run's images merged into the current file.

Two builds may run at once (a download change and an upload change, say).
Each takes `image_map.yaml.lock` (fcntl) only around reading the current map
and replacing it, and writes back the current file with its own images'
entries replaced: the other run's entries, written meanwhile, stay.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..errors import ImageMapError
from . import image_map
from .image_map import ImageMap, LockedImage

log = logging.getLogger(__name__)


def lock_path(map_path: Path) -> Path:
    return map_path.with_name(map_path.name + ".lock")


@contextlib.contextmanager
def exclusive(map_path: Path) -> Iterator[None]:
    """Hold the map's lock for the block (waiting for another run to release it)."""
    path = lock_path(map_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def current(map_path: Path) -> ImageMap | None:
    """The map as the file holds it now; None if there is none yet, or it cannot be read (it is then rewritten)."""
    try:
        return image_map.load(map_path)
    except ImageMapError as exc:
        if map_path.exists():
            log.warning("rewriting %s, which cannot be read: %s", map_path, exc)
        return None


def merge(
    existing: ImageMap | None,
    ours: Mapping[str, LockedImage],
    steps_of: Mapping[str, str | None],
    known: set[str],
    map_path: Path,
) -> ImageMap:
    """`existing` with `ours` replacing its entries; images no longer configured (not in `known`) are dropped.

    Every configured image must end up with an entry; `steps_of` maps each image to the step it serves.
    """
    images: dict[str, LockedImage] = {}
    for name in sorted(known):
        if name in ours:
            images[name] = ours[name]
        elif existing is not None and name in existing.images:
            images[name] = existing.images[name]
        else:
            raise ImageMapError(
                f"{map_path}: no earlier entry for image {name!r}; build it too "
                "(run `buildtool build --push` without naming images)"
            )
    steps = {step: images[name].reference for name, step in steps_of.items() if step and name in images}
    return ImageMap(steps=steps, images=images)


def update(map_path: Path, ours: Mapping[str, LockedImage], steps_of: Mapping[str, str | None]) -> bool:
    """Under the lock: merge `ours` into the current file and replace it atomically; False if nothing changed."""
    with exclusive(map_path):
        merged = merge(current(map_path), ours, steps_of, set(steps_of), map_path)
        return image_map.write_atomic(map_path, image_map.render(merged))
