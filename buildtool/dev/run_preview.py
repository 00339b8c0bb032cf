"""The `--dry-run` plan of a local run: every container task resolved with what is known before the run,
and that plan as lines of text, secrets masked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import RunError
from .run_expr import check_when
from .run_plan import RunPlan, Scope, StepRun
from .run_resolve import dag_order, task_arguments, template_inputs, workflow_scope
from .run_step import resolve_step
from .run_text import escape

__all__ = ["describe", "preview"]


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
