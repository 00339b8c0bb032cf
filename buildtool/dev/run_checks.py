"""What `buildtool run` accepts from a workflow file, checked before anything is planned or started.

A workflow handed to `run` may be hostile: its names become host folders that
are mounted into root containers. So `run` accepts only
what `local_run` implements, key by key (an allowlist: any other key, such as
`volumes`, `sidecars` or `securityContext`, is refused by name), only names that
are single safe path components, only digest-pinned images (the same check as
`buildtool verify`), and only a bounded document with no YAML aliases.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .. import reference
from ..config import PULL_POLICIES, Config
from ..errors import BuildtoolError, RunError
from ..gate import verify
from ..lock import image_map
from ..lock.image_map import ImageMap
from ..util import yaml_io

__all__ = [
    "MAX_TASKS",
    "MAX_TEMPLATES",
    "MAX_WORKFLOW_BYTES",
    "NAME_RE",
    "escape",
    "image_map_for_run",
    "read_workflow",
    "require_pinned",
    "require_runnable",
    "workflow_images",
]

MAX_WORKFLOW_BYTES = yaml_io.MAX_BYTES  # the one cap on YAML buildtool reads; ~30 times a compiled pipeline
MAX_TEMPLATES = verify.MAX_TEMPLATES
MAX_TASKS = 1000

#: Task, template, artifact and parameter names: one path component, no '.' or '..', no separator.
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
#: A path inside the container where an artifact is mounted: absolute, plain components, no ':' or ','
#: (the engine's bind syntax), no '.' or '..'.
CONTAINER_PATH_RE = re.compile(r"(?:/[A-Za-z0-9_+@=-][A-Za-z0-9_.+@=-]{0,254}){1,32}")

# Every key local_run implements (or may ignore because it grants nothing on the host), by place.
_WORKFLOW = frozenset({"apiVersion", "kind", "metadata", "spec"})
_WORKFLOW_METADATA = frozenset({"name", "generateName", "labels", "annotations"})
# serviceAccountName grants rights on a cluster only; a local run has no service account to give.
_SPEC = frozenset({"entrypoint", "templates", "arguments", "serviceAccountName", "onExit"})
_WORKFLOW_ARGUMENTS = frozenset({"parameters"})
_PARAMETER = frozenset({"name", "value", "description"})
_TEMPLATE = frozenset(
    {
        "name",
        "container",
        "dag",
        "inputs",
        "outputs",
        "metadata",
        "retryStrategy",
        "activeDeadlineSeconds",
        "parallelism",
    }
)
_RETRY = frozenset({"limit"})
_TEMPLATE_METADATA = frozenset({"labels", "annotations"})
_CONTAINER = frozenset({"image", "command", "args", "env", "resources", "imagePullPolicy"})
_RESOURCES = frozenset({"limits", "requests"})
_ENV = frozenset({"name", "value", "valueFrom"})
_ENV_FROM = frozenset({"secretKeyRef"})
_SECRET_REF = frozenset({"name", "key"})
_INPUTS = frozenset({"parameters", "artifacts"})
_OUTPUTS = frozenset({"artifacts", "parameters"})
_OUTPUT_PARAMETER = frozenset({"name", "valueFrom", "description"})
_VALUE_FROM_PATH = frozenset({"path"})
_VALUE_FROM_PARAMETER = frozenset({"parameter"})
_DAG_INPUT_ARTIFACT = frozenset({"name"})
_ARTIFACT = frozenset({"name", "path"})
_DAG = frozenset({"tasks"})
_TASK = frozenset({"name", "template", "arguments", "dependencies", "depends", "when", "withItems", "withParam"})
_TASK_ARGUMENTS = frozenset({"parameters", "artifacts"})
_TASK_PARAMETER = frozenset({"name", "value"})
_TASK_ARTIFACT = frozenset({"name", "from"})


def escape(text: object) -> str:
    """`text` for display on one line: every control or other non-printable character repr-escaped."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def read_workflow(path: Path) -> dict[str, Any]:
    """The workflow at `path`, read as verify reads it (yaml_io: size-capped, no aliases, bounded nesting)."""
    try:
        if not path.is_file():
            raise RunError(f"{escape(path)}: not a regular file; give the compiled workflow (pipeline.yaml)")
        size = path.stat().st_size
    except OSError as exc:
        raise RunError(f"{escape(path)}: cannot be read ({exc.strerror})") from None
    if size > MAX_WORKFLOW_BYTES:
        raise RunError(
            f"{escape(path)}: {size} bytes, over the {MAX_WORKFLOW_BYTES}-byte limit for a workflow; "
            "a compiled pipeline is far smaller: compile it again with `buildtool compile`"
        )
    try:
        return verify.load_workflow(path)
    except BuildtoolError as exc:  # not found, not YAML, aliases, not a Workflow: a run error here
        raise RunError(str(exc)) from None


