"""`dsl.ExitHandler`: the exit step runs after the body, whether the body succeeded or failed."""

from typing import Any

from kfp import dsl
from kfp.components import create_component_from_func

ARGUMENTS = {"fail": "no"}
#: LocalClient does not run an ExitHandler's exit step: only the body's output compares.
LOCAL_CLIENT = [("exit-handler-1/work", "Output", "work", None)]


def work(fail: str) -> str:
    if fail == "yes":
        raise SystemExit("asked to fail")
    return "worked"


def cleanup(status: str) -> str:
    print("exit handler saw", status)
    return status


def make_pipeline(base_image: str) -> Any:
    work_op = create_component_from_func(work, base_image=base_image)
    cleanup_op = create_component_from_func(cleanup, base_image=base_image)

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
