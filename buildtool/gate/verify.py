"""Checks on a compiled workflow: every image pinned, equal to the map's entry for its step, present in the registry.

An Argo workflow can name an image in many places: a template's container, script, initContainers,
sidecars and containerSet, the manifest of a resource template, a podSpecPatch (on a template or on
the workflow), templateDefaults, and kfp's component_spec annotation. Every one of them is read;
anything that cannot be read is a problem too, so the gate fails closed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import reference
from ..config import Config
from ..errors import VerifyError
from ..inputs.digest import LABEL_INPUTS
from ..lock import image_map
from ..util import yaml_io
from .kfp_names import component_name

if TYPE_CHECKING:  # the registry client (and requests) loads only where a command checks the registry
    from ..push.registry import Registry

COMPONENT_SPEC = "pipelines.kubeflow.org/component_spec"
# The line of the program kfp 1.8 writes for a Python function's component that calls the function itself.
_PROGRAM_CALL = re.compile(r"^_outputs = ([A-Za-z_][A-Za-z0-9_]*)\(\*\*_parsed_args\)$", re.M)
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


def external_repository(image: Any, external: Iterable[str]) -> bool:
    """Whether `image` is a digest-pinned image of a repository listed in `external_images`."""
    if not reference.is_pinned(image):
        return False
    return reference.parse(image).repository in {reference.parse(r).repository for r in external}


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


def verify_pipeline(
    config: Config, path: Path, registry: Registry | None, *, data: bytes | None = None
) -> dict[str, Any]:
    """VerifyError unless every image of the workflow at `path` is pinned, as the (consistent) map says, and,
    given a registry, served by it; StalePipelineError unless it is what `compile` makes now.
    ImageMapError when the map itself is unreadable or not a lock.

    `data`: the file's bytes, already read (then `path` only names it); returns the workflow checked.
    """
    from ..lock import freshness

    workflow = load_workflow(path, data)
    loaded = image_map.load(config.image_map)
    image_map.require_locked(loaded, config.steps, config.image_map, config.repositories)
    problems = pin_problems(workflow, loaded.steps, config.external_images)
    if problems:
        raise VerifyError(summary(path, problems))
    freshness.require_current(config, workflow, loaded.steps, label=str(path), full=True)
    if registry is not None:
        inputs = {locked.reference: locked.inputs_digest for locked in loaded.images.values()}
        problems = registry_problems(workflow, registry, inputs)
        if problems:
            raise VerifyError(summary(path, problems))
    return workflow
