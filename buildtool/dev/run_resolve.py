"""Argo's variables resolved for a local run, one thing at a time: `{{...}}` placeholders, the tasks a task
waits for and the order they start in, a loop's items, a task's arguments and a template's inputs. No I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import RunError
from .run_expr import depends_tasks
from .run_plan import RunPlan, Scope
from .run_text import escape

__all__ = [
    "MAX_ITEMS",
    "dag_order",
    "dag_outputs",
    "item_values",
    "loop_items",
    "substitute",
    "task_arguments",
    "task_needs",
    "template_inputs",
    "workflow_scope",
]

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


def dag_outputs(template: Mapping[str, Any], scope: Scope, where: str) -> tuple[dict[str, str], dict[str, str]]:
    """A DAG's output parameters (resolved) and artifacts (host paths), from its tasks' outputs in `scope`."""
    outputs = template.get("outputs") or {}
    parameters = {
        p["name"]: substitute(
            str((p.get("valueFrom") or {}).get("parameter", "")),
            scope.values,
            f"{where}: outputs.parameters.{p['name']}",
        )
        for p in outputs.get("parameters") or []
    }
    artifacts = {}
    for artifact in outputs.get("artifacts") or []:
        key = str(artifact.get("from", "")).strip("{} ")
        if key not in scope.artifacts:
            raise RunError(
                f"{where}: outputs.artifacts.{artifact['name']} comes from {escape(key)}, which produced nothing"
            )
        artifacts[artifact["name"]] = scope.artifacts[key]
    return parameters, artifacts
