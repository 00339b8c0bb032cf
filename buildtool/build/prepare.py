"""What a build starts from, read without changing anything: the contexts, the external bases pinned by digest,
and for each image whether the registry already holds a trustworthy build of its inputs.

The registry reads of the images are made side by side (util/fanout.py): each waits on the network, and a
no-op build is nothing but these reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .. import reference
from ..config import Config
from ..errors import RegistryError
from ..inputs import context, step_imports
from ..inputs.context import BuildContext
from ..inputs.digest import LABEL_INPUTS, Inputs
from ..inputs.plan import Plan, compute_inputs, make_plan
from ..lock.image_map import ImageMap
from ..push.registry import Registry
from ..util.fanout import each


@dataclass(frozen=True)
class Prepared:
    plan: Plan
    contexts: Mapping[str, BuildContext]
    step_modules: Mapping[str, list[str]]  # step -> modules its function imports


def resolve_external(registry: Registry, text: str) -> str:
    """Pin an external base reference by digest (a reference that has one is taken as is)."""
    ref = reference.parse(text)
    if ref.digest:
        return str(ref)
    try:
        found = registry.digest(ref)
    except RegistryError as exc:
        raise RegistryError(
            f"cannot resolve base image {text}: {exc}. On a machine without a public registry, "
            "push a Python base image to a registry you can reach and set base_image "
            "(or BUILDTOOL_BASE_IMAGE) to it"
        ) from None
    if not found:
        raise RegistryError(
            f"base image {text} not found in {ref.api_host}; push it there or set base_image/BUILDTOOL_BASE_IMAGE"
        )
    return str(ref.with_digest(found))


def foreign_bytes(registry: Registry, repository: str, digest: str, inputs_digest: str, platform: str) -> str | None:
    """Why the manifest `digest` of `repository` is not an image of `inputs_digest`, or None if it is: its config's
    `buildtool.inputs-digest` label must say so. A tag can be moved by anyone who may push; the label travels with
    the bytes."""
    found = registry.labels(reference.parse(f"{repository}@{digest}"), platform).get(LABEL_INPUTS)
    if found == inputs_digest:
        return None
    label = f"label {LABEL_INPUTS}={found}" if found else f"no {LABEL_INPUTS} label"
    return f"the registry's tag holds {digest}, built from other inputs ({label}): rebuilt, not trusted"


@dataclass(frozen=True)
class Held:
    """What the registry holds under an image's inputs tag."""

    digest: str | None  # None: nothing
    untrusted: str | None  # why that manifest is not a build of these inputs; None when it is (or nothing is held)


def held(registry: Registry, repository: str, inputs: Inputs, platform: str) -> Held:
    """The manifest under `repository:<inputs tag>`, and whether its label says it was built from `inputs`."""
    found = registry.digest(reference.parse(f"{repository}:{inputs.tag}"))
    if not found:
        return Held(None, None)
    return Held(found, foreign_bytes(registry, repository, found, inputs.digest, platform))


def prepare(config: Config, registry: Registry, previous: ImageMap | None) -> Prepared:
    """Scan contexts, pin external bases, look up every inputs tag in the registry, and plan."""
    contexts = {i.name: context.scan(i.context, i.dockerfile) for i in config.images}
    externals = sorted({b for b in (config.external_base(i) for i in config.images) if b})
    pins = dict(zip(externals, each(externals, lambda text: resolve_external(registry, text)), strict=True))
    digests = {text: reference.parse(pin).digest or "" for text, pin in pins.items()}
    modules = step_imports.for_config(config)
    inputs = compute_inputs(config, contexts, digests, modules)
    names = list(inputs)

    def look_up(name: str) -> Held:
        return held(registry, config.repository_for(config.image(name)), inputs[name], config.platform)

    found = dict(zip(names, each(names, look_up), strict=True))
    existing = {name: h.digest for name, h in found.items()}
    untrusted = {name: h.untrusted for name, h in found.items() if h.untrusted}
    return Prepared(make_plan(config, inputs, pins, existing, previous, untrusted), contexts, modules)
