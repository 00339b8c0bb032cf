"""Every place of an Argo workflow that names an image, or could: read, or reported as unreadable.

An Argo workflow can name an image in many places: a template's container, script, initContainers,
sidecars and containerSet, the manifest of a resource template, a podSpecPatch (on a template or on
the workflow), templateDefaults, and kfp's component_spec annotation. Every one of them is read;
anything that cannot be read is a problem too, so the gate fails closed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ...util import yaml_io

COMPONENT_SPEC = "pipelines.kubeflow.org/component_spec"
MAX_TEMPLATES = 1000  # kfp makes one per step and one per DAG; a thousand is far beyond any real pipeline
WORKFLOW = "(workflow)"  # the label of places that apply to every template

# Fields holding one container, or a list of them: each must name its image.
_CONTAINER_FIELDS = ("container", "script")
_CONTAINER_LISTS = ("initContainers", "sidecars")
# Fields that hand the pod's contents to something buildtool cannot see.
_OUTSIDE = {  # by lowercase name
    "templateref": "runs a template of another WorkflowTemplate, which this file does not show",
    "workflowtemplateref": "runs another WorkflowTemplate, which this file does not show",
    "manifestfrom": "reads its manifest from an artifact, which this file does not show",
}


@dataclass(frozen=True)
class Found:
    """One place of the workflow that names (or should name) an image."""

    template: str  # template name, or WORKFLOW
    where: str  # the field, e.g. sidecars[0].image
    image: Any  # the value found there; None when it could not be read
    problem: str | None = None  # why it could not be read
    main: bool = False  # the template's own container: what makes the template run its step


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _embedded(text: Any, template: str, where: str, embedded: bool) -> Iterator[Found]:
    """Images inside a YAML or JSON document held as a string (podSpecPatch, a resource manifest)."""
    if not isinstance(text, str):
        yield Found(template, where, None, f"expected a YAML or JSON string, got {_kind(text)}")
        return
    if embedded:  # Argo reads one level; a document inside a document is nobody's output
        yield Found(template, where, None, "a document embedded in an embedded document")
        return
    try:
        data = yaml_io.parse(text)
    except yaml_io.YamlProblem as exc:
        yield Found(template, where, None, f"cannot be read ({exc})")
        return
    if isinstance(data, str) and PARAMETER in data:
        yield Found(template, where, None, "the whole document is a parameter: Argo would substitute it")
        return
    yield from _parameters(data, template, where, bearing=False)
    yield from _anywhere(data, template, where, embedded=True)


def go_fold(key: str) -> str:
    """`key` as Go's encoding/json matches it against a field name: case ignored under Unicode simple folding
    (bytes.EqualFold), where the Kelvin sign folds to k and the long s to s. The field names read here are ASCII,
    and those two are the only other characters whose simple folding reaches an ASCII letter."""
    return "".join(_GO_FOLD.get(c, c.lower() if c.isascii() else c) for c in key)


_GO_FOLD = {"\u212a": "k", "\u017f": "s"}  # KELVIN SIGN, LATIN SMALL LETTER LONG S
PARAMETER = "{{"  # Argo substitutes {{...}} in keys and values before the document is applied
# Fields of a pod spec whose value is, or holds, an image: a parameter there could become one.
_IMAGE_BEARING = {"image", "containers", "initcontainers", "ephemeralcontainers", "sidecars"}


def _parameters(node: Any, template: str, where: str, bearing: bool) -> Iterator[Found]:
    """Inside an embedded document: a parameter in any key, or in any value held by an image-bearing field."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}"
            if isinstance(key, str) and PARAMETER in key:
                yield Found(
                    template,
                    path,
                    None,
                    "a parameter in a key: Argo would substitute it before the "
                    "document is applied, so it could name any field",
                )
            field = go_fold(key) if isinstance(key, str) else key
            yield from _parameters(value, template, path, bearing or field in _IMAGE_BEARING)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _parameters(item, template, f"{where}[{index}]", bearing)
    elif bearing and isinstance(node, str) and PARAMETER in node:
        yield Found(
            template,
            where,
            None,
            f"{yaml_io.shown(node, 80)} is a parameter under an image-bearing field: "
            "Argo would substitute it, so it could become any image",
        )


