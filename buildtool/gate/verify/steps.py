"""Which step each template of a workflow runs, recognised by its component, not by the template's name."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..kfp_names import component_name
from .places import COMPONENT_SPEC, MAX_TEMPLATES

# The line of the program kfp 1.8 writes for a Python function's component that calls the function itself.
_PROGRAM_CALL = re.compile(r"^_outputs = ([A-Za-z_][A-Za-z0-9_]*)\(\*\*_parsed_args\)$", re.M)


def step_of(template_name: str) -> str:
    """kfp names a step's template after its function, with '_' turned into '-'."""
    return template_name.replace("-", "_")


def _spec_name(template: Mapping[str, Any]) -> str | None:
    """The component name recorded in kfp's component_spec annotation, or None when there is none to read."""
    metadata = template.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    text = annotations.get(COMPONENT_SPEC) if isinstance(annotations, dict) else None
    if not isinstance(text, str):
        return None
    try:
        name = json.loads(text).get("name")
    except (ValueError, AttributeError, RecursionError):
        return None
    return name if isinstance(name, str) else None


def _called_function(template: Mapping[str, Any]) -> str | None:
    """The function that the program of the template's container calls, when kfp's program names exactly one."""
    container = template.get("container")
    if not isinstance(container, dict):
        return None
    called: set[str] = set()
    for field in ("command", "args"):
        values = container.get(field)
        if isinstance(values, list):
            called.update(m for v in values if isinstance(v, str) for m in _PROGRAM_CALL.findall(v))
    return called.pop() if len(called) == 1 else None


def template_steps(workflow: Mapping[str, Any], steps: Iterable[str]) -> dict[str, str]:
    """Template name -> the step it runs, recognised by its component, not by the template's name.

    kfp records the component of every task in the template's component_spec annotation; the
    component of a step function is named after the function. So a reused step (`prepare-2`), a
    step inside a condition or a loop and a task with a display name all resolve to their step.
    A component renamed by its pipeline (`op.component_spec.name = ...`) keeps the program kfp wrote
    for the function, which calls it by name: that call is read when the recorded name is no step's.
    A template without that annotation is matched by its name, as kfp writes it (`upload-model`).
    """
    by_component = {component_name(step): step for step in steps}
    names = set(steps)
    spec = workflow.get("spec")
    templates = spec.get("templates") if isinstance(spec, dict) else None
    found: dict[str, str] = {}
    if not isinstance(templates, list) or len(templates) > MAX_TEMPLATES:
        return found
    for template in templates:
        if not isinstance(template, dict) or not isinstance(template.get("name"), str):
            continue
        name: str = template["name"]
        component = _spec_name(template)
        if component is not None:
            if component in by_component:
                found[name] = by_component[component]
            elif (called := _called_function(template)) in names:
                found[name] = str(called)
        elif step_of(name) in names:
            found[name] = step_of(name)
    return found
