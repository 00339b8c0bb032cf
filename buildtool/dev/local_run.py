"""Run a compiled kfp v1 workflow on the local Docker engine, with Argo's semantics for what kfp 1.8 emits.

Planning is pure. `plan_checked` refuses what local runs do not implement or trust (see `run_checks`),
then `plan_run` reads the workflow's parameters into a `RunPlan`. A DAG task becomes a `StepRun` only
when it is about to run, because its arguments may hold another task's output parameters, a loop's
`{{item}}` or a condition's outcome: `resolve_step` does that from the values known at that moment, and
`preview` (the `--dry-run` plan) does it with what is known before the run, leaving run-time values shown
as their `{{...}}`. `run_exec` executes a plan.

An environment variable the workflow takes from a Kubernetes Secret (`valueFrom.secretKeyRef`, as kfp's
`use_k8s_secret` writes) comes from the host's variable of the same name, into the container's
environment, never its command line.

The values of parameters named like credentials (`access_key`, `secret_key`) and of variables taken from
Secrets appear as `***` in everything this module reports; every other value is shown with control
characters escaped.
"""

from __future__ import annotations

import json
import posixpath
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import RunError
from .run_checks import escape, require_pinned, require_runnable
from .run_expr import check_when, depends_tasks

__all__ = [
    "ENV_PARAMETERS",
    "MAX_ITEMS",
    "RUN_LABEL",
    "SECRET_PARAMETERS",
    "SECRET_VARIABLES",
    "EnvVar",
    "InputArtifact",
    "OutputFile",
    "RunPlan",
    "Scope",
    "StepRun",
    "dag_order",
    "describe",
    "item_values",
    "loop_items",
    "parameter_names",
    "plan_checked",
    "plan_run",
    "preview",
    "resolve_step",
    "run_arguments",
    "secret_variables",
    "substitute",
    "task_arguments",
    "task_needs",
    "template_inputs",
    "workflow_scope",
]

#: Parameters whose values are never shown.
SECRET_PARAMETERS = frozenset({"access_key", "secret_key"})
#: Parameters that may come from the environment instead of the command line.
ENV_PARAMETERS = {"access_key": "PLATFORM_ACCESS_KEY", "secret_key": "PLATFORM_SECRET_KEY"}
#: Host variables a container may take for a Secret's key without being named on the command line: a workflow
#: asking for any other (say AWS_SECRET_ACCESS_KEY) could otherwise copy it into a container of its choice.
SECRET_VARIABLES = frozenset(ENV_PARAMETERS.values())
MASK = "***"
#: Label on every container a run starts (its value: the run's work folder), for `docker ps --filter label=...`.
RUN_LABEL = "buildtool.run"
#: Iterations of one withItems/withParam loop.
MAX_ITEMS = 256

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_TASK_OUTPUT = re.compile(r"^tasks\.([^.{}\s]+)\.outputs\.(parameters|artifacts)\.([^.{}\s]+)$")
_ARTIFACT_FROM = re.compile(
    r"^\{\{\s*(tasks\.[^.{}\s]+\.outputs\.artifacts\.[^.{}\s]+|inputs\.artifacts\.[^.{}\s]+)"
    r"\s*\}\}$"
)
# Argo variables local runs resolve only when they have a value: any other is refused, not passed on as text.
_ARGO_VARIABLES = ("inputs.", "outputs.", "workflow.", "tasks.", "steps.", "pod.", "node.", "item")


@dataclass(frozen=True)
class InputArtifact:
    """An artifact a step reads at `path`: `source` names where it comes from (`task.artifact` or a DAG input)."""

    name: str
    path: str
    source: str


@dataclass(frozen=True)
class OutputFile:
    """An output a step writes as a file (or folder) at `path`: an artifact, or a parameter read after the step."""

    name: str
    path: str
    parameter: bool = False


@dataclass(frozen=True)
class EnvVar:
    """A container environment variable: a plain value, or one taken from the host for a Secret's key."""

    name: str
    value: str = field(repr=False)
    #: "secret/key" when the workflow takes the value from a Kubernetes Secret (the value is then never shown).
    secret: str | None = None

    def shown(self, mask: Callable[[str], str]) -> str:
        if self.secret is not None:
            return f"{self.name}={MASK} (host ${self.name}, for secret {escape(self.secret)})"
        return f"{self.name}={escape(mask(self.value))}"


