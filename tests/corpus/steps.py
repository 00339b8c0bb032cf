"""The corpus pipelines' step functions, one module as a project's `steps_module` holds them.

kfp serializes each function's source into its component, so the imports a step needs are inside its body.
"""

# No `from __future__ import annotations`: kfp reads these annotations as objects.
from typing import NamedTuple

from kfp.components import InputPath, OutputPath


def write_text(text: str, repeat: int, data_path: OutputPath(str)) -> None:  # type: ignore[valid-type]
    with open(data_path, "w") as handle:
        handle.write("\n".join([text] * repeat))


def count_words(data_path: InputPath(str)) -> float:  # type: ignore[valid-type]
    with open(data_path) as handle:
        return float(len(handle.read().split()))


def divide(a: int, b: int) -> NamedTuple("Outputs", [("quotient", int), ("remainder", int)]):  # type: ignore[misc]
    from collections import namedtuple

    return namedtuple("Outputs", ["quotient", "remainder"])(a // b, a % b)


def add(x: int, y: int) -> int:
    return x + y


def flip(number: int) -> int:
    return number * 2


def describe(label: str, value: int) -> str:
    return f"{label}: {value}"


def make_list(count: int) -> str:
    import json

    return json.dumps(list(range(1, count + 1)))


def square(x: int) -> int:
    return x * x


def greet(who: str, times: int) -> str:
    return " ".join([f"hi {who}"] * times)


def work(fail: str) -> str:
    if fail == "yes":
        raise SystemExit("asked to fail")
    return "worked"


def cleanup(status: str) -> str:
    print("exit handler saw", status)
    return status