def require_runnable(workflow: Mapping[str, Any]) -> None:
    """RunError naming the first thing `run` does not implement or does not trust (and how many more there are)."""
    problems = list(_problems(workflow))
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise RunError(escape(problems[0]) + more)


def workflow_images(workflow: Mapping[str, Any]) -> dict[str, str]:
    """step -> container image as the workflow names them: the map `run` checks against when it has no image map."""
    images = {}
    for template in workflow["spec"]["templates"]:
        if "container" in template:
            images[verify.step_of(template["name"])] = template["container"]["image"]
    return images


def require_pinned(workflow: Mapping[str, Any], steps: Mapping[str, str] | None, external: Iterable[str] = ()) -> None:
    """Every image pinned by digest and, given the image map's `steps`, equal to its entry or a pinned image of an
    `external` repository (`verify`'s check). With no map, a template's image need only be pinned."""
    problems = verify.pin_problems(workflow, steps, external) if steps is not None else _unpinned(workflow)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s); `buildtool verify` lists them)" if len(problems) > 1 else ""
        raise RunError(f"{escape(problems[0])}{more}; rebuild with `buildtool build --push` and compile again")


def _unpinned(workflow: Mapping[str, Any]) -> list[str]:
    """Images that are not digest-pinned, or that apply to every template (no step to check them against)."""
    try:
        found = list(verify.places(workflow))
    except RecursionError:
        return ["the workflow is nested too deeply to read"]
    problems = []
    for item in found:
        head = item.where if item.template == verify.WORKFLOW else f"template {item.template}: {item.where}"
        if item.problem is not None:
            problems.append(f"{head}: {item.problem}")
        elif (why := reference.pinned_problem(item.image)) is not None:
            problems.append(f"{head}: {yaml_io.shown(item.image)} is {why}")
        elif item.template == verify.WORKFLOW:
            problems.append(f"{head}: {item.image} applies to every template and serves no step")
    return problems


# -- the allowlist walk ------------------------------------------------------------------------------------------


def _refused(holder: Mapping[str, Any], allowed: frozenset[str], where: str) -> Iterator[str]:
    for key in holder:
        if key not in allowed:
            yield (
                f"{where}{'.' if where and not where.endswith(': ') else ''}{escape(key)}{_detail(holder[key])} "
                "is not supported by local runs; remove it, or run the pipeline on the cluster"
            )


def _detail(value: Any) -> str:
    """The keys under a refused field, e.g. ' (hostPath, name)', so that the message names what it holds."""
    entries = value if isinstance(value, list) else [value]
    keys = sorted({str(k) for entry in entries[:100] if isinstance(entry, Mapping) for k in entry})
    return f" ({', '.join(escape(k) for k in keys[:8])})" if keys else ""


def _mapping(value: Any, where: str, optional: bool = True) -> Mapping[str, Any] | str:
    """`value` if it is a mapping (or absent and optional, as {}); else the problem."""
    if value is None and optional:
        return {}
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return value
    return f"{where}: expected a mapping with string keys, got {type(value).__name__}"


