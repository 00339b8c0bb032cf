"""`dsl.ParallelFor` over a static list of records and over a JSON list another step returns."""

from typing import Any

from kfp import dsl
from kfp.components import create_component_from_func

ARGUMENTS = {"count": 3}
OUTPUTS = [("make-list", "Output")]


def make_list(count: int) -> str:
    import json

    return json.dumps(list(range(1, count + 1)))


def square(x: int) -> int:
    return x * x


def greet(who: str, times: int) -> str:
    return " ".join([f"hi {who}"] * times)


def make_pipeline(base_image: str) -> Any:
    list_op = create_component_from_func(make_list, base_image=base_image)
    square_op = create_component_from_func(square, base_image=base_image)
    greet_op = create_component_from_func(greet, base_image=base_image)

    @dsl.pipeline(name="loops")
    def pipeline(count: int = 2) -> None:
        numbers = list_op(count)
        with dsl.ParallelFor(numbers.output) as item:
            square_op(item)
        with dsl.ParallelFor([{"who": "ada", "times": 1}, {"who": "bob", "times": 2}]) as record:
            greet_op(record.who, record.times)

    return pipeline


