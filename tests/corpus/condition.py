"""`dsl.Condition` on a step's return value: one branch runs, the other is skipped."""

from collections.abc import Mapping
from typing import Any

from kfp import dsl

from . import component
from .steps import describe, flip

ARGUMENTS = {"number": 12}
#: LocalClient does not evaluate a condition (it runs both branches) and passes `flip`'s value to them as the
#: literal `{{pipelineparam:...}}`, so they fail there: only flip's output compares.
LOCAL_CLIENT = [("flip", "Output", "flip", None)]


def make_pipeline(images: str | Mapping[str, str]) -> Any:
    flip_op = component(flip, images)
    describe_op = component(describe, images)

    @dsl.pipeline(name="condition")
    def pipeline(number: int = 3) -> None:
        doubled = flip_op(number)
        with dsl.Condition(doubled.output > 10):
            describe_op("big", doubled.output).set_display_name("big")
        with dsl.Condition(doubled.output <= 10):
            describe_op("small", doubled.output)

    return pipeline


def expected(arguments: dict[str, Any]) -> dict[tuple[str, str], str]:
    doubled = flip(arguments["number"])
    branch = ("condition-1/describe", "Output") if doubled > 10 else ("condition-2/describe-2", "Output")
    return {("flip", "Output"): str(doubled), branch: describe("big" if doubled > 10 else "small", doubled)}


def skipped(arguments: dict[str, Any]) -> str:
    """The condition task that must be skipped."""
    return "condition-2" if flip(arguments["number"]) > 10 else "condition-1"
