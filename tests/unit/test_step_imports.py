import pytest

from buildtool.errors import BuildError
from buildtool.inputs import step_imports


def test_imports_in_a_function_body_are_found_by_top_level_name():
    source = """
    def training(input, output):
        import os, json as j
        import numpy as np
        from sklearn.model_selection import train_test_split
        from tensorflow.keras.layers import LSTM
        from . import sibling
        def inner():
            import requests
    """
    assert step_imports.imported_modules(source) == {"os", "json", "numpy", "sklearn", "tensorflow", "requests"}


def test_the_real_steps_import_what_their_images_install():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    modules = step_imports.step_modules(
        "pipeline.steps", ["download_training_dataset", "training", "upload_model"], root, root / "pyproject.toml"
    )
    assert modules["download_training_dataset"] == ["os", "platform_client"]
    assert {"numpy", "sklearn", "tensorflow", "platform_client"} <= set(modules["training"])


def test_probe_output_is_parsed_and_described():
    output = (
        'noise\nIMPORT-PROBE {"imports": {"sklearn": "ModuleNotFoundError: No module named \'sklearn\'"}, '
        '"pip_check": [1, "foo 1.0 has requirement bar>=2"]}\n'
    )
    probe = step_imports.parse_probe(output)
    assert (
        step_imports.describe_failures("training", "training", probe.failed_imports)
        == "step training imports sklearn: not installed in image training"
    )
    assert probe.pip_check_code == 1 and "bar>=2" in probe.pip_check_output
    with pytest.raises(BuildError, match="printed no result"):
        step_imports.parse_probe("python3: not found")


def test_the_probe_runs_here_too():
    """The probe is plain Python: run it with this interpreter, as the image's python3 would."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, *step_imports.probe_command(["json", "no_such_module_here"])[1:]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    probe = step_imports.parse_probe(result.stdout)
    assert list(probe.failed_imports) == ["no_such_module_here"]
    assert probe.failed_imports["no_such_module_here"].startswith("ModuleNotFoundError")
