from buildtool import step_imports
from buildtool.errors import BuildError
import pytest


def test_imports_in_a_function_body_are_found_by_top_level_name():
    source = '''
    def training(input, output):
        import os, json as j
        import numpy as np
        from sklearn.model_selection import train_test_split
        from tensorflow.keras.layers import LSTM
        from . import sibling
        def inner():
            import requests
    '''
    assert step_imports.imported_modules(source) == {"os", "json", "numpy", "sklearn", "tensorflow", "requests"}


def test_the_real_steps_import_what_their_images_install():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    modules = step_imports.step_modules("pipeline.steps", ["download_training_dataset", "training", "upload_model"],
                                        root, root / "pyproject.toml")
    assert modules["download_training_dataset"] == ["os", "platform_client"]
    assert {"numpy", "sklearn", "tensorflow", "platform_client"} <= set(modules["training"])


def test_probe_output_is_parsed_and_described():
    failures = step_imports.probe_failures('noise\nIMPORT-PROBE {"sklearn": "ModuleNotFoundError: No module named \'sklearn\'"}\n')
    assert step_imports.describe_failures("training", "training", failures) == \
        "step training imports sklearn: not installed in image training"
    with pytest.raises(BuildError, match="printed no result"):
        step_imports.probe_failures("python3: not found")