def _named_list(value: Any, where: str, limit: int = MAX_TASKS) -> list[Mapping[str, Any]] | str:
    """`value` if it is a list of mappings each with a safe `name`, unique, at most `limit` long; else the problem."""
    if value is None:
        return []
    if not isinstance(value, list):
        return f"{where}: expected a list, got {type(value).__name__}"
    if len(value) > limit:
        return f"{where}: {len(value)} entries, over the limit of {limit}"
    names: set[str] = set()
    for number, item in enumerate(value):
        if not isinstance(item, Mapping) or not all(isinstance(k, str) for k in item):
            return f"{where}[{number}]: expected a mapping with string keys"
        name = item.get("name")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            return (
                f"{where}[{number}]: name {name!r} is not a safe name (1 to 128 letters, digits, '_', '.', '-', "
                "not starting with '.' or '-': a single path component)"
            )
        if name in names:
            return f"{where}: {name} appears twice"
        names.add(name)
    return value


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float))


def _problems(workflow: Mapping[str, Any]) -> Iterator[str]:
    top = _mapping(workflow, "workflow", optional=False)
    if isinstance(top, str):
        yield top
        return
    yield from _refused(top, _WORKFLOW, "")
    metadata = _mapping(top.get("metadata"), "metadata")
    if isinstance(metadata, str):
        yield metadata
    else:
        yield from _refused(metadata, _WORKFLOW_METADATA, "metadata")
    spec = _mapping(top.get("spec"), "spec", optional=False)
    if isinstance(spec, str):
        yield spec + "; compile the pipeline with `buildtool compile`"
        return
    yield from _refused(spec, _SPEC, "spec")
    if not isinstance(spec.get("entrypoint"), str):
        yield "spec.entrypoint: expected the name of the pipeline's DAG template"
    arguments = _mapping(spec.get("arguments"), "spec.arguments")
    if isinstance(arguments, str):
        yield arguments
    else:
        yield from _refused(arguments, _WORKFLOW_ARGUMENTS, "spec.arguments")
        yield from _parameters(arguments.get("parameters"), "spec.arguments.parameters")
    templates = _named_list(spec.get("templates"), "spec.templates", MAX_TEMPLATES)
    if isinstance(templates, str):
        yield templates
        return
    for template in templates:
        yield from _template(template)


def _parameters(value: Any, where: str, allowed: frozenset[str] = _PARAMETER) -> Iterator[str]:
    parameters = _named_list(value, where)
    if isinstance(parameters, str):
        yield parameters
        return
    for parameter in parameters:
        here = f"{where}.{parameter['name']}"
        yield from _refused(parameter, allowed, here)
        if parameter.get("value") is not None and not _scalar(parameter["value"]):
            yield f"{here}.value: expected a string or number"


def _artifacts(value: Any, where: str, allowed: frozenset[str] = _ARTIFACT) -> Iterator[str]:
    artifacts = _named_list(value, where)
    if isinstance(artifacts, str):
        yield artifacts
        return
    for artifact in artifacts:
        here = f"{where}.{artifact['name']}"
        yield from _refused(artifact, allowed, here)
        if allowed is _ARTIFACT:
            path = artifact.get("path")
            if (
                not isinstance(path, str)
                or not CONTAINER_PATH_RE.fullmatch(path)
                or "/./" in path + "/"
                or "/../" in path + "/"
            ):
                yield (
                    f"{here}.path: {path!r} is not a plain absolute path in the container "
                    "(no '.', '..', ':' or ',' components)"
                )
        elif allowed is _TASK_ARTIFACT and not isinstance(artifact.get("from"), str):
            yield f"{here}.from: expected {{{{tasks.T.outputs.artifacts.A}}}}"


