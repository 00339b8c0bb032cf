"""File outputs (OutputPath/InputPath) and a value return: a text file, a folder, and a float."""

from typing import Any

from kfp import dsl
from kfp.components import InputPath, OutputPath, create_component_from_func

ARGUMENTS = {"text": "hello kfp", "repeat": 3}
#: (buildtool node, output, LocalClient's op, loop iteration): what kfp's LocalClient produces to compare with.
LOCAL_CLIENT = [("write-text", "data", "write-text", None), ("count-words", "Output", "count-words", None)]


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
