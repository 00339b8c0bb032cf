"""The plan of a local run: the workflow's templates and parameters (`RunPlan`), a container task resolved
(`StepRun`), and what a DAG's tasks may refer to (`Scope`). Planning is pure: `run_workflow` makes a
`RunPlan`, `run_step` a `StepRun`, `run_exec` executes them.

The values of parameters named like credentials (`access_key`, `secret_key`) and of variables taken from
Secrets appear as `***` in everything a plan shows; every other value is shown with control characters
escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..platform_params import ENV_PARAMETERS, SECRET_PARAMETERS
from .run_text import MASK, escape, masked

__all__ = [
    "RUN_LABEL",
    "SECRET_VARIABLES",
    "EnvVar",
    "InputArtifact",
    "OutputFile",
    "RunPlan",
    "Scope",
    "StepRun",
]

#: Host variables a container may take for a Secret's key without being named on the command line: a workflow
#: asking for any other (say AWS_SECRET_ACCESS_KEY) could otherwise copy it into a container of its choice.
SECRET_VARIABLES = frozenset(ENV_PARAMETERS.values())
#: Label on every container a run starts (its value: the run's work folder), for `docker ps --filter label=...`.
RUN_LABEL = "buildtool.run"


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
        """`text` with every secret value replaced by ***."""
        return masked(text, self.secrets)

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
        return masked(text, self.secrets)


@dataclass(frozen=True)
class Scope:
    """What a DAG's tasks may refer to: its inputs, finished sibling tasks' outputs, the loop item."""

    values: Mapping[str, str]
    #: Artifact variable (`inputs.artifacts.A`, `tasks.T.outputs.artifacts.A`) -> where it is (a host path).
    artifacts: Mapping[str, str]
