"""`dsl.ExitHandler`: the exit step runs after the body, whether the body succeeded or failed."""

from collections.abc import Mapping
from typing import Any

from kfp import dsl

from . import component
from .steps import cleanup, work

ARGUMENTS = {"fail": "no"}
#: LocalClient does not run an ExitHandler's exit step: only the body's output compares.
LOCAL_CLIENT = [("exit-handler-1/work", "Output", "work", None)]


def make_pipeline(images: str | Mapping[str, str]) -> Any:
    work_op = component(work, images)
    cleanup_op = component(cleanup, images)

    @dsl.pipeline(name="exit-handler")
    def pipeline(fail: str = "no") -> None:
        with dsl.ExitHandler(cleanup_op("{{workflow.status}}")):
            work_op(fail)

    return pipeline


def expected(arguments: dict[str, Any]) -> dict[tuple[str, str], str]:
    """The body's output when it succeeds, and the exit handler's in any case: the workflow's status."""
    failing = arguments["fail"] == "yes"
    values = {("cleanup", "Output"): cleanup("Failed" if failing else "Succeeded")}
    if not failing:
        values[("exit-handler-1/work", "Output")] = work(arguments["fail"])
    return values
