"""How a local run ended: a `NodeResult` per task (container step, DAG, or loop), the `RunOutcome`, and the
summary printed after the run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EngineError, RunError
from .run_plan import StepRun
from .run_text import escape

if TYPE_CHECKING:
    from ..engine import ContainerResult

__all__ = ["TAIL_LINES", "NodeResult", "RunOutcome", "naming", "step_failure", "summary"]

TAIL_LINES = 25


@dataclass
class NodeResult:
    """A task (container step, DAG, or loop) as it ended: succeeded, failed, skipped, or omitted (not started)."""

    node: str
    state: str
    seconds: float = 0.0
    #: Output name -> the file or folder the step wrote.
    outputs: dict[str, Path] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    #: Why it failed or was skipped.
    reason: str = ""
    #: A step's output (its last try's), secrets masked.
    output: str = ""


@dataclass(frozen=True)
class RunOutcome:
    nodes: list[NodeResult]
    #: The first failure's message; None when the run succeeded.
    failure: str | None
    workdir: Path


def summary(outcome: RunOutcome) -> list[str]:
    """One line per node: its path, state, time and where its outputs are."""
    lines = []
    width = max([len(n.node) for n in outcome.nodes] + [4])
    for result in sorted(outcome.nodes, key=lambda n: n.node):
        where = ", ".join(f"{name}: {escape(path)}" for name, path in sorted(result.outputs.items()))
        note = where or (result.reason if result.state in ("skipped", "omitted") else "")
        lines.append(f"{result.node:<{width}}  {result.state:<9} {result.seconds:6.1f}s  {note}".rstrip())
    return lines


def naming(node: str, error: Exception) -> str:
    """The error's message, naming the task unless it does already."""
    message = (
        str(error) if isinstance(error, (RunError, EngineError)) else f"unexpected {error.__class__.__name__}: {error}"
    )
    return message if f"task {node}" in message or f"step {node}" in message else f"task {node}: {message}"


def step_failure(step: StepRun, result: ContainerResult, output: str, seconds: float) -> NodeResult:
    """A step whose last try failed or ran past its deadline, with the last lines of its (masked) output."""
    tail = "\n".join(escape(line) for line in output.rstrip().splitlines()[-TAIL_LINES:])
    why = (
        f"ran past its activeDeadlineSeconds ({step.deadline:.0f}s) and was killed"
        if result.timed_out
        else f"failed with exit code {result.exit_code} after {seconds:.0f}s"
    )
    tries = f" ({step.retries + 1} tries)" if step.retries else ""
    return NodeResult(
        step.task,
        "failed",
        seconds,
        output=output,
        reason=f"step {step.task} {why}{tries} (image {step.image}); the last lines of its output:\n{tail}",
    )
