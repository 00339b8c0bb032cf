"""Run a compiled kfp v1 workflow's steps on the local Docker engine, as the cluster would run them.

`plan_run` is pure: it walks the entrypoint's DAG in dependency order and resolves
`{{inputs.parameters.X}}` as Argo does, from the workflow's arguments (their
defaults overridden by the caller's) through each DAG task's arguments into the
step template's container command and args. `execute_run` then runs each step in
a fresh container of its (digest-pinned) image: one host folder per output
artifact, mounted at the output path, and mounted read-only at the input path of
the step that consumes it; host networking, so that a step reaches a platform
server on 127.0.0.1. It stops at the first step that fails.

Before any of that, `plan_checked` refuses what local runs do not implement or
trust (see `run_checks`). An environment variable the workflow takes from a
Kubernetes Secret (`valueFrom.secretKeyRef`, as kfp's `use_k8s_secret` writes)
comes from the host's variable of the same name, into the container's
environment, never its command line.

The values of parameters named like credentials (`access_key`, `secret_key`)
and of variables taken from Secrets appear as `***` in everything this module
reports; every other value is shown with control characters escaped.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EngineError, RunError
from ..progress import Events
from .run_checks import escape, require_pinned, require_runnable

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = ["ENV_PARAMETERS", "RUN_LABEL", "SECRET_PARAMETERS", "SECRET_VARIABLES", "EnvVar", "InputArtifact",
           "OutputArtifact", "StepResult", "StepRun", "check_workdir", "describe", "execute_run", "parameter_names",
           "plan_checked", "plan_run", "run_arguments", "secret_variables"]

#: Parameters whose values are never shown.
SECRET_PARAMETERS = frozenset({"access_key", "secret_key"})
#: Parameters that may come from the environment instead of the command line.
ENV_PARAMETERS = {"access_key": "PLATFORM_ACCESS_KEY", "secret_key": "PLATFORM_SECRET_KEY"}
#: Host variables a container may take for a Secret's key without being named on the command line: a workflow
#: asking for any other (say AWS_SECRET_ACCESS_KEY) could otherwise copy it into a container of its choice.
SECRET_VARIABLES = frozenset(ENV_PARAMETERS.values())
MASK = "***"
TAIL_LINES = 25
#: Label on every container a run starts (its value: the run's work folder), for `docker ps --filter label=...`.
RUN_LABEL = "buildtool.run"

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_ARTIFACT_FROM = re.compile(r"^\{\{\s*tasks\.([^.{}\s]+)\.outputs\.artifacts\.([^.{}\s]+)\s*\}\}$")
_UNSUPPORTED_TASK_KEYS = ("when", "depends", "withItems", "withParam", "withSequence", "continueOn")
# Argo variables local runs do not resolve: refused rather than passed on as literal text.
_ARGO_VARIABLES = ("inputs.", "outputs.", "workflow.", "tasks.", "steps.", "pod.", "node.", "item.")


@dataclass(frozen=True)
class InputArtifact:
    """An artifact a step reads at `path`, produced as `from_artifact` by the task `from_task`."""

    name: str
    path: str
    from_task: str
    from_artifact: str


@dataclass(frozen=True)
class OutputArtifact:
    """An artifact a step writes at `path`."""

    name: str
    path: str


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
    """One DAG task, resolved: what to run, in which image, reading and writing which artifacts."""

    task: str
    template: str
    image: str
    command: tuple[str, ...] = field(repr=False)
    args: tuple[str, ...] = field(repr=False)
    #: The template's input parameters with their resolved values (secrets included: see `shown_parameters`).
    parameters: tuple[tuple[str, str], ...] = field(repr=False)
    inputs: tuple[InputArtifact, ...] = ()
    outputs: tuple[OutputArtifact, ...] = ()
    #: Values to mask wherever this step's arguments or output are shown.
    secrets: tuple[str, ...] = field(default=(), repr=False)
    #: The container's environment (secrets included: see `EnvVar.shown`).
    env: tuple[EnvVar, ...] = field(default=(), repr=False)

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
        return ", ".join(f"{name}={MASK if name in SECRET_PARAMETERS else escape(self.mask(value))}"
                         for name, value in self.parameters)

    def shown_env(self) -> str:
        return ", ".join(variable.shown(self.mask) for variable in self.env)


@dataclass(frozen=True)
class StepResult:
    """A step that ran to exit code 0: how long it took, where its outputs are, its output (masked)."""

    task: str
    seconds: float
    outputs: Mapping[str, Path]
    output: str


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


def plan_checked(workflow: Mapping[str, Any], assignments: Iterable[str], environ: Mapping[str, str],
                 image_map_steps: Mapping[str, str] | None,
                 passed: Collection[str] = SECRET_VARIABLES) -> list[StepRun]:
    """`plan_run` of a workflow that passed `run_checks`: only implemented fields, safe names, images pinned
    (and equal to `image_map_steps`, the image map's steps, when given); see `plan_run` for `passed`."""
    require_runnable(workflow)
    require_pinned(workflow, image_map_steps)
    try:
        return plan_run(workflow, run_arguments(workflow, assignments, environ), environ, passed)
    except RunError as exc:  # whatever a message quotes from the workflow stays on its one line
        raise RunError(escape(str(exc))) from None


def run_arguments(workflow: Mapping[str, Any], assignments: Iterable[str],
                  environ: Mapping[str, str]) -> dict[str, str]:
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


def plan_run(workflow: Mapping[str, Any], arguments: Mapping[str, str], environ: Mapping[str, str] | None = None,
             passed: Collection[str] = SECRET_VARIABLES) -> list[StepRun]:
    """The entrypoint DAG's tasks in dependency order, every placeholder of their containers resolved.

    `environ` is the host's environment, the source of the variables taken from Kubernetes Secrets; only
    those named in `passed` may be taken."""
    environ = {} if environ is None else environ
    spec = _spec(workflow)
    templates = {t.get("name"): t for t in _list(spec, "templates", "spec")}
    entrypoint = spec.get("entrypoint")
    dag_template = templates.get(entrypoint)
    if dag_template is None or not isinstance(dag_template.get("dag"), Mapping):
        raise RunError(f"the workflow's entrypoint {escape(repr(entrypoint))} is not a DAG template; "
                       "only kfp v1 pipelines compiled to an Argo DAG can be run")

    declared = _workflow_parameters(spec)
    names = [name for name, _ in declared]
    unknown = sorted(set(arguments) - set(names))
    if unknown:
        raise RunError(f"unknown parameter(s) {escape(', '.join(unknown))}; the pipeline takes: {', '.join(names)}")
    values = {name: str(arguments[name]) if name in arguments else default for name, default in declared}
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise RunError(f"missing required parameter(s): {', '.join(missing)}; the pipeline declares no default, "
                       "give each a value (NAME=VALUE)")
    workflow_values: dict[str, str] = {k: v for k, v in values.items() if v is not None}
    secrets = tuple(sorted({v for k, v in workflow_values.items() if k in SECRET_PARAMETERS and v}))

    dag_inputs = _template_inputs(dag_template, workflow_values, f"template {entrypoint}")
    dag_context = _context(dag_inputs, workflow_values)
    tasks = _list(dag_template["dag"], "tasks", f"template {entrypoint}: dag")
    steps: list[StepRun] = []
    planned: dict[str, StepRun] = {}
    for task in _dependency_order(tasks):
        name = task["name"]
        template = templates.get(task.get("template"))
        if template is None or not isinstance(template.get("container"), Mapping):
            raise RunError(f"task {name}: template {escape(repr(task.get('template')))} is not a container template; "
                           "only DAGs of container steps can be run")
        where = f"task {name}"
        task_arguments = task.get("arguments") or {}
        given = {}
        for parameter in task_arguments.get("parameters") or []:
            if "value" not in parameter:
                raise RunError(f"{where}: parameter {parameter['name']} has no value")
            given[parameter["name"]] = _substitute(str(parameter["value"]), dag_context, where)
        inputs = _template_inputs(template, given, where)
        context = _context(inputs, workflow_values)
        sources = {a.get("name"): a for a in task_arguments.get("artifacts") or []}
        input_artifacts: list[InputArtifact] = []
        for artifact in (template.get("inputs") or {}).get("artifacts") or []:
            source = sources.get(artifact["name"])
            match = _ARTIFACT_FROM.match(str((source or {}).get("from", "")))
            if not match:
                raise RunError(f"{where}: input artifact {artifact['name']} does not come from another task's "
                               "output artifact ({{tasks.T.outputs.artifacts.A}}); nothing else is supported")
            producer = planned.get(match[1])
            if producer is None or match[2] not in {o.name for o in producer.outputs}:
                raise RunError(f"{where}: input artifact {artifact['name']} comes from {match[1]}.{match[2]}, "
                               "which no earlier task produces")
            if artifact["path"] in {a.path for a in input_artifacts}:
                raise RunError(f"{where}: input artifact {artifact['name']}: path {artifact['path']} is mounted twice")
            input_artifacts.append(InputArtifact(artifact["name"], artifact["path"], match[1], match[2]))
            context[f"inputs.artifacts.{artifact['name']}.path"] = artifact["path"]
        output_artifacts = [OutputArtifact(a["name"], a["path"])
                            for a in (template.get("outputs") or {}).get("artifacts") or []]
        mounted = {a.path for a in input_artifacts}
        for artifact in output_artifacts:
            if artifact.path in mounted:
                raise RunError(f"{where}: output artifact {artifact.name}: path {artifact.path} is mounted twice")
            mounted.add(artifact.path)
            context[f"outputs.artifacts.{artifact.name}.path"] = artifact.path
        container = template["container"]
        env = _environment(container.get("env") or [], context, environ, passed,
                           f"{where} (template {template['name']})")
        step = StepRun(
            task=name,
            template=template["name"],
            image=str(container.get("image") or ""),
            command=tuple(_substitute(str(part), context, where) for part in container.get("command") or []),
            args=tuple(_substitute(str(part), context, where) for part in container.get("args") or []),
            parameters=tuple(sorted(inputs.items())),
            inputs=tuple(input_artifacts),
            outputs=tuple(output_artifacts),
            secrets=tuple(sorted({*secrets, *(v.value for v in env if v.secret is not None and v.value)})),
            env=env,
        )
        if not step.image:
            raise RunError(f"{where}: template {step.template} has no image")
        planned[name] = step
        steps.append(step)
    # Every value to hide is hidden in every step's output, whichever step was given it.
    hidden = tuple(sorted({secret for step in steps for secret in step.secrets}))
    return [dataclasses.replace(step, secrets=hidden) for step in steps]


def describe(steps: Sequence[StepRun]) -> list[str]:
    """The plan as lines of text, secrets masked."""
    lines = []
    for number, step in enumerate(steps, 1):
        lines.append(f"{number}. {step.task}: {escape(step.image)}")
        lines.append(f"   parameters: {step.shown_parameters() or '(none)'}")
        if step.env:
            lines.append(f"   env: {step.shown_env()}")
        for read in step.inputs:
            lines.append(f"   reads  {read.path} <- {read.from_task}.{read.from_artifact}")
        for written in step.outputs:
            lines.append(f"   writes {written.path} -> {written.name}")
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


def _template_inputs(template: Mapping[str, Any], given: Mapping[str, str], where: str) -> dict[str, str]:
    """A template's input parameters: from `given`, else their default; none may stay without a value."""
    values = {}
    for parameter in (template.get("inputs") or {}).get("parameters") or []:
        name = parameter["name"]
        value = given.get(name, parameter.get("value"))
        if value is None:
            raise RunError(f"{where}: input parameter {name} gets no value")
        values[name] = str(value)
    return values


def _context(inputs: Mapping[str, str], workflow_values: Mapping[str, str]) -> dict[str, str]:
    context = {f"inputs.parameters.{k}": v for k, v in inputs.items()}
    context.update({f"workflow.parameters.{k}": v for k, v in workflow_values.items()})
    return context


def _environment(entries: Sequence[Mapping[str, Any]], context: Mapping[str, str], environ: Mapping[str, str],
                 passed: Collection[str], where: str) -> tuple[EnvVar, ...]:
    """The container's environment: plain values resolved, a Secret's key taken from the host's variable."""
    env = []
    for entry in entries:
        name = entry["name"]
        if "value" in entry:
            env.append(EnvVar(name, _substitute(str(entry["value"]), context, where)))
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        if name not in passed:
            raise RunError(f"{where}: container.env {name} asks for the host's {name} (for key {escape(ref['key'])} "
                           f"of the Kubernetes secret {escape(ref['name'])}); run passes only "
                           f"{', '.join(sorted(passed))} unless told: add --secret-env {name} if you mean it")
        value = environ.get(name)
        if not value:
            raise RunError(f"{where}: container.env {name} comes from key {escape(ref['key'])} of the Kubernetes "
                           f"secret {escape(ref['name'])}; set {name} in the environment of `buildtool run` "
                           "(it reaches the container's environment, never its command line)")
        env.append(EnvVar(name, value, f"{ref['name']}/{ref['key']}"))
    return tuple(env)


def _substitute(text: str, context: Mapping[str, str], where: str) -> str:
    """Replace Argo's {{inputs.*}}, {{outputs.*}} and {{workflow.parameters.*}}; other Argo variables are
    refused, and {{...}} that Argo would not read as a variable is left alone."""

    def replace(match: re.Match[str]) -> str:
        key = match[1]
        if key in context:
            return context[key]
        if key.startswith(_ARGO_VARIABLES):
            raise RunError(f"{where}: cannot resolve {{{{{escape(key)}}}}}: local runs resolve only inputs, "
                           "outputs.artifacts and workflow.parameters")
        return match[0]

    return _PLACEHOLDER.sub(replace, text)


def _dependency_order(tasks: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Tasks with their dependencies (listed, or implied by artifacts) first; otherwise in the listed order."""
    by_name = {task["name"]: task for task in tasks}
    needs: dict[str, set[str]] = {}
    for task in tasks:
        for key in _UNSUPPORTED_TASK_KEYS:
            if key in task:
                raise RunError(f"task {task['name']}: '{key}' is not supported by local runs")
        wanted = set(task.get("dependencies") or [])
        for artifact in (task.get("arguments") or {}).get("artifacts") or []:
            match = _ARTIFACT_FROM.match(str(artifact.get("from", "")))
            if match:
                wanted.add(match[1])
        unknown = sorted(wanted - set(by_name))
        if unknown:
            raise RunError(f"task {task['name']} depends on unknown task(s) {', '.join(unknown)}")
        needs[task["name"]] = wanted
    ordered: list[Mapping[str, Any]] = []
    done: set[str] = set()
    while len(ordered) < len(tasks):
        ready = [t for t in tasks if t["name"] not in done and needs[t["name"]] <= done]
        if not ready:
            raise RunError("the DAG's dependencies form a cycle among: "
                           + ", ".join(sorted(set(by_name) - done)))
        ordered.append(ready[0])
        done.add(ready[0]["name"])
    return ordered


# -- execution -----------------------------------------------------------------------------------------------------


def _no_events(_: str, __: str) -> None:
    pass


def check_workdir(steps: Sequence[StepRun], workdir: Path) -> Path:
    """The resolved work folder, if every output folder a run creates there can be created safely.

    Each output folder, `workdir`/<task>/<artifact>, must be absent or an empty folder (so that nothing
    left from an earlier run passes for a step's output), and neither it nor its task folder a symlink
    (which would put a mount outside the work folder). The engine's bind syntax rules out ':' and ','.
    """
    root = Path(workdir).resolve()
    if any(c in str(root) for c in ":,") or not str(root).isprintable():
        raise RunError(f"--workdir {escape(root)}: holds ':', ',' or a control character, which the engine's "
                       "mount syntax cannot carry; choose another folder")
    if root.exists() and not root.is_dir():
        raise RunError(f"--workdir {escape(root)}: not a folder")
    for step in steps:
        for artifact in step.outputs:
            for path in (root / step.task, root / step.task / artifact.name):
                if path.is_symlink():
                    raise RunError(f"{escape(path)}: a symlink in the work folder; run in an empty work folder")
                if path.exists() and not path.is_dir():
                    raise RunError(f"{escape(path)}: not a folder; run in an empty work folder")
            folder = root / step.task / artifact.name
            if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
                raise RunError(f"{escape(folder)} is not an empty folder; run in an empty work folder")
    return root


def _make_folder(root: Path, *names: str) -> Path:
    """root/names..., created one level at a time, refusing symlinks; it must resolve inside `root`."""
    path = root
    for name in names:
        path = path / name
        if path.is_symlink():
            raise RunError(f"{escape(path)}: a symlink in the work folder; run in an empty work folder")
        try:
            path.mkdir(exist_ok=True)
        except OSError as exc:
            raise RunError(f"{escape(path)}: cannot create the folder ({exc.strerror}); "
                           "run in an empty work folder") from None
    resolved = path.resolve()
    if not resolved.is_relative_to(root) or resolved == root:
        raise RunError(f"{escape(path)} resolves to {escape(resolved)}, outside the work folder {escape(root)}")
    return resolved


def execute_run(steps: Sequence[StepRun], engine: Engine, workdir: Path, events: Events = _no_events, *,
                network_mode: str = "host") -> list[StepResult]:
    """Run `steps` in order with `engine`, artifacts under `workdir`/<task>/<artifact>; RunError at the first failure.

    The work folder is checked first (`check_workdir`); each step's variables reach its container's
    environment, and each container carries the label RUN_LABEL=<work folder>.
    """
    root = check_workdir(steps, workdir)
    for image in sorted({s.image for s in steps if engine.image_id(s.image) is None}):
        # As a kubelet would: a pinned image the engine lacks is pulled by its digest.
        events("run", f"pull {image}")
        try:
            engine.pull(image, progress=lambda message: events("run", message))
        except EngineError as exc:
            raise RunError(f"image {image} is neither in the local engine nor pullable: {exc}; "
                           "build and push it with `buildtool build --push`") from None
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"--workdir {escape(root)}: cannot create the folder ({exc.strerror})") from None
    folders: dict[tuple[str, str], Path] = {}
    events("run", f"{len(steps)} step(s); artifacts under {escape(root)}")
    results = []
    for step in steps:
        volumes: dict[str, dict[str, str]] = {}
        for read in step.inputs:
            source = folders.get((read.from_task, read.from_artifact))
            if source is None:
                raise RunError(f"step {step.task}: input {read.name} comes from "
                               f"{read.from_task}.{read.from_artifact}, which has not run")
            volumes[str(source)] = {"bind": read.path, "mode": "ro"}
        outputs = {}
        for written in step.outputs:
            folder = _make_folder(root, step.task, written.name)
            volumes[str(folder)] = {"bind": written.path, "mode": "rw"}
            outputs[written.name] = folder
        events(step.task, f"start in {step.image}")
        events(step.task, f"parameters: {step.shown_parameters()}")
        if step.env:
            events(step.task, f"env: {step.shown_env()}")
        started = time.monotonic()
        result = engine.run(step.image, step.argv, network_mode=network_mode, volumes=volumes,
                            environment=step.environment, labels={RUN_LABEL: str(root)})
        seconds = time.monotonic() - started
        output = step.mask(result.output)
        for line in output.splitlines():
            events(step.task, f"| {escape(line)}")
        if result.exit_code != 0:
            tail = "\n".join(escape(line) for line in output.rstrip().splitlines()[-TAIL_LINES:])
            raise RunError(f"step {step.task} failed with exit code {result.exit_code} after {seconds:.0f}s "
                           f"(image {step.image}); the last lines of its output:\n{tail}")
        for written in step.outputs:
            folders[(step.task, written.name)] = outputs[written.name]
        events(step.task, f"done in {seconds:.1f}s" + "".join(f"; {n} in {p}" for n, p in outputs.items()))
        results.append(StepResult(step.task, seconds, outputs, output))
    return results
