"""A container task resolved into a `StepRun`: its inputs, its output files, its environment (a Secret's key
taken from the host), its retries and deadline, every placeholder of its command resolved. No I/O.

An environment variable the workflow takes from a Kubernetes Secret (`valueFrom.secretKeyRef`, as kfp's
`use_k8s_secret` writes) comes from the host's variable of the same name, into the container's
environment, never its command line.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ..errors import RunError
from .run_plan import EnvVar, InputArtifact, OutputFile, RunPlan, StepRun
from .run_resolve import substitute, template_inputs, workflow_scope
from .run_text import escape

__all__ = ["resolve_step"]


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
