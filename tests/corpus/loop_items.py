"""`dsl.ParallelFor` over a static list of records (Argo's withItems, `{{item.field}}`)."""

from typing import Any

from kfp import dsl
from kfp.components import create_component_from_func

ITEMS = [{"who": "ada", "times": 1}, {"who": "bob", "times": 2}]
ARGUMENTS: dict[str, Any] = {}
#: LocalClient raises "Not implemented" for a ParallelFor over a static list: nothing to compare.
LOCAL_CLIENT: list[tuple[str, str, str, int | None]] = []


def greet(who: str, times: int) -> str:
    return " ".join([f"hi {who}"] * times)


def make_pipeline(base_image: str) -> Any:
    greet_op = create_component_from_func(greet, base_image=base_image)

    @dsl.pipeline(name="loop-items")
    def pipeline() -> None:
        with dsl.ParallelFor(ITEMS) as record:
            greet_op(record.who, record.times)

    return pipeline


def expected(arguments: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(f"for-loop-2({index})/greet", "Output"): greet(**item) for index, item in enumerate(ITEMS)}