@dataclass(frozen=True)
class StepRun:
    """One container task, resolved: what to run, in which image, reading and writing which files."""

    task: str
    template: str
    image: str
    command: tuple[str, ...] = field(repr=False)
    args: tuple[str, ...] = field(repr=False)
    #: The template's input parameters with their resolved values (secrets included: see `shown_parameters`).
    parameters: tuple[tuple[str, str], ...] = field(repr=False)
    inputs: tuple[InputArtifact, ...] = ()
    outputs: tuple[OutputFile, ...] = ()
    #: Values to mask wherever this step's arguments or output are shown.
    secrets: tuple[str, ...] = field(default=(), repr=False)
    #: The container's environment (secrets included: see `EnvVar.shown`).
    env: tuple[EnvVar, ...] = field(default=(), repr=False)
    #: retryStrategy.limit: further tries after a failure.
    retries: int = 0
    #: activeDeadlineSeconds: the container is killed after this long.
    deadline: float | None = None

    @property
    def environment(self) -> dict[str, str]:
        return {variable.name: variable.value for variable in self.env}

    @property
    def argv(self) -> list[str]:
        return [*self.command, *self.args]

    def mask(self, text: str) -> str:
        """`text` with every secret value replaced by ***, longest first."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def shown_parameters(self) -> str:
        return ", ".join(
            f"{name}={MASK if name in SECRET_PARAMETERS else escape(self.mask(value))}"
            for name, value in self.parameters
        )

    def shown_env(self) -> str:
        return ", ".join(variable.shown(self.mask) for variable in self.env)


@dataclass(frozen=True)
class RunPlan:
    """A checked workflow and the values of its parameters: what `run_exec` executes."""

    templates: Mapping[str, Mapping[str, Any]] = field(repr=False)
    entrypoint: str
    #: The workflow's parameters, given or defaulted (secrets included).
    values: Mapping[str, str] = field(repr=False)
    #: Every value to mask in what is shown.
    secrets: tuple[str, ...] = field(repr=False)
    environ: Mapping[str, str] = field(repr=False)
    passed: Collection[str]
    on_exit: str | None = None
    #: `{{workflow.name}}` and `{{workflow.uid}}`: the run's own, as Argo gives each submitted workflow.
    name: str = "local"
    uid: str = "00000000-0000-0000-0000-000000000000"

    def mask(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text


@dataclass(frozen=True)
class Scope:
    """What a DAG's tasks may refer to: its inputs, finished sibling tasks' outputs, the loop item."""

    values: Mapping[str, str]
    #: Artifact variable (`inputs.artifacts.A`, `tasks.T.outputs.artifacts.A`) -> where it is (a host path).
    artifacts: Mapping[str, str]


# -- planning (no I/O) ---------------------------------------------------------------------------------------------


def parameter_names(workflow: Mapping[str, Any]) -> list[str]:
    """The workflow's parameters, as declared (spec.arguments.parameters)."""
    return [name for name, _ in _workflow_parameters(_spec(workflow))]


def secret_variables(workflow: Mapping[str, Any]) -> set[str]:
    """Names of the environment variables some container takes from a Kubernetes Secret."""
    names = set()
    for template in _spec(workflow).get("templates") or []:
        for entry in (template.get("container") or {}).get("env") or []:
            if "secretKeyRef" in (entry.get("valueFrom") or {}):
                names.add(entry["name"])
    return names


def plan_checked(
    workflow: Mapping[str, Any],
    assignments: Iterable[str],
    environ: Mapping[str, str],
    image_map_steps: Mapping[str, str] | None,
    passed: Collection[str] = SECRET_VARIABLES,
    external: Iterable[str] = (),
) -> RunPlan:
    """`plan_run` of a workflow that passed `run_checks`: only implemented fields, safe names, images pinned
    (and equal to `image_map_steps`, the image map's steps, or of an `external` repository, when given); see
    `plan_run` for `passed`."""
    require_runnable(workflow)
    require_pinned(workflow, image_map_steps, external)
    try:
        plan = plan_run(workflow, run_arguments(workflow, assignments, environ), environ, passed)
        preview(plan)  # every container's environment and placeholders checked before anything starts
        return plan
    except RunError as exc:  # whatever a message quotes from the workflow stays on its one line
        raise RunError(escape(str(exc))) from None