def _template(template: Mapping[str, Any]) -> Iterator[str]:
    where = f"template {template['name']}: "
    yield from _refused(template, _TEMPLATE, where)
    metadata = _mapping(template.get("metadata"), where + "metadata")
    if isinstance(metadata, str):
        yield metadata
    else:
        yield from _refused(metadata, _TEMPLATE_METADATA, where + "metadata")
        for key in _TEMPLATE_METADATA:
            entries = metadata.get(key)
            if entries is not None and (
                not isinstance(entries, Mapping) or not all(isinstance(v, str) for v in entries.values())
            ):
                yield f"{where}metadata.{key}: expected a mapping of strings"
    has_container, has_dag = "container" in template, "dag" in template
    inputs = _mapping(template.get("inputs"), where + "inputs")
    if isinstance(inputs, str):
        yield inputs
    else:
        yield from _refused(inputs, _INPUTS, where + "inputs")
        yield from _parameters(inputs.get("parameters"), where + "inputs.parameters")
        # A DAG's input artifacts are passed through to its tasks: they have no path of their own.
        yield from _artifacts(
            inputs.get("artifacts"), where + "inputs.artifacts", _DAG_INPUT_ARTIFACT if has_dag else _ARTIFACT
        )
    outputs = _mapping(template.get("outputs"), where + "outputs")
    if isinstance(outputs, str):
        yield outputs
    else:
        yield from _refused(outputs, _OUTPUTS, where + "outputs")
        yield from _artifacts(
            outputs.get("artifacts"), where + "outputs.artifacts", _TASK_ARTIFACT if has_dag else _ARTIFACT
        )
        yield from _output_parameters(outputs.get("parameters"), where + "outputs.parameters", has_dag)
    yield from _scheduling(template, where)
    if has_container == has_dag:
        yield f"{where}expected exactly one of container or dag, the only template kinds local runs implement"
    if has_container:
        yield from _container(template["container"], where + "container")
    if has_dag:
        yield from _dag(template["dag"], where + "dag")


def _output_parameters(value: Any, where: str, dag: bool) -> Iterator[str]:
    """A container's output parameters are read from a file (valueFrom.path); a DAG's from a task's output."""
    parameters = _named_list(value, where)
    if isinstance(parameters, str):
        yield parameters
        return
    for parameter in parameters:
        here = f"{where}.{parameter['name']}"
        yield from _refused(parameter, _OUTPUT_PARAMETER, here)
        source = _mapping(parameter.get("valueFrom"), here + ".valueFrom", optional=False)
        if isinstance(source, str):
            yield source
            continue
        yield from _refused(source, _VALUE_FROM_PARAMETER if dag else _VALUE_FROM_PATH, here + ".valueFrom")
        key = "parameter" if dag else "path"
        if not isinstance(source.get(key), str):
            yield f"{here}.valueFrom.{key}: expected a string"
        elif not dag and (
            not CONTAINER_PATH_RE.fullmatch(source[key]) or "/./" in source[key] + "/" or "/../" in source[key] + "/"
        ):
            yield (
                f"{here}.valueFrom.path: {source[key]!r} is not a plain absolute path in the container "
                "(no '.', '..', ':' or ',' components)"
            )


def _scheduling(template: Mapping[str, Any], where: str) -> Iterator[str]:
    """retryStrategy (its limit only), activeDeadlineSeconds and a DAG's parallelism: small whole numbers."""
    retry = _mapping(template.get("retryStrategy"), where + "retryStrategy")
    if isinstance(retry, str):
        yield retry
    else:
        yield from _refused(retry, _RETRY, where + "retryStrategy")
    for key in ("activeDeadlineSeconds", "parallelism"):
        value = template.get(key)
        if value is not None and not (
            isinstance(value, int) and not isinstance(value, bool) or isinstance(value, str) and value.isdigit()
        ):
            yield f"{where}{key}: expected a whole number"


def _container(value: Any, where: str) -> Iterator[str]:
    container = _mapping(value, where, optional=False)
    if isinstance(container, str):
        yield container
        return
    yield from _refused(container, _CONTAINER, where)
    if not isinstance(container.get("image"), str) or not container["image"]:
        yield f"{where}.image: missing"
    for key in ("command", "args"):
        parts = container.get(key)
        if parts is not None and (not isinstance(parts, list) or not all(_scalar(p) for p in parts)):
            yield f"{where}.{key}: expected a list of strings"
    policy = container.get("imagePullPolicy")
    if policy is not None and (not isinstance(policy, str) or policy not in PULL_POLICIES):
        yield f"{where}.imagePullPolicy: {policy!r} is not one of {', '.join(sorted(PULL_POLICIES))}"
    resources = _mapping(container.get("resources"), where + ".resources")
    if isinstance(resources, str):
        yield resources
    else:
        yield from _refused(resources, _RESOURCES, where + ".resources")
        for kind, amounts in resources.items():
            if not isinstance(amounts, Mapping) or not all(_scalar(v) for v in amounts.values()):
                yield f"{where}.resources.{escape(kind)}: expected a mapping of quantities"
    yield from _env(container.get("env"), where + ".env")


