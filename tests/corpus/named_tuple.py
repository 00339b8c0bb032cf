"""A NamedTuple return whose fields feed the next step, and a component used twice (`add`, `add-2`)."""

from typing import Any, NamedTuple

from kfp import dsl
from kfp.components import create_component_from_func

ARGUMENTS = {"a": 7, "b": 5}
OUTPUTS = [("divmod", "quotient"), ("divmod", "remainder"), ("add", "Output"), ("add-2", "Output")]


def divide(a: int, b: int) -> NamedTuple("Outputs", [("quotient", int), ("remainder", int)]):  # type: ignore[misc]
    from collections import namedtuple

    return namedtuple("Outputs", ["quotient", "remainder"])(a // b, a % b)


def add(x: int, y: int) -> int:
    return x + y


def make_pipeline(base_image: str) -> Any:
    divmod_op = create_component_from_func(divide, base_image=base_image)
    divmod_op.component_spec.name = "divmod"
    add_op = create_component_from_func(add, base_image=base_image)

    @dsl.pipeline(name="named-tuple")
    def pipeline(a: int = 1, b: int = 1) -> None:
        result = divmod_op(a, b)
        total = add_op(result.outputs["quotient"], result.outputs["remainder"])
        add_op(total.output, 100)

    return pipeline