def run_arguments(
    workflow: Mapping[str, Any], assignments: Iterable[str], environ: Mapping[str, str]
) -> dict[str, str]:
    """Parameters from ``NAME=VALUE`` strings; access_key/secret_key not given there come from `environ`
    (PLATFORM_ACCESS_KEY, PLATFORM_SECRET_KEY) when the workflow takes them as parameters, and not already
    as Secret environment variables (which would put them back on the command line)."""
    arguments: dict[str, str] = {}
    for number, item in enumerate(assignments, 1):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:  # the item is not echoed: it may be a secret typed without its name
            raise RunError(f"parameter #{number} is not NAME=VALUE")
        if name in arguments:
            raise RunError(f"parameter {escape(name)} is given twice")
        arguments[name] = value
    declared = set(parameter_names(workflow))
    from_secrets = secret_variables(workflow)
    for name, variable in ENV_PARAMETERS.items():
        if name in arguments or name not in declared:
            continue
        if variable in from_secrets:
            arguments[name] = ""  # empty: the step reads the variable its container gets from the Secret
        elif environ.get(variable):
            arguments[name] = environ[variable]
    return arguments


def plan_run(
    workflow: Mapping[str, Any],
    arguments: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
    passed: Collection[str] = SECRET_VARIABLES,
) -> RunPlan:
    """The workflow's templates and its parameters' values (given, else their defaults).

    `environ` is the host's environment, the source of the variables taken from Kubernetes Secrets; only
    those named in `passed` may be taken."""
    spec = _spec(workflow)
    templates = {str(t.get("name")): t for t in _list(spec, "templates", "spec")}
    entrypoint = str(spec.get("entrypoint"))
    if not isinstance(templates.get(entrypoint, {}).get("dag"), Mapping):
        raise RunError(
            f"the workflow's entrypoint {escape(repr(entrypoint))} is not a DAG template; "
            "only kfp v1 pipelines compiled to an Argo DAG can be run"
        )
    on_exit = spec.get("onExit")
    if on_exit is not None and on_exit not in templates:
        raise RunError(f"spec.onExit: {escape(repr(on_exit))} is not a template of the workflow")
    values = _workflow_values(spec, arguments)
    environ = {} if environ is None else environ
    hidden = {v for k, v in values.items() if k in SECRET_PARAMETERS and v}
    hidden |= {environ[n] for n in secret_variables(workflow) if n in passed and environ.get(n)}
    uid = uuid.uuid4()
    metadata = workflow.get("metadata")
    names = metadata if isinstance(metadata, Mapping) else {}
    prefix = str(names.get("generateName") or names.get("name") or "run-")
    return RunPlan(
        templates,
        str(entrypoint),
        values,
        tuple(sorted(hidden)),
        environ,
        frozenset(passed),
        None if on_exit is None else str(on_exit),
        f"{prefix}{uid.hex[:5]}",
        str(uid),
    )


def _workflow_values(spec: Mapping[str, Any], arguments: Mapping[str, str]) -> dict[str, str]:
    declared = _workflow_parameters(spec)
    names = [name for name, _ in declared]
    unknown = sorted(set(arguments) - set(names))
    if unknown:
        raise RunError(f"unknown parameter(s) {escape(', '.join(unknown))}; the pipeline takes: {', '.join(names)}")
    values = {name: str(arguments[name]) if name in arguments else default for name, default in declared}
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise RunError(
            f"missing required parameter(s): {', '.join(missing)}; the pipeline declares no default, "
            "give each a value (NAME=VALUE)"
        )
    return {k: v for k, v in values.items() if v is not None}


def workflow_scope(plan: RunPlan, status: str = "Running") -> dict[str, str]:
    """The `workflow.*` variables every template may use."""
    values = {f"workflow.parameters.{k}": v for k, v in plan.values.items()}
    values.update({"workflow.status": status, "workflow.name": plan.name, "workflow.uid": plan.uid})
    return values


def task_needs(task: Mapping[str, Any], where: str) -> set[str]:
    """The sibling tasks `task` waits for: `dependencies`, `depends`, and the tasks its arguments read."""
    needs = set(task.get("dependencies") or [])
    if task.get("depends") is not None:
        needs |= depends_tasks(str(task["depends"]), f"{where}.depends")
    texts = [str(p.get("value", "")) for p in (task.get("arguments") or {}).get("parameters") or []]
    texts += [str(a.get("from", "")) for a in (task.get("arguments") or {}).get("artifacts") or []]
    texts += [str(task.get(k, "")) for k in ("when", "withParam")]
    for text in texts:
        for key in _PLACEHOLDER.findall(text):
            match = _TASK_OUTPUT.match(key)
            if match:
                needs.add(match[1])
    return needs


