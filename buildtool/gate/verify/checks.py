"""A workflow's images checked against the image map (pinned, each the map's entry for its step) and against the
registry (served, tagged, labelled with the map's inputs digest)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import reference
from ...inputs.digest import LABEL_INPUTS
from ...util import yaml_io
from .places import WORKFLOW, places
from .steps import template_steps

if TYPE_CHECKING:  # the registry client (and requests) loads only where a command checks the registry
    from ...push.registry import Registry


def external_repository(image: Any, external: Iterable[str]) -> bool:
    """Whether `image` is a digest-pinned image of a repository listed in `external_images`."""
    if not reference.is_pinned(image):
        return False
    return reference.parse(image).repository in {reference.parse(r).repository for r in external}


def pin_problems(workflow: Mapping[str, Any], steps: Mapping[str, str], external: Iterable[str] = ()) -> list[str]:
    """Every image of `workflow` that is unpinned, belongs to no step, differs from `steps`, or cannot be read.

    An image in a template must be the map's entry for that template's step (see template_steps), or a
    digest-pinned image of a repository in `external` (images buildtool does not build, listed in
    `external_images`); an image outside any template (workflow podSpecPatch, templateDefaults) serves
    no step and is refused. Never raises.
    """
    external = tuple(external)
    try:
        found = list(places(workflow))
        resolved = template_steps(workflow, steps)
    except RecursionError:
        return ["the workflow is nested too deeply to read"]
    problems, seen = [], set()
    for item in found:
        head = item.where if item.template == WORKFLOW else f"template {item.template}: {item.where}"
        image, step = item.image, resolved.get(item.template)
        if item.problem is not None:
            problem = item.problem
        elif (why := reference.pinned_problem(image)) is not None:
            problem = f"{yaml_io.shown(image)} is {why}"
        elif item.template == WORKFLOW:
            problem = f"{image} applies to every template and serves no step of the image map"
        elif step is None and external_repository(image, external):
            problem = None  # a third-party component's image, pinned and listed
        elif step is None:
            problem = (
                f"{image} serves no step of the image map ({', '.join(sorted(steps))}); an image buildtool "
                "does not build must be pinned and its repository listed in external_images"
            )
        elif image != steps[step]:
            problem = f"{image} differs from the map's {steps[step]}"
        else:
            problem = None
        if problem is not None:
            problems.append(yaml_io.shown(f"{head}: {problem}", 2000))
        if item.main and step is not None:
            seen.add(step)
    for step in sorted(set(steps) - seen):
        problems.append(f"step {step}: in the image map but no template of the workflow runs it")
    return problems


def summary(path: Path, problems: list[str], limit: int = 10) -> str:
    """One line for VerifyError: the problems themselves, the first `limit` of them."""
    shown = "; ".join(problems[:limit])
    more = f"; and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{path}: {len(problems)} problem(s): {shown}{more}"


def registry_problems(
    workflow: Mapping[str, Any], registry: Registry, inputs: Mapping[str, str] | None = None
) -> list[str]:
    """Pinned images of the workflow that the registry does not serve as the lock says.

    Each digest must be in its repository and held there by a tag: the reference's own tag, or the digest tag
    that keeps a pin safe from garbage collection. `inputs` (pinned reference -> the map's inputs digest): the
    image's config must carry that inputs digest as its label, so bytes moved under the tag are told apart.
    """
    problems = []
    for image in sorted({f.image for f in places(workflow) if reference.is_pinned(f.image)}):
        ref = reference.parse(image)
        found = registry.digest(ref)
        if found != ref.digest:
            problems.append(f"{image}: not in the registry" if found is None else f"{image}: registry serves {found}")
            continue
        assert ref.digest is not None, "a pinned reference has a digest"
        ours = inputs is None or image in inputs  # a third-party image keeps its publisher's tagging
        if ref.tag and ours and (problem := _untagged(registry, ref, ref.digest)):
            problems.append(f"{image}: {problem}")
        expected = (inputs or {}).get(image)
        if expected is not None:
            label = registry.labels(ref).get(LABEL_INPUTS)
            if label != expected:
                shown = f"{LABEL_INPUTS}={label}" if label else f"no {LABEL_INPUTS} label"
                problems.append(
                    f"{image}: its image carries {shown}, not the map's inputs digest {expected}: "
                    "these bytes were not built from what the lock records"
                )
    return problems


def _untagged(registry: Registry, ref: reference.Reference, digest: str) -> str | None:
    """Why no tag of its repository holds `digest` (neither `ref`'s tag nor its digest tag), or None."""
    by_tag = registry.digest(reference.Reference(ref.domain, ref.path, ref.tag))
    if by_tag == digest:
        return None
    hold = reference.hold_tag(digest)
    if registry.digest(reference.Reference(ref.domain, ref.path, hold)) == digest:
        return None
    serves = f"serves {by_tag}" if by_tag else "is not in the registry"
    return (
        f"tag {ref.tag} {serves} and no tag {hold[:19]}… holds the pinned digest in {ref.repository}: the pin is "
        "untagged, so the registry's garbage collection may delete it; rebuild with `buildtool build --push`"
    )
