"""Is the image map still what the working tree would build? Offline: no engine, no network.

Recomputes every inputs digest from the sources, taking external base digests
from the map itself, and names the images and inputs that changed.
"""

from __future__ import annotations

from .. import reference
from ..config import Config
from ..errors import StaleMapError
from ..inputs import context, digest, step_imports
from ..inputs.plan import compute_inputs
from .image_map import ImageMap


def _same_image(configured: str, locked_pin: str) -> bool:
    """Whether the configured external base names the image the map was built on."""
    wanted, locked = reference.parse(configured), reference.parse(locked_pin)
    if wanted.digest:
        return wanted.digest == locked.digest
    return (wanted.repository, wanted.tag or "latest") == (locked.repository, locked.tag or "latest")


def stale_images(config: Config, image_map: ImageMap) -> dict[str, list[str]]:
    """Image name -> reasons it is stale; empty when the map matches the working tree."""
    stale: dict[str, list[str]] = {}
    external_digests: dict[str, str] = {}
    for image in config.images:
        locked = image_map.images.get(image.name)
        if locked is None:
            stale[image.name] = ["not recorded in the image map"]
            continue
        external = config.external_base(image)
        if external is None:
            if locked.base != f"image:{image.base}":
                stale[image.name] = [f"now builds on image {image.base}, the map says {locked.base}"]
            continue
        if locked.base.startswith("image:") or not reference.is_pinned(locked.base):
            stale[image.name] = [f"now builds on {external}, the map says {locked.base}"]
        elif not _same_image(external, locked.base):
            built_on = locked.base.split("@")[0]
            stale[image.name] = [
                f"base image is now {external}, the map was built on {locked.base} "
                f"(if this machine builds on that, export BUILDTOOL_BASE_IMAGE={built_on})"
            ]
        else:
            external_digests[external] = reference.parse(locked.base).digest or ""
    if stale:
        return stale
    contexts = {i.name: context.scan(i.context, i.dockerfile) for i in config.images}
    inputs = compute_inputs(config, contexts, external_digests, step_imports.for_config(config))
    for image in config.images:
        locked = image_map.images[image.name]
        if inputs[image.name].digest != locked.inputs_digest:
            stale[image.name] = digest.explain(locked.inputs, inputs[image.name].items) or ["inputs digest changed"]
        elif not locked.reference.split("@")[0].endswith(":" + inputs[image.name].tag):
            stale[image.name] = [f"reference {locked.reference} does not carry the inputs tag {inputs[image.name].tag}"]
    return stale


def describe(stale: dict[str, list[str]], config: Config) -> str:
    steps = {i.name: i.step for i in config.images}
    parts = []
    for name, reasons in sorted(stale.items()):
        serves = f" (step {steps[name]})" if steps.get(name) else ""
        parts.append(f"image {name}{serves}: {'; '.join(reasons)}")
    return " | ".join(parts)


def require_fresh(config: Config, image_map: ImageMap, *, allow_stale: bool = False) -> list[str]:
    """StaleMapError when the map no longer matches the sources; with allow_stale, the warning instead."""
    stale = stale_images(config, image_map)
    if not stale:
        return []
    message = f"{config.image_map} is stale: {describe(stale, config)}; run `buildtool build --push` to rebuild"
    if not allow_stale:
        raise StaleMapError(message + " (or pass --allow-stale to compile against it anyway)")
    return [message]
