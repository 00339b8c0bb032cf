"""A NamedTuple return whose fields feed the next step, and a component used twice (`add`, `add-2`)."""

from collections.abc import Mapping
from typing import Any

from kfp import dsl

from . import component
from .steps import add, divide

ARGUMENTS = {"a": 7, "b": 5}
#: LocalClient passes a value returned by one step to the next as the literal `{{pipelineparam:...}}`: the
#: `add` steps fail there, so only divmod's outputs compare.
LOCAL_CLIENT = [("divmod", "quotient", "divmod", None), ("divmod", "remainder", "divmod", None)]


def make_pipeline(images: str | Mapping[str, str]) -> Any:
    divmod_op = component(divide, images)
    divmod_op.component_spec.name = "divmod"
    add_op = component(add, images)

    @dsl.pipeline(name="named-tuple")
    def pipeline(a: int = 1, b: int = 1) -> None:
        result = divmod_op(a, b)
        total = add_op(result.outputs["quotient"], result.outputs["remainder"])
        add_op(total.output, 100)

    return pipeline


def expected(arguments: dict[str, Any]) -> dict[tuple[str, str], str]:
    quotient, remainder = divide(arguments["a"], arguments["b"])
    total = add(quotient, remainder)
    return {
        ("divmod", "quotient"): str(quotient),
        ("divmod", "remainder"): str(remainder),
        ("add", "Output"): str(total),
        ("add-2", "Output"): str(add(total, 100)),
    }
