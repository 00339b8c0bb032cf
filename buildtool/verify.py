"""Checks on a compiled workflow: every image pinned, equal to the map's entry for its step, present in the registry.

An Argo workflow can name an image in many places: a template's container, script, initContainers,
sidecars and containerSet, the manifest of a resource template, a podSpecPatch (on a template or on
the workflow), templateDefaults, and kfp's component_spec annotation. Every one of them is read;
anything that cannot be read is a problem too, so the gate fails closed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import image_map, reference, yaml_io
from .config import Config
from .errors import VerifyError

if TYPE_CHECKING:  # the registry client (and requests) loads only where a command checks the registry
    from .push.registry import Registry

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


def read_pipeline(path: Path) -> bytes:
    """The bytes of a compiled workflow (size-capped, a regular file), read once."""
    try:
        return yaml_io.read_bytes(path)
    except FileNotFoundError:
        raise VerifyError(f"{path}: not found; compile it with `buildtool compile`") from None
    except yaml_io.YamlProblem as exc:
        raise VerifyError(f"{path}: {exc}; compile it again with `buildtool compile`") from None


def load_workflow(path: Path, data: bytes | None = None) -> dict[str, Any]:
    """Read a compiled workflow strictly (yaml_io: size-capped, no aliases, no duplicate keys).

    `data`: the file's bytes when the caller already read them (submit uploads exactly what was checked).
    """
    try:
        raw = read_pipeline(path) if data is None else data
        if len(raw) > yaml_io.MAX_BYTES:
            raise yaml_io.YamlProblem(f"{len(raw)} bytes, more than the {yaml_io.MAX_BYTES} accepted")
        parsed = yaml_io.parse(yaml_io.decode(raw))
    except yaml_io.YamlProblem as exc:
        raise VerifyError(f"{path}: {exc}; compile it again with `buildtool compile`") from None
    if not isinstance(parsed, dict) or parsed.get("kind") != "Workflow":
        raise VerifyError(f"{path}: not an Argo Workflow (kind: Workflow); compile it with `buildtool compile`")
    return parsed


def step_of(template_name: str) -> str:
    """kfp names a step's template after its function, with '_' turned into '-'."""
    return template_name.replace("-", "_")


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
    yield from _anywhere(data, template, where, embedded=True)


def _anywhere(node: Any, template: str, where: str, embedded: bool = False) -> Iterator[Found]:
    """Every `image` field at any depth, every embedded document, every reference to outside templates."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            # Go's encoding/json, which reads these documents in the cluster, matches field names ignoring case.
            field = key.lower() if isinstance(key, str) else key
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
        yield Found(WORKFLOW, "spec.templates", None, f"{len(templates)} templates, more than the {MAX_TEMPLATES} "
                                                      "buildtool reads")
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


def pin_problems(workflow: Mapping[str, Any], steps: Mapping[str, str]) -> list[str]:
    """Every image of `workflow` that is unpinned, belongs to no step, differs from `steps`, or cannot be read.

    An image in a template must be the map's entry for that template's step; an image outside any
    template (workflow podSpecPatch, templateDefaults) serves no step and is refused. Never raises.
    """
    try:
        found = list(places(workflow))
    except RecursionError:
        return ["the workflow is nested too deeply to read"]
    problems, seen = [], set()
    for item in found:
        head = item.where if item.template == WORKFLOW else f"template {item.template}: {item.where}"
        image, step = item.image, step_of(item.template)
        if item.problem is not None:
            problem = item.problem
        elif (why := reference.pinned_problem(image)) is not None:
            problem = f"{yaml_io.shown(image)} is {why}"
        elif item.template == WORKFLOW:
            problem = f"{image} applies to every template and serves no step of the image map"
        elif step not in steps:
            problem = f"{image} serves no step of the image map ({', '.join(sorted(steps))})"
        elif image != steps[step]:
            problem = f"{image} differs from the map's {steps[step]}"
        else:
            problem = None
        if problem is not None:
            problems.append(yaml_io.shown(f"{head}: {problem}", 2000))
        if item.main and item.template != WORKFLOW:
            seen.add(step)
    for step in sorted(set(steps) - seen):
        problems.append(f"step {step}: in the image map but no template of the workflow runs it")
    return problems


def summary(path: Path, problems: list[str], limit: int = 10) -> str:
    """One line for VerifyError: the problems themselves, the first `limit` of them."""
    shown = "; ".join(problems[:limit])
    more = f"; and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{path}: {len(problems)} problem(s): {shown}{more}"


def registry_problems(workflow: Mapping[str, Any], registry: Registry) -> list[str]:
    """Pinned images of the workflow that the registry does not serve."""
    problems = []
    for image in sorted({f.image for f in places(workflow) if reference.is_pinned(f.image)}):
        ref = reference.parse(image)
        found = registry.digest(ref)
        if found != ref.digest:
            problems.append(f"{image}: not in the registry" if found is None else f"{image}: registry serves {found}")
    return problems


def verify_pipeline(config: Config, path: Path, registry: Registry | None, *,
                    data: bytes | None = None) -> dict[str, Any]:
    """VerifyError unless every image of the workflow at `path` is pinned, as the (consistent) map says, and,
    given a registry, served by it. ImageMapError when the map itself is unreadable or not a lock.

    `data`: the file's bytes, already read (then `path` only names it); returns the workflow checked.
    """
    workflow = load_workflow(path, data)
    loaded = image_map.load(config.image_map)
    image_map.require_locked(loaded, config.steps, config.image_map)
    problems = pin_problems(workflow, loaded.steps)
    if registry is not None:
        problems += registry_problems(workflow, registry)
    if problems:
        raise VerifyError(summary(path, problems))
    return workflow
