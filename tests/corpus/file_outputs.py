"""File outputs (OutputPath/InputPath) and a value return: a text file, a folder, and a float."""

from collections.abc import Mapping
from typing import Any

from kfp import dsl

from . import component
from .steps import count_words, write_text

ARGUMENTS = {"text": "hello kfp", "repeat": 3}
#: (buildtool node, output, LocalClient's op, loop iteration): what kfp's LocalClient produces to compare with.
LOCAL_CLIENT = [("write-text", "data", "write-text", None), ("count-words", "Output", "count-words", None)]


def make_pipeline(images: str | Mapping[str, str]) -> Any:
    write_op = component(write_text, images)
    count_op = component(count_words, images)

    @dsl.pipeline(name="file-outputs")
    def pipeline(text: str = "hello", repeat: int = 2) -> None:
        written = write_op(text=text, repeat=repeat)
        count_op(written.outputs["data"])

    return pipeline


def expected(arguments: dict[str, Any]) -> dict[tuple[str, str], str]:
    """Each (task, output)'s file, computed by the component functions themselves (kfp serializes a float
    with str())."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "data")
        write_text(arguments["text"], arguments["repeat"], path)
        with open(path) as handle:
            text = handle.read()
        return {("write-text", "data"): text, ("count-words", "Output"): str(count_words(path))}
