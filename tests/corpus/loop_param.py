"""`dsl.ParallelFor` over a JSON list that another step returns (Argo's withParam)."""

from collections.abc import Mapping
from typing import Any

from kfp import dsl

from . import component
from .steps import make_list, square

ARGUMENTS = {"count": 3}
#: LocalClient stops a ParallelFor after its first item (its `_run_group_dag` returns None, read as a failure).
LOCAL_CLIENT = [("make-list", "Output", "make-list", None), ("for-loop-1(0)/square", "Output", "square", 0)]


def make_pipeline(images: str | Mapping[str, str]) -> Any:
    list_op = component(make_list, images)
    square_op = component(square, images)

    @dsl.pipeline(name="loop-param")
    def pipeline(count: int = 2) -> None:
        numbers = list_op(count)
        with dsl.ParallelFor(numbers.output) as item:
            square_op(item)

    return pipeline


def expected(arguments: dict[str, Any]) -> dict[tuple[str, str], str]:
    import json

    items = json.loads(make_list(arguments["count"]))
    values = {("make-list", "Output"): make_list(arguments["count"])}
    values.update({(f"for-loop-1({index})/square", "Output"): str(square(item)) for index, item in enumerate(items)})
    return values
