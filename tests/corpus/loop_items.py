"""`dsl.ParallelFor` over a static list of records (Argo's withItems, `{{item.field}}`)."""

from collections.abc import Mapping
from typing import Any

from kfp import dsl

from . import component
from .steps import greet

ITEMS = [{"who": "ada", "times": 1}, {"who": "bob", "times": 2}]
ARGUMENTS: dict[str, Any] = {}
#: LocalClient raises "Not implemented" for a ParallelFor over a static list: nothing to compare.
LOCAL_CLIENT: list[tuple[str, str, str, int | None]] = []


def make_pipeline(images: str | Mapping[str, str]) -> Any:
    greet_op = component(greet, images)

    @dsl.pipeline(name="loop-items")
    def pipeline() -> None:
        with dsl.ParallelFor(ITEMS) as record:
            greet_op(record.who, record.times)

    return pipeline


def expected(arguments: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(f"for-loop-2({index})/greet", "Output"): greet(**item) for index, item in enumerate(ITEMS)}
