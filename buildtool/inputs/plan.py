"""The build plan: which image to build or reuse, under which tag, and why. No I/O here.

The inputs (scanned contexts, resolved base digests, what the registry holds)
are gathered by `buildtool.build`; these functions only decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..config import Config, ImageConfig
from ..lock.image_map import ImageMap
from . import digest
from .context import BuildContext
from .digest import Inputs

BUILD, REUSE = "build", "reuse"


@dataclass(frozen=True)
class ImagePlan:
    name: str
    step: str | None
    repository: str  # <registry>/<repository>/<name>
    inputs: Inputs
    base_image: str | None  # project image this one builds on
    external_base: str | None  # pinned external base reference
    build_args: tuple[tuple[str, str], ...]
    action: str
    reasons: tuple[str, ...]
    existing_digest: str | None  # what the registry holds for `tag`, if anything

    @property
    def tag(self) -> str:
        return self.inputs.tag

    @property
    def tagged(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def base_label(self) -> str:
        """How the lock file records the base: a project image by name, an external one pinned."""
        return f"image:{self.base_image}" if self.base_image else str(self.external_base)


@dataclass(frozen=True)
class Plan:
    images: tuple[ImagePlan, ...]  # dependencies before dependents

    @property
    def to_build(self) -> tuple[ImagePlan, ...]:
        return tuple(i for i in self.images if i.action == BUILD)

    def get(self, name: str) -> ImagePlan:
        return next(i for i in self.images if i.name == name)


def build_order(config: Config) -> list[ImageConfig]:
    """Images sorted so that each comes after the image it builds on (name order otherwise)."""
    ordered: list[ImageConfig] = []
    placed: set[str] = set()

    def place(image: ImageConfig) -> None:
        if image.name in placed:
            return
        if image.base:
            place(config.image(image.base))
        placed.add(image.name)
        ordered.append(image)

    for image in config.images:
        place(image)
    return ordered


def compute_inputs(
    config: Config,
    contexts: Mapping[str, BuildContext],
    external_digests: Mapping[str, str],
    step_modules: Mapping[str, list[str]],
) -> dict[str, Inputs]:
    """Inputs digest of every image; a project base enters by its own inputs digest, so the
    whole graph's tags are known before anything builds."""
    result: dict[str, Inputs] = {}
    for image in build_order(config):
        if image.base:
            base_digest = result[image.base].digest
        else:
            external = config.external_base(image)
            assert external is not None, "an image with no project base has an external one"
            base_digest = external_digests[external]
        imports = step_modules.get(image.step) if image.step else None
        result[image.name] = digest.compute(
            contexts[image.name], dict(image.build_args), config.platform, base_digest, imports
        )
    return result


def _reasons_to_build(name: str, inputs: Inputs, previous: ImageMap | None) -> tuple[str, ...]:
    locked = previous.images.get(name) if previous else None
    if locked is None:
        return ("no earlier build recorded in the image map",)
    if locked.inputs_digest == inputs.digest:
        return ("inputs unchanged, but the registry does not hold that tag",)
    changes = digest.explain(locked.inputs, inputs.items)
    return tuple(changes) or ("inputs digest changed",)


def make_plan(
    config: Config,
    inputs: Mapping[str, Inputs],
    external_pins: Mapping[str, str],
    existing: Mapping[str, str | None],
    previous: ImageMap | None,
    untrusted: Mapping[str, str] | None = None,
) -> Plan:
    """Decide per image: reuse when the registry already holds its inputs tag, else build (and say why).

    `external_pins` maps an external base as configured to its pinned reference;
    `existing` maps image name to the digest the registry holds for its tag (or None);
    `untrusted` maps image name to why the image its tag holds is not of its inputs (the tag was moved).
    """
    untrusted = untrusted or {}
    images = []
    rebuilt: set[str] = set()
    for image in build_order(config):
        found = existing.get(image.name)
        image_inputs = inputs[image.name]
        reasons: tuple[str, ...]
        if image.base in rebuilt:
            # The registry's copy was built on another build of the base: build on the new one.
            action, reasons = BUILD, (f"its base image {image.base} is being rebuilt",)
        elif found and image.name in untrusted:
            action, reasons = BUILD, (untrusted[image.name],)
        elif found:
            action, reasons = REUSE, (f"registry already holds {image_inputs.tag} ({found})",)
        else:
            action, reasons = BUILD, _reasons_to_build(image.name, image_inputs, previous)
        if action == BUILD:
            rebuilt.add(image.name)
        external = config.external_base(image)
        images.append(
            ImagePlan(
                name=image.name,
                step=image.step,
                repository=config.repository_for(image),
                inputs=image_inputs,
                base_image=image.base,
                external_base=external_pins[external] if external else None,
                build_args=image.build_args,
                action=action,
                reasons=reasons,
                existing_digest=found,
            )
        )
    return Plan(images=tuple(images))


def describe(plan: Plan) -> list[str]:
    """One block per image, for `--dry-run` and the start of a build."""
    lines = []
    for image in plan.images:
        serves = f" (step {image.step})" if image.step else ""
        lines.append(f"{image.action:5}  {image.name}{serves}  {image.tagged}")
        lines.extend(f"         because {reason}" for reason in image.reasons)
    return lines
