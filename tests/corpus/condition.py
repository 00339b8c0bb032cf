"""`dsl.Condition` on a step's return value: one branch runs, the other is skipped."""

from typing import Any

from kfp import dsl
from kfp.components import create_component_from_func

ARGUMENTS = {"number": 12}
OUTPUTS = [("flip", "Output"), ("big", "Output")]


def flip(number: int) -> int:
    return number * 2


def describe(label: str, value: int) -> str:
    return f"{label}: {value}"


def make_pipeline(base_image: str) -> Any:
    flip_op = create_component_from_func(flip, base_image=base_image)
    describe_op = create_component_from_func(describe, base_image=base_image)

    @dsl.pipeline(name="condition")
    def pipeline(number: int = 3) -> None:
        doubled = flip_op(number)
        with dsl.Condition(doubled.output > 10):
            describe_op("big", doubled.output).set_display_name("big")
        with dsl.Condition(doubled.output <= 10):
            describe_op("small", doubled.output)

    return pipeline
