"""A compiled workflow read into the `RunPlan` of a local run: its templates, its entrypoint and exit handler,
and its parameters' values (given as NAME=VALUE, from the environment for the platform's keys, or
defaulted). `plan_checked` first refuses what local runs do not implement or trust (`run_checks`), then
resolves every container task once (`run_preview`) so that nothing wrong is found after the first start.

A DAG task becomes a `StepRun` only when it is about to run, because its arguments may hold another task's
output parameters, a loop's `{{item}}` or a condition's outcome: `run_step.resolve_step` does that from
the values known at that moment, and `run_preview.preview` with what is known before the run.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from ..errors import RunError
from ..platform_params import ENV_PARAMETERS, SECRET_PARAMETERS
from .run_checks import require_pinned, require_runnable
from .run_plan import SECRET_VARIABLES, RunPlan
from .run_preview import preview
from .run_text import escape

__all__ = ["parameter_names", "plan_checked", "plan_run", "run_arguments", "secret_variables"]


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
