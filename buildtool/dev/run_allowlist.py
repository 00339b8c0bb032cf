"""The allowlist of a workflow handed to `buildtool run`, walked key by key before anything is planned.

A workflow handed to `run` may be hostile: its names become host folders that are mounted into root
containers. So a local run accepts only what it implements, key by key (any other key, such as `volumes`,
`sidecars` or `securityContext`, is refused by name), only names that are single safe path components, only
plain absolute container paths, and only bounded lists.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator, Mapping
from typing import Any

from ..config import PULL_POLICIES
from ..gate.verify import MAX_TEMPLATES
from .run_text import escape

__all__ = ["MAX_TASKS", "NAME_RE", "unsupported"]

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


def _section(
    value: Any, allowed: frozenset[str], where: str, optional: bool = True
) -> Generator[str, None, Mapping[str, Any] | None]:
    """Yields the problems of `value` as a mapping of `allowed` keys; returns it (None when it is not a mapping)."""
    holder = _mapping(value, where, optional)
    if isinstance(holder, str):
        yield holder
        return None
    yield from _refused(holder, allowed, where)
    return holder


def _entries(value: Any, where: str, limit: int = MAX_TASKS) -> Generator[str, None, list[Mapping[str, Any]]]:
    """Yields the problem of `value` as a list of named entries; returns the entries ([] when it is not one)."""
    entries = _named_list(value, where, limit)
    if isinstance(entries, str):
        yield entries
        return []
    return entries


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float))


def _plain_path(path: Any) -> bool:
    """A plain absolute path in the container: no '.', '..', ':' or ',' components."""
    return (
        isinstance(path, str)
        and CONTAINER_PATH_RE.fullmatch(path) is not None
        and "/./" not in path + "/"
        and "/../" not in path + "/"
    )


def _not_plain(where: str, path: Any) -> str:
    return f"{where}: {path!r} is not a plain absolute path in the container (no '.', '..', ':' or ',' components)"


def unsupported(workflow: Mapping[str, Any]) -> Iterator[str]:
    """Every field of `workflow` that local runs do not implement or trust, as a message naming it."""
    top = _mapping(workflow, "workflow", optional=False)
    if isinstance(top, str):
        yield top
        return
    yield from _refused(top, _WORKFLOW, "")
    yield from _section(top.get("metadata"), _WORKFLOW_METADATA, "metadata")
    spec = _mapping(top.get("spec"), "spec", optional=False)
    if isinstance(spec, str):
        yield spec + "; compile the pipeline with `buildtool compile`"
        return
    yield from _refused(spec, _SPEC, "spec")
    if not isinstance(spec.get("entrypoint"), str):
        yield "spec.entrypoint: expected the name of the pipeline's DAG template"
    arguments = yield from _section(spec.get("arguments"), _WORKFLOW_ARGUMENTS, "spec.arguments")
    if arguments is not None:
        yield from _parameters(arguments.get("parameters"), "spec.arguments.parameters")
    for template in (yield from _entries(spec.get("templates"), "spec.templates", MAX_TEMPLATES)):
        yield from _template(template)


def _parameters(value: Any, where: str, allowed: frozenset[str] = _PARAMETER) -> Iterator[str]:
    for parameter in (yield from _entries(value, where)):
        here = f"{where}.{parameter['name']}"
        yield from _refused(parameter, allowed, here)
        if parameter.get("value") is not None and not _scalar(parameter["value"]):
            yield f"{here}.value: expected a string or number"


def _artifacts(value: Any, where: str, allowed: frozenset[str] = _ARTIFACT) -> Iterator[str]:
    for artifact in (yield from _entries(value, where)):
        here = f"{where}.{artifact['name']}"
        yield from _refused(artifact, allowed, here)
        if allowed is _ARTIFACT and not _plain_path(artifact.get("path")):
            yield _not_plain(f"{here}.path", artifact.get("path"))
        elif allowed is _TASK_ARTIFACT and not isinstance(artifact.get("from"), str):
            yield f"{here}.from: expected {{{{tasks.T.outputs.artifacts.A}}}}"


def _template(template: Mapping[str, Any]) -> Iterator[str]:
    where = f"template {template['name']}: "
    yield from _refused(template, _TEMPLATE, where)
    metadata = yield from _section(template.get("metadata"), _TEMPLATE_METADATA, where + "metadata")
    for key in _TEMPLATE_METADATA:
        entries = None if metadata is None else metadata.get(key)
        if entries is not None and (
            not isinstance(entries, Mapping) or not all(isinstance(v, str) for v in entries.values())
        ):
            yield f"{where}metadata.{key}: expected a mapping of strings"
    has_container, has_dag = "container" in template, "dag" in template
    inputs = yield from _section(template.get("inputs"), _INPUTS, where + "inputs")
    if inputs is not None:
        yield from _parameters(inputs.get("parameters"), where + "inputs.parameters")
        # A DAG's input artifacts are passed through to its tasks: they have no path of their own.
        yield from _artifacts(
            inputs.get("artifacts"), where + "inputs.artifacts", _DAG_INPUT_ARTIFACT if has_dag else _ARTIFACT
        )
    outputs = yield from _section(template.get("outputs"), _OUTPUTS, where + "outputs")
    if outputs is not None:
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
    for parameter in (yield from _entries(value, where)):
        here = f"{where}.{parameter['name']}"
        yield from _refused(parameter, _OUTPUT_PARAMETER, here)
        allowed = _VALUE_FROM_PARAMETER if dag else _VALUE_FROM_PATH
        source = yield from _section(parameter.get("valueFrom"), allowed, here + ".valueFrom", optional=False)
        if source is None:
            continue
        key = "parameter" if dag else "path"
        if not isinstance(source.get(key), str):
            yield f"{here}.valueFrom.{key}: expected a string"
        elif not dag and not _plain_path(source[key]):
            yield _not_plain(f"{here}.valueFrom.path", source[key])


def _scheduling(template: Mapping[str, Any], where: str) -> Iterator[str]:
    """retryStrategy (its limit only), activeDeadlineSeconds and a DAG's parallelism: small whole numbers."""
    yield from _section(template.get("retryStrategy"), _RETRY, where + "retryStrategy")
    for key in ("activeDeadlineSeconds", "parallelism"):
        value = template.get(key)
        if value is not None and not (
            isinstance(value, int) and not isinstance(value, bool) or isinstance(value, str) and value.isdigit()
        ):
            yield f"{where}{key}: expected a whole number"


