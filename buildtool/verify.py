"""Checks on a compiled workflow: every image pinned, equal to the map's entry for its step, present in the registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from . import reference
from .errors import VerifyError
from .push.registry import Registry

COMPONENT_SPEC = "pipelines.kubeflow.org/component_spec"


def load_workflow(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VerifyError(f"{path}: not found; compile it with `buildtool compile`") from None
    except yaml.YAMLError as exc:
        raise VerifyError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or data.get("kind") != "Workflow":
        raise VerifyError(f"{path}: not an Argo Workflow (kind: Workflow); compile it with `buildtool compile`")
    return data


def step_of(template_name: str) -> str:
    """kfp names a step's template after its function, with '_' turned into '-'."""
    return template_name.replace("-", "_")


def images_in(workflow: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(template, where, image) for every image in the workflow, container and component_spec copies alike."""
    for template in workflow.get("spec", {}).get("templates", []):
        name = template.get("name", "?")
        container = template.get("container")
        if container is not None:
            yield name, "container.image", container.get("image")
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        if COMPONENT_SPEC in annotations:
            try:
                spec = json.loads(annotations[COMPONENT_SPEC])
                image = spec["implementation"]["container"]["image"]
            except (ValueError, KeyError, TypeError):
                yield name, f"{COMPONENT_SPEC} annotation", None
            else:
                yield name, f"{COMPONENT_SPEC} annotation", image


def pin_problems(workflow: Mapping[str, Any], steps: Mapping[str, str]) -> list[str]:
    """Every image of `workflow` that is unpinned, belongs to no step, or differs from `steps`."""
    problems, seen = [], set()
    for template, where, image in images_in(workflow):
        step = step_of(template)
        seen.add(step)
        if image is None:
            problems.append(f"template {template}: {where}: no image found")
        elif (problem := reference.pinned_problem(image)) is not None:
            problems.append(f"template {template}: {where}: {image} is {problem}")
        elif step not in steps:
            problems.append(f"template {template}: {where}: serves no step of the image map ({', '.join(sorted(steps))})")
        elif image != steps[step]:
            problems.append(f"template {template}: {where}: {image} differs from the map's {steps[step]}")
    for step in sorted(set(steps) - seen):
        problems.append(f"step {step}: in the image map but no template of the workflow runs it")
    return problems


def registry_problems(workflow: Mapping[str, Any], registry: Registry) -> list[str]:
    """Pinned images of the workflow that the registry does not serve."""
    problems = []
    for image in sorted({img for _, _, img in images_in(workflow) if reference.is_pinned(img)}):
        ref = reference.parse(image)
        found = registry.digest(ref)
        if found != ref.digest:
            problems.append(f"{image}: not in the registry" if found is None else f"{image}: registry serves {found}")
    return problems