def substitute(text: str, values: Mapping[str, str], where: str, strict: bool = True) -> str:
    """Argo's `{{...}}` replaced from `values`; an Argo variable without a value is refused (or, not `strict`,
    left as written); `{{...}}` that Argo would not read as a variable is left alone."""

    def replace(match: re.Match[str]) -> str:
        key = match[1]
        if key in values:
            return values[key]
        if key.startswith(_ARGO_VARIABLES) and strict:
            raise RunError(
                f"{where}: cannot resolve {{{{{escape(key)}}}}}: it has no value here (local runs "
                "resolve inputs, outputs, workflow.parameters, workflow.status, workflow.name, "
                "workflow.uid, pod.name, tasks.T.outputs and item)"
            )
        return match[0]

    return _PLACEHOLDER.sub(replace, text)


def loop_items(task: Mapping[str, Any], values: Mapping[str, str], where: str) -> list[Any] | None:
    """The items of a withItems/withParam task (None for a task that is not a loop), at most MAX_ITEMS."""
    if "withItems" in task:
        items = task["withItems"]
    elif "withParam" in task:
        text = substitute(str(task["withParam"]), values, f"{where}.withParam")
        try:
            items = json.loads(text)
        except ValueError:
            raise RunError(f"{where}.withParam: {text[:80]!r} is not a JSON list") from None
    else:
        return None
    if not isinstance(items, list):
        raise RunError(f"{where}: the loop's items are a {type(items).__name__}, not a list")
    if len(items) > MAX_ITEMS:
        raise RunError(f"{where}: {len(items)} loop items, over the limit of {MAX_ITEMS}")
    for item in items:
        fields = item.values() if isinstance(item, Mapping) else [item]
        if not all(isinstance(v, (str, int, float, bool)) for v in fields):
            raise RunError(f"{where}: loop item {json.dumps(item)[:80]} is not a value or a mapping of values")
    return items


