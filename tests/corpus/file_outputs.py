"""File outputs (OutputPath/InputPath) and a value return: a text file, a folder, and a float."""

from typing import Any

from kfp import dsl
from kfp.components import InputPath, OutputPath, create_component_from_func

ARGUMENTS = {"text": "hello kfp", "repeat": 3}
OUTPUTS = [("write-text", "data"), ("count-words", "Output")]


def write_text(text: str, repeat: int, data_path: OutputPath(str)) -> None:  # type: ignore[valid-type]
    with open(data_path, "w") as handle:
        handle.write("\n".join([text] * repeat))


def count_words(data_path: InputPath(str)) -> float:  # type: ignore[valid-type]
    with open(data_path) as handle:
        return float(len(handle.read().split()))


def make_pipeline(base_image: str) -> Any:
    write_op = create_component_from_func(write_text, base_image=base_image)
    count_op = create_component_from_func(count_words, base_image=base_image)

    @dsl.pipeline(name="file-outputs")
    def pipeline(text: str = "hello", repeat: int = 2) -> None:
        written = write_op(text=text, repeat=repeat)
        count_op(written.outputs["data"])

    return pipeline