def _container(value: Any, where: str) -> Iterator[str]:
    container = yield from _section(value, _CONTAINER, where, optional=False)
    if container is None:
        return
    if not isinstance(container.get("image"), str) or not container["image"]:
        yield f"{where}.image: missing"
    for key in ("command", "args"):
        parts = container.get(key)
        if parts is not None and (not isinstance(parts, list) or not all(_scalar(p) for p in parts)):
            yield f"{where}.{key}: expected a list of strings"
    policy = container.get("imagePullPolicy")
    if policy is not None and (not isinstance(policy, str) or policy not in PULL_POLICIES):
        yield f"{where}.imagePullPolicy: {policy!r} is not one of {', '.join(sorted(PULL_POLICIES))}"
    resources = yield from _section(container.get("resources"), _RESOURCES, where + ".resources")
    for kind, amounts in resources.items() if resources is not None else ():
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
        yield from _env_entry(entry, f"{where}.{name}")


def _env_entry(entry: Mapping[str, Any], where: str) -> Iterator[str]:
    """A plain value, or a Secret's key (the only source implemented: it comes from the host's variable)."""
    yield from _refused(entry, _ENV, where)
    if ("value" in entry) == ("valueFrom" in entry):
        yield f"{where}: expected exactly one of value or valueFrom"
    elif "value" in entry:
        if not _scalar(entry["value"]):
            yield f"{where}.value: expected a string"
    else:
        source = yield from _section(entry["valueFrom"], _ENV_FROM, where + ".valueFrom", optional=False)
        if source is None:
            return
        here = where + ".valueFrom.secretKeyRef"
        ref = yield from _section(source.get("secretKeyRef"), _SECRET_REF, here, optional=False)
        if ref is not None and not all(isinstance(ref.get(k), str) for k in _SECRET_REF):
            yield f"{here}: expected a name and a key"


def _dag(value: Any, where: str) -> Iterator[str]:
    dag = yield from _section(value, _DAG, where, optional=False)
    if dag is None:
        return
    for task in (yield from _entries(dag.get("tasks"), where + ".tasks")):
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
        arguments = yield from _section(task.get("arguments"), _TASK_ARGUMENTS, here + ".arguments")
        if arguments is None:
            continue
        yield from _parameters(arguments.get("parameters"), here + ".arguments.parameters", _TASK_PARAMETER)
        yield from _artifacts(arguments.get("artifacts"), here + ".arguments.artifacts", _TASK_ARTIFACT)
