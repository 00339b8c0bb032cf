"""`dsl.ParallelFor` over a JSON list that another step returns (Argo's withParam)."""

from typing import Any

from kfp import dsl
from kfp.components import create_component_from_func

ARGUMENTS = {"count": 3}
OUTPUTS = [("make-list", "Output")]
#: The task run once per item, and its output.
LOOP_OUTPUT = ("square", "Output")


def make_list(count: int) -> str:
    import json

    return json.dumps(list(range(1, count + 1)))


def square(x: int) -> int:
    return x * x


def make_pipeline(base_image: str) -> Any:
    list_op = create_component_from_func(make_list, base_image=base_image)
    square_op = create_component_from_func(square, base_image=base_image)

    @dsl.pipeline(name="loop-param")
    def pipeline(count: int = 2) -> None:
        numbers = list_op(count)
        with dsl.ParallelFor(numbers.output) as item:
            square_op(item)

    return pipeline
