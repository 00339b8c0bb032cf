"""`dsl.ParallelFor` over a static list of records (Argo's withItems, `{{item.field}}`)."""

from typing import Any

from kfp import dsl
from kfp.components import create_component_from_func

ITEMS = [{"who": "ada", "times": 1}, {"who": "bob", "times": 2}]
ARGUMENTS: dict[str, Any] = {}
OUTPUTS: list[tuple[str, str]] = []
LOOP_OUTPUT = ("greet", "Output")


def greet(who: str, times: int) -> str:
    return " ".join([f"hi {who}"] * times)


def make_pipeline(base_image: str) -> Any:
    greet_op = create_component_from_func(greet, base_image=base_image)

    @dsl.pipeline(name="loop-items")
    def pipeline() -> None:
        with dsl.ParallelFor(ITEMS) as record:
            greet_op(record.who, record.times)

    return pipeline