def _env(value: Any, where: str) -> Iterator[str]:
    if value is None:
        return
    if not isinstance(value, list) or len(value) > MAX_TASKS:
        yield f"{where}: expected a list of name/value entries"
        return
    names: set[str] = set()
    for number, entry in enumerate(value):
        if not isinstance(entry, Mapping):
            yield f"{where}[{number}]: expected a mapping"
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
            yield f"{where}[{number}]: {name!r} is not an environment variable name"
            continue
        if name in names:
            yield f"{where}.{name}: appears twice"
        names.add(name)
        here = f"{where}.{name}"
        yield from _refused(entry, _ENV, here)
        if ("value" in entry) == ("valueFrom" in entry):
            yield f"{here}: expected exactly one of value or valueFrom"
        elif "value" in entry:
            if not _scalar(entry["value"]):
                yield f"{here}.value: expected a string"
        else:
            source = _mapping(entry["valueFrom"], here + ".valueFrom", optional=False)
            if isinstance(source, str):
                yield source
                continue
            # Only a Secret's key is implemented: it comes from the host's variable of the same name.
            yield from _refused(source, _ENV_FROM, here + ".valueFrom")
            ref = _mapping(source.get("secretKeyRef"), here + ".valueFrom.secretKeyRef", optional=False)
            if isinstance(ref, str):
                yield ref
                continue
            yield from _refused(ref, _SECRET_REF, here + ".valueFrom.secretKeyRef")
            if not all(isinstance(ref.get(k), str) for k in _SECRET_REF):
                yield f"{here}.valueFrom.secretKeyRef: expected a name and a key"


def _dag(value: Any, where: str) -> Iterator[str]:
    dag = _mapping(value, where, optional=False)
    if isinstance(dag, str):
        yield dag
        return
    yield from _refused(dag, _DAG, where)
    tasks = _named_list(dag.get("tasks"), where + ".tasks")
    if isinstance(tasks, str):
        yield tasks
        return
    for task in tasks:
        here = f"{where}.tasks.{task['name']}"
        yield from _refused(task, _TASK, here)
        if not isinstance(task.get("template"), str):
            yield f"{here}.template: expected a template name"
        dependencies = task.get("dependencies")
        if dependencies is not None and (
            not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies)
        ):
            yield f"{here}.dependencies: expected a list of task names"
        elif any(not NAME_RE.fullmatch(d) for d in dependencies or []):
            yield f"{here}.dependencies: {dependencies!r} holds a name that is not a safe name"
        for key in ("when", "depends", "withParam"):
            if key in task and not isinstance(task[key], str):
                yield f"{here}.{key}: expected a string"
        if "withItems" in task and (not isinstance(task["withItems"], list) or len(task["withItems"]) > MAX_TASKS):
            yield f"{here}.withItems: expected a list of at most {MAX_TASKS} items"
        if "withItems" in task and "withParam" in task:
            yield f"{here}: withItems and withParam exclude each other"
        arguments = _mapping(task.get("arguments"), here + ".arguments")
        if isinstance(arguments, str):
            yield arguments
            continue
        yield from _refused(arguments, _TASK_ARGUMENTS, here + ".arguments")
        yield from _parameters(arguments.get("parameters"), here + ".arguments.parameters", _TASK_PARAMETER)
        yield from _artifacts(arguments.get("artifacts"), here + ".arguments.artifacts", _TASK_ARTIFACT)


def image_map_for_run(
    explicit: Path | None, config_file: Path, load_config: Callable[[], Config]
) -> tuple[ImageMap | None, Path | None]:
    """The image map `run` checks images against, and its path: `explicit` (--image-map), else the
    configuration's map when the configuration file and the map exist, else none (pins are checked alone)."""
    if explicit is not None:
        return image_map.load(explicit), explicit
    if not config_file.is_file():
        return None, None
    path = load_config().image_map
    return (image_map.load(path), path) if path.exists() else (None, None)