def item_values(item: Any) -> dict[str, str]:
    """`{{item}}` and `{{item.field}}` as Argo writes them: strings as they are, the rest as JSON."""

    def text(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    values = {"item": text(item)}
    if isinstance(item, Mapping):
        values.update({f"item.{k}": text(v) for k, v in item.items()})
    return values


def task_arguments(
    task: Mapping[str, Any], scope: Scope, where: str, strict: bool = True
) -> tuple[dict[str, str], dict[str, str]]:
    """A task's parameters (resolved) and artifacts (variable -> host path) from `scope`."""
    arguments = task.get("arguments") or {}
    parameters = {}
    for parameter in arguments.get("parameters") or []:
        if "value" not in parameter:
            raise RunError(f"{where}: parameter {parameter['name']} has no value")
        parameters[parameter["name"]] = substitute(str(parameter["value"]), scope.values, where, strict)
    artifacts = {}
    for artifact in arguments.get("artifacts") or []:
        match = _ARTIFACT_FROM.match(str(artifact.get("from", "")))
        if not match:
            raise RunError(
                f"{where}: artifact {artifact['name']} does not come from another task's output "
                "({{tasks.T.outputs.artifacts.A}}) or the DAG's input ({{inputs.artifacts.A}})"
            )
        if match[1] in scope.artifacts:
            artifacts[artifact["name"]] = scope.artifacts[match[1]]
        elif strict:
            raise RunError(f"{where}: artifact {artifact['name']} comes from {match[1]}, which produced nothing")
        else:
            artifacts[artifact["name"]] = match[1]
    return parameters, artifacts


def template_inputs(template: Mapping[str, Any], given: Mapping[str, str], where: str) -> dict[str, str]:
    """A template's input parameters: from `given`, else their default; none may stay without a value."""
    values = {}
    for parameter in (template.get("inputs") or {}).get("parameters") or []:
        name = parameter["name"]
        value = given.get(name, parameter.get("value"))
        if value is None:
            raise RunError(f"{where}: input parameter {name} gets no value")
        values[name] = str(value)
    return values


def resolve_step(
    plan: RunPlan,
    template: Mapping[str, Any],
    node: str,
    parameters: Mapping[str, str],
    artifacts: Mapping[str, str],
    status: str = "Running",
) -> StepRun:
    """The container template `template` run as `node` with these inputs: every placeholder of the template
    resolved (a value passed in is not read again, so run-time values still shown as `{{...}}` stay text)."""
    where = f"task {node}"
    inputs = template_inputs(template, parameters, where)
    context = workflow_scope(plan, status)
    context.update({f"inputs.parameters.{k}": v for k, v in inputs.items()})
    context["pod.name"] = node
    reads = []
    for artifact in (template.get("inputs") or {}).get("artifacts") or []:
        if artifact["name"] not in artifacts:
            raise RunError(f"{where}: input artifact {artifact['name']} is not given by the task")
        reads.append(InputArtifact(artifact["name"], artifact["path"], artifacts[artifact["name"]]))
        context[f"inputs.artifacts.{artifact['name']}.path"] = artifact["path"]
    writes = _output_files(template, where)
    for written in writes:
        context[f"outputs.{'parameters' if written.parameter else 'artifacts'}.{written.name}.path"] = written.path
    _check_paths(reads, writes, where)
    container = template["container"]
    env = _environment(
        container.get("env") or [], context, plan.environ, plan.passed, f"{where} (template {template['name']})"
    )
    image = str(container.get("image") or "")
    if not image:
        raise RunError(f"{where}: template {template['name']} has no image")
    return StepRun(
        task=node,
        template=str(template["name"]),
        image=image,
        command=tuple(substitute(str(part), context, where) for part in container.get("command") or []),
        args=tuple(substitute(str(part), context, where) for part in container.get("args") or []),
        parameters=tuple(sorted(inputs.items())),
        inputs=tuple(reads),
        outputs=tuple(writes),
        secrets=plan.secrets,
        env=env,
        retries=_retries(template, where),
        deadline=_deadline(template, where),
    )


def _output_files(template: Mapping[str, Any], where: str) -> list[OutputFile]:
    outputs = template.get("outputs") or {}
    files = [OutputFile(a["name"], a["path"]) for a in outputs.get("artifacts") or []]
    for parameter in outputs.get("parameters") or []:
        path = (parameter.get("valueFrom") or {}).get("path")
        if not isinstance(path, str):
            raise RunError(f"{where}: output parameter {parameter['name']} is not read from a file (valueFrom.path)")
        files.append(OutputFile(parameter["name"], path, parameter=True))
    for written in files:
        if posixpath.dirname(written.path) == "/":
            raise RunError(
                f"{where}: output {written.name}: {written.path} lies in /; the folder around an "
                "output is mounted, so it needs a folder of its own (kfp writes /tmp/outputs/NAME/data)"
            )
    return files


def _check_paths(reads: Sequence[InputArtifact], writes: Sequence[OutputFile], where: str) -> None:
    """No two inputs at one path, and no input inside the folder an output's folder is mounted at."""
    seen: set[str] = set()
    folders = {posixpath.dirname(w.path) for w in writes}
    for read in reads:
        if read.path in seen or any(read.path == f or read.path.startswith(f + "/") for f in folders):
            raise RunError(f"{where}: input artifact {read.name}: path {read.path} is mounted twice")
        seen.add(read.path)


def _retries(template: Mapping[str, Any], where: str) -> int:
    strategy = template.get("retryStrategy") or {}
    limit = strategy.get("limit", 0)
    if isinstance(limit, str) and limit.isdigit():
        limit = int(limit)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= 10:
        raise RunError(f"{where}: retryStrategy.limit {limit!r} is not a whole number from 0 to 10")
    return limit


def _deadline(template: Mapping[str, Any], where: str) -> float | None:
    seconds = template.get("activeDeadlineSeconds")
    if seconds is None:
        return None
    if isinstance(seconds, str) and seconds.isdigit():
        seconds = int(seconds)
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
        raise RunError(f"{where}: activeDeadlineSeconds {seconds!r} is not a positive whole number")
    return float(seconds)


def preview(plan: RunPlan) -> list[StepRun]:
    """Every container task of the plan, resolved with what is known before the run (run-time values stay
    `{{...}}`), in the order a sequential run would start them; loops and conditions are shown once."""
    steps: list[StepRun] = []
    entry = plan.templates[plan.entrypoint]
    _preview_dag(
        plan, plan.entrypoint, "", template_inputs(entry, plan.values, f"template {plan.entrypoint}"), steps, 0
    )
    if plan.on_exit is not None:
        template = plan.templates[plan.on_exit]
        if "container" in template:
            steps.append(resolve_step(plan, template, plan.on_exit, {}, {}, "Succeeded"))
    return steps


def _preview_dag(
    plan: RunPlan, name: str, prefix: str, given: Mapping[str, str], steps: list[StepRun], depth: int
) -> None:
    if depth > 20:
        raise RunError(f"template {name}: DAGs nest more than 20 deep")
    template = plan.templates[name]
    inputs = {f"inputs.parameters.{k}": v for k, v in given.items()}
    scope = Scope({**workflow_scope(plan), **inputs}, {})
    for task in dag_order(template["dag"].get("tasks") or [], f"template {name}"):
        node = prefix + task["name"]
        where = f"task {node}"
        child = plan.templates.get(str(task.get("template")))
        if child is None:
            raise RunError(f"{where}: template {escape(repr(task.get('template')))} is not in the workflow")
        if "when" in task:
            check_when(str(task["when"]), f"{where}: when")
        parameters, artifacts = task_arguments(task, scope, where, strict=False)
        if "container" in child:
            steps.append(resolve_step(plan, child, node, parameters, artifacts))
        else:
            _preview_dag(
                plan, task["template"], node + "/", template_inputs(child, parameters, where), steps, depth + 1
            )


def dag_order(tasks: Sequence[Mapping[str, Any]], where: str) -> list[Mapping[str, Any]]:
    """Tasks with the tasks they need first; otherwise in the listed order. RunError on a cycle or unknown name."""
    names = {task["name"] for task in tasks}
    needs = {}
    for task in tasks:
        wanted = task_needs(task, f"{where}: task {task['name']}")
        unknown = sorted(wanted - names)
        if unknown:
            raise RunError(f"task {task['name']} depends on unknown task(s) {', '.join(unknown)}")
        needs[task["name"]] = wanted
    ordered: list[Mapping[str, Any]] = []
    done: set[str] = set()
    while len(ordered) < len(tasks):
        ready = [t for t in tasks if t["name"] not in done and needs[t["name"]] <= done]
        if not ready:
            raise RunError("the DAG's dependencies form a cycle among: " + ", ".join(sorted(names - done)))
        ordered.append(ready[0])
        done.add(ready[0]["name"])
    return ordered


def describe(steps: Sequence[StepRun]) -> list[str]:
    """The plan as lines of text, secrets masked."""
    lines = []
    for number, step in enumerate(steps, 1):
        lines.append(f"{number}. {step.task}: {escape(step.image)}")
        lines.append(f"   parameters: {step.shown_parameters() or '(none)'}")
        if step.env:
            lines.append(f"   env: {step.shown_env()}")
        for read in step.inputs:
            lines.append(f"   reads  {read.path} <- {escape(read.source)}")
        artifacts = {w.path for w in step.outputs if not w.parameter}
        for written in step.outputs:
            if written.parameter and written.path in artifacts:
                continue  # kfp declares each output twice, as an artifact and as a parameter, at one path
            lines.append(f"   writes {written.path} -> {written.name}{' (parameter)' if written.parameter else ''}")
    return lines


def _spec(workflow: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = workflow.get("spec") if isinstance(workflow, Mapping) else None
    if not isinstance(spec, Mapping):
        raise RunError("not an Argo workflow: no spec; compile the pipeline with `buildtool compile`")
    return spec


def _list(holder: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    items = holder.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, Mapping) and "name" in i for i in items):
        raise RunError(f"{where}: {key} is not a list of named entries")
    return items


def _workflow_parameters(spec: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    parameters = _list(spec.get("arguments") or {}, "parameters", "spec.arguments")
    return [(str(p["name"]), None if p.get("value") is None else str(p["value"])) for p in parameters]


def _environment(
    entries: Sequence[Mapping[str, Any]],
    context: Mapping[str, str],
    environ: Mapping[str, str],
    passed: Collection[str],
    where: str,
) -> tuple[EnvVar, ...]:
    """The container's environment: plain values resolved, a Secret's key taken from the host's variable."""
    env = []
    for entry in entries:
        name = entry["name"]
        if "value" in entry:
            env.append(EnvVar(name, substitute(str(entry["value"]), context, where)))
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        if name not in passed:
            raise RunError(
                f"{where}: container.env {name} asks for the host's {name} (for key {escape(ref['key'])} "
                f"of the Kubernetes secret {escape(ref['name'])}); run passes only "
                f"{', '.join(sorted(passed))} unless told: add --secret-env {name} if you mean it"
            )
        value = environ.get(name)
        if not value:
            raise RunError(
                f"{where}: container.env {name} comes from key {escape(ref['key'])} of the Kubernetes "
                f"secret {escape(ref['name'])}; set {name} in the environment of `buildtool run` "
                "(it reaches the container's environment, never its command line)"
            )
        env.append(EnvVar(name, value, f"{ref['name']}/{ref['key']}"))
    return tuple(env)