def _anywhere(node: Any, template: str, where: str, embedded: bool = False) -> Iterator[Found]:
    """Every `image` field at any depth, every embedded document, every reference to outside templates."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            # Go's encoding/json, which reads these documents in the cluster, matches field names ignoring case.
            field = go_fold(key) if isinstance(key, str) else key
            if field == "image":
                yield Found(template, path, value)
            elif field in ("podspecpatch", "manifest"):
                yield from _embedded(value, template, path, embedded)
            elif field in _OUTSIDE:
                yield Found(template, path, None, _OUTSIDE[field])
            else:
                if key == "metadata" and isinstance(value, dict):
                    yield from _annotation(value, template, path)
                yield from _anywhere(value, template, path, embedded)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _anywhere(item, template, f"{where}[{index}]", embedded)


def _annotation(metadata: Mapping[str, Any], template: str, where: str) -> Iterator[Found]:
    """kfp's copy of the component spec, whose image must match the container's."""
    annotations = metadata.get("annotations")
    if annotations is None:
        return
    if not isinstance(annotations, dict):
        yield Found(template, f"{where}.annotations", None, f"expected a mapping, got {_kind(annotations)}")
        return
    if COMPONENT_SPEC not in annotations:
        return
    label = f"{COMPONENT_SPEC} annotation"
    try:
        spec = json.loads(annotations[COMPONENT_SPEC])
        container = spec["implementation"]["container"]
    except (ValueError, KeyError, TypeError, RecursionError):
        yield Found(template, label, None, "cannot be read as a kfp component spec")
        return
    if isinstance(container, dict) and "image" in container:
        yield Found(template, label, container["image"])
    else:
        yield Found(template, label, None, "names no image")


def _containers(template: Mapping[str, Any], name: str) -> Iterator[Found]:
    """The fields that must each name an image: a missing one is a problem, not a pass."""
    for field in _CONTAINER_FIELDS:
        if field in template:
            box = template[field]
            if not isinstance(box, dict) or "image" not in box:
                yield Found(name, f"{field}.image", None, f"{field} holds no image ({_kind(box)})")
            else:
                yield Found(name, f"{field}.image", box["image"], main=True)
    lists: list[tuple[str, Any]] = [(field, template[field]) for field in _CONTAINER_LISTS if field in template]
    if "containerSet" in template:
        box = template["containerSet"]
        if not isinstance(box, dict):
            yield Found(name, "containerSet", None, f"expected a mapping, got {_kind(box)}")
        else:
            lists.append(("containerSet.containers", box.get("containers")))
    for field, items in lists:
        if not isinstance(items, list):
            yield Found(name, field, None, f"expected a list of containers, got {_kind(items)}")
            continue
        for index, item in enumerate(items):
            if not isinstance(item, dict) or "image" not in item:
                yield Found(name, f"{field}[{index}].image", None, f"holds no image ({_kind(item)})")
            else:
                yield Found(name, f"{field}[{index}].image", item["image"], main=field.startswith("containerSet"))


def _template(template: Mapping[str, Any], name: str) -> Iterator[Found]:
    found = list(_containers(template, name))
    yield from found
    listed = {f.where for f in found}
    for item in _anywhere(template, name, ""):
        if item.where not in listed:
            yield item


def images_in(workflow: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(template, where, image) for every place of `workflow` that names an image; image None where unreadable."""
    for found in places(workflow):
        yield found.template, found.where, found.image


def places(workflow: Mapping[str, Any]) -> Iterator[Found]:
    """Every place of `workflow` that names an image or could not be read, templates first."""
    spec = workflow.get("spec")
    if not isinstance(spec, dict):
        yield Found(WORKFLOW, "spec", None, f"expected a mapping, got {_kind(spec)}")
        return
    templates = spec.get("templates")
    if not isinstance(templates, list):
        yield Found(WORKFLOW, "spec.templates", None, f"expected a list of templates, got {_kind(templates)}")
        return
    if len(templates) > MAX_TEMPLATES:
        yield Found(
            WORKFLOW,
            "spec.templates",
            None,
            f"{len(templates)} templates, more than the {MAX_TEMPLATES} buildtool reads",
        )
        return
    for index, template in enumerate(templates):
        name = template.get("name") if isinstance(template, dict) else None
        if not isinstance(name, str) or not name:
            yield Found(f"#{index}", f"spec.templates[{index}]", None, "expected a mapping with a name")
            continue
        yield from _template(template, name)
    defaults = spec.get("templateDefaults")
    if defaults is not None:
        if isinstance(defaults, dict):
            for item in _template(defaults, WORKFLOW):
                yield Found(item.template, f"spec.templateDefaults.{item.where}", item.image, item.problem)
        else:
            yield Found(WORKFLOW, "spec.templateDefaults", None, f"expected a mapping, got {_kind(defaults)}")
    rest = {key: value for key, value in workflow.items() if key != "spec"}
    rest["spec"] = {key: value for key, value in spec.items() if key not in ("templates", "templateDefaults")}
    yield from _anywhere(rest, WORKFLOW, "")
